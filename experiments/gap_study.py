"""Optimality-gap study of the windowed exact solver: how much of each schedule is proven optimal.

For every (model, warm start, solver) the whole program is re-planned window
by window (``solvers.windowed.windowed`` with anytime traces on), and two
tables are kept:

* ``OUT/windows.csv``: one row per window (every ``WindowRecord`` field, the
  anytime trace as JSON) -- what was found, what was proven, how fast;
* ``OUT/models.csv``: one row per run -- simulated latencies of the warm start,
  of the exact schedule and of Ideal, % of Ideal, the share of windows proven
  optimal, gap statistics, time to the first improvement, solve time.

Resumable: a run's rows are appended (and flushed) the moment it finishes and
a rerun skips the runs ``models.csv`` already holds for the same settings, so
an interrupted study loses at most the run in progress. Window rows of a run
that never reached ``models.csv`` are dropped on restart (the run is redone).

    python experiments/gap_study.py [--models tiny,llama2-13b] [--warm elk-full,elk-dyn]
                                    [--solvers cpsat,milp] [--time-limit 10] [--out out/gap]

Figures (``gap_distribution.png``, ``anytime.png``, ``improvement.png``) and
the printed table cover every finished run of the current settings.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODELS = "tiny,llama2-13b,llama2-70b,opt-30b,gemma2-27b"
WARM_STARTS = ("elk-full", "elk-dyn")
#: CLI solver name -> (SolverSettings.solver, MILP backend)
SOLVER_SPECS = {"cpsat": ("cpsat", "highs"), "milp": ("milp", "highs"), "milp-highs": ("milp", "highs"),
                "milp-cbc": ("milp", "cbc")}

#: columns identifying a run: a rerun with other settings is a different run, not a finished one
RUN_KEY = ("model", "warm", "solver", "batch", "seq", "chip", "hbm_tbps", "window_size", "time_limit",
           "workers", "seed")
#: WindowRecord fields whose names clash with run columns are written under these names
RENAMED = {"model": "program", "solver": "solver_name"}
MODEL_METRICS = ("ops", "windows", "windows_solved", "windows_reused", "warm_ms", "exact_ms", "ideal_ms",
                 "warm_pct_ideal", "exact_pct_ideal", "latency_gain_pct", "pct_optimal", "gap_mean",
                 "gap_median", "gap_max", "windows_improved", "median_first_improvement_s", "solve_seconds",
                 "wall_seconds", "valid", "kept_warm_start")


def record_fields() -> list[str]:
    """WindowRecord's fields, read from the dataclass so new fields reach the CSV without edits here."""
    from solvers.schedule.records import WindowRecord
    return [RENAMED.get(f.name, f.name) for f in dataclasses.fields(WindowRecord)]


# -- append-only CSV tables ------------------------------------------------------------------------------------

class CsvLog:
    """An append-only CSV table whose rows reach the disk as soon as they are appended.

    Flushing (and fsync) per append is what makes a study resumable: whatever
    a crash interrupts, every row written before it is complete on disk.
    """

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path = path
        self.fields = list(fields)
        self._check_header()

    def _check_header(self) -> None:
        """Refuse to mix layouts: rows appended under another header would be silently misread."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with self.path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != self.fields:
            raise SystemExit(f"{self.path} was written with other columns; move it away or choose another --out")

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    def keep_only(self, keep) -> int:
        """Rewrite the file with the rows ``keep(row)`` accepts (atomically); returns how many went."""
        rows = self.read()
        kept = [r for r in rows if keep(r)]
        if len(kept) == len(rows):
            return 0
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)
        return len(rows) - len(kept)


# -- what to run -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Study:
    """Settings shared by every run of one invocation (they are part of each run's key)."""

    batch: int
    seq: int
    chip: str
    hbm_tbps: float
    window_size: int
    time_limit: float
    workers: int
    seed: int

    def columns(self, model: str, warm: str, solver: str) -> dict[str, Any]:
        return {"model": model, "warm": warm, "solver": solver, "batch": self.batch, "seq": self.seq,
                "chip": self.chip, "hbm_tbps": self.hbm_tbps, "window_size": self.window_size,
                "time_limit": self.time_limit, "workers": self.workers, "seed": self.seed}


def run_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A run's identity as strings, equal for a row about to be written and the same row read back."""
    return tuple(str(row[k]) for k in RUN_KEY)


def split_list(text: str, allowed: Iterable[str] | None = None, what: str = "value") -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise SystemExit(f"unknown {what} {', '.join(bad)} (choose from {', '.join(allowed)})")
    if not items:
        raise SystemExit(f"no {what} given")
    return items


# -- one model: workload, Ideal, warm starts ---------------------------------------------------------------------

@dataclass
class ModelContext:
    """Everything the runs of one model share, built once (plan tables and warm starts are the slow part)."""

    name: str
    workload: Any
    ideal_ms: float
    warm: dict[str, Any]


def load_model(name: str, study: Study, warms: Sequence[str]) -> ModelContext:
    from elk.chip import preset
    from elk.simulator import simulate
    from elk.workload import Workload
    from elk.graphs.zoo import build_program
    from solvers.schedule.designs import elk_dyn, elk_full, ideal

    chip = preset(study.chip).with_overrides(hbm_bytes_per_s=study.hbm_tbps * 1e12)
    workload = Workload.build(build_program(name, batch=study.batch, seq=study.seq, mode="decode"), chip)
    schedules: dict[str, Any] = {}
    dyn = elk_dyn(workload)  # ELK-Full starts from it, so it is needed either way
    if "elk-dyn" in warms:
        schedules["elk-dyn"] = dyn
    if "elk-full" in warms:
        schedules["elk-full"] = elk_full(workload, dyn=dyn)
    return ModelContext(name, workload, simulate(workload, ideal(workload)).latency_ms, schedules)


# -- one run ---------------------------------------------------------------------------------------------------

def solve_run(ctx: ModelContext, warm: str, solver: str, study: Study) -> tuple[list, Any, float]:
    """The windowed solver on one warm start: (records, schedule, wall seconds)."""
    from solvers.schedule.windowed import windowed

    kind, backend = SOLVER_SPECS[solver]
    if kind == "milp" and backend == "highs":
        # HiGHS fixes its thread pool at the first solve in a process and refuses other thread counts after
        import highspy
        highspy.Highs.resetGlobalScheduler(True)
    started = time.perf_counter()
    sched = windowed(ctx.workload, ctx.warm[warm], solver=kind, backend=backend, window=study.window_size,
                     time_limit=study.time_limit, workers=study.workers, seed=study.seed, anytime=True)
    return list(sched.info.records), sched, time.perf_counter() - started


def window_row(keys: Mapping[str, Any], record) -> dict[str, Any]:
    row = dict(keys)
    for name, value in record.row().items():
        row[RENAMED.get(name, name)] = value
    return row


def finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def record_metrics(records: Sequence) -> dict[str, Any]:
    """Per-run window statistics; reused windows are counted apart (their solve happened elsewhere)."""
    solved = [r for r in records if not r.reused]
    gaps = finite(r.gap for r in solved)
    firsts = finite(r.first_improvement_s for r in solved)
    optimal = sum(1 for r in solved if r.status == "OPTIMAL")
    nan = float("nan")
    return {"windows": len(records), "windows_solved": len(solved), "windows_reused": len(records) - len(solved),
            "pct_optimal": 100.0 * optimal / len(solved) if solved else nan,
            "gap_mean": statistics.fmean(gaps) if gaps else nan,
            "gap_median": statistics.median(gaps) if gaps else nan,
            "gap_max": max(gaps) if gaps else nan,
            "windows_improved": sum(1 for r in records if r.accepted),
            "median_first_improvement_s": statistics.median(firsts) if firsts else nan,
            "solve_seconds": sum(r.seconds for r in records)}


def model_row(keys: Mapping[str, Any], ctx: ModelContext, warm: str, records: Sequence, sched,
              wall: float) -> dict[str, Any]:
    from elk.simulator import simulate

    warm_ms = simulate(ctx.workload, ctx.warm[warm]).latency_ms
    verdict = simulate(ctx.workload, sched)
    return {**keys, "ops": len(ctx.workload), "warm_ms": warm_ms, "exact_ms": verdict.latency_ms,
            "ideal_ms": ctx.ideal_ms, "warm_pct_ideal": 100.0 * ctx.ideal_ms / warm_ms,
            "exact_pct_ideal": 100.0 * ctx.ideal_ms / verdict.latency_ms,
            "latency_gain_pct": 100.0 * (warm_ms - verdict.latency_ms) / warm_ms,
            **record_metrics(records), "wall_seconds": wall, "valid": bool(verdict.valid),
            "kept_warm_start": sched.info.kept_warm_start}


# -- the study loop --------------------------------------------------------------------------------------------

def pending_runs(models: Sequence[str], warms: Sequence[str], solvers: Sequence[str], study: Study,
                 done: set[tuple[str, ...]]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(to run, already finished), model-major so each model's tables and warm starts are built once."""
    todo, skipped = [], []
    for model in models:
        for warm in warms:
            for solver in solvers:
                target = skipped if run_key(study.columns(model, warm, solver)) in done else todo
                target.append((model, warm, solver))
    return todo, skipped


def run_study(todo: Sequence[tuple[str, str, str]], study: Study, windows_log: CsvLog, models_log: CsvLog) -> None:
    """Run what is left; each run's window rows, then its model row, are appended as soon as it finishes."""
    ctx: ModelContext | None = None
    for model, warm, solver in todo:
        if ctx is None or ctx.name != model:
            ctx = None  # free the previous model's tables before building the next
            started = time.perf_counter()
            warms = sorted({w for m, w, _ in todo if m == model})
            ctx = load_model(model, study, warms)
            print(f"{model}: {len(ctx.workload)} operators, warm starts {', '.join(warms)} and Ideal "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)
        keys = study.columns(model, warm, solver)
        records, sched, wall = solve_run(ctx, warm, solver, study)
        windows_log.append(window_row(keys, r) for r in records)
        row = model_row(keys, ctx, warm, records, sched, wall)
        models_log.append([row])
        print(f"done {model} / {warm} / {solver} in {wall:.1f} s: {row['warm_ms']:.4f} -> {row['exact_ms']:.4f} ms, "
              f"{row['pct_optimal']:.0f}% of {row['windows_solved']} windows proven optimal, "
              f"{row['windows_improved']} improved", flush=True)


# -- reading results back ----------------------------------------------------------------------------------------

def frame_of(rows: Sequence[Mapping[str, str]], fields: Sequence[str]):
    """A typed DataFrame of CSV rows (parsed by pandas, as if read from a file), with a ``run`` key column."""
    import io

    import pandas as pd

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fields))
    writer.writeheader()
    writer.writerows(rows)
    text.seek(0)
    frame = pd.read_csv(text, keep_default_na=False, na_values=["", "nan", "NaN"])
    frame["run"] = ["|".join(run_key(r)) for r in rows]
    for col in ("valid", "reused", "accepted"):
        if col in frame.columns:
            frame[col] = frame[col].astype(str).str.lower().eq("true")
    return frame


def load_frames(windows_log: CsvLog, models_log: CsvLog, wanted: set[tuple[str, ...]]):
    """The finished runs of this invocation's selection, as (models, windows) DataFrames."""
    models = frame_of([r for r in models_log.read() if run_key(r) in wanted], models_log.fields)
    windows = frame_of([r for r in windows_log.read() if run_key(r) in wanted], windows_log.fields)
    return models, windows


def run_labels(frame) -> list[str]:
    """Label runs by model, plus the warm start / solver when those vary, so labels stay short."""
    varying = [c for c in ("warm", "solver") if c in frame.columns and frame[c].nunique() > 1]
    return [" / ".join(str(row[c]) for c in ["model", *varying]) for _, row in frame.iterrows()]


def print_table(models) -> None:
    if models.empty:
        print("no finished runs")
        return
    cols = {"model": "model", "warm": "warm", "solver": "solver", "warm_ms": "warm ms", "exact_ms": "exact ms",
            "ideal_ms": "ideal ms", "warm_pct_ideal": "warm %ideal", "exact_pct_ideal": "exact %ideal",
            "pct_optimal": "% optimal", "gap_mean": "gap mean", "gap_median": "gap med", "gap_max": "gap max",
            "windows_improved": "improved", "windows_solved": "solved", "windows_reused": "reused",
            "median_first_improvement_s": "1st impr s", "solve_seconds": "solve s", "valid": "valid"}
    table = models[list(cols)].rename(columns=cols).copy()
    fmt = {"warm ms": "{:.4f}", "exact ms": "{:.4f}", "ideal ms": "{:.4f}", "warm %ideal": "{:.2f}",
           "exact %ideal": "{:.2f}", "% optimal": "{:.1f}", "gap mean": "{:.4f}", "gap med": "{:.4f}",
           "gap max": "{:.4f}", "1st impr s": "{:.3f}", "solve s": "{:.1f}"}
    for col, pattern in fmt.items():
        table[col] = [pattern.format(v) if isinstance(v, (int, float)) and math.isfinite(v) else "-"
                      for v in table[col]]
    table["valid"] = table["valid"].map({True: "yes", False: "NO"})
    print("\nper (model, warm start, solver):")
    print(table.to_string(index=False))


# -- figures ---------------------------------------------------------------------------------------------------

def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def figure_gaps(models, windows, path: Path) -> None:
    """Left: per-window relative gap histogram per run; right: share of windows proven optimal."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax_hist, ax_bar = fig.subplots(1, 2)
    labels = run_labels(models)
    solved = windows[~windows["reused"]]
    top = max(float(solved["gap"].max()) if solved["gap"].notna().any() else 0.0, 1e-3)
    bins = [top * k / 30 for k in range(31)]
    for label, (_, run) in zip(labels, models.iterrows()):
        gaps = solved.loc[solved["run"] == run["run"], "gap"].dropna()
        if len(gaps):
            ax_hist.hist(gaps, bins=bins, histtype="stepfilled", alpha=0.35, edgecolor="black", linewidth=0.8,
                         label=f"{label} ({len(gaps)} windows)")
    ax_hist.set_yscale("log")
    ax_hist.set_xlabel("relative gap (exact - bound) / exact")
    ax_hist.set_ylabel("windows")
    ax_hist.set_title("per-window optimality gap")
    ax_hist.legend(fontsize=7)
    ax_bar.bar(range(len(labels)), models["pct_optimal"], color="tab:green")
    ax_bar.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax_bar.set_ylim(0, 105)
    ax_bar.set_ylabel("% of solved windows proven optimal")
    ax_bar.set_title("proven optimal")
    save(fig, path)


def parse_trace(text: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(incumbent points, bound points) of an anytime trace written as JSON."""
    try:
        points = json.loads(text) if text else []
    except (TypeError, json.JSONDecodeError):
        points = []
    incumbents = [(float(t), float(v)) for t, v, _ in points if v is not None]
    bounds = [(float(t), float(b)) for t, _, b in points if b is not None]
    return incumbents, bounds


def figure_anytime(windows, path: Path, count: int = 3) -> None:
    """Incumbent and bound over time for the windows that took longest, relative to the warm start."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    hardest = windows[~windows["reused"]].sort_values("seconds", ascending=False).head(count)
    drawn = 0
    for n, (_, w) in enumerate(hardest.iterrows()):
        incumbents, bounds = parse_trace(w["anytime"])
        if not incumbents and not bounds:
            continue
        scale, end = float(w["heuristic_cycles"]), max(float(w["seconds"]), 1e-4)
        label = f"{w['model']} {w['warm']} window {int(w['window'])} ({float(w['seconds']):.1f} s, {w['status']})"
        for points, style in ((incumbents, "-"), (bounds, "--")):
            if points:
                times = [max(t, 1e-4) for t, _ in points] + [max(end, points[-1][0])]
                values = [v / scale for _, v in points] + [points[-1][1] / scale]
                ax.step(times, values, where="post", linestyle=style, color=f"C{n}",
                        label=label if style == "-" or not incumbents else None)
        drawn += 1
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds into the window's solve")
    ax.set_ylabel("makespan / warm-start makespan")
    ax.set_title(f"{count} longest window solves (solid: incumbent, dashed: bound)", fontsize=10)
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no anytime traces (MILP runs have none)", transform=ax.transAxes, ha="center")
    save(fig, path)


def figure_improvement(models, windows, path: Path) -> None:
    """Left: each window's saving over the warm start against its size; right: savings summed per run.

    Savings are a fraction of a percent on most windows, so a plain exact-vs-warm
    scatter would sit on its diagonal; the saving itself is what is plotted.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    ax_sc, ax_bar = fig.subplots(1, 2)
    labels = run_labels(models)
    summed, end_to_end = [], []
    for n, (label, (_, run)) in enumerate(zip(labels, models.iterrows())):
        mine = windows[windows["run"] == run["run"]]
        heur, exact = mine["heuristic_cycles"], mine["exact_cycles"]
        ax_sc.scatter(heur, 100.0 * (heur - exact) / heur, s=12, alpha=0.6, color=f"C{n}", label=label)
        summed.append(100.0 * (heur.sum() - exact.sum()) / heur.sum() if heur.sum() > 0 else 0.0)
        end_to_end.append(float(run["latency_gain_pct"]))
    ax_sc.axhline(0.0, color="grey", linewidth=0.8)
    ax_sc.set_xscale("log")
    ax_sc.set_xlabel("warm-start window makespan (cycles)")
    ax_sc.set_ylabel("exact vs warm start: % of window makespan saved")
    ax_sc.set_title("per window")
    ax_sc.legend(fontsize=7)
    x = list(range(len(labels)))
    ax_bar.bar([i - 0.2 for i in x], summed, width=0.4, label="sum of window makespans")
    ax_bar.bar([i + 0.2 for i in x], end_to_end, width=0.4, label="simulated latency")
    ax_bar.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax_bar.set_ylabel("% saved over the warm start")
    ax_bar.set_title("per run")
    ax_bar.legend(fontsize=7)
    save(fig, path)


# -- entry point -----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/gap", help="output folder (default out/gap)")
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--warm", default=",".join(WARM_STARTS), help="warm starts: elk-full, elk-dyn")
    p.add_argument("--solvers", default="cpsat", help="cpsat, milp (= milp-highs), milp-cbc")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--hbm-tbps", type=float, default=16.0)
    p.add_argument("--window", type=int, default=8, help="operators per window")
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds per window")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = split_list(args.models, what="model")
    warms = split_list(args.warm, WARM_STARTS, "warm start")
    solvers = split_list(args.solvers, SOLVER_SPECS, "solver")
    study = Study(args.batch, args.seq, args.chip, args.hbm_tbps, args.window, args.time_limit, args.workers,
                  args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models_log = CsvLog(out / "models.csv", list(RUN_KEY) + list(MODEL_METRICS))
    windows_log = CsvLog(out / "windows.csv", list(RUN_KEY) + [f for f in record_fields() if f not in RUN_KEY])
    done = {run_key(r) for r in models_log.read()}
    dropped = windows_log.keep_only(lambda r: run_key(r) in done)
    if dropped:
        print(f"dropped {dropped} window rows of unfinished runs (they are redone)")
    todo, skipped = pending_runs(models, warms, solvers, study, done)
    for model, warm, solver in skipped:
        print(f"skip {model} / {warm} / {solver} (already in {models_log.path})")
    if skipped:
        print(f"skipped {len(skipped)} finished run(s), {len(todo)} to go", flush=True)
    run_study(todo, study, windows_log, models_log)
    wanted = {run_key(study.columns(m, w, s)) for m in models for w in warms for s in solvers}
    frame, windows = load_frames(windows_log, models_log, wanted)
    print_table(frame)
    if not frame.empty:
        figure_gaps(frame, windows, out / "gap_distribution.png")
        figure_anytime(windows, out / "anytime.png")
        figure_improvement(frame, windows, out / "improvement.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
