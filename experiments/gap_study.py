"""Certified optimality gaps: how far each design's schedule is from a proven lower bound, over a grid of chips.

The grid (``--models`` x topology x HBM x SRAM x load model), B32 S2048 decode on IPU-POD4 (5,888 cores):

* the four LLMs (Llama2-13B, Llama2-70B, OPT-30B, Gemma2-27B);
* topology all-to-all and mesh; HBM 4, 8 and 16 TB/s; SRAM 624 KiB (the chip's) and 192 KiB;
* load model fluid and rigid (docs/design.md §5.1): 96 configurations.

Gemma2-27B's LM head needs ~397 KiB per core even fully partitioned, so where a
requested SRAM size does not fit a model, the configuration runs at the
smallest of 400, 448, 512, 576 KiB... at which the model compiles (probed once
per model and size, stored in ``OUT/sram.json``; the ``sram_kib``,
``sram_requested_kib`` and ``sram_note`` columns say which).

Per configuration one study point (``elk.study``: one file per finished point
under ``OUT/results``; a rerun skips them, so an interrupted study resumes)
compiles the heuristics (basic, static, elk-dyn, elk-full; Ideal too, a
relaxed schedule shown for reference, never a bound), then the exact designs in
order: ``periodic`` (a modulo schedule of one layer with CP-SAT, from the best
heuristic, CP-SAT deterministic time 2.5, 1 worker), the ``milp`` windows (from the fastest schedule so far, so from
periodic's) and ``lp-guided`` (the schedule read off the plan-choice relaxation, kept where faster);
``--exact-designs`` may add ``cpsat`` and ``lns``, which run in the registry's order (``EXACT_KNOWN``).
It proves the lower bounds at level ``layers`` by default (closed forms, LP, layer, steady-state and
blocks of layers; ``--bound lp`` leaves out the last two, ``--bound milp`` adds the MILP over plan choices,
which on the quick grid ran to its time limit without raising the best bound), each chip's once for both
load models (``elk.study.shared_bounds``).

Why these defaults (fresh runs of all 96 configurations on 2 cores, 2 points at once, in
experiments/results/: gap_rerun/, gap_1worker/, gap_budget/, and gap_refine/ at these defaults): 1.40 h summed
point time (1.505 h before ELK-Full searched its rigid share limits on the screening program), against 2.03 h
with the periodic design at 20 s of wall clock, windows at 5 s and bounds at 60 s, and 2.69 h for the committed
run; the best schedule's certified gap <= 3% at 59 of 96 in all, mean 3.05% against 3.06%, no bound moved. The
periodic design stops on deterministic time, so its schedule does not depend on the machine's load; what the
shorter budgets cost is in gap_budget/README.md (+0.41% at one configuration, +0.12% at two), what ELK-Full's
screened rigid descent moved in gap_refine/README.md. ``lp-guided`` costs 4 s per point and is the fastest
schedule at 2 configurations (OPT-30B all-to-all 16 TB/s 624 KiB fluid: 12.593 ms against the windows' 12.819).
Outputs:

* ``OUT/gaps.csv``: one row per configuration x design, plus a ``best`` row per
  configuration (the fastest valid schedule of any design): latency, certified
  gap (latency / best bound - 1, in %), every bound family's value, the one that
  binds, the best heuristic and the gain over it, solver times;
* a printed table (one line per configuration);
* ``OUT/certified_gaps.png``: the certified gap of every design at every configuration (heatmaps, one per load model);
* ``OUT/gap_study.md``: where the best schedule's gap is <= 3% and <= 10%, where it stays open and by how
  much, which bounds bind, and how often the exact designs beat the best heuristic by >= 1% where the best
  heuristic's certified gap is above 2%.

    python -m experiments.gap_study [--models llama2-13b,...] [--quick] [--out out/gap]
                                    [--exact-time-limit 60] [--periodic-deterministic-time 2.5]
                                    [--window-time-limit 2] [--guided-time-limit 5] [--window 8]
                                    [--bound layers] [--bound-time-limit 45] [--workers 2]
                                    [--solver-workers 1]
                                    [--periodic-workers 1]

``--quick``: all-to-all, 16 TB/s, both SRAM sizes and both load models (4
configurations per model; Llama2-13B unless ``--models`` is given).

``--rebound``: compile nothing; re-prove the bounds of a finished study's chips
(``OUT/gaps.csv``) with the current code and re-certify the stored latencies
against them (see ``experiments/gap_rebound.py``).

``--refresh DESIGNS [--load-models rigid]``: compile designs again with the
current code at a finished study's configurations (of those load models) and
replace its rows, the derived ``best`` rows rebuilt; an exact design is compiled
after the heuristics, its warm start (see ``experiments/gap_refresh.py``).

Also home of the append-only CSV log and figure helpers that ``tune_solver.py`` shares.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LLMS = ("llama2-13b", "llama2-70b", "opt-30b", "gemma2-27b")
TOPOLOGIES = ("all-to-all", "mesh")
HBM_TBPS = (4.0, 8.0, 16.0)
SRAM_KIB = (624.0, 192.0)
LOAD_MODELS = ("fluid", "rigid")
#: Sizes tried, in order, when a requested SRAM size does not fit a model (past the last one: 64 KiB steps).
SRAM_LADDER = (400.0, 448.0, 512.0, 576.0, 624.0)
HEURISTICS = ("basic", "static", "elk-dyn", "elk-full")
RELAXED = ("ideal",)
EXACT = ("periodic", "milp", "lp-guided")
#: The periodic design's CP-SAT deterministic time. One worker on this 2-core machine spends 3.3-8.8 of it in 20 s
#: of wall clock on the grid's layer models (Llama2-13B all-to-all 16 TB/s 624 KiB, Gemma2-27B at 8 TB/s 400 KiB);
#: at 2.5 a periodic compile took 2-14 s at 9 configurations (7 with 20 s's schedule), and it ends the same way on a
#: machine twice as busy (experiments/results/gap_budget/README.md).
PERIODIC_DETERMINISTIC_TIME = 2.5
#: The periodic design's wall-clock cap (seconds): a safety net above its deterministic time, which ends it first
#: (2-14 s at the grid's layer models).
EXACT_TIME_LIMIT = 60.0
#: Seconds per MILP window. From the same warm starts, 2 s gave 5 s's schedule at Llama2-13B all-to-all 16 TB/s
#: and mesh 8 TB/s 624 KiB fluid and 0.012% slower at OPT-30B mesh 16 TB/s 624 KiB fluid, in 44-64% of the time.
WINDOW_TIME_LIMIT = 2.0
#: Seconds for lp-guided's MILP: one model of the whole program, which ran to 5 s at a third of the grid.
GUIDED_TIME_LIMIT = 5.0
#: Seconds for a chip's bounds. Where blocks of layers raised the bound (4 chips at 192 KiB timed beside another
#: solve), the block size that set it was proven within 23-42 s; past that the budget went to a block that stopped
#: at its limit without raising the bound, and to OPT-30B's blocks at 624 KiB, which never bind there.
BOUND_TIME_LIMIT = 45.0
#: every exact design a point may run, in the registry's run order (solvers.registry.EXACT; tests check it);
#: ``optimal`` is left out: it refuses programs of more than 64 operators, and the zoo's LLMs have hundreds
EXACT_KNOWN = ("periodic", "cpsat", "milp", "lp-guided", "lns")
#: the order designs appear in tables and figures; "best" is the fastest valid schedule of a configuration
DESIGN_ORDER = (*HEURISTICS, "ideal", *EXACT_KNOWN, "best")
BOUND_FAMILIES = ("hbm", "execution", "flow-shop", "sram-window", "lp", "layer", "steady-state", "multi-layer",
                  "milp")
#: a configuration: one point of the grid (the columns identifying it in gaps.csv)
CONFIG = ("model", "topology", "hbm_tbps", "sram_kib", "load_model")
BATCH, SEQ, CHIP = 32, 2048, "ipu-pod4"
#: thresholds of the summary
CLOSED_PCT, NEAR_PCT = 3.0, 10.0
OPEN_HEURISTIC_PCT, EXACT_GAIN_PCT = 2.0, 1.0

COLUMNS = ("model", "topology", "hbm_tbps", "sram_kib", "sram_requested_kib", "sram_note", "load_model", "design",
           "latency_ms", "valid", "certified_gap_pct", "relaxed", "best_design", "best_heuristic",
           "best_heuristic_ms", "best_heuristic_gap_pct", "gain_over_best_heuristic_pct", "bound_ms", "bound_name",
           *(f"bound_{f.replace('-', '_')}_ms" for f in BOUND_FAMILIES), "bound_seconds", "ideal_ms",
           "pct_of_ideal", "ideal_below_bound", "warm_start", "design_seconds", "solve_seconds", "windows",
           "windows_improved", "proven_optimal_pct", "point_seconds", "status", "error", "key")


# -- helpers shared with tune_solver.py ----------------------------------------------------------------------------

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


def split_list(text: str, allowed: Iterable[str] | None = None, what: str = "value") -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if allowed is not None:
        allowed = list(allowed)
        bad = [x for x in items if x not in allowed]
        if bad:
            raise SystemExit(f"unknown {what} {', '.join(bad)} (choose from {', '.join(allowed)})")
    if not items:
        raise SystemExit(f"no {what} given")
    return items


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


# -- the grid ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """What every point of one invocation shares (solver settings are part of each point's key)."""

    exact_designs: tuple[str, ...] = EXACT
    #: the periodic design's CP-SAT wall-clock limit (seconds): a safety net above its deterministic time, which
    #: ends the solve first on a machine like the one the study was measured on
    exact_time_limit: float = EXACT_TIME_LIMIT
    #: the periodic design's CP-SAT deterministic time (None: the wall-clock limit alone). With one worker the solve
    #: is then the same on a busy machine as on a quiet one, so a study's periodic rows do not move with its load
    periodic_deterministic_time: float | None = PERIODIC_DETERMINISTIC_TIME
    #: the MILP windows: operators per window and seconds per window
    window: int = 8
    window_time_limit: float = WINDOW_TIME_LIMIT
    #: the lp-guided design's MILP (seconds)
    guided_time_limit: float = GUIDED_TIME_LIMIT
    solver_workers: int = 1
    #: CP-SAT workers of the periodic design (None: the design's own default, 8). 1: a study runs a point per
    #: core; in two fresh runs of the 96 configurations, 8 workers then 1 (experiments/results/gap_rerun and
    #: gap_1worker), the summed point time was 2.07 h then 2.03 h and the mean certified gap 3.10% then 3.06%
    periodic_workers: int | None = 1
    seed: int = 0
    bound: str = "layers"
    bound_time_limit: float = BOUND_TIME_LIMIT

    @property
    def designs(self) -> str:
        return ",".join((*HEURISTICS, *RELAXED, *self.exact_designs))


@dataclass(frozen=True)
class Config:
    """One configuration of the grid; ``sram_kib`` is the size it runs at (``requested`` the grid's)."""

    model: str
    topology: str
    hbm_tbps: float
    sram_requested_kib: float
    load_model: str
    sram_kib: float = 0.0
    sram_note: str = ""

    def point(self, s: Settings):
        from elk.study import Point
        return Point(model=self.model, batch=BATCH, seq=SEQ, chip=CHIP, topology=self.topology,
                     hbm_tbps=self.hbm_tbps, sram_kib=self.sram_kib or self.sram_requested_kib,
                     load_model=self.load_model, designs=s.designs, window=s.window,
                     time_limit=s.window_time_limit, workers=s.solver_workers, seed=s.seed,
                     periodic_time_limit=s.exact_time_limit if "periodic" in s.exact_designs else None,
                     periodic_workers=s.periodic_workers if "periodic" in s.exact_designs else None,
                     periodic_deterministic_time=s.periodic_deterministic_time if "periodic" in s.exact_designs
                     else None,
                     guided_time_limit=s.guided_time_limit if "lp-guided" in s.exact_designs else None,
                     bound=s.bound, bound_time_limit=s.bound_time_limit)


def grid(models: Sequence[str], quick: bool) -> list[Config]:
    topologies, hbm = (("all-to-all",), (16.0,)) if quick else (TOPOLOGIES, HBM_TBPS)
    # the default chip's bandwidth first, then less: a study stopped early has every model at 16 TB/s
    return [Config(m, t, h, s, lm) for h in sorted(hbm, reverse=True) for m in models for t in topologies
            for s in SRAM_KIB for lm in LOAD_MODELS]


# -- SRAM sizes a model fits in ------------------------------------------------------------------------------------

def fits(model: str, sram_kib: float) -> tuple[bool, str]:
    """Whether every operator of the model has a plan within ``sram_kib`` per core (builds its plan tables, which
    the study's points then find in the on-disk cache); the reason when not."""
    from elk.chip import knob_overrides, resolve_chip
    from elk.errors import ElkError
    from elk.graphs.zoo import build_program
    from elk.workload import Workload

    base = resolve_chip(CHIP)
    chip = base.with_overrides(**knob_overrides(base, sram_kib=sram_kib))
    try:
        Workload.build(build_program(model, batch=BATCH, seq=SEQ, mode="decode"), chip)
    except ElkError as exc:
        return False, str(exc)
    return True, ""


def ladder(requested: float, default: float = SRAM_KIB[0]) -> list[float]:
    """The sizes tried for a requested one: itself, then the ladder's larger sizes, then 64 KiB steps."""
    sizes = [requested] + [s for s in SRAM_LADDER if s > requested]
    top = max(sizes[-1], default)
    while sizes[-1] < top:
        sizes.append(sizes[-1] + 64.0)
    return sizes


def smallest_fitting_sram(model: str, requested: float, probe: Callable[[str, float], tuple[bool, str]] = fits,
                          ) -> tuple[float | None, str]:
    """(the smallest size of ``ladder(requested)`` the model fits in, or None; a note saying what was tried)."""
    reason, tried = "", []
    for size in ladder(requested):
        ok, why = probe(model, size)
        if ok:
            if size == requested:
                return size, ""
            return size, (f"{requested:g} KiB does not fit ({reason}): runs at {size:g} KiB, the smallest that fits "
                          f"of {', '.join(tried[1:] + [f'{size:g}'])} KiB")
        reason = reason or short_reason(why)
        tried.append(f"{size:g}")
    return None, f"{requested:g} KiB does not fit ({reason}), nor does any of {', '.join(tried[1:])} KiB"


def short_reason(why: str) -> str:
    """The first clause of an error message (the operator and what it needs)."""
    text = why.split(", but ")[0]
    return text if len(text) <= 160 else text[:157] + "..."


def resolve_sram(configs: Sequence[Config], path: Path,
                 probe: Callable[[str, float], tuple[bool, str]] = fits) -> list[Config]:
    """Each configuration with the SRAM size it runs at; probes are cached in ``path`` (JSON) across runs.

    The chip's own size is not probed (the paper's evaluation compiles every model at it).
    """
    import dataclasses
    cache: dict[str, dict[str, list]] = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            cache = {}
    out = []
    for c in configs:
        if c.sram_requested_kib == SRAM_KIB[0]:
            out.append(dataclasses.replace(c, sram_kib=c.sram_requested_kib))
            continue
        key = f"{c.sram_requested_kib:g}"
        if key not in cache.get(c.model, {}):
            started = time.perf_counter()
            size, note = smallest_fitting_sram(c.model, c.sram_requested_kib, probe)
            cache.setdefault(c.model, {})[key] = [size, note]
            print(f"{c.model} at {key} KiB: " + (note or "fits") + f" ({time.perf_counter() - started:.1f} s)",
                  flush=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        size, note = cache[c.model][key]
        out.append(dataclasses.replace(c, sram_kib=size if size is not None else c.sram_requested_kib, sram_note=note))
    return out


# -- from stored points to gaps.csv ----------------------------------------------------------------------------------

def as_float(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def is_true(value) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def fastest_design(valid: Mapping[str, float]) -> str:
    """The design a configuration's best row names among ``valid`` (design -> latency of a valid, strict
    schedule): the first in DESIGN_ORDER (heuristics, then exact) within float noise of the fastest, so an exact
    design that only ties its warm start is not named as the best."""
    fastest = min(valid.values())
    order = {d: k for k, d in enumerate(DESIGN_ORDER)}
    return min((d for d, ms in valid.items() if ms <= fastest * (1 + 1e-9)),
               key=lambda d: order.get(d, len(DESIGN_ORDER)))


def rows_for(config: Config, record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """gaps.csv's rows of one configuration from its stored point record (one per design, then ``best``)."""
    base = {"model": config.model, "topology": config.topology, "hbm_tbps": config.hbm_tbps,
            "sram_kib": config.sram_kib, "sram_requested_kib": config.sram_requested_kib,
            "sram_note": config.sram_note, "load_model": config.load_model}
    if record is None:
        return [{**base, "design": "best", "status": "missing", "error": "not run"}]
    base.update(key=record.get("key"), status=record.get("status"), error=record.get("error"),
                point_seconds=record.get("point_seconds"))
    bound_ms = as_float(record.get("bound_ms"))
    families = {b["name"]: b.get("ms") for b in record.get("bounds") or []}
    base.update(bound_ms=bound_ms, bound_name=record.get("bound_name"), bound_seconds=record.get("bound_seconds"),
                **{f"bound_{f.replace('-', '_')}_ms": families.get(f) for f in BOUND_FAMILIES})
    if record.get("status") != "ok":
        return [{**base, "design": "best"}]
    by = {r["design"]: r for r in record["rows"]}
    ideal_ms = as_float(by.get("ideal", {}).get("latency_ms"))

    def gap(ms: float) -> float:
        return 100.0 * (ms / bound_ms - 1.0) if bound_ms > 0 and ms == ms else math.nan

    valid = {d: as_float(r["latency_ms"]) for d, r in by.items() if d not in RELAXED and is_true(r.get("valid"))}
    heur = {d: ms for d, ms in valid.items() if d in HEURISTICS}
    best_heur = min(heur, key=heur.get) if heur else None
    best_heur_ms = heur[best_heur] if best_heur else math.nan
    base.update(best_heuristic=best_heur, best_heuristic_ms=best_heur_ms, best_heuristic_gap_pct=gap(best_heur_ms),
                ideal_ms=ideal_ms, ideal_below_bound=bool(ideal_ms == ideal_ms and ideal_ms < bound_ms * (1 - 1e-9)))
    rows = []
    for d in sorted(by, key=lambda n: DESIGN_ORDER.index(n) if n in DESIGN_ORDER else len(DESIGN_ORDER)):
        r = by[d]
        ms = as_float(r.get("latency_ms"))
        relaxed = d in RELAXED
        rows.append({**base, "design": d, "latency_ms": ms, "valid": r.get("valid"),
                     "certified_gap_pct": math.nan if relaxed else gap(ms), "relaxed": relaxed,
                     "gain_over_best_heuristic_pct": (100.0 * (best_heur_ms - ms) / best_heur_ms
                                                      if d in EXACT_KNOWN else math.nan),
                     "pct_of_ideal": r.get("pct_of_ideal"), "warm_start": r.get("warm_start"),
                     "design_seconds": r.get("compile_seconds"), "solve_seconds": r.get("solve_seconds"),
                     "windows": r.get("windows"), "windows_improved": r.get("windows_improved"),
                     "proven_optimal_pct": r.get("proven_optimal_pct")})
    if valid:
        best = fastest_design(valid)
        ms = valid[best]
        rows.append({**base, "design": "best", "best_design": best, "latency_ms": ms, "valid": True,
                     "certified_gap_pct": gap(ms), "relaxed": False,
                     "gain_over_best_heuristic_pct": 100.0 * (best_heur_ms - ms) / best_heur_ms,
                     "pct_of_ideal": 100.0 * ideal_ms / ms if ideal_ms == ideal_ms else math.nan,
                     "design_seconds": sum(as_float(by[d].get("compile_seconds")) for d in by
                                           if d in EXACT_KNOWN)})
    return rows


#: how a fluid configuration's ``best_design`` names a schedule of its chip's rigid configuration
RIGID_SUFFIX = " (rigid loads)"


def fastest_row(block) -> tuple[str, float] | None:
    """(design, latency) of the fastest valid, strict schedule among a configuration's design rows (not its
    ``best`` row), named as ``rows_for`` names it (``fastest_design``)."""
    rows = block[(block["design"] != "best") & ~block["design"].isin(RELAXED)
                 & block["valid"].map(is_true) & block["latency_ms"].notna()]
    if rows.empty:
        return None
    valid = {str(d): float(ms) for d, ms in zip(rows["design"], rows["latency_ms"])}
    design = fastest_design(valid)
    return design, valid[design]


def with_rigid_schedules(frame):
    """gaps.csv with each fluid configuration's ``best`` row taking its chip's rigid-load schedule where that is
    faster than every fluid-load design's.

    A schedule the simulator accepts under rigid loads is accepted under fluid ones with the same latency (a
    constant rate is one choice of rates, and the latency is the schedule's own intervals: docs/design.md §5.1,
    tests/test_simulator_property.py), so it is a schedule of the fluid configuration too; its design is named
    with ``RIGID_SUFFIX``. Recomputed from the design rows every time (idempotent): a ``best`` row taken from the
    rigid configuration goes back to the fluid designs' fastest when that is no longer faster. Each run (full,
    refresh, re-certification) applies it once to the frame it finished, so that every table, figure and
    summary section it writes sees the same best rows.
    """
    if frame.empty or "load_model" not in frame:
        return frame
    frame = frame.copy()
    chip = ["model", "topology", "hbm_tbps", "sram_kib"]
    blocks = {key: block for key, block in frame.groupby(chip + ["load_model"], dropna=False, sort=False)}
    for i in frame.index[(frame["design"] == "best") & (frame["load_model"] == "fluid")
                         & frame["latency_ms"].notna()]:
        r = frame.loc[i]
        key = tuple(r[c] for c in chip)
        own = fastest_row(blocks[(*key, "fluid")])
        rigid = fastest_row(blocks[(*key, "rigid")]) if (*key, "rigid") in blocks else None
        if own is None:
            continue
        take = rigid is not None and rigid[1] < own[1] * (1 - 1e-9)
        if not take and not str(r.get("best_design") or "").endswith(RIGID_SUFFIX):
            continue  # the row rows_for (or a re-certification) made stands
        design, ms = (rigid[0] + RIGID_SUFFIX, rigid[1]) if take else own
        bound, heur, ideal = (as_float(r.get(c)) for c in ("bound_ms", "best_heuristic_ms", "ideal_ms"))
        frame.loc[i, ["best_design", "latency_ms"]] = [design, ms]
        frame.loc[i, "certified_gap_pct"] = 100.0 * (ms / bound - 1.0) if bound > 0 else math.nan
        frame.loc[i, "gain_over_best_heuristic_pct"] = 100.0 * (heur - ms) / heur if heur == heur else math.nan
        frame.loc[i, "pct_of_ideal"] = 100.0 * ideal / ms if ideal == ideal else math.nan
    return frame


def write_gaps(frame, out: Path, configurations: int) -> None:
    """gaps.csv (atomically: a temporary file, then a rename), the printed table and the heatmaps."""
    tmp = out / ".gaps.csv.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out / "gaps.csv")
    print(f"wrote {out / 'gaps.csv'} ({len(frame)} rows, {configurations} configurations)")
    print_table(frame)
    figure(frame, out / "certified_gaps.png")


def gaps_frame(configs: Sequence[Config], records: Mapping[str, Mapping[str, Any] | None], settings: Settings):
    """gaps.csv as a DataFrame (every column of COLUMNS, in that order)."""
    import pandas as pd
    rows = []
    for c in configs:
        rows.extend(rows_for(c, records.get(c.point(settings).key())))
    frame = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None
    return frame[list(COLUMNS)]


# -- summaries -----------------------------------------------------------------------------------------------------

def label(row: Mapping[str, Any]) -> str:
    """``model topology HBM SRAM load-model``; the SRAM asked for too where another size ran."""
    sram = f"{as_float(row['sram_kib']):g} KiB"
    requested = as_float(row.get("sram_requested_kib"))
    if requested == requested and requested != as_float(row["sram_kib"]):
        sram += f" (for {requested:g})"
    return f"{row['model']} {row['topology']} {as_float(row['hbm_tbps']):g} TB/s {sram} {row['load_model']}"


def best_rows(frame):
    """The ``best`` row of each configuration that compiled."""
    return frame[(frame["design"] == "best") & frame["latency_ms"].notna()]


def exact_wins(frame, open_pct: float = OPEN_HEURISTIC_PCT, gain_pct: float = EXACT_GAIN_PCT) -> dict[str, Any]:
    """Among configurations whose best heuristic's certified gap is above ``open_pct``: how many an exact design
    beats the best heuristic at by ``gain_pct`` or more (the best of the exact designs counts)."""
    exact = frame[frame["design"].isin(EXACT_KNOWN) & frame["latency_ms"].notna()]
    if exact.empty:
        return {"open": 0, "wins": 0, "configurations": []}
    gains = exact.groupby(list(CONFIG), dropna=False).agg(gain=("gain_over_best_heuristic_pct", "max"),
                                                         heur_gap=("best_heuristic_gap_pct", "first"))
    open_ = gains[gains["heur_gap"] > open_pct]
    wins = open_[open_["gain"] >= gain_pct]
    names = [label({**dict(zip(CONFIG, k)), "sram_requested_kib": None}) for k in wins.index]
    return {"open": len(open_), "wins": len(wins), "configurations": names}


def per_design(frame):
    """Certified gap (%) per design: mean, median, max over the configurations, by load model and overall."""
    import pandas as pd
    valid = frame[frame["certified_gap_pct"].notna() & ~frame["relaxed"].fillna(False).astype(bool)]
    if valid.empty:
        return pd.DataFrame()
    out = valid.groupby(["design", "load_model"])["certified_gap_pct"].agg(["mean", "median", "max", "size"])
    overall = valid.groupby("design")["certified_gap_pct"].agg(["mean", "median", "max", "size"])
    overall["load_model"] = "both"
    out = pd.concat([out.reset_index(), overall.reset_index()])
    out["rank"] = out["design"].map(lambda d: DESIGN_ORDER.index(d) if d in DESIGN_ORDER else 99)
    out["lm"] = out["load_model"].map(lambda m: (*LOAD_MODELS, "both").index(m))
    out = out.sort_values(["rank", "lm"]).drop(columns=["rank", "lm"])
    return out.rename(columns={"mean": "mean gap %", "median": "median gap %", "max": "max gap %",
                               "size": "configurations"}).set_index(["design", "load_model"])


def summary_table(frame):
    """One line per configuration: the bound, each design's certified gap, the best design, solver time."""
    import pandas as pd
    lines = []
    for _, cfg in frame.groupby(list(CONFIG), sort=False, dropna=False):
        first = cfg.iloc[0]
        row = {"configuration": label(first), "status": first["status"],
               "bound": first["bound_name"], "bound ms": as_float(first["bound_ms"])}
        by = cfg.set_index("design")
        for d in DESIGN_ORDER:
            if d in RELAXED:
                continue
            row[d] = as_float(by.loc[d, "certified_gap_pct"]) if d in by.index else math.nan
        best = by.loc["best"] if "best" in by.index else None
        row["best design"] = best["best_design"] if best is not None else None
        row["solver s"] = sum(as_float(by.loc[d, "design_seconds"]) for d in by.index if d in EXACT_KNOWN)
        lines.append(row)
    table = pd.DataFrame(lines)
    return table.dropna(axis=1, how="all") if not table.empty else table


def print_table(frame) -> None:
    table = summary_table(frame)
    if table.empty:
        print("no configurations")
        return
    import pandas as pd
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_rows", 500):
        print("\ncertified gap (%) per configuration and design (latency / best proven bound - 1):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def md_table(df, index: bool = False) -> str:
    if df is None or df.empty:
        return "_(none)_\n"
    tab = df.reset_index() if index else df

    def cell(v) -> str:
        if isinstance(v, float):
            return "n/a" if v != v else f"{v:.2f}"
        return "" if v is None else str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, tab.columns)) + " |"
    rule = "|" + "|".join("---" for _ in tab.columns) + "|"
    return "\n".join([head, rule, *("| " + " | ".join(cell(v) for v in r) + " |"
                                    for r in tab.itertuples(index=False, name=None))]) + "\n"


def write_summary(frame, path: Path, *, command: str, settings: Settings, configs: Sequence[Config],
                  seconds: float, preamble: Sequence[str] = (), appendix: Sequence[str] = (),
                  run_seconds_label: str = "This run") -> Path:
    """``gap_study.md``: what is closed, what stays open and by how much, which bounds bind, what the exact
    designs are worth. ``preamble`` lines go after the settings, ``appendix`` lines at the end (a re-certified
    study says there what changed); rows a refresh compiled again are said after the preamble, whoever writes
    the summary (experiments/gap_refresh.py)."""
    import pandas as pd
    from experiments.gap_refresh import refresh_note
    best = best_rows(frame)
    n = len(best)
    lines = ["# Certified optimality gaps", "",
             f"`{command}`", "",
             f"{len(configs)} configurations (B{BATCH} S{SEQ} decode on {CHIP}); designs {settings.designs}; "
             f"periodic: CP-SAT "
             + (f"deterministic time {settings.periodic_deterministic_time:g}, at most "
                if settings.periodic_deterministic_time else "")
             + f"{settings.exact_time_limit:g} s"
             + (f" ({settings.periodic_workers} worker{'' if settings.periodic_workers == 1 else 's'})"
                if settings.periodic_workers else "")
             + f"; MILP windows of {settings.window} with "
             f"{settings.window_time_limit:g} s each"
             + (f"; lp-guided {settings.guided_time_limit:g} s" if "lp-guided" in settings.exact_designs else "")
             + f"; bounds at level `{settings.bound}` "
             f"({settings.bound_time_limit:g} s). {run_seconds_label}: {seconds:.0f} s.", "", *preamble,
             *refresh_note(frame, path.parent),
             "Certified gap = latency / best proven lower bound - 1 (no valid schedule beats the bound). Ideal is a "
             "relaxed schedule (fastest plans, smallest footprints, no interconnect contention), not a bound; it is "
             "in gaps.csv for reference only.", ""]
    notes = sorted({(c.model, c.sram_requested_kib, c.sram_note) for c in configs if c.sram_note})
    if notes:
        lines += ["SRAM: " + "; ".join(f"{m}: {note}" for m, _, note in notes) + ".", ""]
    failed = frame[(frame["design"] == "best") & frame["latency_ms"].isna()]
    if len(failed):
        lines += [f"{len(failed)} configuration(s) without a schedule:", "",
                  md_table(pd.DataFrame({"configuration": [label(r) for _, r in failed.iterrows()],
                                         "status": failed["status"], "error": failed["error"]})), ""]
    if n == 0:
        path.write_text("\n".join(lines + ["No results yet."]) + "\n", encoding="utf-8")
        return path
    gap = best["certified_gap_pct"]
    closed, near = int((gap <= CLOSED_PCT).sum()), int((gap <= NEAR_PCT).sum())
    lines += ["## The best schedule", "",
              f"Certified gap of the best schedule (any design) <= {CLOSED_PCT:g}% at **{closed} of {n}** "
              f"configurations, <= {NEAR_PCT:g}% at **{near} of {n}**; mean {gap.mean():.2f}%, max "
              f"{gap.max():.2f}%.", ""]
    by_factor = []
    for col in ("model", "topology", "hbm_tbps", "sram_requested_kib", "load_model"):
        if best[col].nunique() < 2:
            continue
        g = best.groupby(col)["certified_gap_pct"]
        for value, s in g:
            by_factor.append({"factor": col, "value": f"{value:g}" if isinstance(value, float) else value,
                              "configurations": len(s), "mean gap %": s.mean(), "max gap %": s.max(),
                              f"<= {CLOSED_PCT:g}%": int((s <= CLOSED_PCT).sum())})
    if by_factor:
        lines += ["Best schedule's certified gap by factor:", "", md_table(pd.DataFrame(by_factor)), ""]
    still = best[gap > CLOSED_PCT].sort_values("certified_gap_pct", ascending=False)
    if len(still):
        table = pd.DataFrame({
            "configuration": [label(r) for _, r in still.iterrows()],
            "best gap %": still["certified_gap_pct"].to_numpy(), "best design": still["best_design"].to_numpy(),
            "best ms": still["latency_ms"].to_numpy(), "bound ms": still["bound_ms"].to_numpy(),
            "binding bound": still["bound_name"].to_numpy(), "Ideal ms (relaxed)": still["ideal_ms"].to_numpy(),
            "best heuristic gap %": still["best_heuristic_gap_pct"].to_numpy()})
        lines += [f"## Where the gap stays open (> {CLOSED_PCT:g}%)", "",
                  "The bound that binds says which relaxation the proof rests on; where Ideal (relaxed) lies close "
                  "to the bound and far below the best schedule, the relaxed rules (contention, footprints) are "
                  "what the bound cannot see; where Ideal is far above the bound, the bound is what is weak.", "",
                  md_table(table), ""]
    lines += ["## Designs", "", "Certified gap (%) per design:", "", md_table(per_design(frame), index=True), ""]
    wins = exact_wins(frame)
    if wins["open"]:
        share = 100.0 * wins["wins"] / wins["open"]
        lines += [f"Exact designs against the best heuristic: among the {wins['open']} configurations whose best "
                  f"heuristic's certified gap is above {OPEN_HEURISTIC_PCT:g}%, an exact design is at least "
                  f"{EXACT_GAIN_PCT:g}% faster at **{wins['wins']}** ({share:.0f}%; target: half or more)."]
        if wins["configurations"]:
            lines += ["", "At: " + "; ".join(wins["configurations"]) + "."]
        lines += [""]
    else:
        lines += [f"No configuration has a best-heuristic certified gap above {OPEN_HEURISTIC_PCT:g}%"
                  + (" (or no exact design ran)." if not settings.exact_designs else "."), ""]
    exact = frame[frame["design"].isin(settings.exact_designs) & frame["latency_ms"].notna()]
    if len(exact):
        g = exact.groupby("design")
        gains = pd.DataFrame({"configurations": g.size(),
                              "faster than best heuristic": g["gain_over_best_heuristic_pct"].apply(
                                  lambda s: int((s > 1e-6).sum())),
                              "mean gain %": g["gain_over_best_heuristic_pct"].mean(),
                              "max gain %": g["gain_over_best_heuristic_pct"].max(),
                              "mean solver s": g["design_seconds"].apply(lambda s: pd.to_numeric(s).mean()),
                              "max solver s": g["design_seconds"].apply(lambda s: pd.to_numeric(s).max())})
        gains = gains.loc[[d for d in DESIGN_ORDER if d in gains.index]]
        lines += ["Exact designs (gain over the best heuristic of the same configuration):", "",
                  md_table(gains, index=True), ""]
    counts = best["bound_name"].value_counts()
    lines += ["## Bounds", "", "Bound that binds (configurations): "
              + ", ".join(f"{name} {k}" for name, k in counts.items()) + ".", ""]
    below = best[best["ideal_below_bound"].fillna(False).astype(bool)]
    lines += [f"Ideal (relaxed schedule) is below the best proven bound at {len(below)} of {n} configurations"
              + (": " + "; ".join(label(r) for _, r in below.iterrows()) if len(below) else "") + ".", ""]
    bound_s = pd.to_numeric(best["bound_seconds"], errors="coerce")
    point_s = pd.to_numeric(best["point_seconds"], errors="coerce")
    lines += ["## Cost", "", f"Bounds {bound_s.mean():.1f} s per configuration on average ({bound_s.max():.1f} s "
              f"max); whole points (tables, heuristics, exact designs, bounds) {point_s.mean():.1f} s on average, "
              f"{point_s.sum() / 3600:.2f} h summed.", "", *appendix]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- figure --------------------------------------------------------------------------------------------------------

def figure(frame, path: Path) -> None:
    """Heatmaps of the certified gap (%): configurations x designs, one panel per load model (shared rows)."""
    import numpy as np
    from matplotlib.colors import SymLogNorm
    from matplotlib.figure import Figure

    shown = [d for d in DESIGN_ORDER if d not in RELAXED and d in set(frame["design"])]
    models = [m for m in LOAD_MODELS if m in set(frame["load_model"])] or ["fluid"]
    rows: list[str] = []  # configurations without their load model, in grid order
    cells: dict[tuple[str, str], list[float]] = {}
    for _, cfg in frame.groupby(list(CONFIG), sort=False, dropna=False):
        first = cfg.iloc[0]
        name = label(first).replace(f" {first['load_model']}", "")
        if name not in rows:
            rows.append(name)
        by = cfg.set_index("design")["certified_gap_pct"]
        cells[(str(first["load_model"]), name)] = [as_float(by.get(d)) for d in shown]
    empty = [math.nan] * len(shown)
    panels = [(lm, np.array([cells.get((lm, r), empty) for r in rows], dtype=float).reshape(len(rows), len(shown)))
              for lm in models]
    finite = [float(np.nanmax(v)) for _, v in panels if v.size and np.isfinite(v).any()]
    top = max(finite + [1.0])
    norm = SymLogNorm(linthresh=1.0, vmin=0.0, vmax=top, base=10)
    fig = Figure(figsize=(3.0 * len(panels) + 3.4, 0.24 * len(rows) + 2.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    image = None
    for k, (ax, (lm, values)) in enumerate(zip(axes, panels)):
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis_r", norm=norm)
        ax.set_facecolor("#dddddd")
        ax.set_xticks(range(len(shown)), shown, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=6)
        ax.tick_params(axis="y", labelleft=k == 0)
        ax.set_title(f"{lm} loads", fontsize=9)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                text = "n/a" if v != v else f"{v:.2f}" if v < 1 else f"{v:.1f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=5.5,
                        color="white" if v == v and norm(v) > 0.55 else "black")
    if image is not None:
        ticks = [t for t in (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500) if t <= top]
        bar = fig.colorbar(image, ax=list(axes), shrink=0.9, ticks=ticks)
        bar.ax.set_yticklabels([f"{t:g}" for t in ticks], fontsize=7)
        bar.set_label("certified gap (%)", fontsize=8)
    fig.suptitle("Certified gap (%) = latency / best proven bound - 1, per design and configuration "
                 "(B32 S2048 decode; grey: no schedule)", fontsize=9)
    fig.savefig(path, dpi=130)
    print(f"wrote {path}")


# -- entry point ---------------------------------------------------------------------------------------------------

def _deterministic_time(text: str) -> float | None:
    """``--periodic-deterministic-time``: a number, or ``none`` for the wall-clock limit alone."""
    return None if text.strip().lower() == "none" else float(text)


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/gap"), help="output folder (default out/gap)")
    p.add_argument("--models", default=None,
                   help=f"comma list (default {','.join(LLMS)}; with --quick llama2-13b; with --refresh: only "
                        f"these models' configurations)")
    p.add_argument("--quick", action="store_true",
                   help="all-to-all, 16 TB/s, both SRAM sizes and load models: 4 configurations per model")
    p.add_argument("--exact-designs", default=",".join(EXACT),
                   help=f"exact designs, run in the order {', '.join(EXACT_KNOWN)} (default periodic,milp,lp-guided; '' for "
                        "none); lp-guided takes --guided-time-limit, lns --window-time-limit for each repair")
    p.add_argument("--exact-time-limit", type=float, default=EXACT_TIME_LIMIT,
                   help=f"periodic design: CP-SAT wall-clock seconds, a cap above its deterministic time "
                        f"({EXACT_TIME_LIMIT:g})")
    p.add_argument("--periodic-deterministic-time", type=_deterministic_time, default=PERIODIC_DETERMINISTIC_TIME,
                   help=f"periodic design: CP-SAT deterministic time, which ends the solve the same way on any load "
                        f"({PERIODIC_DETERMINISTIC_TIME:g}; 'none': the wall-clock limit alone)")
    p.add_argument("--window-time-limit", type=float, default=WINDOW_TIME_LIMIT,
                   help=f"MILP windows: seconds per window ({WINDOW_TIME_LIMIT:g}); lns: per repair")
    p.add_argument("--guided-time-limit", type=float, default=GUIDED_TIME_LIMIT,
                   help=f"lp-guided: seconds for its MILP ({GUIDED_TIME_LIMIT:g})")
    p.add_argument("--window", type=int, default=8, help="MILP windows: operators per window (8)")
    p.add_argument("--bound", choices=("lp", "layers", "milp"), default="layers",
                   help="bound level: lp (closed forms, LP, layer), layers (adds the steady-state bound and blocks of layers where SRAM binds; default) or milp (adds the MILP over plan choices too: on the quick grid it ran to its limit without raising the best bound)")
    p.add_argument("--bound-time-limit", type=float, default=BOUND_TIME_LIMIT,
                   help=f"seconds for the bounds' solvers ({BOUND_TIME_LIMIT:g})")
    p.add_argument("--workers", type=int, default=2, help="points compiled at once (default 2)")
    p.add_argument("--solver-workers", type=int, default=1, help="threads per exact solve (default 1)")
    p.add_argument("--periodic-workers", type=int, default=1,
                   help="CP-SAT workers of the periodic design (default 1: one per point, as the study runs a "
                        "point per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stored-only", action="store_true",
                   help="run nothing: report the configurations already stored in OUT (a study stopped early); "
                        "with --rebound: use the bounds already in OUT/rebound.json")
    p.add_argument("--rebound", action="store_true",
                   help="compile nothing: re-prove the bounds of OUT/gaps.csv's chips with the current code and "
                        "re-certify its stored latencies (experiments/gap_rebound.py)")
    p.add_argument("--refresh", metavar="DESIGNS", default=None,
                   help="compile DESIGNS (a comma list, compiled together) again at OUT/gaps.csv's configurations "
                        "with the current code (exact designs after the heuristics, their warm start) and replace "
                        "their rows; one configuration at a time (experiments/gap_refresh.py)")
    p.add_argument("--load-models", default=None,
                   help=f"with --refresh: the configurations' load models, a comma list (default "
                        f"{','.join(LOAD_MODELS)})")
    return p.parse_args(argv)


def bad_number(args) -> str | None:
    """What is wrong with the command line's limits and counts (the first problem), or None: checked before the
    SRAM probe or any point runs."""
    if args.periodic_deterministic_time is not None and not 0 < args.periodic_deterministic_time < math.inf:
        return (f"--periodic-deterministic-time must be a positive number or 'none', got "
                f"{args.periodic_deterministic_time:g}")
    for name, value in (("--exact-time-limit", args.exact_time_limit), ("--window-time-limit", args.window_time_limit),
                        ("--guided-time-limit", args.guided_time_limit),
                        ("--bound-time-limit", args.bound_time_limit)):
        if not 0 < value < math.inf:
            return f"{name} must be a positive number of seconds, got {value:g}"
    for name, count in (("--periodic-workers", args.periodic_workers), ("--solver-workers", args.solver_workers),
                        ("--workers", args.workers), ("--window", args.window)):
        if count < 1:
            return f"{name} must be a positive integer, got {count}"
    return None


def main(argv: list[str] | None = None) -> int:
    from elk.errors import ElkError
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.perf_counter()
    models = split_list(args.models or ("llama2-13b" if args.quick else ",".join(LLMS)), what="model")
    exact = tuple(split_list(args.exact_designs, EXACT_KNOWN, "exact design")) \
        if args.exact_designs.strip() else ()
    problem = bad_number(args)
    if problem:
        print(f"gap_study: error: {problem}", file=sys.stderr)
        return 2
    settings = Settings(exact_designs=exact, exact_time_limit=args.exact_time_limit, window=args.window,
                        window_time_limit=args.window_time_limit, guided_time_limit=args.guided_time_limit,
                        solver_workers=args.solver_workers,
                        periodic_workers=args.periodic_workers,
                        periodic_deterministic_time=args.periodic_deterministic_time, seed=args.seed,
                        bound=args.bound, bound_time_limit=args.bound_time_limit)
    out: Path = args.out
    if args.refresh is not None or args.load_models is not None:
        if args.refresh is None or args.rebound:
            print("gap_study: error: " + ("--refresh and --rebound are separate runs" if args.rebound else
                                          "--load-models goes with --refresh"), file=sys.stderr)
            return 2
        from experiments.gap_refresh import run as refresh
        load_models = [m.strip() for m in (args.load_models or ",".join(LOAD_MODELS)).split(",") if m.strip()]
        return refresh(out, args.refresh.strip(), load_models, settings,
                       " ".join(["python", "-m", "experiments.gap_study", *argv]),
                       models=models if args.models else None)
    if args.rebound:
        from experiments.gap_rebound import run as rebound
        return rebound(out, settings, " ".join(["python", "-m", "experiments.gap_study", *argv]),
                       prove_missing=not args.stored_only)
    out.mkdir(parents=True, exist_ok=True)
    try:
        configs = resolve_sram(grid(models, args.quick), out / "sram.json")
        points = {c: c.point(settings) for c in configs}
        from elk.study import Study, run_study
        from elk.study.store import PointStore
        store = PointStore(out / "results")
        if args.stored_only:
            configs = [c for c in configs if store.read(points[c].key()) is not None]
            points = {c: points[c] for c in configs}
            print(f"{len(configs)} configurations stored in {out / 'results'}; reporting those")
        else:
            run_study(Study("gap-quick" if args.quick else "gap", list(points.values())), out / "results",
                      workers=args.workers, progress=not args.no_progress)
    except ElkError as exc:
        print(f"gap_study: error: {exc}", file=sys.stderr)
        return 2
    records = {p.key(): store.read(p.key()) for p in points.values()}
    frame = with_rigid_schedules(gaps_frame(configs, records, settings))
    write_gaps(frame, out, len(configs))
    command = " ".join(["python", "-m", "experiments.gap_study", *argv])
    md = write_summary(frame, out / "gap_study.md", command=command, settings=settings, configs=configs,
                       seconds=time.perf_counter() - started)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
