"""Exact allocation by a canonical branch-and-bound search with dynamic decomposition.

Every feasible placement can be pushed down until no buffer can move lower;
listing the buffers of such a placement by offset gives a sequence in which
each buffer sits exactly at its *rest*: the highest end of the earlier
buffers it meets in time (rounded up to its alignment), or 0. The search
builds such sequences bottom-up (MiniMalloc's canonical "skyline" search,
Moffitt, ASPLOS 2023; this is elk's own implementation of the published
ideas). A node is the set of placed buffers; every unplaced buffer has a
rest ``mo`` (its lowest possible offset), every time section (maximal clique
of the interval graph) the unplaced size still to go there. The rules, each
sound because a placement breaking it is not a pushed-down one or is
equivalent to one kept:

* **canonical order**: buffers are placed in non-decreasing (offset, rank)
  order, rank being the buffer's position in a static preorder, each at its
  rest;
* **dominance**: a buffer may be placed at p only if p is below the top
  ``mo + size`` of every other unplaced buffer (else that one could drop
  into the gap below p);
* **section inference**: in every section, max(level, lowest rest of its
  unplaced buffers) + their total size must fit within the capacity (the
  level bound is applied to all candidates at once: p + the fullest
  section's remaining size <= capacity);
* **identical buffers** (same live range, size and alignment) are placed in
  index order;
* **dynamic decomposition**: when a placement leaves a boundary between two
  sections that no unplaced buffer crosses, the two sides no longer interact
  (each side's rests are fixed by what is placed): each side is solved on
  its own, from a fresh canonical level, and a side that fails ends the
  node, without trying other placements of the sides solved before it.

Search control: MiniMalloc's round robin over static preorders (descending
lifespan width W, area A, and the fullest section total T the buffer meets,
in the orders TWA, WAT, TAW) with a node budget that doubles every round.
A failure within a budget proves nothing; a search that ends without being
cut short has proven infeasibility.

With ``workers`` > 1, independent processes start the round robin at
different preorders and the first answer wins.

Scope: free buffers only (fixed offsets are left to CP-SAT / MILP);
alignment is supported by rounding rests up.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from elk.allocation import maximal_sections
from elk.procs import die_with_parent

_BIG = np.iinfo(np.int64).max // 4
#: The static preorders the round robin cycles through (letters: descending W = lifespan width, A = area,
#: T = the fullest section total the buffer meets; ties by index). MiniMalloc's three.
PREORDERS = ("TWA", "WAT", "TAW")


class _Timeout(Exception):
    pass


class _Restart(Exception):
    pass


@dataclass
class SearchOutcome:
    """What one search worker found: offsets (or None), whether the search was complete, its effort."""

    offsets: np.ndarray | None  # in the units given to the search
    status: str  # "found", "infeasible" (complete search exhausted), "timeout"
    nodes: int = 0
    restarts: int = 0
    seconds: float = 0.0
    worker: int = 0


class CanonicalSearch:
    """One feasibility search at a fixed capacity: the state of the branch and bound that canonical_search runs."""

    def __init__(self, lower, upper, size, alignment, capacity: int, deadline: float,
                 node_limit: int | None = None):
        self.n = n = len(size)
        self.node_limit = node_limit
        self.size = size.astype(np.int64)
        self.align = alignment.astype(np.int64)
        self.aligned = bool((self.align > 1).any())
        self.C = int(capacity)
        self.deadline = deadline
        t0, _ = maximal_sections(lower, upper)
        self.S = S = len(t0)
        # buffer i covers section k iff lower_i <= t0_k < upper_i: a contiguous run [first_i, stop_i)
        cover = (lower[:, None] <= t0[None, :]) & (upper[:, None] > t0[None, :])
        self.first = np.argmax(cover, axis=1).astype(np.int64)
        self.stop = (S - np.argmax(cover[:, ::-1], axis=1)).astype(np.int64)
        conf = (lower[:, None] < upper[None, :]) & (lower[None, :] < upper[:, None])
        np.fill_diagonal(conf, False)
        self.conf = conf
        # every buffer covers a maximal section (the one at the last start within its life): no empty runs
        pair_s, self.pair_b = np.nonzero(cover.T)  # (section, buffer) pairs, by section
        self.sec_start = np.searchsorted(pair_s, np.arange(S + 1))
        bm_b, self.bm_s = np.nonzero(cover)  # the same pairs, by buffer
        self.buf_start = np.searchsorted(bm_b, np.arange(n))
        # the sections a placement can raise rests in: those of the buffer's neighbours in time, i.e. of
        # the buffers covering one of its own sections
        lo = np.minimum.reduceat(self.first[self.pair_b], self.sec_start[:-1])
        hi = np.maximum.reduceat(self.stop[self.pair_b], self.sec_start[:-1])
        self.near_lo = np.minimum.reduceat(lo[self.bm_s], self.buf_start)
        self.near_hi = np.maximum.reduceat(hi[self.bm_s], self.buf_start)
        self.total0 = (cover * self.size[:, None]).sum(axis=0)
        # cuts[k]: unplaced buffers covering both section k and k + 1
        diff = np.zeros(S + 1, np.int64)
        np.add.at(diff, self.first, 1)
        np.add.at(diff, np.maximum(self.stop - 1, self.first), -1)
        self.cuts0 = np.cumsum(diff)[:max(S - 1, 0)]
        twin = np.full(n, -1, np.int64)
        seen: dict = {}
        for i in range(n):
            key = (int(lower[i]), int(upper[i]), int(size[i]), int(alignment[i]))
            if key in seen:
                twin[i] = seen[key]
            seen[key] = i
        self.has_twin = twin >= 0
        self.any_twin = bool(self.has_twin.any())
        # next_twin[i]: the identical buffer that may go only after i (-1: none)
        self.next_twin = np.full(n, -1, np.int64)
        self.next_twin[twin[self.has_twin]] = np.flatnonzero(self.has_twin)
        width = (upper - lower).astype(np.int64)
        self.keys = {"W": -width, "A": -width * self.size, "Z": -self.size}
        self.placed = np.zeros(n, bool)
        self.offsets = np.full(n, -1, np.int64)
        self.nodes = 0
        self.limit = 0
        self.preorder = PREORDERS[0]

    def _reset(self) -> None:
        self.placed[:] = False
        self.offsets[:] = -1
        self.mo = np.zeros(self.n, np.int64)
        self.total = self.total0.copy()
        self.cuts = self.cuts0.copy()
        self.waiting = self.has_twin.copy()  # identical buffers wait until the one before them is placed

    # ------------------------------------------------------------ search
    def run(self, preorders: tuple[str, ...]) -> SearchOutcome:
        """Search with restarts over ``preorders`` until a placement is found, proven impossible or out of budget."""
        started = time.perf_counter()
        restarts = 0
        budget = max(self.n, 1)
        try:
            while True:
                budget *= 2
                for name in preorders:
                    restarts += 1
                    self.preorder = name
                    self.limit = self.nodes + budget
                    self._reset()
                    try:
                        found = self._split(np.flatnonzero(self.size >= 0), 0, self.S, None)
                    except _Restart:
                        continue
                    return SearchOutcome(self.offsets.copy() if found else None, "found" if found else "infeasible",
                                         self.nodes, restarts, time.perf_counter() - started)
        except _Timeout:
            return SearchOutcome(None, "timeout", self.nodes, restarts, time.perf_counter() - started)

    def _order(self, bufs: np.ndarray) -> np.ndarray:
        """``bufs`` in the current static preorder (T from the sections' sizes still to place)."""
        tmax = np.maximum.reduceat(self.total[self.bm_s], self.buf_start)
        keys = {**self.keys, "T": -tmax}
        cols = [keys[c][bufs] for c in reversed(self.preorder)]
        return bufs[np.lexsort([bufs] + cols)]

    def _side(self, bufs: np.ndarray, s0: int, s1: int) -> bool:
        """Place ``bufs`` (unplaced, nothing else unplaced in sections [s0, s1)) from a fresh level."""
        return self._dfs(self._order(bufs), s0, s1, -1, -1)

    def _split(self, order: np.ndarray, s0: int, s1: int, span: tuple[int, int] | None) -> bool | None:
        """Solve the unplaced buffers of ``order`` side by side where no unplaced buffer crosses a boundary.

        ``span`` (the sections of the buffer just placed) limits where a boundary can have opened; None
        (the root) looks everywhere in [s0, s1). True / False: every side placed / one side failed (the
        sides placed before it are taken back); None: no new boundary, the caller's search goes on.
        """
        lo, hi = (s0, s1) if span is None else (max(span[0], s0), min(span[1], s1))
        zero = np.flatnonzero(self.cuts[lo:max(hi - 1, lo)] == 0) + lo + 1
        if span is not None and zero.size == 0:
            return None  # no new boundary: the caller goes on with the same side
        rest = order[~self.placed[order]]
        if rest.size == 0:
            return True
        bounds = np.concatenate(([s0], zero, [s1]))
        side = np.searchsorted(bounds, self.first[rest], "right") - 1
        counts = np.bincount(side, minlength=len(bounds) - 1)
        sides = np.split(rest[np.argsort(side, kind="stable")], np.cumsum(counts)[:-1])
        saved = (self.mo.copy(), self.total.copy(), self.waiting.copy())
        done: list[np.ndarray] = []
        for k, bufs in enumerate(sides):
            if bufs.size == 0:
                continue
            if not self._side(np.sort(bufs), int(bounds[k]), int(bounds[k + 1])):
                for d in done:
                    self.placed[d] = False
                    self.offsets[d] = -1
                self.mo[:], self.total[:], self.waiting[:] = saved
                return False
            done.append(bufs)
        return True

    def _dfs(self, order: np.ndarray, s0: int, s1: int, level: int, last: int) -> bool:
        self.nodes += 1
        if self.node_limit is not None and self.nodes > self.node_limit:
            self.nodes -= 1  # report the nodes searched: exactly the limit, whatever the machine
            raise _Timeout
        if self.nodes & 1023 == 0 and time.perf_counter() > self.deadline:
            raise _Timeout
        if self.nodes > self.limit:
            raise _Restart
        placed = self.placed
        ranks = (~placed[order]).nonzero()[0]
        if ranks.size == 0:
            return True
        bufs = order[ranks]
        mo = self.mo[bufs]
        sz = self.size[bufs]
        lowest_top = int(_min(mo + sz))
        # every candidate p must leave room for the fullest section: p + its remaining size <= C
        pmax = self.C - int(_max(self.total[s0:s1]))
        ok = ((mo > level) | ((mo == level) & (ranks > last))) & (mo < lowest_top) & (mo <= pmax)
        if self.any_twin:
            ok &= ~self.waiting[bufs]
        cand = ok.nonzero()[0]
        if cand.size == 0:
            return False
        cand = cand[np.argsort(mo[cand], kind="stable")]  # by (offset, rank): cand is in rank order
        first, stop, conf, C = self.first, self.stop, self.conf, self.C
        for j in cand.tolist():
            b = int(bufs[j])
            p = int(mo[j])
            s = int(sz[j])
            saved = self.mo
            self.mo = rest = saved.copy()
            rest[b] = _BIG  # placed buffers keep a rest out of reach: sections' lowest rests skip them
            placed[b] = True
            self.offsets[b] = p
            after = int(self.next_twin[b])
            if after >= 0:
                self.waiting[after] = False
            nb = (conf[b] & ~placed).nonzero()[0]
            fits = True
            if nb.size:
                raised = np.maximum(saved[nb], p + s)
                if self.aligned:
                    a = self.align[nb]
                    raised = -(-raised // a) * a
                rest[nb] = raised
                fits = int(_max(raised + self.size[nb])) <= C
            f, e = int(first[b]), int(stop[b])
            self.total[f:e] -= s
            if fits and self._fits(b, s0, s1, p):
                if e - f > 1:
                    self.cuts[f:e - 1] -= 1
                    found = self._split(order, s0, s1, (f, e))
                    if found is None:
                        found = self._dfs(order, s0, s1, p, int(ranks[j]))
                    self.cuts[f:e - 1] += 1
                else:
                    found = self._dfs(order, s0, s1, p, int(ranks[j]))
                if found:
                    return True
            self.total[f:e] += s
            self.mo = saved
            placed[b] = False
            self.offsets[b] = -1
            if after >= 0:
                self.waiting[after] = True
        return False

    def _fits(self, b: int, s0: int, s1: int, level: int) -> bool:
        """Section inference where placing b raised rests: max(level, lowest rest) + size to place <= C."""
        lo = max(int(self.near_lo[b]), s0)
        hi = min(int(self.near_hi[b]), s1)
        if hi <= lo:
            return True
        pa, pz = self.sec_start[lo], self.sec_start[hi]
        low = np.minimum.reduceat(self.mo[self.pair_b[pa:pz]], self.sec_start[lo:hi] - pa)
        np.maximum(low, level, out=low)
        total = self.total[lo:hi]
        low += total
        return not ((low > self.C) & (total > 0)).any()


_min = np.minimum.reduce
_max = np.maximum.reduce


def rotated_preorders(rotation: int) -> tuple[str, ...]:
    """The buffer pre-orders starting at a different one per worker, so parallel restarts diverge."""
    k = rotation % len(PREORDERS)
    return PREORDERS[k:] + PREORDERS[:k]


def _solve_one(lower, upper, size, alignment, capacity, time_limit, rotation: int = 0,
               node_limit: int | None = None) -> SearchOutcome:
    size = np.asarray(size, np.int64)
    if (size == 0).any():  # nothing to place for empty buffers: offset 0, search the rest
        keep = np.flatnonzero(size > 0)
        out = _solve_one(np.asarray(lower)[keep], np.asarray(upper)[keep], size[keep], np.asarray(alignment)[keep],
                         capacity, time_limit, rotation, node_limit)
        if out.offsets is not None:
            full = np.zeros(len(size), np.int64)
            full[keep] = out.offsets
            out.offsets = full
        return out
    if len(size) == 0:
        return SearchOutcome(np.zeros(0, np.int64), "found")
    if sys.getrecursionlimit() < 4 * len(size) + 1000:
        sys.setrecursionlimit(4 * len(size) + 1000)
    s = CanonicalSearch(np.asarray(lower, np.int64), np.asarray(upper, np.int64), size, np.asarray(alignment, np.int64),
                capacity, time.perf_counter() + time_limit, node_limit)
    return s.run(rotated_preorders(rotation))


def _worker(queue, k: int, args: tuple, seed: int, node_limit: int | None, parent: int) -> None:
    die_with_parent(parent)  # a SIGKILLed caller must not leave searches running
    out = _solve_one(*args, rotation=seed + k, node_limit=node_limit)
    out.worker = k
    queue.put(out)


def canonical_search(lower, upper, size, alignment, capacity: int, time_limit: float, *, workers: int = 1,
                     seed: int = 0, node_limit: int | None = None) -> SearchOutcome:
    """Find a placement within ``capacity`` (or prove there is none) in at most ``time_limit`` seconds.

    The search is deterministic; ``seed`` picks the preorder the round robin
    starts with (``PREORDERS[seed % 3]``). ``workers`` > 1 runs that many
    independent processes, worker k starting at preorder seed + k; the first
    "found" or "infeasible" wins and the others are stopped. ``node_limit``
    bounds each worker's search nodes: the answer then does not depend on
    the machine's speed (``time_limit`` only guards against a hang). With several workers and a node limit the answer taken is
    the lowest-numbered worker's definite one (every lower-numbered worker is
    waited for), so it is the same whichever worker happens to finish first.
    """
    if workers <= 1 or len(size) < 40:
        return _solve_one(lower, upper, size, alignment, capacity, time_limit, seed, node_limit)
    # fork: the workers run only numpy code, and spawn would re-import the caller's main script
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    queue = ctx.Queue()
    args = (np.asarray(lower), np.asarray(upper), np.asarray(size), np.asarray(alignment), int(capacity),
            float(time_limit))
    procs = [ctx.Process(target=_worker, args=(queue, k, args, int(seed), node_limit, os.getpid()),
                         daemon=True)
             for k in range(workers)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    outs: list[SearchOutcome] = []
    first_definite = workers  # under a node limit: the lowest-numbered worker with a definite answer so far
    try:
        for _ in procs:
            remaining = time_limit + 30.0 - (time.perf_counter() - started)
            try:
                out = queue.get(timeout=max(remaining, 1.0))
            except Exception:  # a worker died or hung: report what we have
                break
            outs.append(out)
            if out.status in ("found", "infeasible"):
                if node_limit is None:
                    break
                first_definite = min(first_definite, out.worker)  # higher-numbered answers no longer count
            if node_limit is not None and {o.worker for o in outs} >= set(range(first_definite)):
                break
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
    definite = sorted((o for o in outs if o.status in ("found", "infeasible") and o.worker <= first_definite),
                      key=lambda o: o.worker)
    if node_limit is None:
        definite = [o for o in outs if o.status in ("found", "infeasible")]  # the first to arrive
    best = definite[0] if definite else (outs[0] if outs else SearchOutcome(None, "timeout"))
    # with a node limit: the most nodes one process searched (what the limit bounds); else the total
    best.nodes = max((o.nodes for o in outs if o.worker <= first_definite), default=0) if node_limit is not None \
        else max(sum(o.nodes for o in outs), best.nodes)
    best.seconds = time.perf_counter() - started
    return best


__all__ = ["canonical_search", "SearchOutcome"]
