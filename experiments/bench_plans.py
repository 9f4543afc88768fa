"""Benchmark: plan-table construction, per unique operator and for whole models.

Builds every table with the disk cache off (single process, so per-operator
times add up) and prints plans enumerated, table rows and seconds per
operator, then the model total. The Elk artifact needs 255 s of
single-threaded Python for Llama2-13B's QKV matmul alone (618,935 plans).

    python experiments/bench_plans.py [--models llama2-13b,llama2-70b,...]
"""
from __future__ import annotations

import argparse
import os
import time

from elk.chip import preset
from elk.plantable import build_plan_table
from elk.graphs.zoo import build_program

# the disk cache is read when tables are built, not at import: this run measures building them
os.environ["ELK_NO_CACHE"] = "1"

ARTIFACT_QKV_SECONDS = 255.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="llama2-13b")
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--top", type=int, default=8, help="operators to list per model")
    args = p.parse_args()
    chip = preset(args.chip)
    for model in args.models.split(","):
        mode = "forward" if model.startswith("dit") else "decode"
        program = build_program(model, batch=args.batch, seq=args.seq, mode=mode)
        rows = []
        started = time.perf_counter()
        for sig in program.unique_signatures():
            t0 = time.perf_counter()
            table = build_plan_table(sig, chip)
            rows.append((time.perf_counter() - t0, table))
        total = time.perf_counter() - started
        plans = sum(t.n_plans for _, t in rows)
        print(f"\n{model} {mode} B{args.batch} S{args.seq} on {chip.name}: {len(rows)} unique operators, "
              f"{plans:,} plans, {total:.2f} s single-process")
        for seconds, t in sorted(rows, key=lambda r: -r[0])[:args.top]:
            print(f"  {seconds:6.2f} s {t.n_plans:>10,} plans {len(t):>4} rows  {t.sig.describe()}")
        qkv = [(s, t) for s, t in rows if t.sig.lengths == (32, 15360, 5120)]
        if qkv:
            s = qkv[0][0]
            print(f"  QKV matmul: {s:.2f} s vs {ARTIFACT_QKV_SECONDS:.0f} s in the artifact "
                  f"({ARTIFACT_QKV_SECONDS / s:.0f}x), enumerating 1.8x more plans (corrected plan space)")


if __name__ == "__main__":
    main()
