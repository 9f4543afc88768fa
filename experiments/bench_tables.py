"""Benchmark: plan tables of a compute x NoC sweep, built one chip at a time vs re-costed from one enumeration.

The paper's Fig. 24 sweeps Llama2-13B training (B2 S2048) over compute scale
{0.75, 1, 1.25, 1.5} x NoC scale {1, 1.5} on two topologies: 16 chips whose
tables differ only in how the scales divide compute and communication. Built
one chip at a time (as the evaluation did, one table task per chip) every
operator's plans -- tens of millions for the attention matmuls -- are
enumerated and costed 8 times per topology; ``build_plan_tables`` enumerates
them once per topology and re-costs per chip. The two are checked equal,
array by array. Single process, disk cache off; prints seconds and the ratio.

    python experiments/bench_tables.py [--topologies all-to-all,mesh] [--separate 8]
                                       [--model llama2-13b --mode forward --batch 2 --seq 2048]

``--separate N`` builds only the first N chips one at a time and scales that
time up to all of them (say so in what you report); the default builds all.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from elk.chip import preset
from elk.graphs.zoo import build_program
from elk.plantable import build_plan_table, build_plan_tables

# the disk cache is read when tables are built, not at import: this run measures building them
os.environ["ELK_NO_CACHE"] = "1"

COMPUTE_SCALES = (0.75, 1.0, 1.25, 1.5)
NOC_SCALES = (1.0, 1.5)
ARRAYS = ("cold", "hot", "time", "comp", "comm", "warmup", "spatial", "hot_temporal", "cold_temporal",
          "frontier_hot", "frontier_time")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama2-13b")
    p.add_argument("--mode", default="forward")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--topologies", default="all-to-all,mesh")
    p.add_argument("--separate", type=int, default=None, help="chips built one at a time (default: all)")
    args = p.parse_args()
    program = build_program(args.model, batch=args.batch, seq=args.seq, mode=args.mode)
    sigs = program.unique_signatures()
    print(f"{args.model} {args.mode} B{args.batch} S{args.seq}: {len(sigs)} unique operators, "
          f"{len(COMPUTE_SCALES) * len(NOC_SCALES)} (compute, NoC) scales per topology")
    for topo in args.topologies.split(","):
        base = preset(args.chip).with_overrides(topology_kind=topo)
        chips = [base.with_overrides(compute_scale=c, noc_scale=n) for c in COMPUTE_SCALES for n in NOC_SCALES]
        separate = chips[:args.separate] if args.separate else chips
        t0, c0 = time.perf_counter(), time.process_time()
        alone = [[build_plan_table(sig, chip) for sig in sigs] for chip in separate]
        t_alone, c_alone = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        together = [build_plan_tables(sig, chips) for sig in sigs]
        t_together, c_together = time.perf_counter() - t0, time.process_time() - c0
        for k, tables in enumerate(alone):
            for s, table in enumerate(tables):
                for name in ARRAYS:
                    assert np.array_equal(getattr(table, name), getattr(together[s][k], name)), (topo, k, name)
        scale = len(chips) / len(separate)
        estimate = "" if len(separate) == len(chips) else f" (measured {len(separate)}, scaled up)"
        print(f"  {topo}: one chip at a time {t_alone * scale:7.1f} s wall, {c_alone * scale:7.1f} s CPU{estimate}; "
              f"one enumeration re-costed for {len(chips)} chips {t_together:7.1f} s wall, {c_together:7.1f} s CPU; "
              f"{t_alone * scale / t_together:.1f}x wall, {c_alone * scale / c_together:.1f}x CPU; tables identical; "
              f"peak RSS {peak_rss_gib():.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
