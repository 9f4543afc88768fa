"""CP-SAT model of an allocation problem (one piece, in units of its common factor).

Variables: an offset per buffer (a multiple of its alignment; a constant if
fixed), a fixed-size interval on it, and the peak. Constraints:

* **Clique NoOverlap.** Live ranges are fixed, so "no two buffers overlap in
  time x address" (NoOverlap2D) is equivalent to one 1-D NoOverlap per
  maximal clique of the interval graph (the live set of each time section
  where some buffer starts and the next event is an end). CP-SAT propagates
  1-D NoOverlap much more strongly (detectable precedences, edge finding,
  energy) than the 2-D one.
* **Symmetry.** Buffers identical in (lower, upper, size, alignment) are
  interchangeable: they are ordered by index (i entirely below j).
* **Search order.** CP-SAT is told to branch on offsets bottom-up: the
  buffer with the lowest possible offset first, at that lowest offset. This
  builds the same push-down (canonical) placements the elk search
  enumerates, with CP-SAT's NoOverlap propagation and clause learning on
  top. Ties between equally low buffers go to the earlier one in a static
  order (:func:`branching_order`): ``start`` (earliest start, then largest;
  the default) or one of MiniMalloc's preorders (``WAT``, ``TWA``, ``TAW``:
  descending lifespan width W, area A, fullest total T of live sizes over
  the buffer's lifetime). Measured on MiniMalloc's 11 challenging instances,
  one worker: without the strategy 8 are placed in 60 s (D, I and J are
  not); with it and ``start`` all 11 (I in 5 s; J and K in 23-25 s). Which
  tie order is fast is instance-specific and heavy-tailed (deterministic
  time to place, ``start`` / ``WAT``: F over 0.3 / 0.010, K over 0.3 /
  0.002, A 0.003 / 0.117, H 0.001 / over 0.3), hence the round robin over
  orders in solvers.alloc.exact.
* **Peak.** peak >= offset + size for every buffer; peak <= capacity; the
  objective (when minimising) is the peak, bounded below by the max-load
  bound, which is also stated per clique (sum of sizes <= peak) so the LP
  relaxation and the bound propagation see it.

``add_hint`` gives a complete hint (every offset and the peak), e.g. the
greedy placement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from elk.allocation import AllocationProblem
from elk.allocation import load_profile, maximal_sections


def clique_sizes(problem: AllocationProblem) -> np.ndarray:
    """How many buffers each maximal clique holds (cheap: two sorted searches, no clique is built)."""
    t0, _ = maximal_sections(problem.lower, problem.upper)
    return np.searchsorted(np.sort(problem.lower), t0, "right") - np.searchsorted(np.sort(problem.upper), t0, "right")


def cliques(problem: AllocationProblem) -> list[np.ndarray]:
    """Buffer indices of each maximal clique (buffers of size 0 left out: they never conflict)."""
    t0, _ = maximal_sections(problem.lower, problem.upper)
    keep = problem.size > 0
    out = []
    for t in t0.tolist():
        live = np.flatnonzero((problem.lower <= t) & (problem.upper > t) & keep)
        if len(live) > 1:
            out.append(live)
    return out


BRANCHING_ORDERS = ("start", "WAT", "TWA", "TAW")


def branching_order(problem: AllocationProblem, name: str = "start") -> np.ndarray:
    """Buffer indices in the named static order (ties by index): the bottom-up strategy's tie-break."""
    n = problem.n
    if name == "start":
        return np.lexsort((np.arange(n), -problem.size, problem.lower))
    if name not in BRANCHING_ORDERS:
        raise ValueError(f"unknown branching order {name!r} (choose from {', '.join(BRANCHING_ORDERS)})")
    width = problem.upper - problem.lower
    keys = {"W": -width, "A": -width * problem.size, "T": -_fullest(problem)}
    return np.lexsort([np.arange(n)] + [keys[c] for c in reversed(name)])


def _fullest(problem: AllocationProblem) -> np.ndarray:
    """Per buffer, the largest total size of the buffers live with it at one time (itself included)."""
    times, load = load_profile(problem)
    start = np.searchsorted(times, problem.lower)
    stop = np.searchsorted(times, problem.upper)
    return np.array([load[a:max(b, a + 1)].max() for a, b in zip(start.tolist(), stop.tolist())], np.int64) \
        if problem.n else np.zeros(0, np.int64)


@dataclass
class CpsatAlloc:
    """A built CP-SAT allocation model: the offset of every buffer, the peak, and the decision variables."""

    model: cp_model.CpModel
    offset: list  # offset expression per buffer
    peak: cp_model.IntVar
    steps: list  # decision variable per free buffer (offset / alignment), None if fixed

    def decode(self, solver: cp_model.CpSolver) -> np.ndarray:
        """Every buffer's offset in the solver's solution."""
        return np.array([solver.value(x) for x in self.offset], np.int64)

    def add_hint(self, offsets: np.ndarray, align: np.ndarray) -> None:
        """Hint the solver with a placement (offsets in bytes, divided by each buffer's alignment)."""
        for var, off, a in zip(self.steps, offsets.tolist(), align.tolist()):
            if var is not None:
                self.model.add_hint(var, off // a)
        peak = int(max((o + s for o, s in zip(offsets.tolist(), self._sizes)), default=0))
        self.model.add_hint(self.peak, peak)

    _sizes: tuple = ()


def build_cpsat(problem: AllocationProblem, capacity: int, *, lower_bound: int = 0, minimize: bool = True,
                upper_bound: int | None = None, order: np.ndarray | None = None) -> CpsatAlloc:
    """The model at ``capacity``; ``upper_bound`` (e.g. a known placement's peak) tightens the peak's domain."""
    m = cp_model.CpModel()
    n = problem.n
    size = problem.size.tolist()
    align = problem.alignment.tolist()
    fixed = problem.fixed_offset.tolist()
    top = capacity if upper_bound is None else min(capacity, upper_bound)
    peak = m.new_int_var(min(lower_bound, top), top, "peak")
    offset, steps, intervals = [], [], []
    for i in range(n):
        if fixed[i] >= 0:
            x = fixed[i]
            steps.append(None)
        else:
            hi = max(capacity - size[i], 0) // align[i]
            y = m.new_int_var(0, hi, f"y{i}")
            steps.append(y)
            x = y * align[i] if align[i] > 1 else y
        offset.append(x)
        if size[i] > 0:
            intervals.append(m.new_fixed_size_interval_var(x, size[i], f"b{i}"))
            m.add(peak >= x + size[i])
        else:
            intervals.append(None)
    for clique in cliques(problem):
        m.add_no_overlap([intervals[i] for i in clique.tolist()])
        m.add(sum(size[i] for i in clique.tolist()) <= peak)
    seen: dict = {}
    for i in range(n):
        if fixed[i] >= 0 or size[i] == 0:
            continue
        key = (int(problem.lower[i]), int(problem.upper[i]), size[i], align[i])
        if key in seen:
            m.add(offset[seen[key]] + size[i] <= offset[i])
        seen[key] = i
    if order is None:
        order = branching_order(problem)
    free = [i for i in np.asarray(order).tolist() if steps[i] is not None]
    if free:
        m.add_decision_strategy([steps[i] for i in free], cp_model.CHOOSE_LOWEST_MIN, cp_model.SELECT_MIN_VALUE)
    if minimize:
        m.minimize(peak)
    built = CpsatAlloc(m, offset, peak, steps)
    built._sizes = tuple(size)
    return built


__all__ = ["build_cpsat", "branching_order", "BRANCHING_ORDERS", "cliques", "clique_sizes", "CpsatAlloc"]
