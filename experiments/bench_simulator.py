"""Benchmark: the simulator's check of whole-program schedules (the judge every design ends in).

    python experiments/bench_simulator.py [--model llama2-13b] [--repeat 20]

Compiles the model's default designs once (plan tables from the cache), then
times ``elk.simulator.simulate`` on each strict schedule under the fluid load
model (rule 3 decided exactly: elk/noc.py) and under the rigid one, and prints
the median and the fastest of ``--repeat`` runs. The fluid check must stay a
small part of a compile: its target is under 0.1 s on a whole Llama2-13B schedule.
"""
from __future__ import annotations

import argparse
import statistics
import time

from elk.driver.api import compile
from elk.driver.report import table
from elk.simulator import simulate
from elk.workload import Workload


def timed(workload: Workload, schedule, repeat: int) -> tuple[float, float, bool]:
    runs = []
    valid = True
    for _ in range(repeat):
        t0 = time.perf_counter()
        valid = simulate(workload, schedule).valid and valid
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), min(runs), valid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama2-13b")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    result = compile(args.model, designs="paper", placement=None, bound=None)
    rigid = Workload.build(result.program, result.chip.with_overrides(load_model="rigid"))
    rows = []
    for name, design in result.designs.items():
        if not design.schedule.relaxation.strict:
            continue
        fluid_med, fluid_min, fluid_ok = timed(result.workload, design.schedule, args.repeat)
        rigid_med, rigid_min, rigid_ok = timed(rigid, design.schedule, args.repeat)
        rows.append([name, len(result.workload), f"{fluid_med * 1e3:.1f}", f"{fluid_min * 1e3:.1f}",
                     "yes" if fluid_ok else "no", f"{rigid_med * 1e3:.1f}", f"{rigid_min * 1e3:.1f}",
                     "yes" if rigid_ok else "no"])
    print(f"simulate() on {args.model}'s schedules, {args.repeat} runs each")
    print(table(["design", "operators", "fluid median ms", "fluid min ms", "fluid valid", "rigid median ms",
                 "rigid min ms", "rigid valid"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
