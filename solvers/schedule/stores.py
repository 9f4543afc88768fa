"""Placing the HBM stores of a schedule (docs/design.md §5.2), the one pass every design's schedule goes through.

Designs plan executions and loads; a program that writes to HBM (a training step's saved activations,
gradients and optimizer state, decode's KV append) also needs each store placed on the one channel. This pass
takes any schedule and gives each store an interval, in program order:

1. **into an idle stretch of the channel** after its operator ends and before any load that reads it back,
   where the interconnect and SRAM have room: the executions it overlaps keep their communication at the
   constant rate the store would take (checked exactly under fluid loads when that rigid test fails), and
   the SRAM in use from the operator's end to the store's end, plus the pending output, fits. A store is so
   deferred while loads are busy, within SRAM, and costs nothing;
2. **or into a pause** after its operator: every event at or after the operator's end moves later by the
   pause, the transfer running at that instant (if any) finishes, then the store runs alone. This is valid by
   construction: relative timings on either side of the pause are unchanged, no execution runs in it, and
   the SRAM in it is what was held at the operator's end without the operator's hot bytes, plus the output.

A load that starts before the operator whose output it reads has ended cannot be fixed by either move:
that is :class:`StorePlacementError`. The backward pass avoids it (a writer ends early enough for the loads
placed before it that read it back, solvers.schedule.engine); a load placed later in the pass, under a permuted
load order, could still start too early, and no run measured so far met one. An exact design that produces one
keeps its warm start.
"""
from __future__ import annotations

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError
from elk.noc import check_fluid, work_in_executions
from elk.schedule import Schedule
from elk.workload import Workload

#: idle stretches tried per store before a pause is inserted (each try is a few vectorized checks)
CANDIDATES = 24


class StorePlacementError(ScheduleError):
    """A store that no idle stretch or pause can place (a load reads the output before it exists)."""


def place_stores(workload: Workload, schedule: Schedule) -> Schedule:
    """``schedule`` with every store placed (unchanged when the program stores nothing)."""
    stores = np.flatnonzero(workload.has_store)
    if not len(stores):
        return schedule
    placer = _Placer(workload, schedule)
    for p in stores:
        placer.place(int(p))
    placed = schedule.with_stores(placer.w, placer.x, exec_start=placer.s, exec_end=placer.e,
                                  load_start=placer.a, load_end=placer.b)
    placed.info.before_stores = schedule
    placed.info.search["store_pauses"] = placer.pauses
    return placed


class _Placer:
    """The schedule's arrays while stores go in, and the facts the checks read."""

    def __init__(self, workload: Workload, schedule: Schedule) -> None:
        self.wl = workload
        self.s, self.e = schedule.exec_start.copy(), schedule.exec_end.copy()
        self.a, self.b = schedule.load_start.copy(), schedule.load_end.copy()
        self.w, self.x = self.e.copy(), self.e.copy()
        self.placed = np.zeros(len(workload), bool)
        self.pauses = 0
        chosen = workload.chosen(schedule.entry)
        self.hot, self.cold, self.comm, self.noc = chosen["hot"], chosen["cold"], chosen["comm"], chosen["noc"]
        self.loads = np.flatnonzero(workload.has_load)
        self.duration = workload.store_cycles
        writers, readers = workload.round_trips
        self.readers = {int(p): readers[writers == p] for p in np.unique(writers)}

    # ---- the channel, SRAM and interconnect as they stand ------------------------------------------------
    def transfers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(start, end, interconnect work, HBM cycles) of every load and placed store, in channel order."""
        st = np.flatnonzero(self.placed)
        start = np.concatenate([self.a[self.loads], self.w[st]])
        end = np.concatenate([self.b[self.loads], self.x[st]])
        work = np.concatenate([self.noc[self.loads], self.wl.store_noc_cycles[st]])
        hbm = np.concatenate([self.wl.hbm_cycles[self.loads], self.wl.store_hbm_cycles[st]])
        order = np.argsort(start, kind="stable")
        return start[order], end[order], work[order], hbm[order]

    def holds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every SRAM hold as the simulator counts it (rule 4): (from, to, bytes per core) of the running
        operators' hot bytes, the waiting loads' cold bytes and the pending stores' outputs."""
        st = np.flatnonzero(self.placed)
        return (np.concatenate([self.s, self.a[self.loads], self.e[st]]),
                np.concatenate([self.e, np.maximum(self.s, self.a)[self.loads], self.x[st]]),
                np.concatenate([self.hot, self.cold[self.loads], self.wl.store_cold[st]]).astype(np.float64))

    def peak_sram(self, t0: float, t1: float) -> float:
        """Most SRAM in use per core at any instant of ``[t0, t1)`` (releases before acquisitions at equal
        times, as the simulator orders them); the events outside the window are only summed, never sorted."""
        start, end, size = self.holds()
        base = float(size[(start <= t0) & (t0 < end)].sum())
        acquire = (start > t0) & (start < t1)
        release = (end > t0) & (end < t1)
        times = np.concatenate([start[acquire], end[release]])
        if not len(times):
            return base
        delta = np.concatenate([size[acquire], -size[release]])
        order = np.lexsort((delta, times))
        return max(base, base + float(np.cumsum(delta[order]).max()))

    def exec_slack(self, start: np.ndarray, end: np.ndarray, work: np.ndarray) -> np.ndarray:
        """Per execution: interconnect cycles left after its communication and the transfers at constant rates."""
        return (self.e - self.s) - self.comm - work_in_executions(self.s, self.e, start, end, work)

    # ---- one store ----------------------------------------------------------------------------------------
    def place(self, p: int) -> None:
        d = float(self.duration[p])
        end_p = float(self.e[p])
        readers = self.readers.get(p, np.zeros(0, np.int64))
        deadline = float(self.a[readers].min()) if len(readers) else np.inf
        if deadline < end_p - 1e-6:
            raise StorePlacementError(
                f"operator {self.wl.program.ops[readers[np.argmin(self.a[readers])]].name} loads the output of "
                f"{self.wl.program.ops[p].name} before that operator has run")
        start = self.idle_start(p, d, end_p, deadline)
        if start is None:
            start = self.pause(p, d, end_p)
            self.pauses += 1
        self.w[p], self.x[p] = start, start + d
        self.placed[p] = True

    def idle_start(self, p: int, d: float, end_p: float, deadline: float) -> float | None:
        """The earliest start in an idle stretch of the channel where the store fits (None: none found)."""
        ta, tb, work, hbm = self.transfers()
        gap_from = np.concatenate([[-np.inf], tb])
        gap_to = np.concatenate([ta, [np.inf]])
        starts = np.maximum(gap_from, end_p)
        ok = (gap_to - starts >= d - 1e-9) & (starts + d <= deadline + 1e-9)
        candidates = starts[ok][:CANDIDATES]
        if not len(candidates):
            return None
        # SRAM: the output is held from the operator's end to the store's end; the peak over that window only
        # grows with a later candidate, so the first candidate that overflows ends the search
        room = float(self.wl.chip.sram_per_core) - float(self.wl.store_cold[p])
        slack = self.exec_slack(ta, tb, work)
        store_work = float(self.wl.store_noc_cycles[p])
        for g in candidates:
            if self.peak_sram(end_p, g + d) > room:
                return None
            if self.interconnect_fits(p, g, d, store_work, slack, ta, tb, work, hbm):
                return float(g)
        return None

    def interconnect_fits(self, p: int, g: float, d: float, store_work: float, slack: np.ndarray, ta, tb, work,
                          hbm) -> bool:
        """Whether the executions ``[g, g + d)`` overlaps can carry the store's interconnect work.

        Rigid loads run at constant rates, so only the executions the store overlaps change: each needs the
        store's work inside it (at the store's constant rate) within its slack. Under fluid loads the work a
        load does is pinned at every transfer boundary (elk.noc), so only the *component* linked to the store
        by overlaps can change its verdict: if constant rates already fit every execution in it, they still
        fit with the store (the rigid test); otherwise that component is decided exactly."""
        overlap = np.clip(np.minimum(self.e, g + d) - np.maximum(self.s, g), 0.0, None)
        touched = overlap > 0
        if not touched.any():
            return True
        room = (store_work * overlap[touched] / d <= slack[touched] + 1e-6).all()
        if self.wl.chip.load_model is not LoadModel.FLUID:
            return bool(room)
        k = np.searchsorted(ta, g)
        a2, b2 = np.insert(ta, k, g), np.insert(tb, k, g + d)
        w2, h2 = np.insert(work, k, store_work), np.insert(hbm, k, float(self.wl.store_hbm_cycles[p]))
        lo, hi = g, g + d
        while True:
            ex = (self.s < hi) & (self.e > lo)
            tr = (a2 < hi) & (b2 > lo)
            new_lo = min(lo, self.s[ex].min() if ex.any() else lo, a2[tr].min() if tr.any() else lo)
            new_hi = max(hi, self.e[ex].max() if ex.any() else hi, b2[tr].max() if tr.any() else hi)
            if new_lo >= lo and new_hi <= hi:
                break
            lo, hi = new_lo, new_hi
        if room and (slack[ex] >= -1e-6).all():
            return True
        verdict = check_fluid(self.s[ex], self.e[ex], self.comm[ex], a2[tr], b2[tr], w2[tr], h2[tr], 1e-6)
        return not len(verdict.bad_execs) and not len(verdict.bad_loads)

    def pause(self, p: int, d: float, end_p: float) -> float:
        """Open a pause at the operator's end: the transfer running then finishes, the store follows, and
        everything after the operator's end moves later by the pause. Returns the store's start."""
        ta, tb, _, _ = self.transfers()
        running = (ta < end_p - 1e-9) & (tb > end_p + 1e-9)
        start = float(tb[running].max()) if running.any() else end_p
        shift = start - end_p + d
        later = self.s >= end_p - 1e-9
        self.s[later] += shift
        self.e[later] += shift
        moved = self.a >= end_p - 1e-9
        moved[~self.wl.has_load] = False
        self.a[moved] += shift
        self.b[moved] += shift
        st = self.placed & (self.w >= end_p - 1e-9)
        self.w[st] += shift
        self.x[st] += shift
        # SRAM in the pause: what was held at the operator's end without its hot bytes, plus the output
        held = self.peak_sram(end_p, end_p)
        if held + float(self.wl.store_cold[p]) > self.wl.chip.sram_per_core:
            raise StorePlacementError(
                f"the output of {self.wl.program.ops[p].name} ({int(self.wl.store_cold[p])} B per core) does not "
                f"fit next to the {int(held)} B per core held after it runs")
        return start
