"""Export a simulated schedule as a Chrome trace-event file (Perfetto, chrome://tracing).

The simulator already reduces a schedule to arrays (:class:`elk.simulator.Timeline`);
this module only turns them into the trace-event JSON those viewers open, so
a schedule can be inspected interactively: executions and HBM loads as two
threads of slices, SRAM occupancy and interconnect share as counters.

Times in elk are chip cycles; the format wants microseconds, so every time is
scaled by the chip clock. Event lists are built from numpy arrays and turned
into dicts by one comprehension each, so whole models (tens of thousands of
operators) export in well under a second.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from elk.schedule import Schedule
from elk.simulator import SimResult, Timeline
from elk.workload import Workload

PID = 1
TID_EXEC = 1
TID_LOAD = 2
TID_STORE = 3
#: Timestamps are rounded to a picosecond (in microseconds) to keep files compact.
_DECIMALS = 6


def collapse_steps(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last value of each run of equal times.

    The simulator's SRAM profile lists every release and acquisition, several
    at one instant; only the level after all of them is what the chip holds.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values)
    if len(times) == 0:
        return times, values
    last = np.append(times[1:] != times[:-1], True)
    return times[last], values[last]


def active_value(times: np.ndarray, start: np.ndarray, end: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Value of the interval ``[start, end)`` covering each time, 0 where none does.

    Intervals must be sorted by start and (in a valid schedule) disjoint, which
    is what lets one ``searchsorted`` replace an interval tree.
    """
    if len(start) == 0:
        return np.zeros(len(times))
    k = np.searchsorted(start, times, side="right") - 1
    kk = np.maximum(k, 0)
    return np.where((k >= 0) & (times < end[kk]), value[kk], 0.0)


def has_timeline(workload: Workload, result: SimResult) -> bool:
    """False when the simulator rejected the schedule's shape and left the timeline empty."""
    return len(result.timeline.exec_start) == len(workload) > 0


def _us(cycles: np.ndarray, us_per_cycle: float) -> np.ndarray:
    return np.round(np.asarray(cycles, dtype=np.float64) * us_per_cycle, _DECIMALS)


def _display_ends(start: np.ndarray, end: np.ndarray, clip: bool) -> np.ndarray:
    """Slice ends for display, optionally clipped to the next slice's start.

    Viewers drop or mis-nest slices that overlap on one thread. A valid
    schedule may still overlap by the simulator's rounding tolerance, so for
    valid schedules the end is clipped; an invalid one is shown as it is.
    """
    if not clip or len(start) < 2:
        return end
    return np.append(np.minimum(end[:-1], np.maximum(start[1:], start[:-1])), end[-1])


def _json_numbers(values: Iterable[float]) -> list[float | None]:
    """Floats with non-finite values as ``None`` (strict JSON has no inf/nan)."""
    return [v if math.isfinite(v) else None for v in values]


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _metadata_events(design: str, stores: bool) -> list[dict[str, Any]]:
    """Process and thread names (and their order) the viewers show as track labels."""
    def meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}

    tracks = [meta("thread_name", TID_STORE, {"name": "HBM stores"}),
              meta("thread_sort_index", TID_STORE, {"sort_index": 2})] if stores else []
    return [meta("process_name", 0, {"name": f"elk {design}"}),
            meta("process_sort_index", 0, {"sort_index": 0}),
            meta("thread_name", TID_EXEC, {"name": "execution"}),
            meta("thread_sort_index", TID_EXEC, {"sort_index": 0}),
            meta("thread_name", TID_LOAD, {"name": "HBM loads"}),
            meta("thread_sort_index", TID_LOAD, {"sort_index": 1})] + tracks


def _execution_events(workload: Workload, schedule: Schedule, tl: Timeline, us_per_cycle: float,
                      clip: bool) -> list[dict[str, Any]]:
    """One complete slice per operator, with its chosen plan's numbers as args."""
    ops = workload.program.ops
    chosen = workload.chosen(schedule.entry)
    start, end = tl.exec_start, _display_ends(tl.exec_start, tl.exec_end, clip)
    ts = _us(start, us_per_cycle)
    dur = np.round(np.maximum(_us(end, us_per_cycle) - ts, 0.0), _DECIMALS)
    rows = zip(range(len(ops)), ts.tolist(), dur.tolist(), (tl.exec_end - tl.exec_start).tolist(),
               chosen["time"].tolist(), chosen["comm"].tolist(), chosen["cold"].astype(np.int64).tolist(),
               chosen["hot"].astype(np.int64).tolist(), np.round(tl.busy, _DECIMALS).tolist(),
               schedule.entry.tolist())
    return [{"name": ops[i].name, "cat": "execution", "ph": "X", "pid": PID, "tid": TID_EXEC,
             "ts": t, "dur": d,
             "args": {"index": i, "kind": ops[i].kind.value, "role": ops[i].role, "plan_row": row,
                      "duration_cycles": run, "plan_time_cycles": plan, "comm_cycles": comm,
                      "cold_bytes": cold, "hot_bytes": hot, "busy": busy}}
            for i, t, d, run, plan, comm, cold, hot, busy, row in rows]


def _transfer_events(workload: Workload, ops_of: np.ndarray, start: np.ndarray, end: np.ndarray,
                     share: np.ndarray, store: bool, us_per_cycle: float, clip: bool) -> list[dict[str, Any]]:
    """One complete slice per HBM load (``store`` False) or store (docs/design.md §5.2), in channel order, each
    kind on its own track."""
    ops = workload.program.ops
    idx = ops_of.astype(np.int64)
    nbytes = workload.store_bytes if store else workload.load_bytes
    cycles = workload.store_hbm_cycles if store else workload.hbm_cycles
    kind, tid = ("store", TID_STORE) if store else ("load", TID_LOAD)
    ts = _us(start, us_per_cycle)
    dur = np.round(np.maximum(_us(_display_ends(start, end, clip), us_per_cycle) - ts, 0.0), _DECIMALS)
    rows = zip(idx.tolist(), ts.tolist(), dur.tolist(), nbytes[idx].astype(np.int64).tolist(), cycles[idx].tolist(),
               _json_numbers(np.round(share, _DECIMALS).tolist()))
    return [{"name": f"{kind} {ops[i].name}", "cat": "hbm", "ph": "X", "pid": PID, "tid": tid,
             "ts": t, "dur": d,
             "args": {"op": ops[i].name, "index": i, "bytes": b, "hbm_cycles": hbm, "interconnect_share": sh}}
            for i, t, d, b, hbm, sh in rows]


def _sram_counter(tl: Timeline, us_per_cycle: float) -> list[dict[str, Any]]:
    """Per-core SRAM in use, one counter sample per distinct instant."""
    times, level = collapse_steps(tl.sram_time, tl.sram_bytes)
    rows = zip(_us(times, us_per_cycle).tolist(), np.asarray(level).astype(np.int64).tolist())
    return [{"name": "SRAM bytes/core", "ph": "C", "pid": PID, "ts": t, "args": {"bytes": v}}
            for t, v in rows]


def _noc_counter(workload: Workload, schedule: Schedule, tl: Timeline,
                 us_per_cycle: float) -> list[dict[str, Any]]:
    """The interconnect share series (:func:`noc_share_series`) as counter events."""
    times, load, run = noc_share_series(workload, schedule, tl)
    rows = zip(_us(times, us_per_cycle).tolist(), np.round(load, _DECIMALS).tolist(),
               np.round(run, _DECIMALS).tolist())
    return [{"name": "interconnect share", "ph": "C", "pid": PID, "ts": t,
             "args": {"loads": a, "execution": b}} for t, a, b in rows]


def noc_share_series(workload: Workload, schedule: Schedule,
                     tl: Timeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times in cycles, load share, execution share): the interconnect share of the active load and of the
    running operator's communication, each valid from its time to the next (the trace counter, the PNG lane).

    Both are piecewise constant and change only at load and execution
    boundaries, so sampling at those instants is exact. The execution series
    is the run's *average* (comm / duration): the simulator only requires the
    communication to fit in the capacity loads leave over the whole run, so the
    two series may sum above 1 at an instant in a valid schedule.
    """
    starts = np.concatenate([tl.load_start, tl.store_start])
    ends = np.concatenate([tl.load_end, tl.store_end])
    order = np.argsort(starts, kind="stable")  # loads and stores share the channel: one at a time
    times = np.unique(np.concatenate([starts, ends, tl.exec_start, tl.exec_end]))
    share = np.concatenate([tl.load_share, tl.store_share])[order]
    share = np.where(np.isfinite(share), share, 0.0)
    load = active_value(times, starts[order], ends[order], share)
    dur = tl.exec_end - tl.exec_start
    comm = workload.chosen(schedule.entry)["comm"]
    exec_share = np.where(dur > 0, comm / np.where(dur > 0, dur, 1.0), 0.0)
    run = active_value(times, tl.exec_start, tl.exec_end, exec_share)
    return times, load, run


def _other_data(workload: Workload, schedule: Schedule, result: SimResult) -> dict[str, Any]:
    """Run facts a viewer shows as metadata, so a trace file explains itself."""
    chip = workload.chip
    return {"model": workload.program.name, "chip": chip.describe(), "design": result.design,
            "latency_ms": _json_number(float(result.latency_ms)), "valid": bool(result.valid),
            "relaxation": result.relaxation.describe(), "clock_hz": chip.clock_hz, "operators": len(workload),
            "loads": int(len(result.timeline.load_ops)), "stores": int(len(result.timeline.store_ops)),
            "peak_sram_bytes": int(result.peak_sram_bytes),
            "sram_per_core": chip.sram_per_core, "time_unit": "microseconds (converted from cycles)",
            "violations": [v.message(chip.clock_hz) for v in result.violations[:10]]}


def chrome_trace(workload: Workload, schedule: Schedule, result: SimResult) -> dict[str, Any]:
    """The simulated schedule as a Chrome trace-event document (a JSON-ready dict)."""
    tl = result.timeline
    us_per_cycle = 1e6 / workload.chip.clock_hz
    events = _metadata_events(result.design, bool(workload.has_store.any()))
    if has_timeline(workload, result):
        clip = bool(result.valid)
        events += _execution_events(workload, schedule, tl, us_per_cycle, clip)
        events += _transfer_events(workload, tl.load_ops, tl.load_start, tl.load_end, tl.load_share, False,
                                   us_per_cycle, clip)
        events += _transfer_events(workload, tl.store_ops, tl.store_start, tl.store_end, tl.store_share, True,
                                   us_per_cycle, clip)
        events += _sram_counter(tl, us_per_cycle)
        events += _noc_counter(workload, schedule, tl, us_per_cycle)
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": _other_data(workload, schedule, result)}


def write_chrome_trace(path: str | Path, workload: Workload, schedule: Schedule, result: SimResult) -> Path:
    """Write :func:`chrome_trace` to ``path`` (strict JSON, compact) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one dumps + write is several times faster than json.dump's many small writes
    text = json.dumps(chrome_trace(workload, schedule, result), separators=(",", ":"), allow_nan=False)
    path.write_text(text)
    return path
