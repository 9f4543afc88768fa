"""Run every study of the Elk paper's evaluation (Figs. 17-24) and write DIR/report.md.

    python -m experiments.run_all --out DIR [--quick | --smoke] [--load-model fluid|rigid] [--exact]
                                  [--periodic-time-limit 30] [--time-limit 5] [--window 8] [--workers N]

The union of the figures' grids, deduplicated by key, runs in one runner call
(so the pool stays busy and a point two figures share runs once); with
``--exact`` the few exact-design points run in a second call, so the
heuristic evaluation's wall time and memory are reported on their own. Points
are stored under DIR/results and skipped when rerun: an interrupted run
resumes where it stopped. Then every figure is rendered (DIR/figNN.png, .pdf,
.csv) and DIR/report.md summarises them.

Every point runs under ``--load-model`` (fluid by default) and proves a lower
bound, so every row carries its certified gap; Fig. 17's 24 points also run
under the other load model (heuristic designs only) for the report's
rigid-vs-fluid comparison. ``--exact`` adds the exact designs (periodic, then
the MILP windows warm-started from it) at a few points per figure.

``--quick``: a few points per figure on Llama2-13B, OPT-30B, DiT-XL/2 and the
tiny model (minutes on 2 cores). ``--smoke``: the tiny model only (seconds).
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from experiments.paper import FIGURES
from experiments.paper.monitor import Monitor
from experiments.paper.report import Phase, RunInfo, log_run, write_report
from experiments.paper.script import RESULTS, add_arguments, options, render
from experiments.paper.spec import FigureSpec, Options, unique


def load_specs(names: Sequence[str] = FIGURES) -> list[FigureSpec]:
    return [importlib.import_module(f"experiments.paper.{n}").SPEC for n in names]


def choose(specs: list[FigureSpec], wanted: str) -> list[FigureSpec]:
    if wanted == "all":
        return specs
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    unknown = names - {s.name for s in specs}
    if unknown:
        raise SystemExit(f"run_all: unknown figure(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(s.name for s in specs)})")
    return [s for s in specs if s.name in names]


def level_flags(args: argparse.Namespace) -> list[str]:
    """The flags that decide what runs (for the per-figure regeneration commands)."""
    flags = ["--quick"] if args.quick else ["--smoke"] if args.smoke else []
    if args.load_model != "fluid":
        flags += ["--load-model", args.load_model]
    if args.exact:
        flags += ["--exact", "--exact-designs", args.exact_designs, "--periodic-time-limit",
                  f"{args.periodic_time_limit:g}", "--time-limit", f"{args.time_limit:g}",
                  "--window", str(args.window), "--solver-workers", str(args.solver_workers)]
    return flags


def run_phase(name: str, points: list, out: Path, args: argparse.Namespace, opts: Options
              ) -> tuple[pd.DataFrame, Phase]:
    from elk.study import Study, run_study
    stored = {p.key() for p in points if (out / RESULTS / "points" / f"{p.key()}.json").is_file()}
    with Monitor() as mon:
        frame = run_study(Study(f"paper-{opts.level}-{name.split()[0]}", points), out / RESULTS,
                          workers=args.workers, address=args.address, progress=not args.no_progress)
    report = frame.attrs.get("study", {})
    ran = report.get("ran", 0)
    tables = report.get("table_tasks", [])
    fresh = frame[~frame["key"].isin(stored)].drop_duplicates("key")
    memory = mon.usage.describe()
    if args.address not in (None, "local"):
        memory += f" (points ran on {args.address}: its workers are not included)"
    return frame, Phase(name=name, points=len(points), ran=ran, wall_seconds=mon.usage.wall_seconds,
                        memory=memory, peak_tree_bytes=mon.usage.peak_tree_bytes,
                        point_seconds=float(fresh["point_seconds"].fillna(0).sum()),
                        cpu_seconds=float(fresh["cpu_seconds"].fillna(0).sum()) if "cpu_seconds" in fresh else 0.0,
                        table_tasks=len(tables), table_seconds=float(sum(t[1] for t in tables)))


def main(argv: Sequence[str] | None = None) -> int:
    from elk.errors import ElkError
    try:
        return evaluate(argv)
    except ElkError as exc:  # a bad option (e.g. an unknown exact design) or an unusable output folder
        print(f"run_all: error: {exc}", file=sys.stderr)
        return 2


def evaluate(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--figures", default="all", help="comma-separated subset, e.g. fig17,fig19 (default all)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    opts = options(args)
    specs = choose(load_specs(), args.figures)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # the figures' heuristic sweeps, and Fig. 17's under the other load model (heuristics too)
    heuristic = unique(p for s in specs for p in (*s.heuristic_points(opts), *s.variant_points(opts)))
    exact = [p for p in unique(p for s in specs for p in s.exact_points(opts))
             if p.key() not in {h.key() for h in heuristic}]
    frames, phases = [], []
    for name, points in (("heuristic designs", heuristic), ("exact designs", exact)):
        if points:
            frame, phase = run_phase(name, points, out, args, opts)
            frames.append(frame)
            phases.append(phase)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    rendered = [render(s, frame, out, opts) for s in specs]
    flags = level_flags(args)
    command = shlex.join(["python", "-m", "experiments.run_all", *argv])
    figure_commands = [shlex.join(["python", "-m", f"experiments.paper.{module}", "--out", str(out), *flags])
                       for module, s in zip(FIGURES, load_specs()) if s.name in {r.spec.name for r in rendered}]
    info = RunInfo(command=command, level=opts.level, exact=opts.exact, phases=phases,
                   figure_commands=figure_commands, total_seconds=time.perf_counter() - started)
    info.history = log_run(out, info)
    path = write_report(out, frame, rendered, info, exact_keys=[p.key() for p in exact], load_model=opts.load_model)
    for ph in phases:
        print(f"{ph.name}: {ph.points} points ({ph.ran} run now) in {ph.wall_seconds:.1f} s; {ph.memory}")
    print(f"wrote {path} and {len(rendered)} figures in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
