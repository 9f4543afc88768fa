"""Refresh one design's rows of a finished gap study: compile that design again with today's code.

A study takes hours (every design, every bound, 96 configurations); when one
heuristic changes (ELK-Full searching the loads' interconnect share limit under
rigid loads), its rows go stale while every other row, and every bound, still
holds. A heuristic's schedule depends on the program and the chip only, so it
can be compiled again on its own and judged by the simulator, without
re-running the point:

    python -m experiments.gap_study --refresh elk-full --load-models rigid --out OUT

reads ``OUT/gaps.csv``, compiles the design at every stored configuration of
those load models (the chip the study built, ``Config.point(...).resolved.chip``,
and the same program: B32 S2048 decode; serially, one configuration at a
time), and replaces its row: latency, validity, compile time, and the certified
gap against the row's stored bound (no bound is proven again). The
configuration's derived rows (``best``, the best heuristic, the gains over it)
are rebuilt from its stored rows by the study's own ``rows_for``, so the best
row is the fastest valid schedule of any design, exactly as in a fresh study.

Each result is written to ``OUT/refresh.json`` as soon as it is computed, so an
interrupted run resumes; an entry is reused only while the table still holds the
latency it replaced (delete the file to compile again after a code change).
``gaps.csv`` keeps the replaced latency in ``old_latency_ms`` and says which
rows were compiled again in ``refreshed``; ``gap_study.md`` gets a paragraph
saying what was refreshed, when and with what command (``refresh_note``, which
``write_summary`` calls, so a later ``--rebound`` keeps it).

An exact design (``periodic``, ``milp``) starts from the point's other
schedules: its refresh compiles it together with the heuristics, with the
study's solver settings, so its warm start is the fastest of today's heuristic
schedules (recorded in ``warm_start``), as in a fresh point. One difference:
the study ran the periodic design before the MILP windows, which could start
from it; ``--refresh periodic,milp`` compiles both in one compile per
configuration, in that order, so the windows may start from the periodic
schedule again. ``--refresh milp`` alone compiles the periodic design too, but
only where its stored row beat every heuristic (``warm_start_designs``), and
replaces only the windows' rows: the windows start where the study's did.
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

from elk.atomic import replacing, write_text
from elk.study.execute import finite_json as finite
from experiments.gap_rebound import BELOW_TOLERANCE
from experiments.gap_study import (BOUND_FAMILIES, COLUMNS, CONFIG, EXACT, HEURISTICS, LOAD_MODELS, RELAXED, Config,
                                   Settings, as_float, best_rows, is_true, label, rows_for,
                                   with_rigid_schedules, write_gaps, write_summary)

#: the designs a refresh may compile: the heuristics (their schedule depends on the program and the chip alone)
#: and the study's exact designs (compiled with the heuristics, which give their warm start)
REFRESHABLE = (*HEURISTICS, *EXACT)
#: columns a refreshed gaps.csv adds (after the study's and a re-certification's)
REFRESH_COLUMNS = ("old_latency_ms", "refreshed")
#: a configuration's best "moved" when its latency changed by more than this (relative), or its design did
MOVED = 1e-9
#: the record fields rows_for reads from a design row, and the gaps.csv column each one becomes
ROW_FIELDS = {"latency_ms": "latency_ms", "valid": "valid", "pct_of_ideal": "pct_of_ideal",
              "warm_start": "warm_start", "compile_seconds": "design_seconds", "solve_seconds": "solve_seconds",
              "windows": "windows", "windows_improved": "windows_improved",
              "proven_optimal_pct": "proven_optimal_pct"}
#: the paragraph's first words (the summary code finds and replaces it by them)
NOTE_START = "**Refreshed.**"


class RefreshInputError(Exception):
    """Bad input (an unknown or exact design, no stored study): said in one line, exit 2."""


class RefreshBelowBound(Exception):
    """A refreshed valid latency is below the row's proven bound: a bug somewhere, never written as a gap."""


@dataclass(frozen=True)
class Compiled:
    """What the simulator said of one design's schedule at one configuration (NaN latency when it failed)."""

    latency_ms: float
    valid: bool
    seconds: float
    error: str = ""
    #: an exact design's warm start (the design it started from) and its solvers' seconds
    warm_start: str = ""
    solve_seconds: float = math.nan


@dataclass(frozen=True)
class Entry:
    """One refreshed (design, configuration) in ``refresh.json``, with the row it replaced (``old_*``): an entry
    applies to a table only while the table still holds that latency."""

    design: str
    result: Compiled
    old_latency_ms: float
    old_valid: bool
    computed_at: str
    elk_version: str

    def to_json(self) -> dict[str, Any]:
        return finite(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Entry":
        r = d["result"]
        return cls(d["design"], Compiled(as_float(r["latency_ms"]), bool(r["valid"]), float(r["seconds"]),
                                         r.get("error") or "", r.get("warm_start") or "",
                                         as_float(r.get("solve_seconds"))),
                   as_float(d["old_latency_ms"]), bool(d["old_valid"]), d["computed_at"], d["elk_version"])


@dataclass(frozen=True)
class RunNote:
    """One finished refresh run, as the summary states it."""

    design: str
    load_models: tuple[str, ...]
    command: str
    date: str
    seconds: float
    configurations: int
    faster: int
    slower: int
    invalid: int
    best_moved: int
    #: the best schedule's certified gap over the refreshed load models, before and after (gap_rebound.headline)
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    #: results taken from refresh.json (computed by an earlier, interrupted run) rather than compiled by this one
    resumed: int = 0
    #: the designs refreshed with it, in the same compiles (an exact design may start from another's schedule)
    together: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.design} | {','.join(self.load_models)}"


class RefreshStore:
    """``OUT/refresh.json``: every refreshed (design, configuration) and the finished runs; rewritten atomically
    after each result, so nothing computed is lost to an interruption."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {"results": {}, "runs": {}}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.data = {"results": dict(loaded.get("results", {})), "runs": dict(loaded.get("runs", {}))}
            except (ValueError, AttributeError):
                pass

    @staticmethod
    def name(design: str, c: Config) -> str:
        return f"{design} | {c.model} {c.topology} {c.hbm_tbps:g} TB/s {c.sram_kib:g} KiB {c.load_model}"

    def get(self, design: str, c: Config) -> Entry | None:
        d = self.data["results"].get(self.name(design, c))
        return Entry.from_json(d) if d else None

    def put(self, c: Config, entry: Entry) -> None:
        self.data["results"][self.name(entry.design, c)] = entry.to_json()
        self._write()

    def runs(self) -> list[RunNote]:
        return [RunNote(**{**d, "load_models": tuple(d["load_models"]), "together": tuple(d.get("together", ()))})
                for d in self.data["runs"].values()]

    def put_run(self, note: RunNote) -> None:
        self.data["runs"][note.name] = finite(dataclasses.asdict(note))
        self._write()

    def _write(self) -> None:
        write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


# -- compiling -----------------------------------------------------------------------------------------------------

def compile_design(config: Config, design: str, settings: Settings | None = None) -> Compiled:
    """``design``'s schedule at ``config`` as the study's point compiles it (see :func:`compile_designs`)."""
    return compile_designs(config, (design,), settings)[design]


def compile_designs(config: Config, designs: Sequence[str], settings: Settings | None = None) -> dict[str, Compiled]:
    """``designs``' schedules at ``config`` as the study's point compiles them (the same chip, program and
    placement; exact designs with the study's solver settings, in the study's order, after every heuristic, the
    fastest schedule before each being its warm start), judged by the simulator; no bound (the rows keep their
    proven one). One compile, one process: the designs' searches run serially. ``settings``: the exact designs'
    solver settings (the command's ``--exact-time-limit``, ``--window``...; None: the study's defaults)."""
    from elk.driver.api import compile as compile_model
    from elk.driver.api import window_summary
    from elk.errors import ElkError
    point = config.point(settings or Settings())
    exact = [d for d in EXACT if d in designs]
    names = [*(HEURISTICS if exact else [d for d in HEURISTICS if d in designs]), *exact]
    started = time.perf_counter()
    try:
        result = compile_model(point.model, chip=point.resolved.chip, batch=point.batch, seq=point.seq,
                               mode=point.mode, designs=",".join(names),
                               design_options={d: point.resolved.design_options[d] for d in exact} or None,
                               bound=None, workers=1)
    except ElkError as exc:
        failed = Compiled(math.nan, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        return {d: failed for d in designs}
    out = {}
    for name in designs:
        d = result.designs[name]
        records = d.schedule.info.records
        out[name] = Compiled(float(d.sim.latency_ms) if d.sim.latency_ms is not None else math.nan,
                             bool(d.sim.valid), float(d.compile_seconds), warm_start=d.schedule.info.warm_start or "",
                             solve_seconds=float(window_summary(records)["solve_seconds"]) if records else math.nan)
    return out


# -- the table -----------------------------------------------------------------------------------------------------

def config_key(row: Mapping[str, Any]) -> tuple:
    return tuple(row[c] for c in CONFIG)


def record_of(block) -> dict[str, Any]:
    """The point record a configuration's stored rows came from (what ``rows_for`` reads; the inverse of it)."""
    first = block.iloc[0]

    def value(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and v != v) else v

    families = {f: as_float(first.get(f"bound_{f.replace('-', '_')}_ms")) for f in BOUND_FAMILIES}
    return {"key": value(first.get("key")), "status": value(first.get("status")), "error": value(first.get("error")),
            "point_seconds": value(first.get("point_seconds")), "bound_ms": value(first.get("bound_ms")),
            "bound_name": value(first.get("bound_name")), "bound_seconds": value(first.get("bound_seconds")),
            "bounds": [{"name": f, "ms": ms} for f, ms in families.items() if ms == ms],
            "rows": [{"design": r["design"], **{k: value(r.get(col)) for k, col in ROW_FIELDS.items()}}
                     for _, r in block.iterrows() if r["design"] != "best"]}


def rebuilt(config: Config, block, design: str, entry: Entry | None):
    """The configuration's rows rebuilt by ``rows_for`` from its stored rows, ``design``'s replaced by
    ``entry``'s result (as stored when None); the columns rows_for does not make are carried over by design."""
    import pandas as pd
    record = record_of(block)
    if entry is not None:
        ideal = as_float(next((r["latency_ms"] for r in record["rows"] if r["design"] in RELAXED), None))
        ms = entry.result.latency_ms
        new = {"design": design, "latency_ms": None if ms != ms else ms, "valid": entry.result.valid,
               "pct_of_ideal": 100.0 * ideal / ms if ideal == ideal and ms == ms and ms else None,
               "compile_seconds": entry.result.seconds, "warm_start": entry.result.warm_start or None,
               "solve_seconds": None if entry.result.solve_seconds != entry.result.solve_seconds
               else entry.result.solve_seconds}
        rows = [r for r in record["rows"] if r["design"] != design]
        record["rows"] = [*rows, new]
    frame = pd.DataFrame(rows_for(config, record))
    extra = [c for c in block.columns if c not in COLUMNS]
    stored = block.set_index("design")
    if "best" in stored.index:
        # the exact designs' solver time, as stored: a heuristic's refresh does not change it, and a
        # re-certification's lp-guided rows were never part of it
        frame.loc[frame["design"] == "best", "design_seconds"] = stored.at["best", "design_seconds"]
    for col in extra:
        frame[col] = [stored.at[d, col] if d in stored.index else None for d in frame["design"]]
    return frame


def refreshed_block(config: Config, block, design: str, entry: Entry):
    """``rebuilt`` with the refresh's own columns: ``design``'s row marked and its replaced latency kept; where a
    re-certification keeps the committed run's gap (``old_certified_gap_pct``), the rows whose latency changed
    get it against the committed run's bound (the best row only where it moved), so that column keeps measuring
    what re-proving changed."""
    frame = rebuilt(config, block, design, entry)
    if "refreshed" not in frame:
        frame["refreshed"] = False
    frame["refreshed"] = frame["refreshed"].map(is_true)
    if "old_latency_ms" not in frame:
        frame["old_latency_ms"] = math.nan
    mine = frame["design"] == design
    frame.loc[mine, "old_latency_ms"] = entry.old_latency_ms
    frame.loc[mine, "refreshed"] = True
    if "old_bound_ms" in frame:
        old = frame["old_bound_ms"].map(as_float)
        ms = frame["latency_ms"].map(as_float)
        stored_best = as_float(block.loc[block["design"] == "best", "latency_ms"].max())
        changed = mine | ((frame["design"] == "best") & ~ms.map(lambda v: same(v, stored_best)))
        frame.loc[changed, "old_certified_gap_pct"] = (100.0 * (ms / old - 1.0))[changed]
    return frame


def warm_start_designs(block, designs: Sequence[str]) -> tuple[str, ...]:
    """The exact designs to compile again, not refreshed, so that the refreshed ones start where the study's did.

    In a study point the MILP windows start from the fastest schedule before them, the periodic design's
    where it beat every heuristic. ``--refresh milp`` alone compiles the periodic design too at exactly those
    configurations (its stored row faster than every stored heuristic row), and keeps only the windows' result;
    elsewhere the periodic design returned its warm start, the fastest heuristic schedule, so the windows
    start from the same schedule without it."""
    if "milp" not in designs or "periodic" in designs:
        return ()
    valid = block[block["valid"].map(is_true)]
    periodic = valid[valid["design"] == "periodic"]["latency_ms"].astype(float)
    heuristics = valid[valid["design"].isin(HEURISTICS)]["latency_ms"].astype(float)
    if periodic.empty or heuristics.empty or not periodic.min() < heuristics.min() - 1e-9:
        return ()
    return ("periodic",)


def old_of(block, design: str) -> tuple[float, bool]:
    """The latency (and validity) a refresh of ``design`` replaces: the study's, also once it was refreshed."""
    rows = block[block["design"] == design]
    if rows.empty:
        return math.nan, False
    r = rows.iloc[0]
    if is_true(r.get("refreshed")) and "old_latency_ms" in r:
        ms = as_float(r["old_latency_ms"])
        return ms, ms == ms
    return as_float(r["latency_ms"]), is_true(r["valid"])


def same(a: float, b: float) -> bool:
    return (a != a and b != b) or a == b


def check_bounds(frame) -> None:
    """No refreshed valid latency below its row's bound (a bound, or the simulator, would be wrong)."""
    problems = []
    for _, r in frame[frame["refreshed"].map(is_true)].iterrows():
        ms, bound = as_float(r["latency_ms"]), as_float(r["bound_ms"])
        if is_true(r["valid"]) and ms == ms and bound == bound and ms < bound * (1 - BELOW_TOLERANCE):
            problems.append(f"{label(r)} {r['design']}: valid schedule of {ms:.6f} ms below the stored "
                            f"{r['bound_name']} bound of {bound:.6f} ms")
    if problems:
        raise RefreshBelowBound("; ".join(problems))


def ordered(frame):
    """The study's columns first, then a re-certification's, then the refresh's."""
    from experiments.gap_rebound import REBOUND_COLUMNS
    columns = [*COLUMNS, *REBOUND_COLUMNS, *REFRESH_COLUMNS]
    return frame[[c for c in columns if c in frame] + [c for c in frame if c not in columns]]


# -- the summary ---------------------------------------------------------------------------------------------------

def note_text(note: RunNote) -> str:
    from experiments.gap_rebound import headline_text
    lms = " and ".join(note.load_models)
    resumed = f", {note.resumed} of them compiled by an earlier run (refresh.json)" if note.resumed else ""
    compiled = ("one design per configuration" if not note.together else
                f"compiled with {', '.join(f'`{d}`' for d in note.together)} and after the heuristics")
    if note.design == "milp" and "periodic" not in note.together:
        compiled += (", the periodic design compiled again for the windows' warm start where its stored row beat "
                     "every heuristic")
    return (f"The `{note.design}` rows of the {note.configurations} {lms} configurations were compiled again on "
            f"{note.date} with the code of that day (`{note.command}`: {note.seconds:.0f} s{resumed}; {compiled}, "
            f"no bound proven again) and judged by the simulator: {note.faster} faster, "
            f"{note.slower} slower, {note.invalid} invalid. The best schedule moved at "
            f"**{note.best_moved} of {note.configurations}** of them (best's certified gap, {lms}: before "
            f"{headline_text(note.before)}; after {headline_text(note.after)}).")


def refresh_note(frame, out: Path) -> list[str]:
    """The summary's paragraph on refreshed rows (none when gaps.csv has none): each run in ``out/refresh.json``
    whose design has refreshed rows, or what the table alone says when that file is gone."""
    if "refreshed" not in frame:
        return []
    done = frame[frame["refreshed"].map(is_true)]
    if done.empty:
        return []
    runs = [n for n in RefreshStore(out / "refresh.json").runs() if n.design in set(done["design"])]
    said = " ".join(note_text(n) for n in runs) if runs else (
        f"{len(done)} row(s) ({', '.join(sorted(set(done['design'])))}) were compiled again after the study.")
    return [f"{NOTE_START} {said} gaps.csv marks those rows in `refreshed` and keeps the latency they replaced in "
            "`old_latency_ms`; the other designs' rows, and every bound, are as stored (the exact designs started "
            "from the study's schedules).", ""]


def stored_preamble(md: Path) -> list[str]:
    """The paragraphs a stored gap_study.md has between its settings line and the gap's definition (a
    re-certification's note), without an earlier refresh's (``refresh_note`` writes that again)."""
    if not md.is_file():
        return []
    lines = md.read_text(encoding="utf-8").splitlines()
    start = next((k for k, s in enumerate(lines) if re.match(r"^\d+ configurations \(", s)), None)
    end = next((k for k, s in enumerate(lines) if s.startswith("Certified gap = latency")), None)
    if start is None or end is None or end <= start:
        return []
    body = [s for s in lines[start + 1:end] if not s.startswith(NOTE_START)]
    while body and not body[0].strip():
        body.pop(0)
    return body


# -- the run -------------------------------------------------------------------------------------------------------

def check_design(design: str) -> None:
    if design not in REFRESHABLE:
        raise RefreshInputError(f"--refresh takes one of the study's designs ({', '.join(REFRESHABLE)}), not "
                                f"{design!r}")


def check_load_models(load_models: Sequence[str]) -> tuple[str, ...]:
    bad = [m for m in load_models if m not in LOAD_MODELS]
    if bad or not load_models:
        raise RefreshInputError(f"--load-models takes a comma list of {', '.join(LOAD_MODELS)}, got "
                                f"{','.join(load_models) or 'nothing'}")
    return tuple(m for m in LOAD_MODELS if m in load_models)


def read_study(out: Path):
    from experiments.gap_rebound import NoStoredStudy, read_stored
    if not (out / "gaps.csv").is_file():
        raise RefreshInputError(f"--refresh needs a finished study's {out / 'gaps.csv'}; none there")
    try:
        return read_stored(out / "gaps.csv")
    except NoStoredStudy as exc:
        raise RefreshInputError(str(exc)) from None


def refresh_frame(frame, designs: Sequence[str], load_models: Sequence[str], store: RefreshStore,
                  models: Sequence[str] | None = None, settings: Settings | None = None) -> tuple[Any, dict[tuple, tuple[Any, Any]], int]:
    """gaps.csv with ``designs`` compiled again (one compile per configuration, ``compile_designs``) at every
    configuration of ``load_models`` (and ``models``, None: every model) that compiled (each result stored as
    it comes; stored results reused), per refreshed configuration its best row before and after, and how many
    configurations came from the store."""
    import pandas as pd

    import elk
    from experiments.gap_rebound import stored_configs
    configs = {(c.model, c.topology, c.hbm_tbps, c.sram_kib, c.load_model): c for c in stored_configs(frame)}
    positions: dict[tuple, list[int]] = {}
    for k, (_, r) in enumerate(frame.iterrows()):
        positions.setdefault(config_key(r), []).append(k)
    blocks, bests, resumed = [], {}, 0
    todo = [key for key, at in positions.items() if configs[key].load_model in load_models
            and (models is None or configs[key].model in models) and (frame.iloc[at]["status"] == "ok").any()]
    for key, at in positions.items():
        block = frame.iloc[at]
        config = configs[key]
        if key not in todo:
            blocks.append(block)
            continue
        done = todo.index(key) + 1
        old = {d: old_of(block, d) for d in designs}
        entries = {d: store.get(d, config) for d in designs}
        if all(e is not None and same(e.old_latency_ms, old[d][0]) for d, e in entries.items()):
            how = "stored"  # still the rows they replaced: reuse them
            resumed += 1
        else:
            helpers = warm_start_designs(block, designs)
            if helpers:
                results = compile_designs(config, (*helpers, *designs), settings)
            else:
                results = ({designs[0]: compile_design(config, designs[0], settings)} if len(designs) == 1
                           else compile_designs(config, designs, settings))
            when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for d in designs:
                entries[d] = Entry(d, results[d], old[d][0], old[d][1], when, elk.__version__)
                store.put(config, entries[d])
            how = f"{sum(r.seconds for r in results.values()):.1f} s" + (
                f", with {', '.join(helpers)} for its warm start" if helpers else "")
        before, after = block, block
        for d in designs:
            new = entries[d].result
            print(f"[{done}/{len(todo)}] {label(block.iloc[0])} {d}: {old[d][0]:.4f} -> {new.latency_ms:.4f} ms"
                  + ("" if new.valid else " (INVALID" + (f": {new.error}" if new.error else "") + ")")
                  + f" ({how})", flush=True)
            before = rebuilt(config, before, d, Entry(d, Compiled(old[d][0], old[d][1], math.nan), old[d][0],
                                                      old[d][1], "", ""))
            after = refreshed_block(config, after, d, entries[d])
        blocks.append(after)
        bests[key] = (before[before["design"] == "best"].iloc[0], after[after["design"] == "best"].iloc[0])
    out = pd.concat(blocks, ignore_index=True)
    out["refreshed"] = out["refreshed"].map(is_true) if "refreshed" in out else False
    if "old_latency_ms" not in out:
        out["old_latency_ms"] = math.nan
    return ordered(out), bests, resumed


def note_of(frame, bests: Mapping[tuple, tuple[Any, Any]], design: str, load_models: Sequence[str], command: str,
            seconds: float, resumed: int = 0, together: tuple[str, ...] = ()) -> RunNote:
    import pandas as pd
    from experiments.gap_rebound import headline
    mine = frame[(frame["design"] == design) & frame["refreshed"].map(is_true)
                 & frame["load_model"].isin(list(load_models))]
    new, old = mine["latency_ms"].map(as_float), mine["old_latency_ms"].map(as_float)
    valid = mine["valid"].map(is_true)
    moved = sum(1 for b, a in bests.values()
                if b.get("best_design") != a.get("best_design")
                or not abs(as_float(a["latency_ms"]) - as_float(b["latency_ms"]))
                <= MOVED * abs(as_float(b["latency_ms"])))
    before = pd.DataFrame([b for b, _ in bests.values()])
    after = best_rows(pd.DataFrame([a for _, a in bests.values()]))
    return RunNote(design=design, load_models=tuple(load_models), command=command,
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), seconds=seconds,
                   configurations=len(bests), faster=int((valid & (new < old * (1 - MOVED))).sum()),
                   slower=int((valid & (new > old * (1 + MOVED))).sum()), invalid=int((~valid).sum()),
                   best_moved=moved, before=headline(best_rows(before)), after=headline(after), resumed=resumed,
                   together=together)


def run(out: Path, design: str, load_models: Sequence[str], settings: Settings, command: str,
        models: Sequence[str] | None = None) -> int:
    """Refresh ``design``'s rows of the study in ``out`` (see the module docstring): 0 when written, 1 when a
    refreshed latency fell below its bound (nothing written but refresh.json), 2 on bad input."""
    from experiments.gap_rebound import comparison_lines, original_command, stored_configs
    started = time.perf_counter()
    designs = tuple(dict.fromkeys(d.strip() for d in design.split(",") if d.strip()))
    try:
        for d in designs or ("",):
            check_design(d)
        lms = check_load_models(load_models)
        frame = read_study(out)
        if not frame["load_model"].isin(list(lms)).any():
            raise RefreshInputError(f"{out / 'gaps.csv'} has no {' or '.join(lms)} configuration")
    except RefreshInputError as exc:
        print(f"gap_study: error: {exc}", file=sys.stderr)
        return 2
    store = RefreshStore(out / "refresh.json")
    print(f"refreshing {', '.join(designs)} at the {' and '.join(lms)} configurations of {out / 'gaps.csv'} (one "
          f"at a time; results kept in {store.path})", flush=True)
    new, bests, resumed = refresh_frame(frame, designs, lms, store, models, settings)
    new = with_rigid_schedules(new)
    try:
        check_bounds(new)
    except RefreshBelowBound as exc:
        print(f"gap_study: error: a refreshed valid latency is below its proven bound (nothing written but "
              f"{store.path}): {exc}", flush=True)
        return 1
    seconds = time.perf_counter() - started
    for d in designs:
        store.put_run(note_of(new, bests, d, lms, command, seconds, resumed,
                              together=tuple(x for x in designs if x != d)))
    configs = stored_configs(new)
    md = out / "gap_study.md"
    preamble, study_command = stored_preamble(md), original_command(md)
    write_gaps(new, out, len(configs))
    with replacing(md) as tmp:
        write_summary(new, tmp, command=study_command, settings=settings, configs=configs, seconds=seconds,
                      preamble=preamble, appendix=comparison_lines(new) if "old_bound_ms" in new else (),
                      run_seconds_label="This refresh")
    print(f"wrote {md}")
    return 0


__all__ = ["Compiled", "Entry", "REFRESHABLE", "REFRESH_COLUMNS", "RefreshStore", "RunNote", "compile_design",
           "compile_designs",
           "refresh_frame", "refresh_note", "run"]
