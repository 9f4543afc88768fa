"""Benchmark: time and peak memory of `elk compile` (the issue's headline target).

Runs the compile in a fresh child process twice, first with an empty plan-table
cache (what a new user sees) and then with the cache warm, and prints wall
time, per-phase times and peak resident memory next to the Elk artifact's
figures for the same configuration (51 min and several 3 GB processes on a
2-core machine; 27 min of it building plan tables, 255 s for one matmul).

    python experiments/bench_compile.py [--model llama2-13b] [--designs all]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ARTIFACT = {"total_s": 51 * 60, "tables_s": 27 * 60, "full_search_s": 23 * 60, "one_matmul_s": 255,
            "peak_gb": 3.0}

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import elk
r = elk.compile(sys.argv[1], batch=int(sys.argv[2]), seq=int(sys.argv[3]), designs=sys.argv[4],
                chip_overrides={"hbm_bytes_per_s": float(sys.argv[5]) * 1e12})
print(json.dumps({"wall_s": time.perf_counter() - t0, "tables_s": r.table_seconds,
                  "bound": None if r.bound is None else {"ms": r.bound.ms, "name": r.bound.name,
                                                         "seconds": r.bounds.seconds},
                  "designs": {n: {"latency_ms": d.sim.latency_ms, "valid": d.sim.valid,
                                  "compile_s": d.compile_seconds} for n, d in r.designs.items()}}))
"""


def run_child(args: argparse.Namespace, cache_dir: str) -> dict:
    env = dict(os.environ, ELK_CACHE_DIR=cache_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.batch), str(args.seq), args.designs,
                          str(args.hbm_tbps)], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    # ru_maxrss of children is the largest child so far (KiB on Linux): the table pool workers included
    result["peak_rss_mb"] = max(after.ru_maxrss, before.ru_maxrss) / 1024
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama2-13b")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--hbm-tbps", type=float, default=16.0)
    p.add_argument("--designs", default="default", help="what elk compile runs by default (paper five + periodic)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(args, cache)
        warm = run_child(args, cache)
    print(f"elk compile {args.model} B{args.batch} S{args.seq} HBM {args.hbm_tbps} TB/s designs={args.designs} "
          f"on {os.cpu_count()} cores\n")
    print(f"{'run':12s} {'process s':>10s} {'tables s':>9s} {'peak MB':>8s}")
    for name, r in (("cold cache", cold), ("warm cache", warm)):
        print(f"{name:12s} {r['process_wall_s']:10.1f} {r['tables_s']:9.2f} {r['peak_rss_mb']:8.0f}")
    if cold.get("bound"):
        b = cold["bound"]
        print(f"\nbound: {b['ms']:.3f} ms ({b['name']}), {b['seconds']:.2f} s to prove (cold run)")
    print("\nper design (cold run): latency ms, valid, compile s")
    for name, d in cold["designs"].items():
        print(f"  {name:9s} {d['latency_ms']:9.3f}  {str(d['valid']):5s} {d['compile_s']:7.2f}")
    print("\nagainst the Elk artifact on a 2-core machine (same configuration):")
    print(f"  total      {ARTIFACT['total_s'] / 60:5.0f} min  -> {cold['process_wall_s']:6.1f} s "
          f"({ARTIFACT['total_s'] / cold['process_wall_s']:.0f}x faster)")
    print(f"  tables     {ARTIFACT['tables_s'] / 60:5.0f} min  -> {cold['tables_s']:6.1f} s "
          f"({ARTIFACT['tables_s'] / max(cold['tables_s'], 1e-9):.0f}x faster)")
    full = cold["designs"].get("elk-full")
    if full:
        print(f"  ELK-Full   {ARTIFACT['full_search_s'] / 60:5.0f} min  -> {full['compile_s']:6.1f} s "
              f"({ARTIFACT['full_search_s'] / full['compile_s']:.0f}x faster)")
    print(f"  peak RSS   {ARTIFACT['peak_gb']:5.1f} GB per process (several) -> {cold['peak_rss_mb'] / 1024:.2f} GB")


if __name__ == "__main__":
    main()
