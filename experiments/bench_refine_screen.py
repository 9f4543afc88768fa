"""Benchmark: ELK-Full's per-group share-limit search on the screening program against on the whole program.

Under rigid loads ELK-Full refines one interconnect share limit per group of the layer by coordinate descent
(``solvers.schedule.designs.refine_group_thetas``), a few hundred passes. A group's limit acts the same way in
every layer, so the descent can run on the screening program (the program cut to ``screen_layers`` layers, where
ELK-Full already ranks its orders) and only its result be confirmed on the whole program (kept where the whole
program is shorter). This runs both (``refine_on_screen`` False, then True), in one process and on the same
machine, on the gap study's rigid configurations, and prints each one's latency (judged by the simulator) and
time, and the totals.

    python -m experiments.bench_refine_screen [--configs llama2-13b:mesh:16:192,...] [--shard 0/2] [--workers 1]

A config is model:topology:HBM TB/s:SRAM KiB (the size it runs at), built as the gap study builds it (B32,
S2048, decode). Default: every rigid configuration of ``experiments/results/gap_budget/gaps.csv`` (the run it
was measured against; the grid is the same in every run). ``--shard k/n`` runs every n-th one from the k-th (to split the list over processes).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from elk.graphs.zoo import build_program
from elk.simulator import simulate
from elk.workload import Workload
from experiments.gap_study import BATCH, SEQ, Config, Settings
from solvers.schedule.designs import elk_full

STUDY = Path(__file__).parent / "results" / "gap_budget" / "gaps.csv"


def study_configs() -> list[str]:
    """The rigid configurations of the committed gap study, as model:topology:HBM:SRAM (the size run at)."""
    frame = pd.read_csv(STUDY)
    rows = frame[(frame["design"] == "best") & (frame["load_model"] == "rigid")]
    return [f"{r.model}:{r.topology}:{r.hbm_tbps:g}:{r.sram_kib:g}" for r in rows.itertuples()]


def workload(config: str) -> Workload:
    """The gap study's chip and program for ``config`` under rigid loads."""
    model, topology, hbm, sram = config.split(":")
    point = Config(model=model, topology=topology, hbm_tbps=float(hbm), sram_requested_kib=float(sram),
                   load_model="rigid", sram_kib=float(sram)).point(Settings())
    return Workload.build(build_program(model, batch=BATCH, seq=SEQ, mode="decode"), point.resolved.chip)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=None, help="comma list (default: the gap study's rigid configurations)")
    p.add_argument("--shard", default="0/1", help="k/n: every n-th configuration from the k-th")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    configs = args.configs.split(",") if args.configs else study_configs()
    k, n = (int(x) for x in args.shard.split("/"))
    configs = configs[k::n]
    print(f"{'config':34s}{'whole ms':>10s}{'whole s':>9s}{'screen ms':>11s}{'screen s':>10s}{'latency':>9s}"
          f"{'x time':>8s}", flush=True)
    totals = {False: 0.0, True: 0.0}
    worse = better = 0
    for config in configs:
        w = workload(config)
        runs = {}
        for on_screen in (False, True):
            started = time.perf_counter()
            schedule = elk_full(w, workers=args.workers, refine_on_screen=on_screen)
            seconds = time.perf_counter() - started
            verdict = simulate(w, schedule)
            assert verdict.valid, (config, on_screen, verdict.violations[:1])
            runs[on_screen] = (verdict.latency_ms, seconds)
            totals[on_screen] += seconds
        (a_ms, a_s), (b_ms, b_s) = runs[False], runs[True]
        change = 100 * (b_ms / a_ms - 1)
        worse += change > 1e-6
        better += change < -1e-6
        print(f"{config:34s}{a_ms:10.4f}{a_s:9.1f}{b_ms:11.4f}{b_s:10.1f}{change:+8.3f}%{b_s / a_s:8.2f}", flush=True)
    print(f"total: whole {totals[False]:.1f} s, screen {totals[True]:.1f} s "
          f"({totals[True] / max(totals[False], 1e-9):.2f}x); screen slower at {worse}, faster at {better} "
          f"of {len(configs)}")


if __name__ == "__main__":
    main()
