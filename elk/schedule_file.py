"""Schedule files: one design's schedule stored as JSON, to restart an exact design from it later.

``elk compile --save-schedule [DESIGN=]PATH`` writes one; ``--warm-start PATH``
reads it back. A file is only as good as the program, chip and load model it
was made for, so it carries what it depends on and a read refuses a file that
does not belong here (one :class:`ScheduleFileError` line naming why):

- ``format`` / ``version``: ``"elk-schedule"``, 1;
- ``model`` and ``program_key``: the program's name and a hash of its operators'
  names and signatures (another batch, sequence or mode is another program);
- ``plan_key`` (repr of ``Chip.plan_key()``) and ``cost_model_version``: what
  plan-table rows mean: ``entry[i]`` is a row of operator i's table, and on
  another plan key or cost model it would name another plan;
- ``load_model``: the rule the schedule was built and checked under;
- ``chip`` (``Chip.to_dict()``) and ``latency_ms``, for the reader;
- ``entry``, ``exec_start``, ``exec_end``, ``load_start``, ``load_end``: one
  value per operator (times in chip cycles, as in :class:`elk.schedule.Schedule`).

Chip fields outside the plan key (HBM bandwidth, the clock) are not compared:
the simulator decides whether the schedule still holds on this chip, and a
read ends with it (a schedule it rejects is refused, naming the rule). Writes
are atomic: a temporary file in the same folder, then ``os.replace``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from elk.atomic import write_text
from elk.chip import Chip
from elk.errors import ElkError
from elk.jsonsafe import loads_json
from elk.ir import Program
from elk.schedule import Provenance, Schedule
from elk.simulator import SimResult, simulate
from elk.tablecache import COST_MODEL_VERSION
from elk.workload import Workload

FORMAT = "elk-schedule"
VERSION = 1
ARRAYS = ("entry", "exec_start", "exec_end", "load_start", "load_end")
#: only in files of programs that write to HBM (docs/design.md §5.2)
STORE_ARRAYS = ("store_start", "store_end")
#: a schedule file is a few numbers per operator: anything far larger is not one
MAX_BYTES = 256 * 1024 * 1024


class ScheduleFileError(ElkError):
    """A schedule file that cannot be read, or that belongs to another program, chip or load model."""


def program_key(program: Program) -> str:
    """A hash of the program's operators (names and plan-table signatures, in order)."""
    text = repr([(op.name, op.signature) for op in program.ops])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_label(path: str | os.PathLike) -> str:
    """The name a schedule read from ``path`` goes by (its ``design``; exact designs report it as their warm start)."""
    return f"file:{path}"


def write_schedule(path: str | os.PathLike, workload: Workload, schedule: Schedule,
                   sim: SimResult | None = None) -> Path:
    """Write ``schedule`` (a strict, valid schedule of ``workload``) to ``path`` atomically; returns the path."""
    sim = sim if sim is not None else simulate(workload, schedule)
    if not schedule.relaxation.strict:
        raise ScheduleFileError(f"{schedule.design} is a relaxed schedule ({schedule.relaxation.describe()}): "
                                f"only schedules valid under every rule can be saved")
    if not sim.valid:
        raise ScheduleFileError(f"{schedule.design} is not valid, not saved: "
                                f"{sim.violations[0].message(workload.chip.clock_hz)}")
    chip = workload.chip
    # operators that load nothing: their load times mean nothing; store them as their start (always finite)
    idle = ~workload.has_load
    load_start = np.where(idle, schedule.exec_start, schedule.load_start)
    load_end = np.where(idle, schedule.exec_start, schedule.load_end)
    doc = {"format": FORMAT, "version": VERSION, "design": schedule.design, "model": workload.program.name,
           "program_key": program_key(workload.program), "operators": len(workload),
           "chip": _plain(chip.to_dict()), "plan_key": repr(chip.plan_key()),
           "cost_model_version": COST_MODEL_VERSION, "load_model": chip.load_model.value,
           "latency_ms": float(sim.latency_ms),
           "entry": [int(x) for x in schedule.entry],
           "exec_start": [float(x) for x in schedule.exec_start], "exec_end": [float(x) for x in schedule.exec_end],
           "load_start": [float(x) for x in load_start], "load_end": [float(x) for x in load_end]}
    if workload.has_store.any():  # a program that writes to HBM: its store intervals (docs/design.md §5.2)
        doc["store_start"] = [float(x) for x in schedule.store_start]
        doc["store_end"] = [float(x) for x in schedule.store_end]
    text = json.dumps(doc, allow_nan=False)
    target = Path(path)
    try:
        write_text(target, text)
    except OSError as exc:
        raise ScheduleFileError(f"cannot write schedule file {target}: {exc.strerror or exc}") from None
    return target


def read_document(path: str | os.PathLike) -> dict[str, Any]:
    """The file's JSON, checked to be an elk schedule file of this version with fields of the right types."""
    p = Path(path)
    where = f"schedule file {p}"
    try:
        if not p.is_file():
            raise ScheduleFileError(f"{where}: not found" if not p.exists() else f"{where}: not a file")
        if p.stat().st_size > MAX_BYTES:
            raise ScheduleFileError(f"{where}: {p.stat().st_size:,} bytes is too large for a schedule file")
        raw = p.read_bytes()
    except OSError as exc:
        raise ScheduleFileError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScheduleFileError(f"{where}: not a text file (binary data)") from None
    if "\x00" in text:
        raise ScheduleFileError(f"{where}: not a text file (binary data)")

    def no_constants(name: str):
        raise ScheduleFileError(f"{where}: {name} is not a number a schedule may hold")

    try:
        doc = loads_json(text, ScheduleFileError, where, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise ScheduleFileError(f"{where}: malformed or truncated JSON ({exc})") from None
    except RecursionError:
        raise ScheduleFileError(f"{where}: malformed JSON (nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ScheduleFileError(f"{where}: not an elk schedule file (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        raise ScheduleFileError(f"{where}: version {doc.get('version')!r}; this elk reads version {VERSION}")
    for name, kind in (("design", str), ("model", str), ("program_key", str), ("plan_key", str),
                       ("load_model", str), ("cost_model_version", int)):
        if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool):
            raise ScheduleFileError(f"{where}: field '{name}' is missing or not a {kind.__name__}")
    for name in ARRAYS:
        if not isinstance(doc.get(name), list):
            raise ScheduleFileError(f"{where}: field '{name}' is missing or not a list")
    return doc


def check_document(doc: dict[str, Any], path: str | os.PathLike, program: Program, chip: Chip) -> None:
    """Refuse a file written for another program, plan key, cost model or load model (cheap: no plan tables)."""
    where = f"schedule file {path}"
    if doc["model"] != program.name:
        raise ScheduleFileError(f"{where} is for model '{doc['model']}', not '{program.name}'")
    if doc["program_key"] != program_key(program):
        raise ScheduleFileError(f"{where} is for another build of '{program.name}' (other operators: "
                                f"another batch, sequence or mode?)")
    if doc["cost_model_version"] != COST_MODEL_VERSION:
        raise ScheduleFileError(f"{where} was written with cost model version {doc['cost_model_version']} "
                                f"(this elk has {COST_MODEL_VERSION}): its plan rows mean other plans")
    if doc["plan_key"] != repr(chip.plan_key()):
        theirs = doc.get("chip", {}).get("name", "?") if isinstance(doc.get("chip"), dict) else "?"
        raise ScheduleFileError(f"{where} is for another chip ('{theirs}': cores, SRAM, interconnect or compute "
                                f"differ from '{chip.name}'): its plan rows would mean other plans")
    if doc["load_model"] != chip.load_model.value:
        raise ScheduleFileError(f"{where} is for {doc['load_model']} loads, the chip has "
                                f"{chip.load_model.value} loads (--load-model {doc['load_model']} to use it)")


def check_schedule_file(path: str | os.PathLike, program: Program, chip: Chip) -> dict[str, Any]:
    """``read_document`` and ``check_document``: every refusal that needs no plan table. Returns the document."""
    doc = read_document(path)
    check_document(doc, path, program, chip)
    return doc


def schedule_from_document(doc: dict[str, Any], path: str | os.PathLike, workload: Workload) -> Schedule:
    """The document's schedule, refused if its arrays do not fit ``workload`` or the simulator rejects it."""
    where = f"schedule file {path}"
    n = len(workload)
    for name in ARRAYS:
        if len(doc[name]) != n:
            raise ScheduleFileError(f"{where}: '{name}' has {len(doc[name])} values for {n} operators")
    entry = doc["entry"]
    sizes = [len(t) for t in workload.tables]
    for i, (row, size) in enumerate(zip(entry, sizes)):
        if isinstance(row, bool) or not isinstance(row, int):
            raise ScheduleFileError(f"{where}: entry[{i}] is {row!r}, not a plan-table row number")
        if not 0 <= row < size:
            raise ScheduleFileError(f"{where}: entry[{i}] = {row} is out of range: operator {i} "
                                    f"({workload.program.ops[i].name}) has {size} plan-table rows")
    stored = STORE_ARRAYS if workload.has_store.any() else ()
    for name in stored:
        if not isinstance(doc.get(name), list) or len(doc[name]) != n:
            raise ScheduleFileError(f"{where}: the program writes to HBM, so '{name}' must list {n} times")
    times = {}
    for name in ARRAYS[1:] + stored:
        for i, t in enumerate(doc[name]):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
                raise ScheduleFileError(f"{where}: {name}[{i}] is {t!r}, not a finite time")
        times[name] = np.asarray(doc[name], dtype=np.float64)
    schedule = Schedule(file_label(path), np.asarray(entry, dtype=np.int64), times["exec_start"], times["exec_end"],
                        times["load_start"], times["load_end"], info=Provenance(),
                        store_start=times.get("store_start"), store_end=times.get("store_end"))
    verdict = simulate(workload, schedule, max_violations=1)
    if not verdict.valid:
        raise ScheduleFileError(f"{where} fails the simulator on this program and chip: "
                                f"{verdict.violations[0].message(workload.chip.clock_hz)}")
    return schedule


def read_schedule(path: str | os.PathLike, workload: Workload) -> Schedule:
    """The schedule stored at ``path``, checked against ``workload`` (see the module docstring).

    Its ``design`` is ``file:PATH``; an exact design started from it reports that as its warm start.
    """
    doc = check_schedule_file(path, workload.program, workload.chip)
    return schedule_from_document(doc, path, workload)


def translate(schedule: Schedule, source: Workload, target: Workload) -> Schedule | None:
    """``schedule`` (built on ``source``) as a schedule of ``target``: same program, other chip knobs.

    Plan-table rows are matched by the plans they name (spatial plan, hot and
    cold temporal splits): tables built for more SRAM hold every plan of a
    smaller SRAM's table (a Pareto-optimal plan stays so when larger ones are
    added), and tables do not depend on HBM bandwidth at all. None if the
    programs differ or a row has no counterpart. Times are kept; whether the
    schedule holds on ``target`` is the simulator's to say.
    """
    if program_key(source.program) != program_key(target.program):
        return None
    if source.chip.plan_key() == target.chip.plan_key():
        rows = schedule.entry.copy()
    else:
        rows = np.empty(len(schedule.entry), dtype=np.int64)
        index: dict[int, dict] = {}
        for i, (ts, tt) in enumerate(zip(source.tables, target.tables)):
            if id(tt) not in index:
                index[id(tt)] = {_plan_id(tt, r): r for r in range(len(tt))}
            row = index[id(tt)].get(_plan_id(ts, int(schedule.entry[i])))
            if row is None:
                return None
            rows[i] = row
    return Schedule(schedule.design, rows, schedule.exec_start.copy(), schedule.exec_end.copy(),
                    schedule.load_start.copy(), schedule.load_end.copy(), schedule.relaxation, schedule.info.copy(),
                    schedule.store_start.copy(), schedule.store_end.copy())


def _plan_id(table, row: int) -> tuple:
    return (tuple(np.asarray(table.spatial[row]).ravel().tolist()),
            tuple(np.asarray(table.hot_temporal[row]).ravel().tolist()),
            tuple(np.asarray(table.cold_temporal[row]).ravel().tolist()))


def _plain(value: Any) -> Any:
    """JSON-safe chip dict (enums and nested dataclass dicts as plain values)."""
    return json.loads(json.dumps(value, default=str))


__all__ = ["ScheduleFileError", "write_schedule", "read_schedule", "check_schedule_file", "read_document",
           "check_document", "schedule_from_document", "program_key", "file_label", "translate", "FORMAT",
           "VERSION"]
