"""Benchmark: what ELK-Full's rigid-load search gains from the yield NoC mode and from per-group share limits,
and what each costs.

ELK-Full searches load orders x NoC modes x interconnect share limits. Under rigid loads elk adds the ``yield``
mode (loads move out of the way of exchange-bound operators, never stretching them) and then refines the
share limit per group of the layer. This runs, in one process and on the same machine, ELK-Full as
it was before both (stretch, push, hybrid; orders nominated by stretch and push; one share limit), with yield
only, with yield and the winner's limits refined per group, with every mode's best refined, and with its
default (every mode's best refined over a second grid too, ``RIGID_GROUP_THETA_RESTARTS``), and prints the
latencies (judged by the simulator), the times and the ratios to the first.

    python -m experiments.bench_rigid_modes [--configs llama2-13b:all-to-all:16:624,...] [--workers 1]

A config is model:topology:HBM TB/s:SRAM KiB, built as the gap study builds it (B32, S2048, decode).
"""
from __future__ import annotations

import argparse
import time

from elk.graphs.zoo import build_program
from elk.schedule import NocMode
from elk.simulator import simulate
from elk.workload import Workload
from experiments.gap_study import BATCH, SEQ, Config, Settings
from solvers.schedule.designs import elk_full

DEFAULT_CONFIGS = ("llama2-13b:all-to-all:16:624", "opt-30b:all-to-all:16:624", "llama2-13b:mesh:16:624",
                   "gemma2-27b:all-to-all:16:624", "llama2-13b:mesh:16:192", "llama2-70b:mesh:8:192")
VARIANTS = {
    "before": dict(modes=(NocMode.STRETCH, NocMode.PUSH, NocMode.HYBRID), screen_modes=(NocMode.STRETCH, NocMode.PUSH),
                   group_thetas=None),
    "+yield": dict(group_thetas=None),
    "+groups": dict(refine_every_mode=False, group_theta_restarts=()),
    "+modes": dict(group_theta_restarts=()),
    "default": {},
}


def workload(config: str) -> Workload:
    """The gap study's chip and program for ``config`` under rigid loads."""
    model, topology, hbm, sram = config.split(":")
    point = Config(model=model, topology=topology, hbm_tbps=float(hbm), sram_requested_kib=float(sram),
                   load_model="rigid").point(Settings())
    return Workload.build(build_program(model, batch=BATCH, seq=SEQ, mode="decode"), point.resolved.chip)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    head = "".join(f"{name + ' ms':>12s}{name + ' s':>11s}" for name in VARIANTS)
    print(f"{'config':32s}{head}  gain   x time  winner")
    for config in args.configs.split(","):
        w = workload(config)
        runs = {}
        for name, kwargs in VARIANTS.items():
            started = time.perf_counter()
            schedule = elk_full(w, workers=args.workers, **kwargs)
            seconds = time.perf_counter() - started
            verdict = simulate(w, schedule)
            assert verdict.valid, (config, name, verdict.violations[:1])
            choice = schedule.info.load_order
            winner = "elk-dyn" if choice is None else choice.noc_mode.value + (
                f" {','.join(f'{x:g}' for x in choice.group_thetas)}" if choice.group_thetas else "")
            runs[name] = (verdict.latency_ms, seconds, winner)
        (b_ms, b_s, _), (d_ms, d_s, winner) = runs["before"], runs["default"]
        cells = "".join(f"{ms:12.4f}{sec:11.1f}" for ms, sec, _ in runs.values())
        print(f"{config:32s}{cells}  {100 * (1 - d_ms / b_ms):5.2f}% {d_s / b_s:6.2f}  {winner}", flush=True)


if __name__ == "__main__":
    main()
