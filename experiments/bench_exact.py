"""Benchmark: windowed CP-SAT and MILP against their ELK-Full warm start, on the same windows.

Prints, per solver: latency and % of Ideal against the warm start, share of
windows proven optimal within the time limit, windows improved or reused,
total compile time; then the per-window ratio of MILP to CP-SAT solve times.

    python experiments/bench_exact.py [--model llama2-13b] [--window 8] [--time-limit 10] [--workers 2]
                                      [--solvers cpsat,milp-highs,milp-cbc] [--records-dir out/bench_exact]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from elk.chip import preset
from elk.simulator import simulate
from elk.workload import Workload
from elk.graphs.zoo import build_program
from solvers.schedule import designs
from solvers.schedule.records import write_records
from solvers.schedule.windowed import windowed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama2-13b")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--time-limit", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--solvers", default="cpsat,milp-highs")
    p.add_argument("--records-dir", default="out/bench_exact")
    args = p.parse_args(argv)

    started = time.perf_counter()
    workload = Workload.build(build_program(args.model, batch=args.batch, seq=args.seq), preset(args.chip))
    ideal = simulate(workload, designs.ideal(workload)).latency_ms
    t0 = time.perf_counter()
    warm = designs.elk_full(workload)
    warm_s = time.perf_counter() - t0
    warm_ms = simulate(workload, warm).latency_ms
    prep_s = time.perf_counter() - started
    print(f"{args.model} B{args.batch} S{args.seq} on {args.chip}: Ideal {ideal:.4f} ms; ELK-Full {warm_ms:.4f} ms "
          f"({100 * ideal / warm_ms:.2f}% of Ideal, {warm_s:.1f} s); tables + designs {prep_s:.1f} s\n")
    times: dict[str, dict[int, float]] = {}
    out_dir = Path(args.records_dir)
    print(f"{'solver':12s} {'latency ms':>10s} {'% ideal':>8s} {'vs warm':>9s} {'windows':>7s} {'optimal':>8s} "
          f"{'improved':>8s} {'reused':>6s} {'solve s':>8s} {'compile s':>9s}")
    for name in args.solvers.split(","):
        solver, _, backend = name.partition("-")
        t0 = time.perf_counter()
        sched = windowed(workload, warm, solver=solver, backend=backend or "highs", window=args.window,
                         time_limit=args.time_limit, workers=args.workers, seed=args.seed)
        spent = time.perf_counter() - t0
        verdict = simulate(workload, sched)
        records = list(sched.info.records)
        solved = [r for r in records if not r.reused]
        optimal = sum(1 for r in solved if r.status == "OPTIMAL")
        times[name] = {r.window: r.seconds for r in solved}
        write_records(records, out_dir / f"{args.model}-{name}.csv")
        gain = warm_ms - verdict.latency_ms
        print(f"{name:12s} {verdict.latency_ms:10.4f} {100 * ideal / verdict.latency_ms:8.2f} "
              f"{-gain * 1e3:+8.2f}us {len(records):7d} {100 * optimal / max(1, len(solved)):7.1f}% "
              f"{sum(r.accepted for r in records):8d} {len(records) - len(solved):6d} "
              f"{sum(r.seconds for r in solved):8.1f} {prep_s + spent:9.1f}"
              + ("" if verdict.valid else "  INVALID"))
    if "cpsat" in times:
        for name, t in times.items():
            if name == "cpsat":
                continue
            common = [w for w in t if w in times["cpsat"] and times["cpsat"][w] > 0]
            if common:
                ratios = [t[w] / times["cpsat"][w] for w in common]
                print(f"\n{name} / cpsat solve time per window: median {statistics.median(ratios):.2f}, "
                      f"mean {statistics.mean(ratios):.2f}, total {sum(t[w] for w in common):.1f} s vs "
                      f"{sum(times['cpsat'][w] for w in common):.1f} s over {len(common)} windows")


if __name__ == "__main__":
    main()
