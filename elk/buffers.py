"""A schedule's per-core SRAM buffers: what on-chip allocation has to place.

Every core runs the same plan, so one core's buffers stand for all of them.
Rule 4 of the schedule semantics charges bytes; addresses additionally need
each tensor to be contiguous, and that is what can fail (fragmentation). The
buffers follow the same accounting the simulator uses:

- while operator i executes, ``[exec_start, exec_end)``, each of its tensors
  (output and inputs) is a buffer of its hot-layout bytes per core, doubled
  when the tensor rotates between iterations (its temporal split is > 1);
- from the start of its HBM load until it starts executing,
  ``[load_start, exec_start)``, each of its off-chip input tensors is a
  buffer in the cold layout;
- from its end until its store ends, ``[exec_end, store_end)``, an output
  written to HBM is a buffer of its bytes spread evenly over the cores.

With ``granularity="operator"`` an operator's hot (and cold) bytes form one
buffer instead: a stricter problem, useful to show what per-tensor placement
buys. Times are cycles as floats; allocation wants integers, so every
distinct instant is replaced by its rank (equal within a small tolerance),
which keeps exactly the overlap relation between live ranges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elk.allocation import AllocationProblem
from elk.costmodel import var_sizes
from elk.plantable import PlanTable
from elk.schedule import Schedule
from elk.workload import Workload

GRANULARITIES = ("tensor", "operator")


@dataclass(frozen=True)
class ScheduleBuffers:
    """The allocation problem of a schedule, with the map back to operators and cycles."""

    problem: AllocationProblem
    op: np.ndarray  # operator index of each buffer
    kind: np.ndarray  # "hot", "cold" or "store" per buffer
    instants: np.ndarray  # cycle time of each integer rank used in lower/upper

    @property
    def byte_peak(self) -> int:
        """Most bytes live at once: no placement of these buffers can peak lower."""
        from elk.allocation import max_load_lower_bound
        return max_load_lower_bound(self.problem)


def tensor_bytes(table: PlanTable, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Hot bytes of each variable and cold bytes of each off-chip variable for one plan-table row."""
    sig = table.sig
    lengths = np.array(sig.lengths, dtype=np.int64)
    per_core = -(-lengths // table.spatial[row])
    bpe = sig.bytes_per_element
    hot_t = table.hot_temporal[row]
    hot_elems = var_sizes(sig, per_core[None, :], hot_t[None])[0]
    hot = bpe * hot_elems * np.where((hot_t > 1).any(axis=0), 2, 1)
    offchip = np.array(sig.offchip)
    cold_elems = var_sizes(sig, per_core[None, :], table.cold_temporal[row][None])[0]
    cold = bpe * cold_elems[offchip]
    return hot.astype(np.int64), cold.astype(np.int64)


def _ranks(times: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer rank of each time; times closer than ``tol`` share a rank."""
    order = np.argsort(times, kind="stable")
    sorted_t = times[order]
    new_group = np.concatenate([[True], np.diff(sorted_t) > tol])
    group = np.cumsum(new_group) - 1
    ranks = np.empty(len(times), dtype=np.int64)
    ranks[order] = group
    return ranks, sorted_t[new_group]


def schedule_buffers(workload: Workload, schedule: Schedule, granularity: str = "tensor") -> ScheduleBuffers:
    """Per-core buffers of ``schedule`` as an allocation problem at the chip's SRAM capacity."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    per_row: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    sizes, ops, kinds, starts, ends = [], [], [], [], []
    has_load = workload.has_load
    has_store = workload.has_store

    def add(op: int, kind: str, tensors: np.ndarray, start: float, end: float) -> None:
        tensors = tensors[tensors > 0]
        sizes.append(tensors)
        ops.append(np.full(len(tensors), op))
        kinds.append(np.full(len(tensors), kind))
        starts.append(np.full(len(tensors), start))
        ends.append(np.full(len(tensors), end))

    for i, (table, row) in enumerate(zip(workload.tables, schedule.entry)):
        key = (id(table), int(row))
        if key not in per_row:
            per_row[key] = tensor_bytes(table, int(row))
        hot, cold = per_row[key]
        if granularity == "operator":
            hot, cold = hot.sum(keepdims=True), cold.sum(keepdims=True)
        add(i, "hot", hot, schedule.exec_start[i], schedule.exec_end[i])
        if has_load[i] and schedule.exec_start[i] > schedule.load_start[i]:
            add(i, "cold", cold, schedule.load_start[i], schedule.exec_start[i])
        if has_store[i]:  # the output waiting for its store, spread evenly over the cores (docs/design.md §5.2)
            add(i, "store", workload.store_cold[i:i + 1], schedule.exec_end[i], schedule.store_end[i])
    size = np.concatenate(sizes).astype(np.int64)
    start, end = np.concatenate(starts), np.concatenate(ends)
    scale = float(np.abs(np.concatenate([start, end])).max()) if len(start) else 0.0
    ranks, instants = _ranks(np.concatenate([start, end]), 1e-6 + 1e-9 * scale)
    lower, upper = ranks[:len(start)], ranks[len(start):]
    keep = upper > lower  # a zero-length range (rounding) holds nothing
    op = np.concatenate(ops)[keep]
    kind = np.concatenate(kinds)[keep]
    names = [f"{k}:{workload.program.ops[o].name}:{n}" for n, (o, k) in enumerate(zip(op, kind))]
    problem = AllocationProblem.from_arrays(lower[keep], upper[keep], size[keep], ids=names,
                                            capacity=int(workload.chip.sram_per_core))
    return ScheduleBuffers(problem=problem, op=op, kind=kind, instants=instants)
