"""Re-certify a finished gap study: its stored latencies against lower bounds proven again with today's code.

A bound depends on the program and the chip only: not on any schedule, and not
on the load model (every bound family holds under fluid and rigid loads,
solvers/schedule/bounds.py; a family that did not would say so in its
``load_models``, and is then applied only where it holds). So when the bounds
get stronger, a study's certified gaps can be re-certified without compiling a
single design again: prove the bounds of each distinct chip (model x topology
x HBM x SRAM: the fluid and rigid configurations of a chip share one
computation) and divide the stored latencies by them.

``python -m experiments.gap_study --rebound --out OUT`` reads ``OUT/gaps.csv``
(the per-point store under ``OUT/results`` is not needed), proves the bounds
chip by chip (the ones behind the largest stored gaps first; each kept in
``OUT/rebound.json`` as soon as it is proven, so an interrupted run resumes;
delete the file to prove them again), and rewrites ``gaps.csv``,
``gap_study.md`` and ``certified_gaps.png``: latencies, designs and solver
times as stored, bounds and certified gaps new, the stored bound kept in
``old_bound_ms`` / ``old_bound_name`` / ``old_certified_gap_pct``. With
``--stored-only`` it proves nothing and uses the chips already in
``rebound.json`` (the others keep their stored bound; ``bound_reproven`` says
which).

A new bound above a stored valid latency would be a bound that is not one: the
run stops, names the configurations and writes nothing but ``rebound.json``.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elk.atomic import write_text
from experiments.gap_study import (BATCH, BOUND_FAMILIES, CLOSED_PCT, COLUMNS, CONFIG, DESIGN_ORDER, NEAR_PCT,
                                   RELAXED, SEQ, Config, Settings, as_float, is_true, best_rows, label,
                                   md_table, with_rigid_schedules, write_gaps, write_summary)

#: columns a re-certified gaps.csv adds to the study's
REBOUND_COLUMNS = ("old_bound_ms", "old_bound_name", "old_certified_gap_pct", "bound_reproven")
#: relative slack of the check "no valid latency below its bound" (float noise of cycles -> ms, never more)
BELOW_TOLERANCE = 1e-9
#: a bound counts as changed when it moved by more than this (relative)
CHANGED = 1e-6
#: seconds of the MILP behind each chip's lp-guided schedule in a re-certification
GUIDED_SECONDS = 10.0


class NoStoredStudy(Exception):
    """OUT holds no gaps.csv of a finished study to re-certify (bad input: said in one line, exit 2)."""


class BoundAboveLatency(Exception):
    """A re-proven bound exceeds a stored valid schedule's latency: a bug in a bound, never written as a gap."""


@dataclass(frozen=True)
class ChipKey:
    """What a bound depends on in the study's grid (the load model excepted)."""

    model: str
    topology: str
    hbm_tbps: float
    sram_kib: float

    @classmethod
    def of(cls, c: Config) -> "ChipKey":
        return cls(c.model, c.topology, float(c.hbm_tbps), float(c.sram_kib))

    def text(self) -> str:
        return f"{self.model} {self.topology} {self.hbm_tbps:g} TB/s {self.sram_kib:g} KiB"


@dataclass(frozen=True)
class FamilyBound:
    name: str
    ms: float
    status: str
    seconds: float
    load_models: tuple[str, ...]


@dataclass(frozen=True)
class Reproven:
    """Every bound family proven for one chip, when, and how long it took."""

    families: tuple[FamilyBound, ...]
    seconds: float
    warnings: tuple[str, ...] = ()
    proven_at: str = ""
    #: the ``lp-guided`` schedule of the chip (read off the plan-choice relaxation, as the design does): its
    #: simulated latency per load model where the simulator accepts it (absent where it does not)
    guided_ms: Mapping[str, float] = dataclasses.field(default_factory=dict)
    guided_seconds: float = 0.0

    def best(self, load_model: str) -> FamilyBound | None:
        """The largest bound that holds under ``load_model``."""
        holding = [f for f in self.families if load_model in f.load_models]
        return max(holding, key=lambda f: f.ms) if holding else None

    def to_json(self) -> dict[str, Any]:
        return {"families": [dataclasses.asdict(f) for f in self.families], "seconds": self.seconds,
                "warnings": list(self.warnings), "proven_at": self.proven_at, "guided_ms": dict(self.guided_ms),
                "guided_seconds": self.guided_seconds}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Reproven":
        return cls(tuple(FamilyBound(f["name"], float(f["ms"]), f["status"], float(f["seconds"]),
                                     tuple(f["load_models"])) for f in d["families"]),
                   float(d["seconds"]), tuple(d.get("warnings", ())), d.get("proven_at", ""),
                   {k: float(v) for k, v in d.get("guided_ms", {}).items()}, float(d.get("guided_seconds", 0.0)))


# -- the stored study ----------------------------------------------------------------------------------------------

def read_stored(path: Path):
    """The stored gaps.csv (the study has to have run, or be committed, first)."""
    import pandas as pd
    if not path.is_file():
        raise NoStoredStudy(f"--rebound needs a finished study's {path}; none there")
    frame = pd.read_csv(path, keep_default_na=True)
    missing = [c for c in ("design", "latency_ms", "valid", "bound_ms", *CONFIG, "sram_requested_kib")
               if c not in frame]
    if missing:
        raise NoStoredStudy(f"{path} has no column {', '.join(missing)}: not a gap study's table")
    return frame


def stored_configs(frame) -> list[Config]:
    """The configurations of a stored gaps.csv, in its order."""
    out: list[Config] = []
    for _, r in frame.drop_duplicates(list(CONFIG)).iterrows():
        note = r.get("sram_note")
        out.append(Config(model=str(r["model"]), topology=str(r["topology"]), hbm_tbps=float(r["hbm_tbps"]),
                          sram_requested_kib=float(r["sram_requested_kib"]), load_model=str(r["load_model"]),
                          sram_kib=float(r["sram_kib"]), sram_note="" if note != note or note is None else str(note)))
    return out


def config_of(row: Mapping[str, Any]) -> tuple:
    return tuple(row[c] for c in CONFIG)


# -- proving -------------------------------------------------------------------------------------------------------

def prove(config: Config, settings: Settings, workers: int | None = None) -> Reproven:
    """The bounds of ``config``'s chip at the study's level and time limit (the chip with fluid loads: every
    family records the load models it holds under)."""
    from elk.graphs.zoo import build_program
    from elk.workload import Workload
    from solvers.schedule.bounds import compute_bounds

    chip = dataclasses.replace(config, load_model="fluid").point(settings).resolved.chip
    workload = Workload.build(build_program(config.model, batch=BATCH, seq=SEQ, mode="decode"), chip, workers)
    report = compute_bounds(workload, settings.bound, settings.bound_time_limit)
    guided, guided_seconds = guided_latencies(workload, settings)
    return Reproven(tuple(FamilyBound(b.name, b.ms, b.status, b.seconds, tuple(b.load_models))
                          for b in report.bounds), report.seconds, tuple(report.warnings),
                    datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), guided,
                    guided_seconds)


def guided_latencies(workload, settings: Settings) -> tuple[dict[str, float], float]:
    """The ``lp-guided`` design's own schedule on a chip (``solvers.schedule.from_bound.bound_guided``, with the
    design's defaults), simulated under each load model; a load model under which it is not valid is left out.
    One MILP solve of the capped relaxation, at most ``GUIDED_SECONDS`` (its best integer point then: 2 s on
    OPT-30B's default chip, the limit on the mesh at 192 KiB), so every re-certification runs it."""
    from elk.simulator import simulate
    from elk.workload import Workload
    from solvers.schedule.from_bound import GuidedOptions, bound_guided
    started = time.perf_counter()
    options = GuidedOptions()
    try:
        sched = bound_guided(workload, ratio_cap=options.ratio_cap,
                             time_limit=min(GUIDED_SECONDS, settings.bound_time_limit), threads=options.workers)
    except RuntimeError:  # no integer point within the limit: no schedule to judge
        return {}, time.perf_counter() - started
    out: dict[str, float] = {}
    for load_model in ("fluid", "rigid"):
        chip = workload.chip.with_overrides(load_model=load_model) if load_model != "fluid" else workload.chip
        w = workload if chip is workload.chip else Workload.build(workload.program, chip)
        verdict = simulate(w, sched)
        if verdict.valid:
            out[load_model] = verdict.latency_ms
    return out, time.perf_counter() - started


class ReproveStore:
    """``OUT/rebound.json``: the bounds proven so far, per chip and bound setting; each written as it is proven."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.tag = f"{settings.bound}@{settings.bound_time_limit:g}s"
        self.data: dict[str, Any] = {}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                self.data = {}

    def _name(self, key: ChipKey) -> str:
        return f"{key.text()} | {self.tag}"

    def get(self, key: ChipKey) -> Reproven | None:
        d = self.data.get(self._name(key))
        return Reproven.from_json(d) if d else None

    def put(self, key: ChipKey, value: Reproven) -> None:
        self.data[self._name(key)] = value.to_json()
        write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def chips_in_order(frame, configs: Sequence[Config]) -> list[tuple[ChipKey, Config]]:
    """Each distinct chip once (with one of its configurations), the chips behind the largest stored gap of a best
    schedule first: a run stopped early has re-proven the bounds that matter most."""
    best = frame[frame["design"] == "best"]
    worst: dict[ChipKey, float] = {}
    by_config = {(c.model, c.topology, c.hbm_tbps, c.sram_kib, c.load_model): c for c in configs}
    for _, r in best.iterrows():
        c = by_config[config_of(r)]
        g = as_float(r.get("certified_gap_pct"))
        worst[ChipKey.of(c)] = max(worst.get(ChipKey.of(c), -math.inf), g if g == g else -math.inf)
    chips: dict[ChipKey, Config] = {}
    for c in configs:
        chips.setdefault(ChipKey.of(c), c)
    return sorted(chips.items(), key=lambda kv: -worst.get(kv[0], -math.inf))


def reprove_all(frame, configs: Sequence[Config], store: ReproveStore, settings: Settings,
                prove_missing: bool = True) -> dict[ChipKey, Reproven]:
    """The re-proven bounds of every chip (proving the ones not in the store unless ``prove_missing`` is off)."""
    out: dict[ChipKey, Reproven] = {}
    todo = chips_in_order(frame, configs)
    for k, (key, config) in enumerate(todo, 1):
        have = store.get(key)
        if have is None and prove_missing:
            have = prove(config, settings)
            store.put(key, have)
            fam = have.best("fluid")
            print(f"[{k}/{len(todo)}] {key.text()}: {fam.name if fam else '-'} {fam.ms if fam else math.nan:.4f} ms "
                  f"({have.seconds:.1f} s)" + (f"; warnings: {'; '.join(have.warnings)}" if have.warnings else ""),
                  flush=True)
        if have is not None:
            out[key] = have
    return out


# -- the re-certified table ----------------------------------------------------------------------------------------

def rebound_frame(frame, configs: Sequence[Config], reproven: Mapping[ChipKey, Reproven]):
    """gaps.csv with the re-proven bounds: bound columns and certified gaps new, the stored bound in the
    ``old_*`` columns, everything else as stored. Raises BoundAboveLatency where a bound exceeds a valid
    schedule's latency."""
    by_config = {(c.model, c.topology, c.hbm_tbps, c.sram_kib, c.load_model): c for c in configs}
    frame = frame.copy()
    if "old_bound_ms" not in frame:  # a table re-certified before keeps the committed run's bounds there
        frame["old_bound_ms"] = frame["bound_ms"]
        frame["old_bound_name"] = frame["bound_name"]
        frame["old_certified_gap_pct"] = frame["certified_gap_pct"]
    frame["bound_reproven"] = False
    frame = with_guided_rows(frame, configs, reproven)
    problems: list[str] = []
    for i, r in frame.iterrows():
        config = by_config[config_of(r)]
        have = reproven.get(ChipKey.of(config))
        best = have.best(config.load_model) if have is not None else None
        if best is None:
            continue
        holding = {f.name: f.ms for f in have.families if config.load_model in f.load_models}
        frame.at[i, "bound_ms"] = best.ms
        frame.at[i, "bound_name"] = best.name
        for f in BOUND_FAMILIES:
            frame.at[i, f"bound_{f.replace('-', '_')}_ms"] = holding.get(f, math.nan)
        frame.at[i, "bound_seconds"] = have.seconds
        frame.at[i, "bound_reproven"] = True

        def gap(ms: float) -> float:
            return 100.0 * (ms / best.ms - 1.0) if best.ms > 0 and ms == ms else math.nan

        ms = as_float(r["latency_ms"])
        relaxed = r["design"] in RELAXED or is_true(r.get("relaxed"))
        frame.at[i, "certified_gap_pct"] = math.nan if relaxed else gap(ms)
        frame.at[i, "best_heuristic_gap_pct"] = gap(as_float(r.get("best_heuristic_ms")))
        ideal = as_float(r.get("ideal_ms"))
        frame.at[i, "ideal_below_bound"] = bool(ideal == ideal and ideal < best.ms * (1 - 1e-9))
        if not relaxed and is_true(r.get("valid")) and ms == ms and ms < best.ms * (1 - BELOW_TOLERANCE):
            problems.append(f"{label(r)} {r['design']}: valid schedule of {ms:.6f} ms below the re-proven "
                            f"{best.name} bound of {best.ms:.6f} ms")
    if problems:
        raise BoundAboveLatency("; ".join(problems))
    columns = [*COLUMNS, *REBOUND_COLUMNS]
    return frame[[c for c in columns if c in frame] + [c for c in frame if c not in columns]]


def with_guided_rows(frame, configs: Sequence[Config], reproven: Mapping[ChipKey, Reproven]):
    """An ``lp-guided`` row per configuration whose chip's guided schedule is valid under its load model, and the
    ``best`` row moved to it where it is faster than every stored design. A configuration whose study ran the
    ``lp-guided`` design (a row with a warm start: never slower than it) keeps that row; the rows an earlier
    re-certification added (no warm start) are replaced."""
    import pandas as pd
    by_config = {(c.model, c.topology, c.hbm_tbps, c.sram_kib, c.load_model): c for c in configs}
    ran = frame[(frame["design"] == "lp-guided") & frame["warm_start"].notna()]
    ran_configs = {config_of(r) for _, r in ran.iterrows()}
    frame = frame[(frame["design"] != "lp-guided") | frame["warm_start"].notna()].reset_index(drop=True)
    added = []
    for i, r in frame[frame["design"] == "best"].iterrows():
        if r["latency_ms"] != r["latency_ms"] or config_of(r) in ran_configs:
            continue
        config = by_config[config_of(r)]
        have = reproven.get(ChipKey.of(config))
        ms = have.guided_ms.get(config.load_model) if have is not None else None
        if ms is None:
            continue
        heur = as_float(r.get("best_heuristic_ms"))
        row = {**r.to_dict(), "design": "lp-guided", "latency_ms": ms, "valid": True, "relaxed": False,
               "best_design": None, "warm_start": None, "design_seconds": have.guided_seconds,
               "solve_seconds": have.guided_seconds, "windows": None, "windows_improved": None,
               "proven_optimal_pct": None, "gain_over_best_heuristic_pct": 100.0 * (heur - ms) / heur}
        ideal = as_float(r.get("ideal_ms"))
        row["pct_of_ideal"] = 100.0 * ideal / ms if ideal == ideal else math.nan
        added.append(row)
        if ms < as_float(r["latency_ms"]) * (1 - 1e-9):
            frame.at[i, "latency_ms"] = ms
            frame.at[i, "best_design"] = "lp-guided"
            frame.at[i, "gain_over_best_heuristic_pct"] = row["gain_over_best_heuristic_pct"]
            frame.at[i, "pct_of_ideal"] = row["pct_of_ideal"]
    if not added:
        return frame
    frame = pd.concat([frame, pd.DataFrame(added)], ignore_index=True)
    order = {d: k for k, d in enumerate(DESIGN_ORDER)}
    frame["_config"] = frame[list(CONFIG)].astype(str).agg("|".join, axis=1)
    first = {c: k for k, c in enumerate(dict.fromkeys(frame["_config"]))}
    frame["_k"] = frame["_config"].map(first) * 100 + frame["design"].map(lambda d: order.get(d, 99))
    return frame.sort_values("_k", kind="stable").drop(columns=["_config", "_k"]).reset_index(drop=True)


def headline(best) -> dict[str, Any]:
    gap = best["certified_gap_pct"]
    return {"n": len(best), "closed": int((gap <= CLOSED_PCT).sum()), "near": int((gap <= NEAR_PCT).sum()),
            "mean": float(gap.mean()), "max": float(gap.max())}


def headline_text(h: Mapping[str, Any]) -> str:
    return (f"<= {CLOSED_PCT:g}% at {h['closed']} of {h['n']}, <= {NEAR_PCT:g}% at {h['near']} of {h['n']}, "
            f"mean {h['mean']:.2f}%, max {h['max']:.2f}%")


def comparison_lines(new) -> list[str]:
    """The md section saying what re-proving changed: per chip, per load model, and the headline before/after."""
    import pandas as pd
    best = best_rows(new)
    old = best.assign(certified_gap_pct=best["old_certified_gap_pct"])
    lines = ["## Re-proven bounds", ""]
    for lm in (None, "fluid", "rigid"):
        b, o = (best, old) if lm is None else (best[best["load_model"] == lm], old[old["load_model"] == lm])
        if len(b):
            lines.append(f"* {lm or 'all'}: before {headline_text(headline(o))}; after "
                         f"**{headline_text(headline(b))}**.")
    lines.append("")
    first = new.drop_duplicates(["model", "topology", "hbm_tbps", "sram_kib"])
    first = first[first["bound_reproven"].astype(bool)]
    change = 100.0 * (first["bound_ms"] / first["old_bound_ms"] - 1.0)
    moved = first[change.abs() > 100 * CHANGED]
    moved_change = change[change.abs() > 100 * CHANGED]
    up, down = int((change > 100 * CHANGED).sum()), int((change < -100 * CHANGED).sum())
    lines += [f"Best bound re-proven at {len(first)} chips (model x topology x HBM x SRAM; fluid and rigid share "
              f"it): raised at {up}, lowered at {down}, unchanged (within {CHANGED:g}) at {len(first) - up - down}"
              + (f"; among those that moved, change mean {moved_change.mean():+.2f}%, from "
                 f"{moved_change.min():+.2f}% to {moved_change.max():+.2f}%." if len(moved) else "."), ""]
    if len(moved):
        rows = []
        for _, r in moved.iterrows():
            gaps = best[(best["model"] == r["model"]) & (best["topology"] == r["topology"])
                        & (best["hbm_tbps"] == r["hbm_tbps"]) & (best["sram_kib"] == r["sram_kib"])]
            cell = {lm: g for lm, g in zip(gaps["load_model"], zip(gaps["old_certified_gap_pct"],
                                                                   gaps["certified_gap_pct"]))}
            rows.append({"chip": label({**r, "load_model": ""}).strip(), "old bound ms": r["old_bound_ms"],
                         "old binding": r["old_bound_name"], "new bound ms": r["bound_ms"],
                         "new binding": r["bound_name"], "change %": 100.0 * (r["bound_ms"] / r["old_bound_ms"] - 1),
                         **{f"{lm} best gap % (old -> new)": (f"{cell[lm][0]:.2f} -> {cell[lm][1]:.2f}"
                                                              if lm in cell else "n/a") for lm in ("fluid", "rigid")}})
        table = pd.DataFrame(rows).sort_values("change %", ascending=False)
        lines += ["Chips whose best bound moved:", "", md_table(table), ""]
    return lines


def original_command(md: Path) -> str:
    """The study's command as its gap_study.md states it (the first one in backquotes), if there is one."""
    if md.is_file():
        found = re.search(r"^`([^`]+)`$", md.read_text(encoding="utf-8"), flags=re.M)
        if found:
            return found.group(1)
    return "(unknown: no gap_study.md)"


def run(out: Path, settings: Settings, command: str, prove_missing: bool = True) -> int:
    """Re-certify the study in ``out`` (see the module docstring); 0 when written, 1 when a bound failed the
    check against the stored latencies, 2 when there is no study to re-certify."""
    started = time.perf_counter()
    try:
        frame = read_stored(out / "gaps.csv")
    except NoStoredStudy as exc:
        print(f"gap_study: error: {exc}", file=sys.stderr)
        return 2
    configs = stored_configs(frame)
    store = ReproveStore(out / "rebound.json", settings)
    print(f"{len(configs)} configurations in {out / 'gaps.csv'}; "
          + ("proving the bounds of their chips" if prove_missing else "using the bounds in rebound.json"),
          flush=True)
    reproven = reprove_all(frame, configs, store, settings, prove_missing)
    try:
        new = with_rigid_schedules(rebound_frame(frame, configs, reproven))
    except BoundAboveLatency as exc:
        print(f"gap_study: error: a re-proven bound exceeds a stored valid latency (a bug in a bound; nothing "
              f"written but {store.path}): {exc}", flush=True)
        return 1
    seconds = time.perf_counter() - started
    # what proving took, summed over the chips as stored (a --stored-only run proves nothing itself)
    proof_seconds = sum(r.seconds + r.guided_seconds for r in reproven.values())
    write_gaps(new, out, len(configs))
    n_chips = len({ChipKey.of(c) for c in configs})
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    done = int(new.drop_duplicates(list(CONFIG))["bound_reproven"].astype(bool).sum())
    preamble = [f"**Re-certified.** Latencies, designs and solver times are from the committed run of the command "
                f"above; the bounds were re-proven on {today} with the current code (`{command}`: {seconds:.0f} s; "
                f"the proofs took {proof_seconds:.0f} s summed, one computation per chip, {len(reproven)} of {n_chips} chips, shared by the fluid and rigid "
                f"configurations of a chip; no design was compiled again). "
                + (f"Re-proven at {done} of {len(configs)} configurations; the others keep the committed run's "
                   f"bound (`bound_reproven` in gaps.csv). " if done < len(configs) else "")
                + "gaps.csv keeps the committed run's bound and gap in `old_bound_ms`, `old_bound_name`, "
                "`old_certified_gap_pct`. The `lp-guided` rows are this re-certification's: the schedule read off "
                "the plan-choice relaxation of each chip (`solvers/schedule/from_bound.py`, the `lp-guided` "
                "design's own schedule, not started from a warm start), simulated under each load model and listed "
                "where valid; a configuration's best moves to it where it is faster.", ""]
    md = write_summary(new, out / "gap_study.md", command=original_command(out / "gap_study.md"),
                       settings=settings, configs=configs, seconds=seconds, preamble=preamble,
                       appendix=comparison_lines(new), run_seconds_label="This re-certification")
    print(f"wrote {md}")
    return 0


__all__ = ["BoundAboveLatency", "ChipKey", "Reproven", "ReproveStore", "prove", "rebound_frame", "run",
           "REBOUND_COLUMNS"]
