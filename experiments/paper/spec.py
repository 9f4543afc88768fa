"""What a paper figure is, as data: its sweep, the subset that also gets exact designs, its table and plot.

Every figure module declares one :class:`FigureSpec`. The sweep is a list of
``elk.study.Point``. A point's key hashes its resolved inputs, so the same
configuration declared by two figures (Fig. 18 inside Fig. 17, Fig. 20 inside
Fig. 19, ...) is run once; :func:`sweep` still spells every chip knob out, so
the stored manifests say exactly what each figure swept.

Every point runs under one load model (``Options.load_model``, fluid by
default); a figure that compares load models (Fig. 17) also runs its points
under the other one, heuristics only (:meth:`FigureSpec.variant_points`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from elk.chip import preset
from elk.study import Point, grid

from . import style

#: The paper's system: IPU-POD4 at 16 TB/s, all-to-all, nominal NoC and compute, decode B32 S2048.
CHIP = "ipu-pod4"
DEFAULTS = {"mode": "decode", "batch": 32, "seq": 2048, "chip": CHIP, "cores": 5888, "hbm_tbps": 16.0,
            "noc_scale": 1.0, "compute_scale": 1.0, "topology": "all-to-all"}
#: The columns that identify a configuration (a point without its designs and solver settings).
CONFIG = ("model", "mode", "batch", "seq", "cores", "hbm_tbps", "noc_scale", "compute_scale", "topology",
          "load_model")
LLMS = ("llama2-13b", "llama2-70b", "opt-30b", "gemma2-27b")
TOPOLOGIES = ("all-to-all", "mesh")
LEVELS = ("full", "quick", "smoke")
LOAD_MODELS = ("fluid", "rigid")


@dataclass(frozen=True)
class Options:
    """How a study is run: which grid level, the load model, and whether exact designs are added.

    ``full`` is the paper's sweep; ``quick`` a small subset of real models that
    runs in minutes; ``smoke`` the tiny model only (seconds: tests and CI).
    The exact designs run in the order periodic, cpsat, milp, each warm-started
    from the fastest schedule run before it in the same point (the best
    heuristic, then periodic).
    """

    level: str = "full"
    exact: bool = False
    exact_designs: tuple[str, ...] = ("periodic", "milp")
    #: Per-window limit, window size and solver threads of the window designs (cpsat, milp).
    time_limit: float = 5.0
    window: int = 8
    solver_workers: int = 2
    seed: int = 0
    #: The periodic design's CP-SAT time limit (seconds).
    periodic_time_limit: float = 30.0
    #: The load model every figure runs under (Fig. 17 also runs the other one, heuristics only).
    load_model: str = "fluid"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown grid level {self.level!r} (known: {', '.join(LEVELS)})")
        if self.load_model not in LOAD_MODELS:
            raise ValueError(f"unknown load model {self.load_model!r} (known: {', '.join(LOAD_MODELS)})")

    @property
    def other_load_model(self) -> str:
        return next(m for m in LOAD_MODELS if m != self.load_model)

    def pick(self, full, quick, smoke):
        """The value for this level (figure grids are written as ``opts.pick(full, quick, smoke)``)."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.level]


def small_model(opts: Options) -> str:
    """The one model a figure's quick or smoke grid sweeps when the full grid sweeps several."""
    return "tiny" if opts.level == "smoke" else "llama2-13b"


def point(model: str, **knobs) -> Point:
    """A heuristic point (the paper's five designs) with every chip knob explicit."""
    return sweep((model,), **knobs)[0]


def exact_point(base: Point, opts: Options) -> Point:
    """The same configuration with the paper's designs and the exact ones after them.

    The heuristics run first, then the exact designs in registry order
    (periodic, cpsat, milp), each starting from the fastest schedule run before
    it; so an exact design's gain over the best heuristic is measured inside
    one point, against the schedule it started from (or improved on).
    """
    designs = ",".join(("paper", *opts.exact_designs))
    periodic = opts.periodic_time_limit if "periodic" in opts.exact_designs else None
    return dataclasses.replace(base, designs=designs, window=opts.window, time_limit=opts.time_limit,
                               workers=opts.solver_workers, seed=opts.seed, periodic_time_limit=periodic,
                               load_model=opts.load_model)


def with_load_model(points: Iterable[Point], load_model: str) -> list[Point]:
    return [dataclasses.replace(p, load_model=load_model) for p in points]


def sweep(models: Iterable[str], **axes) -> list[Point]:
    """The cartesian product of ``models`` and the given knob axes (each a scalar or a list), paper designs."""
    knobs = {**DEFAULTS, **axes}
    for name in ("hbm_tbps", "noc_scale", "compute_scale"):
        value = knobs[name]
        knobs[name] = [round(float(v), 6) for v in value] if isinstance(value, (list, tuple, range)) \
            else round(float(value), 6)
    return grid(model=list(models), designs="paper", **knobs)


def unique(points: Iterable[Point]) -> list[Point]:
    """Points deduplicated by key, first occurrence kept (order matters for progress output only)."""
    seen: dict[str, Point] = {}
    for p in points:
        seen.setdefault(p.key(), p)
    return list(seen.values())


@dataclass(frozen=True)
class FigureSpec:
    """One paper figure: what it sweeps and how its rows become a table, a plot and a summary.

    ``points`` gives the heuristic sweep; ``exact_configs`` picks, from it, the
    few configurations that also get the exact designs under ``--exact``.
    ``table`` turns the figure's result rows (heuristic and exact, failures
    removed) into the tidy table written as ``<name>.csv``; ``draw`` plots that
    table; ``summary`` condenses it to a few lines for the report.
    ``compare_load_models``: the heuristic sweep also runs under the other load
    model; those rows reach ``table`` marked ``variant`` (True), for it to set
    beside the main ones (Fig. 17's rigid-vs-fluid columns).
    """

    name: str
    title: str
    points: Callable[[Options], list[Point]]
    exact_configs: Callable[[Options], list[Point]]
    table: Callable[[pd.DataFrame], pd.DataFrame]
    draw: Callable[[pd.DataFrame], object]
    summary: Callable[[pd.DataFrame], pd.DataFrame]
    notes: str = ""
    compare_load_models: bool = False

    def heuristic_points(self, opts: Options) -> list[Point]:
        return unique(with_load_model(self.points(opts), opts.load_model))

    def variant_points(self, opts: Options) -> list[Point]:
        """The heuristic sweep under the other load model (only for figures that compare them)."""
        if not self.compare_load_models:
            return []
        return unique(with_load_model(self.points(opts), opts.other_load_model))

    def exact_points(self, opts: Options) -> list[Point]:
        if not opts.exact:
            return []
        return unique(exact_point(p, opts) for p in self.exact_configs(opts))

    def all_points(self, opts: Options) -> list[Point]:
        return unique([*self.heuristic_points(opts), *self.variant_points(opts), *self.exact_points(opts)])


# ---- from the runner's frame to a figure's rows -----------------------------------------------------------------


def figure_rows(frame: pd.DataFrame, spec: FigureSpec, opts: Options) -> pd.DataFrame:
    """The rows a figure shows: paper designs from its heuristic points, exact designs from its exact points.

    Rows of its variant points (the other load model) come marked ``variant``.
    Failure rows (no design or an error) are dropped here and reported by the
    report, not plotted. Derived columns (nominal NoC TB/s, available TFLOPS)
    are added for axes.
    """
    if frame.empty:
        return frame.copy()
    heur = {p.key() for p in spec.heuristic_points(opts)}
    variant = {p.key() for p in spec.variant_points(opts)}
    exact = {p.key() for p in spec.exact_points(opts)}
    ok = succeeded(frame)
    rows = ok[(ok["key"].isin(heur | variant) & ~ok["design"].isin(style.EXACT))
              | (ok["key"].isin(exact) & ok["design"].isin(style.EXACT))].copy()
    rows["variant"] = rows["key"].isin(variant - heur)
    return with_derived(rows.reset_index(drop=True))


def main_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The figure's own rows (without the other load model's variant rows)."""
    if "variant" not in rows:
        return rows
    return rows[~rows["variant"].astype(bool)].drop(columns="variant")


def succeeded(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of designs that ran (failure rows carry an error and no latency)."""
    ok = frame["design"].notna() & frame["latency_ms"].notna()
    if "status" in frame:
        ok &= frame["status"] == "ok"
    return frame[ok]


def failures(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(succeeded(frame).index)


def with_derived(rows: pd.DataFrame) -> pd.DataFrame:
    """Add axis quantities the chip defines: nominal NoC load bandwidth (TB/s) and peak TFLOPS."""
    rows = rows.copy()
    if rows.empty:
        return rows
    base = preset(CHIP)
    if "noc_tbps" not in rows or rows["noc_tbps"].isna().any():
        rows["noc_tbps"] = rows["cores"] * base.noc_load_bytes_per_s_per_core * rows["noc_scale"] / 1e12
    rows["peak_tflops"] = rows["cores"] * 2 * 64 * base.clock_hz * rows["compute_scale"] / 1e12
    return rows


def columns(rows: pd.DataFrame, wanted: Iterable[str]) -> pd.DataFrame:
    """The given columns (those present), rows in a stable order: configuration, then design order."""
    wanted = [c for c in wanted if c in rows.columns]
    out = rows[wanted].copy()
    if "design" in out:
        rank = {d: i for i, d in enumerate(style.DESIGN_ORDER)}
        out["_rank"] = out["design"].map(lambda d: rank.get(d, len(rank)))
        by = [c for c in CONFIG if c in out.columns] + ["_rank"]
        out = out.sort_values(by, kind="stable").drop(columns="_rank")
    return out.reset_index(drop=True)


#: Columns every figure table starts with: the certified gap (latency / best proven bound - 1, None for Ideal,
#: which is a relaxed schedule) and the bound it is certified against come right after the latency.
BASE_COLUMNS = (*CONFIG, "design", "latency_ms", "gap_to_bound", "bound_ms", "bound_name", "pct_of_ideal", "valid")


def write_table(table: pd.DataFrame, out_dir: Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.csv"
    table.to_csv(path, index=False)
    return path
