"""Benchmark: elk's allocators on public allocation sets (MiniMalloc's challenging instances, idealloc's traces).

Every CSV under the given folders is one instance. A capacity in the file
name (MiniMalloc's NAME.CAPACITY.csv) makes it a feasibility question at
that capacity; otherwise the peak is minimised and compared with the
max-load lower bound (and with the file's own offsets when it has them:
idealloc's IREE files carry IREE's placement). Every placement printed has
passed elk.allocation.validate.

    python experiments/bench_alloc.py FOLDER [FOLDER ...] [--solvers heuristic,portfolio] [--time-limit 60]
                                      [--workers 2] [--csv out/bench_alloc.csv]

e.g. ``python experiments/bench_alloc.py ../shared/benchmarks/minimalloc/challenging ../shared/benchmarks/idealloc``
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from elk.allocation import capacity_from_name, max_load_lower_bound, peak_of, read_csv, read_placement, validate
from elk.errors import ElkError
from elk.driver.report import table
from solvers.alloc.allocate import ALLOC_SOLVERS, allocate


def instances(folders: list[str]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if root.is_file():
            found.append(root)
            continue
        if not root.is_dir():
            raise ElkError(f"no such folder: {folder}")
        found.extend(sorted(root.rglob("*.csv")))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="folders (searched recursively) or CSV files")
    p.add_argument("--solvers", default="heuristic,portfolio",
                   help=f"comma list from {', '.join(ALLOC_SOLVERS)} (default heuristic,portfolio)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per instance and solver (default 60)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", help="also write one row per (instance, solver)")
    args = p.parse_args(argv)
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = [s for s in solvers if s not in ALLOC_SOLVERS]
    if unknown:
        raise SystemExit(f"unknown solver {unknown[0]} (choose from {', '.join(ALLOC_SOLVERS)})")
    files = instances(args.folders)
    print(f"{len(files)} instances, solvers {', '.join(solvers)}, {args.time_limit:g} s limit, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows, records = [], []
    started = time.perf_counter()
    for path in files:
        capacity = capacity_from_name(path)
        baseline = None
        with open(path) as fh:
            has_offsets = "offset" in fh.readline().lower()
        if has_offsets and capacity is None:
            problem, offsets = read_placement(path)
            validate(problem, offsets)
            baseline = peak_of(problem, offsets)
        else:
            problem = read_csv(path, offsets="ignore")
        bound = max_load_lower_bound(problem)
        row = [path.stem, f"{problem.n:,}", f"{bound:,}", f"{capacity:,}" if capacity else "min"]
        for solver in solvers:
            r = allocate(problem, solver=solver, capacity=capacity, minimize=capacity is None,
                         time_limit=args.time_limit, workers=args.workers, seed=args.seed)
            if r.offsets is not None:
                validate(problem, r.offsets, capacity)
            ratio = f"{r.peak / bound:.3f}" if r.peak is not None and bound else "-"
            row += [f"{r.peak:,}" if r.peak is not None else "-", ratio, f"{r.seconds:.1f}", r.status]
            records.append({"instance": str(path), "buffers": problem.n, "lower_bound": bound, "capacity": capacity,
                            "baseline_peak": baseline, **r.summary()})
            print(f"  {path.stem:<18} {solver:<10} {r.status:<10} peak {r.peak if r.peak is not None else '-'} "
                  f"({ratio}x)  {r.seconds:.1f} s  {r.message}", flush=True)
        row.append(f"{baseline:,} ({baseline / bound:.3f})" if baseline else "")
        rows.append(row)
    headers = ["instance", "buffers", "lower bound", "capacity"]
    for solver in solvers:
        headers += [f"{solver} peak", "xLB", "s", "status"]
    headers.append("file's own offsets")
    print()
    print(table(headers, rows, align="lrrr" + "rrrl" * len(solvers) + "l"))
    placed = {s: sum(1 for rec in records if rec["solver"] == s and rec["peak"] is not None) for s in solvers}
    print("\nplaced: " + ", ".join(f"{s} {n}/{len(files)}" for s, n in placed.items())
          + f"; total {time.perf_counter() - started:.0f} s")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            keys = list(records[0]) if records else []
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for rec in records:
                w.writerow({k: (str(v) if isinstance(v, dict) else v) for k, v in rec.items()})
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
