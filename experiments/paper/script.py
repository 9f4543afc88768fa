"""The command line every figure script shares, and the two steps behind it: run the points, render the figure.

A figure script is ``main_for(SPEC)``. Results go to ``DIR/results`` (one
file per point, shared by every figure and by ``run_all.py``), so a point two
figures declare runs once and a rerun only runs what is missing; the figure's
PNG, PDF and CSV go to ``DIR``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from elk.errors import ElkError

from . import style
from .spec import FigureSpec, Options, figure_rows, unique, write_table

RESULTS = "results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (results/ inside it is shared)")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="a small subset that runs in a few minutes")
    level.add_argument("--smoke", action="store_true", help="the tiny model only, seconds (tests, CI)")
    parser.add_argument("--load-model", choices=("fluid", "rigid"), default="fluid",
                        help="load model of every point (default fluid); Fig. 17 also runs the other, heuristics only")
    parser.add_argument("--exact", action="store_true", help="add exact designs at a few points per figure")
    parser.add_argument("--exact-designs", default="periodic,milp",
                        help="exact designs to add, run in the order periodic, cpsat, milp, each from the fastest "
                             "schedule before it (default periodic,milp)")
    parser.add_argument("--periodic-time-limit", type=float, default=30.0,
                        help="periodic design: seconds for its CP-SAT model (30)")
    parser.add_argument("--time-limit", type=float, default=5.0, help="window designs: seconds per window (5)")
    parser.add_argument("--window", type=int, default=8, help="window designs: operators per window (8)")
    parser.add_argument("--solver-workers", type=int, default=2, help="exact designs: solver threads (2)")
    parser.add_argument("--workers", type=int, default=None, help="points compiled at once (runner default)")
    parser.add_argument("--address", default=None, help="run points on this runner address (see elk.study)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")


def options(args: argparse.Namespace) -> Options:
    level = "quick" if args.quick else "smoke" if args.smoke else "full"
    designs = tuple(d.strip() for d in args.exact_designs.split(",") if d.strip())
    return Options(level=level, exact=args.exact, exact_designs=designs, time_limit=args.time_limit,
                   window=args.window, solver_workers=args.solver_workers,
                   periodic_time_limit=args.periodic_time_limit, load_model=args.load_model)


def run_points(specs: Sequence[FigureSpec], out: Path, opts: Options, *, workers: int | None = None,
               address: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Run the union of the figures' points (deduplicated by key) in one runner call; return its frame."""
    from elk.study import run_study
    points = unique(p for spec in specs for p in spec.all_points(opts))
    return run_study(points, Path(out) / RESULTS, workers=workers, address=address, progress=progress)


@dataclass
class Rendered:
    """One figure's outputs and the tables behind them."""

    spec: FigureSpec
    png: Path
    pdf: Path
    csv: Path
    table: pd.DataFrame
    summary: pd.DataFrame


def render(spec: FigureSpec, frame: pd.DataFrame, out: Path, opts: Options) -> Rendered:
    """Write ``<name>.csv``, ``<name>.png`` and ``<name>.pdf`` from the results frame."""
    rows = figure_rows(frame, spec, opts)
    tab = spec.table(rows) if not rows.empty else pd.DataFrame(columns=["design", "latency_ms"])
    csv = write_table(tab, out, spec.name)
    fig = spec.draw(tab) if not tab.empty else empty_figure()
    fig.suptitle(spec.title + subset_note(tab, opts), fontsize=10)
    png, pdf = style.save(fig, out, spec.name)
    summary = spec.summary(tab) if not tab.empty else pd.DataFrame()
    return Rendered(spec=spec, png=png, pdf=pdf, csv=csv, table=tab, summary=summary)


def subset_note(tab: pd.DataFrame, opts: Options) -> str:
    """Say so in the title when a figure shows a quick or smoke subset (its title names the paper's setting)."""
    if opts.level == "full" or tab.empty or "model" not in tab:
        return ""
    return f"\n[{opts.level} subset: {', '.join(sorted(tab['model'].unique()))}]"


def empty_figure():
    """What a figure shows when none of its points produced a result (all failed: see the report)."""
    fig, axes = style.grid(1, 1)
    axes[0, 0].text(0.5, 0.5, "no results", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[0, 0].set_axis_off()
    return fig


def main_for(spec: FigureSpec) -> Callable[[Sequence[str] | None], int]:
    """The ``main`` of one figure script: run its points, render it, print its summary."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(description=spec.title)
        add_arguments(parser)
        args = parser.parse_args(argv)
        try:
            opts = options(args)
            frame = run_points([spec], args.out, opts, workers=args.workers, address=args.address,
                               progress=not args.no_progress)
        except ElkError as exc:
            print(f"{spec.name}: error: {exc}", file=sys.stderr)
            return 2
        r = render(spec, frame, args.out, opts)
        print(f"{spec.title}\n{r.summary.to_string() if not r.summary.empty else '(no results)'}")
        print(f"wrote {r.png}, {r.pdf}, {r.csv}")
        return 0

    return main
