"""Benchmark: what the yield NoC mode is worth to ELK-Full under rigid loads, and what it costs.

ELK-Full searches load orders x NoC modes x interconnect share limits. Under rigid loads elk adds the ``yield``
mode (loads move out of the way of exchange-bound operators, never stretching them). This runs, in one process
and on the same machine, ELK-Full with the modes it had before (stretch, push, hybrid; orders nominated by
stretch and push) and with its default (yield added, and nominating orders too), and prints both latencies
(judged by the simulator), both times and their ratios.

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
                   "gemma2-27b:all-to-all:16:624")
BEFORE = dict(modes=(NocMode.STRETCH, NocMode.PUSH, NocMode.HYBRID), screen_modes=(NocMode.STRETCH, NocMode.PUSH))


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
    print(f"{'config':34s} {'before ms':>10s} {'yield ms':>10s} {'gain':>7s} {'before s':>9s} {'yield s':>8s} "
          f"{'x time':>7s}  winning mode")
    for config in args.configs.split(","):
        w = workload(config)
        runs = {}
        for name, kwargs in (("before", BEFORE), ("yield", {})):
            started = time.perf_counter()
            schedule = elk_full(w, workers=args.workers, **kwargs)
            seconds = time.perf_counter() - started
            verdict = simulate(w, schedule)
            assert verdict.valid, (config, name, verdict.violations[:1])
            choice = schedule.info.load_order
            runs[name] = (verdict.latency_ms, seconds, choice.noc_mode.value if choice else "elk-dyn")
        (b_ms, b_s, _), (y_ms, y_s, mode) = runs["before"], runs["yield"]
        print(f"{config:34s} {b_ms:10.4f} {y_ms:10.4f} {100 * (1 - y_ms / b_ms):6.2f}% {b_s:9.1f} {y_s:8.1f} "
              f"{y_s / b_s:7.2f}  {mode}", flush=True)


if __name__ == "__main__":
    main()
