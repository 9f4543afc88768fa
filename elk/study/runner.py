"""Studies: declared grids of compiles that run once, resume after a kill, and load as one table.

    from elk.study import Study, grid, run_study
    pts = grid(model=["llama2-13b", "opt-30b"], batch=[16, 32], hbm_tbps=[8, 16], topology=["all-to-all", "mesh"])
    df = run_study(Study("hbm", pts), "out/hbm", workers=2)    # one row per point x design

A point's result is one file, ``OUT/points/<key>.json``, written atomically when
the point finishes; a rerun with the same (or a larger) grid skips every point
whose file is there and redoes only the missing, corrupt or crashed ones. Points
run in this process (``workers=1``), on a local process pool (the default, one
worker per core), or on a Dask cluster (``address="tcp://host:8786"``, or
``"local"`` for a throw-away LocalCluster). See :mod:`elk.study.execute` for how
plan tables are shared between points, :mod:`elk.study.store` for the files.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from tqdm import tqdm

from elk.atomic import replacing, write_text
from elk.study.point import KNOBS, PAPER, SCHEMA_VERSION, Point, StudyError
from elk.study.shared_bounds import sharing
from elk.study.store import CorruptPoint, PointStore, folder_lock

__all__ = ["Point", "Study", "StudyError", "grid", "run_study", "load_results", "export_results", "to_frame",
           "KNOBS", "PAPER", "SCHEMA_VERSION", "RESULT_COLUMNS"]

#: Columns every result table has (after the input knobs), whatever the designs.
RESULT_COLUMNS = ("key", "status", "error", "design", "latency_ms", "pct_of_ideal", "gap_to_bound", "bound_ms",
                  "bound_name", "valid", "overlapped_ms",
                  "preload_only_ms", "execute_only_ms", "stall_ms", "hbm_utilisation", "noc_utilisation",
                  "achieved_tflops", "peak_sram_bytes", "compile_seconds", "table_seconds", "point_seconds",
                  "hbm_bound_ms", "elk_version")
_POINT_FIELDS = ("table_seconds", "point_seconds", "cpu_seconds", "bound_ms", "bound_name", "bound_seconds",
                 "hbm_bound_ms", "hbm_bytes", "elk_version", "table_group")


def grid(**axes: Any) -> list[Point]:
    """The cartesian product of the axes (each a scalar or a list/tuple/range of values), as points.

    Unknown knobs, models, designs or values fail here, before anything runs.
    """
    unknown = sorted(set(axes) - set(KNOBS))
    if unknown:
        raise StudyError(f"unknown knob(s) {', '.join(unknown)} (known: {', '.join(KNOBS)})")
    if "model" not in axes:
        raise StudyError("a grid needs a model axis")
    names = list(axes)
    values = []
    for name in names:
        v = axes[name]
        v = list(v) if isinstance(v, (list, tuple, range, set, frozenset)) else [v]
        if not v:
            raise StudyError(f"axis {name!r} has no values: the grid is empty")
        values.append(v)
    return [Point(**dict(zip(names, combo))) for combo in itertools.product(*values)]


@dataclass
class Study:
    """A named list of points (duplicates, including different spellings of one run, are dropped)."""

    name: str
    points: list[Point] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise StudyError("a study needs a name")
        unique: dict[str, Point] = {}
        for p in self.points:
            if not isinstance(p, Point):
                raise StudyError(f"study {self.name!r}: expected Point objects, got {type(p).__name__}")
            unique.setdefault(p.key(), p)
        if not unique:
            raise StudyError(f"study {self.name!r} has no points")
        self.points = list(unique.values())

    def keys(self) -> list[str]:
        return [p.key() for p in self.points]


@dataclass
class RunReport:
    """What a run did (also in ``DataFrame.attrs["study"]``)."""

    total: int = 0
    skipped: int = 0
    ran: int = 0
    redone_corrupt: list[str] = field(default_factory=list)
    redone_crashed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (key, label, error)
    #: table tasks run before a group's points: (table group, seconds, CPU seconds)
    table_tasks: list[tuple[str, float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "skipped": self.skipped, "ran": self.ran,
                "redone_corrupt": list(self.redone_corrupt), "redone_crashed": list(self.redone_crashed),
                "failed": [list(f) for f in self.failed], "table_tasks": [list(t) for t in self.table_tasks]}


def run_study(study_or_points: Study | Iterable[Point], out_dir: str | os.PathLike, *, workers: int | None = None,
              address: str | None = None, progress: bool = True, retry_errors: bool = False, carry: bool = False,
              share_bounds: bool = True):
    """Run the study's missing points, store each as it finishes, return its result table.

    ``workers``: local processes (default: one per core; 1 = in this process).
    ``address``: a Dask scheduler (``tcp://host:port``) or ``"local"``: run there instead.
    ``retry_errors``: also redo points stored as "error" (inputs elk rejected; final by default).
    Crashed points (anything but an ElkError) are always redone.
    ``carry``: along every chain of points that differ only in HBM bandwidth and SRAM, each point's exact
    designs may start from the best schedule of a point with less of both (it carries over), so their
    curves never rise where it does; runs in this process, chain by chain (see elk.study.execute.run_carried).
    ``share_bounds``: points that differ only in the load model prove their chip's bounds once
    (elk.study.shared_bounds; local runs only). Off, every point proves its own (for comparison).
    """
    study = study_or_points if isinstance(study_or_points, Study) else Study("study", list(study_or_points))
    if address is not None:
        from elk.study.cluster import check_address
        address = check_address(address)  # a malformed one is StudyError before the folder exists
    store = PointStore(out_dir)
    store.prepare()
    _write_manifest(store, study)
    report = RunReport(total=len(study.points))
    todo: list[Point] = []
    for p in study.points:
        rec, moved = store.read_or_quarantine(p.key())
        if moved:
            report.redone_corrupt.append(p.key())
        if rec is None or rec["status"] == "crash" or (retry_errors and rec["status"] == "error"):
            if rec is not None and rec["status"] == "crash":
                report.redone_crashed.append(p.key())
            todo.append(p)
        else:
            report.skipped += 1
    # tqdm draws on a terminal only (disable=None), so logs and pipes get the notes below and nothing else
    bar = tqdm(total=len(todo), desc=study.name, unit="point", file=sys.stderr, dynamic_ncols=True,
               disable=None if progress and todo else True)
    if progress and report.skipped:
        tqdm.write(f"elk study {study.name}: {report.skipped} of {report.total} points already done, "
                   f"{len(todo)} to run", file=sys.stderr)

    def on_record(point: Point, record: dict[str, Any]) -> None:
        store.write(record)
        report.ran += 1
        if record["status"] != "ok":
            report.failed.append((point.key(), point.label(), record["error"]))
            tqdm.write(f"elk study: {point.label()} failed ({record['status']}): {record['error']}", file=sys.stderr)
        bar.set_postfix_str(f"{point.label()}: {record['point_seconds']:.1f} s", refresh=False)
        bar.update(1)

    def on_tables(point: Point, info: dict[str, Any]) -> None:
        report.table_tasks.append((info["group"], info["seconds"], info.get("cpu_seconds", 0.0)))

    # points that differ only in the load model prove their chip's bounds once (elk.study.shared_bounds); a
    # Dask cluster's workers may not see this folder, and prove their own
    sharing_bounds = sharing(store.root / "bounds") if share_bounds and address is None else \
        contextlib.nullcontext()
    try:
        with sharing_bounds:
            _execute(study, todo, store, on_record, on_tables, carry=carry, address=address, workers=workers)
    finally:
        bar.close()
    if report.failed and progress:
        print(f"elk study {study.name}: {len(report.failed)} point(s) failed; their rows have status != 'ok'",
              file=sys.stderr)
    records = []
    for p in study.points:
        try:
            rec = store.read(p.key())
        except CorruptPoint as exc:  # damaged after it was written (by hand, or a full disk): say so, rerun fixes it
            raise StudyError(f"{exc} (rerun to redo it)") from None
        if rec is None:  # cannot happen unless something deleted it meanwhile: say so, never drop a row
            raise StudyError(f"point {p.label()} ({p.key()}) has no result in {store.points}")
        records.append(rec)
    df = to_frame(records)
    df.attrs["study"] = report.as_dict()
    return df


def _execute(study: Study, todo: list[Point], store: PointStore, on_record, on_tables, *, carry: bool,
             address: str | None, workers: int | None) -> None:
    """Run the points ``run_study`` picked: chain by chain when carrying, else on Dask, a pool or here."""
    from elk.study import execute as study_exec
    if carry:
        def stored(p: Point):
            try:
                return store.read(p.key())
            except CorruptPoint:
                return None
        study_exec.run_carried(list(study.points), stored, on_record)
    elif todo:
        if address is not None:
            study_exec.run_dask(todo, address, workers, on_record, on_tables)
        else:
            n = max(1, min(workers or os.cpu_count() or 1, len(todo)))
            if n == 1:
                study_exec.run_serial(todo, on_record)
            else:
                study_exec.run_pool(todo, n, on_record, on_tables=on_tables)


def load_results(out_dir: str | os.PathLike):
    """Every stored point in ``out_dir`` as one table (corrupt files are reported and left out)."""
    store = PointStore(out_dir)
    if not store.points.is_dir():
        raise StudyError(f"no study results in {out_dir} (expected a points/ folder)")
    return to_frame(store.read_all())


def to_frame(records: Iterable[Mapping[str, Any]]):
    """Records -> tidy DataFrame: one row per point x design, input knobs first."""
    import pandas as pd
    rows = []
    for rec in records:
        base = {**rec["knobs"], "key": rec["key"], "status": rec["status"], "error": rec.get("error")}
        extra = {k: rec.get(k) for k in _POINT_FIELDS}
        for row in rec["rows"]:
            rows.append({**base, **row, **extra})
    columns = list(KNOBS) + [c for c in RESULT_COLUMNS if c not in KNOBS]
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = None
    rest = [c for c in df.columns if c not in columns]
    return df[columns + rest]


def export_results(out_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write every stored point to Parquet (when pyarrow is installed) or CSV; returns the path written.

    ``path`` ending in .csv or .parquet picks the format (.parquet without pyarrow is an error);
    no path: ``OUT/results.parquet`` or ``OUT/results.csv``.
    """
    df = load_results(out_dir)
    return write_frame(df, Path(out_dir) / "results" if path is None else Path(path))


def write_frame(df, path: Path) -> Path:
    """Parquet or CSV by suffix; no suffix: Parquet if pyarrow is importable, else CSV.

    Safe when several runs write the same file at once: each writes its own
    temporary file, and the rename happens under a lock on the folder
    (``.elk.lock``), so the file is always one run's whole table.
    """
    try:
        import pyarrow  # noqa: F401
        have_arrow = True
    except ImportError:
        have_arrow = False
    if path.suffix not in (".csv", ".parquet"):
        path = path.with_name(path.name + (".parquet" if have_arrow else ".csv"))
    if path.suffix == ".parquet" and not have_arrow:
        raise StudyError(f"{path}: Parquet needs pyarrow (pip install pyarrow), or ask for a .csv")
    try:
        with replacing(path, lock=folder_lock(path.parent)) as tmp:
            if path.suffix == ".parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False)
    except OSError as exc:
        raise StudyError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _write_manifest(store: PointStore, study: Study) -> None:
    """``OUT/studies/<name>.json``: which points a study declared (for humans and figure scripts)."""
    import json
    folder = store.root / "studies"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study.name)
    text = json.dumps({"name": study.name, "schema": SCHEMA_VERSION,
                       "points": [{"key": p.key(), **p.inputs()} for p in study.points]}, indent=1)
    try:
        folder.mkdir(exist_ok=True)
        write_text(folder / f"{safe}.json", text, lock=store.lock())
    except OSError as exc:
        raise StudyError(f"cannot write the study manifest in {folder}: {exc.strerror or exc}") from None
