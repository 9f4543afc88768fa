"""Greedy allocation: place buffers one at a time in the lowest or tightest gap, over several orders.

A greedy pass takes the buffers in a given order and puts each into a gap
between the already-placed buffers that are live at the same time: the
lowest gap it fits (first fit) or the smallest such gap (best fit; on top
when none fits). Which order is best depends on the instance, so several are
tried and the lowest peak kept, then compacted (every buffer dropped as low
as it goes, in offset order, which never raises the peak).

Cost: each placement compares the new buffer with the placed ones in one
vectorized step and sorts only the conflicting ones, so a pass is
O(n^2) simple comparisons in numpy plus O(E log) for the E conflicting
pairs: milliseconds for thousands of buffers, seconds for 60,000.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from elk.allocation import AllocationProblem, peak_of

Order = Callable[[AllocationProblem], np.ndarray]


def _by(*keys: np.ndarray) -> np.ndarray:
    """Indices sorted by the keys, first key most significant, ties by index (deterministic)."""
    n = len(keys[0])
    return np.lexsort((np.arange(n),) + tuple(reversed(keys)))


# Orders: each puts the buffers that are hardest to fit late (small, short) last.
ORDERS: dict[str, Order] = {  # tried in this order (the cheap and usually good ones first)
    "size": lambda p: _by(-p.size, -(p.upper - p.lower), p.lower),
    "start": lambda p: _by(p.lower, -p.size, -p.upper),
    "contention": lambda p: _by(-_contention(p), -p.size, p.lower),
    "area": lambda p: _by(-p.size * (p.upper - p.lower), -p.size, p.lower),
    "lifetime": lambda p: _by(-(p.upper - p.lower), -p.size, p.lower),
}
FITS = ("best", "first")


def _contention(p: AllocationProblem) -> np.ndarray:
    """Per buffer, the largest total live size over its lifetime (buffers in crowded times go first)."""
    if p.n == 0:
        return np.zeros(0, np.int64)
    times = np.unique(np.concatenate([p.lower, p.upper]))
    start = np.searchsorted(times, p.lower)
    stop = np.searchsorted(times, p.upper)
    diff = np.zeros(len(times) + 1, np.int64)
    np.add.at(diff, start, p.size)
    np.add.at(diff, stop, -p.size)
    load = np.cumsum(diff)[:-1]
    # range maximum per buffer via a sparse table (log levels, each vectorized)
    table = [load]
    span = 1
    while span * 2 <= len(load):
        prev = table[-1]
        table.append(np.maximum(prev[:-span], prev[span:]))
        span *= 2
    length = stop - start
    level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    out = np.empty(p.n, np.int64)
    for lv in np.unique(level):
        sel = level == lv
        t = table[lv]
        out[sel] = np.maximum(t[start[sel]], t[stop[sel] - (1 << lv)])
    return out


class _TimeIndex:
    """Static index answering "which buffers may be live during [lo, up)" without scanning all of them.

    Buffers are sorted by start; every ``stride``-th start time is a block
    boundary, and for each boundary the buffers live across it are listed
    once. A buffer live somewhere in [lo, up) either crosses the last boundary
    T <= lo or starts in [T, up): two short lists instead of all n buffers.
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray, stride: int | None = None):
        n = len(lower)
        self.by_lower = np.argsort(lower, kind="stable")
        self.lower_sorted = lower[self.by_lower]
        stride = stride or max(64, int(np.sqrt(max(n, 1))))
        self.bounds = np.unique(self.lower_sorted[::stride]) if n else np.zeros(0, np.int64)
        self.crossing: list[np.ndarray] = []
        up_sorted = upper[self.by_lower]
        for t in self.bounds.tolist():
            head = int(np.searchsorted(self.lower_sorted, t, "left"))
            sel = np.flatnonzero(up_sorted[:head] > t)
            self.crossing.append(self.by_lower[sel])

    def candidates(self, lo: int, up: int) -> np.ndarray:
        j = int(np.searchsorted(self.bounds, lo, "right")) - 1
        t = int(self.bounds[j])
        a = int(np.searchsorted(self.lower_sorted, t, "left"))
        b = int(np.searchsorted(self.lower_sorted, up, "left"))
        return np.concatenate([self.crossing[j], self.by_lower[a:b]])


def greedy(problem: AllocationProblem, order: Sequence[int] | np.ndarray, fit: str = "best",
           capacity: int | None = None, index: "_TimeIndex | None" = None) -> np.ndarray:
    """One greedy pass: offsets for every buffer (fixed buffers stay where they are).

    ``capacity`` only steers best fit (a gap reaching to the capacity counts
    as bounded, so a buffer may go on top of the others below the capacity);
    the placement can still exceed it, which the caller judges.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}")
    lower, upper, size, align = problem.lower, problem.upper, problem.size, problem.alignment
    offsets = np.where(problem.fixed_offset >= 0, problem.fixed_offset, 0).astype(np.int64)
    ends = offsets + size
    placed = (problem.fixed_offset >= 0) & (size > 0)
    free = problem.fixed_offset < 0
    if index is None:
        index = _TimeIndex(lower, upper)
    big = np.iinfo(np.int64).max // 4
    top = big if capacity is None else capacity
    best = fit == "best"
    for i in np.asarray(order, np.int64).tolist():
        if not free[i] or size[i] == 0:
            continue
        lo, up, s, a = int(lower[i]), int(upper[i]), int(size[i]), int(align[i])
        cand = index.candidates(lo, up)
        cand = cand[placed[cand]]
        cand = cand[(upper[cand] > lo) & (lower[cand] < up)]
        if cand.size == 0:
            x = 0
        else:
            o = offsets[cand]
            srt = np.argsort(o)
            o = o[srt]
            e = ends[cand[srt]]
            starts = np.empty(len(o) + 1, np.int64)
            starts[0] = 0
            np.maximum.accumulate(e, out=starts[1:])
            if a > 1:
                starts = -(-starts // a) * a
            gap_end = np.empty(len(o) + 1, np.int64)
            gap_end[:-1] = o
            gap_end[-1] = top if best and int(starts[-1]) + s <= top else big
            room = gap_end - starts
            ok = room >= s
            if best:
                j = int(np.argmin(np.where(ok, room, big)))
            else:
                j = int(np.argmax(ok))
            x = int(starts[j])
        offsets[i] = x
        ends[i] = x + s
        placed[i] = True
    return offsets


def compact(problem: AllocationProblem, offsets: np.ndarray, index: "_TimeIndex | None" = None) -> np.ndarray:
    """Drop every buffer as low as it fits, in order of its current offset (never raises the peak)."""
    order = _by(offsets, -problem.size, problem.lower)
    return greedy(problem, order, "first", index=index)


@dataclass
class HeuristicResult:
    """The best greedy placement: its offsets and peak, which order and fit gave it, and every pass's peak."""

    offsets: np.ndarray
    peak: int
    order: str  # the order and fit that gave it, e.g. "size/best"
    seconds: float
    tried: dict[str, int] = field(default_factory=dict)  # "order/fit" -> peak


def heuristic(problem: AllocationProblem, *, capacity: int | None = None, orders: Sequence[str] | None = None,
              fits: Sequence[str] = FITS, time_budget: float | None = None, stop_at: int | None = None) -> HeuristicResult:
    """Best of the greedy passes (every order x fit), then compacted.

    Stops early once a pass reaches ``stop_at`` (e.g. the lower bound, or the
    capacity in a feasibility question) or when ``time_budget`` seconds are
    spent (the first pass always runs: on 60,000 buffers one pass takes
    seconds, so a budget keeps the call bounded). Deterministic for a given
    set of passes.
    """
    started = time.perf_counter()
    names = list(ORDERS) if orders is None else list(orders)
    for name in names:
        if name not in ORDERS:
            raise ValueError(f"unknown order '{name}' (choose from {', '.join(ORDERS)})")
    if not names or not fits:
        names, fits = ["size"], ["best"]
    index = _TimeIndex(problem.lower, problem.upper)
    best: tuple[int, str, np.ndarray] | None = None
    tried: dict[str, int] = {}

    def done() -> bool:
        if best is None:
            return False
        if stop_at is not None and best[0] <= stop_at:
            return True
        return time_budget is not None and time.perf_counter() - started > time_budget

    for name in names:
        order = ORDERS[name](problem)
        for fit in fits:
            if done():
                break
            off = greedy(problem, order, fit, capacity, index)
            pk = peak_of(problem, off)
            tried[f"{name}/{fit}"] = pk
            if best is None or pk < best[0]:
                best = (pk, f"{name}/{fit}", off)
    assert best is not None
    off = compact(problem, best[2], index)
    return HeuristicResult(off, peak_of(problem, off), best[1], time.perf_counter() - started, tried)


__all__ = ["ORDERS", "FITS", "greedy", "compact", "heuristic", "HeuristicResult"]
