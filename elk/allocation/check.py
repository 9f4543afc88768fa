"""Checking placements and bounding peaks: the validator every placement elk returns must pass, the
load profile and the max-load lower bound, and the maximal sections of live ranges."""
from __future__ import annotations

import heapq
from bisect import bisect_left
from typing import Sequence

import numpy as np

from elk.allocation.problem import AllocationProblem
from elk.errors import InvalidPlacementError


def load_profile(problem: AllocationProblem) -> tuple[np.ndarray, np.ndarray]:
    """Event times and the total live size just after each (ends before starts at equal times).

    Returns ``(times, load)`` with ``load[k]`` the live size on
    ``[times[k], times[k+1])``; vectorized (sort the events, cumulative sum).
    """
    times = np.concatenate([problem.lower, problem.upper])
    delta = np.concatenate([problem.size, -problem.size])
    order = np.lexsort((delta, times))  # at equal times the ends (negative deltas) come first
    times, load = times[order], np.cumsum(delta[order])
    last = np.r_[times[1:] != times[:-1], True]  # keep the load after the last event at each time
    return times[last], load[last]


def max_load_lower_bound(problem: AllocationProblem) -> int:
    """Max over time of the total size of live buffers: no placement can have a smaller peak."""
    if problem.n == 0:
        return 0
    _, load = load_profile(problem)
    return int(max(load.max(), 0))


def lower_bound(problem: AllocationProblem) -> int:
    """The max-load bound, raised by fixed buffers that sit higher than it."""
    bound = max_load_lower_bound(problem)
    fixed = problem.fixed_offset >= 0
    if fixed.any():
        bound = max(bound, int((problem.fixed_offset[fixed] + problem.size[fixed]).max()))
    return bound


def peak_of(problem: AllocationProblem, offsets: np.ndarray) -> int:
    """Highest address the placed buffers use: max(offset + size), 0 for an empty problem."""
    if problem.n == 0:
        return 0
    return int((np.asarray(offsets, np.int64) + problem.size).max(initial=0))


def validate(problem: AllocationProblem, offsets: Sequence[int] | np.ndarray, capacity: int | None = None) -> None:
    """Raise :class:`InvalidPlacementError` naming the first violation; return None if the placement is valid.

    Checks, in this order: one integer offset per buffer, none negative,
    fixed buffers where they were fixed, alignment, the first buffer (in
    input order) over the capacity (``capacity`` or the problem's), and the
    first overlapping pair met by a sweep over time (buffers of size 0
    occupy no addresses and never overlap).
    """
    off = np.asarray(offsets)
    if off.shape != (problem.n,):
        raise InvalidPlacementError(f"{off.size} offsets for {problem.n} buffers")
    if off.size and not np.issubdtype(off.dtype, np.integer):
        raise InvalidPlacementError("offsets must be integers")
    off = off.astype(np.int64)
    ids = problem.ids
    checks = (
        (off < 0, lambda i: f"negative offset {off[i]}"),
        ((problem.fixed_offset >= 0) & (off != problem.fixed_offset),
         lambda i: f"fixed at {problem.fixed_offset[i]} but placed at {off[i]}"),
        (off % problem.alignment != 0, lambda i: f"offset {off[i]} is not a multiple of its alignment "
                                                 f"{problem.alignment[i]}"),
    )
    for bad, message in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidPlacementError(f"buffer '{ids[i]}': {message(i)}")
    cap = problem.capacity if capacity is None else capacity
    end = off + problem.size
    if cap is not None and (end > cap).any():
        i = int(np.argmax(end > cap))
        raise InvalidPlacementError(f"buffer '{ids[i]}' ends at {end[i]} (offset {off[i]} + size "
                                    f"{problem.size[i]}), over the capacity {cap}")
    pair = first_overlap(problem, off)
    if pair is not None:
        i, j = pair
        raise InvalidPlacementError(
            f"buffers '{ids[i]}' and '{ids[j]}' overlap: live [{problem.lower[i]}, {problem.upper[i]}) and "
            f"[{problem.lower[j]}, {problem.upper[j]}), addresses [{off[i]}, {end[i]}) and [{off[j]}, {end[j]})")


def first_overlap(problem: AllocationProblem, offsets: np.ndarray) -> tuple[int, int] | None:
    """The first pair (earlier-placed, later) of buffers that overlap in time and address, or None.

    A sweep over buffers by start time keeps the live ones sorted by offset;
    as long as they are disjoint, a new buffer can only overlap its two
    neighbours in that order, so each start costs a bisection, not a scan.
    """
    lower, upper, size = problem.lower.tolist(), problem.upper.tolist(), problem.size.tolist()
    off = np.asarray(offsets, np.int64).tolist()
    order = np.lexsort((np.arange(problem.n), problem.lower)).tolist()
    live: list[tuple[int, int]] = []  # (offset, index), sorted; pairwise disjoint
    expiry: list[tuple[int, int]] = []  # heap of (upper, index)
    for j in order:
        if size[j] == 0:
            continue
        t = lower[j]
        while expiry and expiry[0][0] <= t:
            _, k = heapq.heappop(expiry)
            del live[bisect_left(live, (off[k], k))]
        key = (off[j], j)
        pos = bisect_left(live, key)
        if pos > 0:
            k = live[pos - 1][1]
            if off[k] + size[k] > off[j]:
                return (k, j)
        if pos < len(live):
            k = live[pos][1]
            if off[k] < off[j] + size[j]:
                return (k, j)
        live.insert(pos, key)
        heapq.heappush(expiry, (upper[j], j))
    return None


def is_valid(problem: AllocationProblem, offsets: np.ndarray | None, capacity: int | None = None) -> bool:
    """Whether ``offsets`` is a valid placement (None never is); :func:`validate` says why not."""
    if offsets is None:
        return False
    try:
        validate(problem, offsets, capacity)
    except InvalidPlacementError:
        return False
    return True


__all__ = ["maximal_sections", "validate", "first_overlap", "is_valid", "max_load_lower_bound", "lower_bound",
           "load_profile", "peak_of"]


def maximal_sections(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time sections whose live set is a maximal clique of the interval graph, as [start, stop) in event times.

    A section's live set is contained in a neighbour's unless some buffer
    starts at its start and some buffer ends at its stop; only the others
    can hold a buffer's highest floor or a binding bound.
    """
    times = np.unique(np.concatenate([lower, upper]))
    starts = np.isin(times[:-1], lower)
    stops = np.isin(times[1:], upper)
    keep = starts & stops
    return times[:-1][keep], times[1:][keep]
