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
that is :class:`StorePlacementError` (the backward pass never produces one; an exact design that does keeps
its warm start).
"""
from __future__ import annotations

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError
from elk.noc import check_fluid
from elk.schedule import Schedule
from elk.simulator import sram_profile
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
    raw = schedule
    placer = _Placer(workload, raw)
    for p in stores:
        placer.place(int(p))
    placed = raw.with_stores(placer.w, placer.x, exec_start=placer.s, exec_end=placer.e,
                             load_start=placer.a, load_end=placer.b)
    placed.info.before_stores = raw
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
        self.duration = np.maximum(workload.store_hbm_cycles, workload.store_noc_cycles)
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

    def sram(self) -> tuple[np.ndarray, np.ndarray]:
        """SRAM in use per core as the simulator counts it (times, level from each time on)."""
        st = np.flatnonzero(self.placed)
        return sram_profile(self.s, self.e, self.hot,
                            np.concatenate([self.a[self.loads], self.e[st]]),
                            np.concatenate([np.maximum(self.s, self.a)[self.loads], self.x[st]]),
                            np.concatenate([self.cold[self.loads], self.wl.store_cold[st]]))

    def exec_slack(self, start: np.ndarray, end: np.ndarray, work: np.ndarray) -> np.ndarray:
        """Per execution: interconnect cycles left after its communication and the transfers at constant rates."""
        length = np.where(end > start, end - start, 1.0)
        before = np.concatenate([[0.0], np.cumsum(work)])

        def used(t: np.ndarray) -> np.ndarray:
            k = np.searchsorted(start, t, side="right") - 1
            kk = np.maximum(k, 0)
            frac = np.clip((t - start[kk]) / length[kk], 0.0, 1.0)
            return np.where(k >= 0, before[kk] + work[kk] * frac, 0.0) if len(start) else np.zeros(len(t))

        return (self.e - self.s) - self.comm - (used(self.e) - used(self.s))

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
        times, level = self.sram()
        # SRAM: the output is held from the operator's end to the store's end; the level from end_p on only grows
        # as a running max, so the first candidate that overflows ends the search
        from_p = np.searchsorted(times, end_p, side="right") - 1
        peak = np.maximum.accumulate(level[max(from_p, 0):])
        room = float(self.wl.chip.sram_per_core) - float(self.wl.store_cold[p])
        slack = self.exec_slack(ta, tb, work)
        store_work = float(self.wl.store_noc_cycles[p])
        for g in candidates:
            k = np.searchsorted(times[max(from_p, 0):], g + d, side="left")
            if k and peak[min(k, len(peak)) - 1] > room:
                return None
            if self.interconnect_fits(p, g, d, store_work, slack, ta, tb, work, hbm):
                return float(g)
        return None

    def interconnect_fits(self, p: int, g: float, d: float, store_work: float, slack: np.ndarray, ta, tb, work,
                          hbm) -> bool:
        """Whether the executions ``[g, g + d)`` overlaps can carry the store's interconnect work."""
        overlap = np.clip(np.minimum(self.e, g + d) - np.maximum(self.s, g), 0.0, None)
        need = store_work * overlap / d if d > 0 else overlap * 0
        if (need <= slack + 1e-6).all():
            return True
        if self.wl.chip.load_model is not LoadModel.FLUID:
            return False
        # fluid loads may move their work within their intervals: decide exactly with the store added
        k = np.searchsorted(ta, g)
        a2, b2 = np.insert(ta, k, g), np.insert(tb, k, g + d)
        w2, h2 = np.insert(work, k, store_work), np.insert(hbm, k, float(self.wl.store_hbm_cycles[p]))
        verdict = check_fluid(self.s, self.e, self.comm, a2, b2, w2, h2, 1e-6)
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
        times, level = self.sram()
        k = np.searchsorted(times, end_p, side="right") - 1
        held = float(level[k]) if k >= 0 else 0.0
        if held + float(self.wl.store_cold[p]) > self.wl.chip.sram_per_core:
            raise StorePlacementError(
                f"the output of {self.wl.program.ops[p].name} ({int(self.wl.store_cold[p])} B per core) does not "
                f"fit next to the {int(held)} B per core held after it runs")
        return start
