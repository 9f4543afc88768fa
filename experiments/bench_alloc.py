"""Benchmark: elk's allocators on public allocation sets (MiniMalloc's challenging instances, idealloc's traces).

Every CSV under the given folders is one instance. A capacity in the file
name (MiniMalloc's NAME.CAPACITY.csv) makes it a feasibility question at
that capacity; otherwise the peak is minimised and compared with the
max-load lower bound (and with the file's own offsets when it has them:
idealloc's IREE files carry IREE's placement). Every placement printed has
passed elk.allocation.validate.

    python experiments/bench_alloc.py FOLDER [FOLDER ...] [--solvers heuristic,portfolio] [--time-limit 60]
                                      [--workers 2] [--repeat 1] [--csv out/bench_alloc.csv]
                                      [--baseline earlier.csv]

e.g. ``python experiments/bench_alloc.py ../shared/benchmarks/minimalloc/challenging ../shared/benchmarks/idealloc``

``--repeat N`` solves every (instance, solver) N times and reports the median
time (the status and peak of the median run; a run that placed nothing
counts as the time limit). Times on a shared machine are noisy: the load
average is printed before and after. ``--baseline FILE`` reads the ``--csv``
of an earlier run (e.g. of the code before a change, on the same machine)
and prints a before / after table: status, seconds, the speed-up and the
peak over the bound, per (instance, solver) found in both.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
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
    p.add_argument("--repeat", type=int, default=1, help="runs per instance and solver; the median time is "
                                                         "reported (default 1)")
    p.add_argument("--csv", help="also write one row per (instance, solver)")
    p.add_argument("--baseline", help="a --csv file of an earlier run: print before / after")
    args = p.parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    before = read_baseline(args.baseline) if args.baseline else None
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = [s for s in solvers if s not in ALLOC_SOLVERS]
    if unknown:
        raise SystemExit(f"unknown solver {unknown[0]} (choose from {', '.join(ALLOC_SOLVERS)})")
    files = instances(args.folders)
    print(f"{len(files)} instances, solvers {', '.join(solvers)}, {args.time_limit:g} s limit, {args.workers} workers, "
          f"{args.repeat} run{'s' if args.repeat > 1 else ''} each, {os.cpu_count()} CPUs, load average {_load()}")
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
            runs = []
            for _ in range(args.repeat):
                r = allocate(problem, solver=solver, capacity=capacity, minimize=capacity is None,
                             time_limit=args.time_limit, workers=args.workers, seed=args.seed)
                if r.offsets is not None:
                    validate(problem, r.offsets, capacity)
                runs.append(r)
            # the median run, a run that placed nothing counting as the whole time limit
            runs.sort(key=lambda x: x.seconds if x.offsets is not None else max(x.seconds, args.time_limit))
            r = runs[(len(runs) - 1) // 2]
            seconds = statistics.median(x.seconds if x.offsets is not None else max(x.seconds, args.time_limit)
                                        for x in runs)
            ratio = f"{r.peak / bound:.3f}" if r.peak is not None and bound else "-"
            row += [f"{r.peak:,}" if r.peak is not None else "-", ratio, f"{seconds:.1f}", r.status]
            placed = sum(x.offsets is not None for x in runs)
            records.append({"instance": str(path), "buffers": problem.n, "lower_bound": bound, "capacity": capacity,
                            "baseline_peak": baseline, **r.summary(), "seconds": round(seconds, 3),
                            "runs": len(runs), "placed_runs": placed,
                            "seconds_all": " ".join(f"{x.seconds:.3f}" for x in runs)})
            spread = f" (runs {', '.join(f'{x.seconds:.1f}' for x in runs)}; placed {placed}/{len(runs)})" \
                if len(runs) > 1 else ""
            print(f"  {path.stem:<18} {solver:<10} {r.status:<10} peak {r.peak if r.peak is not None else '-'} "
                  f"({ratio}x)  {seconds:.1f} s{spread}  {r.message}", flush=True)
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
          + f"; total {time.perf_counter() - started:.0f} s; load average now {_load()}")
    if before is not None:
        print_before_after(before, records)
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


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def read_baseline(path: str) -> dict:
    """(instance name, solver) -> the row of an earlier --csv run."""
    try:
        with open(path, newline="") as fh:
            return {(Path(row["instance"]).stem, row["solver"]): row for row in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error) as exc:
        raise ElkError(f"cannot read the baseline {path}: {exc}") from None


def print_before_after(before: dict, records: list[dict]) -> None:
    rows = []
    for rec in records:
        old = before.get((Path(rec["instance"]).stem, rec["solver"]))
        if old is None:
            continue
        bound = rec["lower_bound"] or 0
        t0, t1 = float(old["seconds"]), float(rec["seconds"])

        def xlb(peak) -> str:
            return f"{int(peak) / bound:.3f}" if peak not in (None, "") and bound else "-"

        rows.append([Path(rec["instance"]).stem, rec["solver"], old["status"], f"{t0:.1f}", rec["status"], f"{t1:.1f}",
                     f"{t0 / t1:.1f}x" if min(t0, t1) >= 0.05 else "-", xlb(old["peak"]), xlb(rec["peak"])])
    if not rows:
        print("\nbaseline: no (instance, solver) in common")
        return
    print("\nbefore / after (seconds: the median run of each; speed-up = before / after; peak over the bound):")
    print(table(["instance", "solver", "before", "s", "after", "s", "speed-up", "xLB before", "xLB after"], rows,
                align="lllrlrrrr"))


if __name__ == "__main__":
    raise SystemExit(main())
