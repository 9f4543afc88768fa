"""MILP (PuLP) model of an allocation problem (one piece, in units of its common factor).

* offsets: integer, x_i = alignment_i * y_i (a constant if fixed);
* one binary per pair of buffers live at the same time (i below j or j
  below i), big-M = the capacity; pairs identical in (lower, upper, size,
  alignment) are ordered by index instead (no binary);
* peak >= x_i + size_i, peak <= capacity, and per maximal clique
  sum of sizes <= peak (the max-load bound, so the LP relaxation starts there);
* objective: the peak (minimising) or none (feasibility).

Same feasible set as formulations.alloc.cpsat; weaker relaxation (big-M),
so it is meant for small pieces; ``set_start`` gives a complete MIP start.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pulp

from elk.allocation import AllocationProblem
from formulations.alloc.cpsat import cliques


@dataclass
class MilpAlloc:
    """A built PuLP allocation model: the offset of every buffer, the peak, and the pair-order binaries."""

    problem: pulp.LpProblem
    offset: list  # LpVariable / expression / int per buffer
    peak: pulp.LpVariable
    steps: list  # integer variable per free buffer (None if fixed)
    pairs: list = field(default_factory=list)  # (i, j, binary: 1 = i below j)

    def decode(self) -> np.ndarray:
        """Every buffer's offset in the solved model."""
        out = []
        for off in self.offset:
            out.append(int(round(pulp.value(off))) if not isinstance(off, int) else off)
        return np.array(out, np.int64)

    def set_start(self, offsets: np.ndarray, align: np.ndarray, size: np.ndarray) -> None:
        """A MIP start from a placement: offsets, the pair-order binaries and the peak."""
        for var, off, a in zip(self.steps, offsets.tolist(), align.tolist()):
            if var is not None:
                var.setInitialValue(off // a)
        for i, j, z in self.pairs:
            z.setInitialValue(1 if offsets[i] + size[i] <= offsets[j] else 0)
        self.peak.setInitialValue(int((offsets + size).max(initial=0)))


def overlapping(problem: AllocationProblem) -> list[tuple[int, int]]:
    """Pairs (i < j) of non-empty buffers live at the same time, from a sweep over starts (no n x n matrix)."""
    order = np.lexsort((np.arange(problem.n), problem.lower))
    starts = problem.lower[order]
    out = []
    for pos, i in enumerate(order.tolist()):
        if problem.size[i] == 0:
            continue
        stop = int(np.searchsorted(starts, problem.upper[i], "left"))
        for j in order[pos + 1:stop].tolist():
            if problem.size[j] > 0:
                out.append((min(i, j), max(i, j)))
    return sorted(out)


def build_milp(problem: AllocationProblem, capacity: int, *, lower_bound: int = 0, minimize: bool = True,
               upper_bound: int | None = None) -> MilpAlloc:
    """The allocation problem as a MILP: offsets in alignment steps, one binary per pair of buffers live together
    (which is below), the peak under ``capacity``; minimised when ``minimize``, else any feasible placement.
    """
    lp = pulp.LpProblem("allocation", pulp.LpMinimize)
    n = problem.n
    size = problem.size.tolist()
    align = problem.alignment.tolist()
    fixed = problem.fixed_offset.tolist()
    top = capacity if upper_bound is None else min(capacity, upper_bound)
    peak = lp.add_variable("peak", min(lower_bound, top), top, cat=pulp.LpInteger)
    offset, steps = [], []
    for i in range(n):
        if fixed[i] >= 0:
            offset.append(fixed[i])
            steps.append(None)
            continue
        hi = max(capacity - size[i], 0) // align[i]
        y = lp.add_variable(f"y{i}", 0, hi, cat=pulp.LpInteger)
        steps.append(y)
        offset.append(align[i] * y if align[i] > 1 else y)
    for i in range(n):
        if size[i] > 0:
            lp += peak >= offset[i] + size[i]
    for clique in cliques(problem):
        lp += pulp.lpSum(size[i] for i in clique.tolist()) <= peak
    lower, upper = problem.lower, problem.upper
    pairs = []
    big = capacity
    for i, j in overlapping(problem):
        if fixed[i] >= 0 and fixed[j] >= 0:
            continue  # both fixed: checked before any model is built
        same = fixed[i] < 0 and fixed[j] < 0 and (lower[i], upper[i], size[i], align[i]) == \
            (lower[j], upper[j], size[j], align[j])
        if same:
            lp += offset[i] + size[i] <= offset[j]
            continue
        z = lp.add_variable(f"z{i}_{j}", 0, 1, cat=pulp.LpBinary)
        lp += offset[i] + size[i] <= offset[j] + big * (1 - z)
        lp += offset[j] + size[j] <= offset[i] + big * z
        pairs.append((i, j, z))
    lp += peak if minimize else 0 * peak
    return MilpAlloc(lp, offset, peak, steps, pairs)


__all__ = ["build_milp", "MilpAlloc"]
