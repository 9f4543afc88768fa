"""Exact allocation by a canonical branch-and-bound search (elk's own design).

Every feasible placement can be pushed down until no buffer can move lower;
among placements within a capacity, one with the least sum of offsets is of
this kind, and listing its buffers by offset gives a sequence in which each
buffer sits exactly on the highest end of the earlier buffers it meets in
time (its *rest*, or 0). The search builds such sequences bottom-up, so a
node is a set of placed buffers, the level L of the last placement (every
later offset is >= L) and, per time section, the floor (highest end placed
there). Only canonical sequences are searched, which the following rules
enforce; each is sound because a placement breaking it could lower some
buffer, so it is not a least-sum one:

* a buffer is placed only at its rest, and only if the rest is >= L;
* placing b at p is dominated if some other unplaced c fits entirely below:
  rest(c) + size(c) <= p (c could move down there);
* a node dies if an unplaced buffer has rest + size <= L (same reason);
* buffers identical in (lower, upper, size) are placed in index order.

Branching picks the lowest level f any buffer can take and, among the time
sections at level f, the one with least slack (capacity - floor - unplaced
size there), then fewest candidates; the children place each buffer
covering that section at f, and a last child *closes* the section at f (no
buffer starts there; its floor rises by at least the smallest unplaced size,
which must fit in its slack). Bounds at every node: per section, floor plus
unplaced size within capacity, and the lowest position any unplaced buffer
of the section can still take plus that size within capacity.

Search control: failed states are remembered (hashed), and the search
restarts on a Luby schedule of node budgets with randomised child orders
(largest first, longest-lived first, then random blends), which avoids
thrashing under one early mistake. With ``workers`` > 1, independent
processes run different orders and the first answer wins.

Scope: free buffers only (fixed offsets are left to CP-SAT / MILP);
alignment is supported by rounding rests up.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from elk.allocation import maximal_sections
from elk.procs import die_with_parent

_BIG = np.iinfo(np.int64).max // 4
MEMO_LIMIT = 2_000_000  # remembered failed states (16-byte digests) before the memo is cleared


class _Timeout(Exception):
    pass


class _Restart(Exception):
    pass


@dataclass
class SearchOutcome:
    offsets: np.ndarray | None  # in the units given to the search
    status: str  # "found", "infeasible" (complete search exhausted), "timeout"
    nodes: int = 0
    restarts: int = 0
    seconds: float = 0.0
    worker: int = 0


class _Search:
    def __init__(self, lower, upper, size, alignment, capacity: int, deadline: float, seed: int,
                 node_limit: int | None = None):
        self.n = n = len(size)
        self.node_limit = node_limit
        self.size = size.astype(np.int64)
        self.align = alignment.astype(np.int64)
        self.C = int(capacity)
        self.deadline = deadline
        t0, t1 = maximal_sections(lower, upper)
        # buffer i covers section k iff lower_i <= t0_k < upper_i
        self.cover = (lower[:, None] <= t0[None, :]) & (upper[:, None] > t0[None, :])
        self.S = S = len(t0)
        ks = [np.flatnonzero(self.cover[i]) for i in range(n)]
        self.first = np.array([k[0] if len(k) else 0 for k in ks], np.int64)
        self.stop = np.array([k[-1] + 1 if len(k) else 0 for k in ks], np.int64)  # contiguous ranges
        conf = (lower[:, None] < upper[None, :]) & (lower[None, :] < upper[:, None])
        np.fill_diagonal(conf, False)
        self.conf = conf
        pair_s, self.pair_b = np.nonzero(self.cover.T)  # (section, buffer) pairs, sorted by section
        self.sec_start = np.searchsorted(pair_s, np.arange(S))
        self.R0 = (self.cover * self.size[:, None]).sum(axis=0)
        twin = np.full(n, -1, np.int64)
        seen: dict = {}
        for i in range(n):
            key = (int(lower[i]), int(upper[i]), int(size[i]), int(alignment[i]))
            if key in seen:
                twin[i] = seen[key]
            seen[key] = i
        self.twin = twin
        self.has_twin = twin >= 0
        self.any_twin = bool(self.has_twin.any())
        self.twin_ix = np.maximum(twin, 0)
        self.idx = np.arange(n)
        life = (upper - lower).astype(float)
        self.log_size = np.log(self.size + 1.0)
        self.log_life = np.log(life + 1.0)
        self.rng = np.random.default_rng(seed)
        self.placed = np.zeros(n, bool)
        self.offsets = np.full(n, -1, np.int64)
        self.memo: set[bytes] = set()
        self.nodes = 0
        self.limit = 0
        self.score = self.log_size
        self.aligned = bool((self.align > 1).any())

    # ------------------------------------------------------------ search
    def run(self, first_order: str) -> SearchOutcome:
        started = time.perf_counter()
        restarts = 0
        orders = ["size", "life"] if first_order == "size" else ["life", "size"]
        base = 1000
        try:
            while True:
                restarts += 1
                if restarts <= 2:
                    a, b = (1.0, 1e-3) if orders[restarts - 1] == "size" else (1e-3, 1.0)
                    self.score = a * self.log_size + b * self.log_life
                else:
                    w = self.rng.random()
                    self.score = w * self.log_size + (1 - w) * self.log_life + 0.3 * self.rng.standard_normal(self.n)
                self.limit = self.nodes + base * _luby(restarts)
                self.placed[:] = False
                self.offsets[:] = -1
                try:
                    found = self._dfs(0, np.zeros(self.S, np.int64), np.zeros(self.S, np.int64), self.R0.copy(),
                                      np.zeros(self.n, np.int64), np.zeros(self.n, np.int64), 0)
                except _Restart:
                    continue
                status = "found" if found else "infeasible"
                return SearchOutcome(self.offsets.copy() if found else None, status, self.nodes, restarts,
                                     time.perf_counter() - started)
        except _Timeout:
            return SearchOutcome(None, "timeout", self.nodes, restarts, time.perf_counter() - started)

    def _dfs(self, depth, floor, art, R, pos, apos, L) -> bool:
        self.nodes += 1
        if self.node_limit is not None and self.nodes > self.node_limit:
            self.nodes -= 1  # report the nodes searched: exactly the limit, whatever the machine
            raise _Timeout
        if self.nodes & 1023 == 0 and time.perf_counter() > self.deadline:
            raise _Timeout
        if self.nodes > self.limit:
            raise _Restart
        if depth == self.n:
            return True
        key = hashlib.blake2b(self.placed.tobytes() + floor.tobytes() + art.tobytes() + L.to_bytes(8, "little",
                                                                                                  signed=True),
                              digest_size=16).digest()
        if key in self.memo:
            return False
        if self._node(depth, floor, art, R, pos, apos, L):
            return True
        if len(self.memo) > MEMO_LIMIT:
            self.memo.clear()
        self.memo.add(key)
        return False

    def _node(self, depth, floor, art, R, pos, apos, L) -> bool:
        C, sz, placed = self.C, self.size, self.placed
        U = ~placed
        top = pos + sz
        ready = (pos >= L) & (pos >= apos)
        lb = np.where(ready, pos, np.maximum(L + 1, apos))
        # an unplaced buffer that fits wholly below the level (not canonical), or cannot fit at all
        if (U & ((top <= L) | (lb + sz > C))).any():
            return False
        efl = np.maximum(floor, art)
        np.maximum(efl, L, out=efl)
        slack = C - efl - R  # floors never exceed C, so only sections with unplaced buffers can go negative
        if (slack < 0).any():
            return False
        live = R > 0
        lowest = np.minimum.reduceat(np.where(U, lb, _BIG)[self.pair_b], self.sec_start)
        if ((lowest + R > C) & live).any():
            return False
        # dominance: b may go next only below every other unplaced buffer's top (else that one could drop
        # beneath b); the buffer with the lowest top itself always passes (its rest is below its own top)
        lowest_top = int(np.where(U, top, _BIG).min())
        cand = U & ready & (pos < lowest_top)
        if self.any_twin:
            cand &= ~self.has_twin | placed[self.twin_ix]
        if not cand.any():
            return False
        f = int(pos[cand].min())
        at_f = np.flatnonzero(cand & (pos == f))
        counts = self.cover[at_f].sum(axis=0)
        # sections a candidate at f would fill from their floor (with alignment a rest can sit above every floor)
        secs = np.flatnonzero((counts > 0) & (efl <= f) & live)
        if secs.size == 0:
            return False
        k = secs[np.lexsort((counts[secs], slack[secs], efl[secs] != f))[0]]
        children = at_f[self.cover[at_f, k]]
        children = children[np.argsort(-self.score[children], kind="stable")]
        for b in children.tolist():
            e = f + int(sz[b])
            lo, hi = self.first[b], self.stop[b]
            nf = floor.copy()
            nf[lo:hi] = e
            nR = R.copy()
            nR[lo:hi] -= sz[b]
            npos = np.where(self.conf[b], np.maximum(pos, e), pos)
            if self.aligned:
                npos = -(-npos // self.align) * self.align
            placed[b] = True
            self.offsets[b] = f
            if self._dfs(depth + 1, nf, art, nR, npos, apos, f):
                return True
            placed[b] = False
            self.offsets[b] = -1
        smallest = int(sz[U].min())
        if slack[k] >= smallest:  # close the section at f: the next offset there is at least f + smallest
            na = art.copy()
            na[k] = f + smallest
            napos = np.where(self.cover[:, k], np.maximum(apos, f + smallest), apos)
            return self._dfs(depth, floor, na, R, pos, napos, L)
        return False


def _luby(i: int) -> int:
    k = 1
    while (1 << k) - 1 < i:
        k += 1
    if (1 << k) - 1 == i:
        return 1 << (k - 1)
    return _luby(i - (1 << (k - 1)) + 1)


def _solve_one(lower, upper, size, alignment, capacity, time_limit, seed, first_order,
               node_limit: int | None = None) -> SearchOutcome:
    size = np.asarray(size, np.int64)
    if (size == 0).any():  # nothing to place for empty buffers: offset 0, search the rest
        keep = np.flatnonzero(size > 0)
        out = _solve_one(np.asarray(lower)[keep], np.asarray(upper)[keep], size[keep], np.asarray(alignment)[keep],
                         capacity, time_limit, seed, first_order, node_limit)
        if out.offsets is not None:
            full = np.zeros(len(size), np.int64)
            full[keep] = out.offsets
            out.offsets = full
        return out
    if sys.getrecursionlimit() < 4 * len(size) + 1000:
        sys.setrecursionlimit(4 * len(size) + 1000)
    s = _Search(np.asarray(lower, np.int64), np.asarray(upper, np.int64), np.asarray(size, np.int64),
                np.asarray(alignment, np.int64), capacity, time.perf_counter() + time_limit, seed, node_limit)
    if len(size) == 0:
        return SearchOutcome(np.zeros(0, np.int64), "found")
    return s.run(first_order)


def _worker(queue, k: int, args: tuple, seed: int, node_limit: int | None, parent: int) -> None:
    die_with_parent(parent)  # a SIGKILLed caller must not leave searches running
    out = _solve_one(*args, seed=1000003 * k + seed, first_order="size" if k % 2 == 0 else "life",
                     node_limit=node_limit)
    out.worker = k
    queue.put(out)


def canonical_search(lower, upper, size, alignment, capacity: int, time_limit: float, *, workers: int = 1,
                     seed: int = 0, node_limit: int | None = None) -> SearchOutcome:
    """Find a placement within ``capacity`` (or prove there is none) in at most ``time_limit`` seconds.

    ``workers`` > 1 runs that many independent processes with different
    search orders; the first "found" or "infeasible" wins and the others are
    stopped. ``node_limit`` bounds each worker's search nodes: the answer
    then does not depend on the machine's speed (``time_limit`` only guards
    against a hang). With several workers and a node limit the answer taken is
    the lowest-numbered worker's definite one (every lower-numbered worker is
    waited for), so it is the same whichever worker happens to finish first.
    """
    if workers <= 1 or len(size) < 40:
        return _solve_one(lower, upper, size, alignment, capacity, time_limit, seed, "size", node_limit)
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
