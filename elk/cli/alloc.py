"""``elk alloc``: place the buffers of a CSV file, report peak, bound, time and status.

Kept out of elk/cli/main.py so the main parser only registers the subcommand.
Exit codes: 0 when a valid placement was found, 1 when none was (infeasible
or not found within the time limit), 2 for a user mistake (ElkError).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from elk.cli.common import check_outputs
from elk.errors import ElkError
from solvers.alloc.allocate import ALLOC_SOLVERS
from solvers.solver_options import MILP_BACKENDS


def add_alloc_parser(sub) -> None:
    """Register ``elk alloc`` and its options on the main parser's subcommands."""
    p = sub.add_parser("alloc", help="place buffers of an allocation CSV (id,lower,upper,size[,alignment][,offset])",
                       description="On-chip memory allocation: give every buffer an address so that buffers live "
                                   "at the same time never overlap. Capacity: --capacity, else the number in a "
                                   "MiniMalloc-style file name (NAME.CAPACITY.csv), else the peak is minimised.")
    p.add_argument("file", help="CSV with a header: id,lower,upper,size[,alignment][,offset] (half-open [lower, upper))")
    p.add_argument("--capacity", type=int, help="place within this many address units")
    p.add_argument("--minimize", action="store_true", help="minimise the peak (within --capacity if given)")
    p.add_argument("--solver", default="portfolio", choices=ALLOC_SOLVERS,
                   help="portfolio (search + CP-SAT on two cores, default), heuristic (greedy only), "
                        "search (exact branch-and-bound), cpsat, milp")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--work-limit", type=float, default=None,
                   help="stop on deterministic work instead (units of about one core-second): the same answer on "
                        "any machine with one CP-SAT worker; the time limit then only guards against a hang")
    p.add_argument("--workers", type=int, default=2, help="CP-SAT workers / MILP threads / search processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--milp-solver", default="highs", choices=MILP_BACKENDS, help="MILP backend")
    p.add_argument("--offsets", default="fixed", choices=("fixed", "ignore", "baseline"),
                   help="the file's offset column: fixed offsets (default), ignored, or a baseline placement to "
                        "compare against (e.g. IREE's own in idealloc's iree files)")
    p.add_argument("--out", help="write the placement as CSV (the input columns plus offset)")
    p.add_argument("--png", help="write a picture of the packing (time x address); when nothing fits the capacity, "
                                 "the best greedy placement above it")
    p.add_argument("--json", help="write the result (solver, version, status, peak, bounds, time, ...) as JSON")
    p.set_defaults(func=cmd_alloc)


def cmd_alloc(args: argparse.Namespace) -> int:
    """Run ``elk alloc``: read the CSV, place (or check) its buffers, report; the exit code (0 placed, 1 not)."""
    from elk.allocation import capacity_from_name, peak_of, read_csv, read_placement, validate, write_csv
    from solvers.alloc.allocate import allocate

    if args.capacity is not None and args.capacity < 0:
        raise ElkError(f"--capacity must be non-negative, got {args.capacity}")
    check_outputs([("--out", args.out), ("--png", args.png), ("--json", args.json)])  # before any solving
    capacity = args.capacity
    source = "given"
    if capacity is None and not args.minimize:
        capacity = capacity_from_name(args.file)
        source = "from the file name"
    baseline = None
    if args.offsets == "baseline":
        problem, baseline = read_placement(args.file)
        validate(problem, baseline)
    else:
        problem = read_csv(args.file, offsets=args.offsets)
    result = allocate(problem, solver=args.solver, capacity=capacity, minimize=args.minimize or capacity is None,
                      time_limit=args.time_limit, workers=args.workers, seed=args.seed, backend=args.milp_solver,
                      work_limit=args.work_limit)
    bound = result.lower_bound
    print(f"{args.file}: {problem.n:,} buffers, " + (f"capacity {capacity:,} ({source})" if capacity is not None
                                                    else "no capacity: minimising the peak"))
    who = result.solver + (f" ({result.solver_version})" if result.solver_version else "")
    limits = f"time limit {args.time_limit:g} s" + (f", work limit {args.work_limit:g}" if args.work_limit else "")
    print(f"solver       {who}, workers {result.workers}, seed {result.seed}, {limits}")
    print(f"status       {result.status}")
    if result.peak is not None:
        ratio = f" ({result.peak / bound:.3f}x the lower bound)" if bound else ""
        print(f"peak         {result.peak:,}{ratio}")
    print(f"lower bound  {bound:,} (max load)")
    if result.proven_bound is not None and result.proven_bound != bound:
        print(f"proven bound {result.proven_bound:,}")
    if baseline is not None:
        base_peak = peak_of(problem, baseline)
        print(f"baseline     {base_peak:,} (the file's own offsets" + (f", {base_peak / bound:.3f}x" if bound else "")
              + ")")
    print(f"time         {result.seconds:.2f} s")
    if result.message:
        print(f"note         {result.message}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"file": args.file, "buffers": problem.n, **result.summary()}, indent=2))
        print(f"wrote {args.json}")
    if result.offsets is not None:
        if args.out:
            write_csv(problem, result.offsets, args.out)
            print(f"wrote {args.out}")
        if args.png:
            from elk.driver.alloc_plot import plot_packing
            plot_packing(args.png, problem, result.offsets, capacity=capacity,
                         title=f"{Path(args.file).name}: {result.solver}, peak {result.peak:,}, {result.status}")
            print(f"wrote {args.png}")
    else:
        if args.out:
            print("no placement to write")
        over = None
        if args.png and capacity is not None and problem.n:
            # nothing within the capacity: draw the best greedy placement above it, to show where it overflows
            over = allocate(problem.with_capacity(None), solver="heuristic", minimize=True,
                            time_limit=args.time_limit)
        if over is not None and over.offsets is not None:
            from elk.driver.alloc_plot import plot_packing
            plot_packing(args.png, problem, over.offsets, capacity=capacity,
                         title=f"{Path(args.file).name}: greedy, peak {over.peak:,} over the capacity {capacity:,} "
                               f"({args.solver}: {result.status})")
            print(f"wrote {args.png} (the best greedy placement, peak {over.peak:,}: over the capacity)")
        elif args.png:
            print("no placement to draw")
    return 0 if result.offsets is not None else 1


__all__ = ["add_alloc_parser", "cmd_alloc"]
