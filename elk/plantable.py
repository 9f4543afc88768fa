"""Per-operator plan tables: what schedulers choose from.

A table row is a (cold, hot) pair: the operator waits preloaded in a compact
*cold* layout (bytes per core), converts to the *hot* layout of a Pareto-
optimal execution plan (same spatial split, a temporal split that divides the
cold one), and runs. Its time includes that warm-up. Exactly the artifact's
cold-hot table, built from numpy arrays instead of millions of Python tuples,
and cached per operator shape and chip.
"""
from __future__ import annotations

import time as _time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from elk.chip import Chip
from elk.costmodel import warmup_cycles
from elk.errors import OperatorDoesNotFitError
from elk.ir import OpSignature
from elk.plans import PlanSet, enumerate_plans


@dataclass(frozen=True)
class PlanTable:
    sig: OpSignature
    # cold-hot rows, sorted by (cold, hot)
    cold: np.ndarray  # bytes per core while preloaded
    hot: np.ndarray  # bytes per core while executing
    time: np.ndarray  # cycles, hot plan time + warm-up
    comp: np.ndarray  # cycles of computation
    comm: np.ndarray  # cycles of interconnect use (sync, shifts, shuffle, warm-up)
    warmup: np.ndarray
    spatial: np.ndarray  # (m, D)
    hot_temporal: np.ndarray  # (m, D, V)
    cold_temporal: np.ndarray  # (m, D, V)
    # the execution Pareto frontier (hot bytes, time), for reporting
    frontier_hot: np.ndarray
    frontier_time: np.ndarray
    n_plans: int
    n_spatial: int
    build_seconds: float

    def __len__(self) -> int:
        return len(self.cold)

    @property
    def min_cold(self) -> int:
        return int(self.cold[0])

    @property
    def min_hot(self) -> int:
        return int(self.hot.min())

    @property
    def fastest(self) -> int:
        """Row of the fastest entry (smallest memory among ties)."""
        return int(np.lexsort((self.hot, self.cold, self.time))[0])

    def footprint(self) -> np.ndarray:
        """Bytes the entry needs to be chosen under a budget: both layouts must fit."""
        return np.maximum(self.cold, self.hot)

    def rows(self) -> list[dict]:
        return [{"cold_bytes": int(c), "hot_bytes": int(h), "time_cycles": float(t), "comp_cycles": float(cp),
                 "comm_cycles": float(cm), "warmup_cycles": float(w), "spatial": tuple(int(x) for x in s)}
                for c, h, t, cp, cm, w, s in zip(self.cold, self.hot, self.time, self.comp, self.comm,
                                                 self.warmup, self.spatial)]


def pareto_front(hot: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Indices of plans that are strictly faster than every plan using less or equal memory."""
    order = np.lexsort((time, hot))
    best_so_far = np.minimum.accumulate(time[order])
    prev_best = np.concatenate([[np.inf], best_so_far[:-1]])
    return order[time[order] < prev_best]


def build_table(plans: PlanSet, chip: Chip) -> tuple[dict, np.ndarray]:
    """Cold-hot rows of an operator and its execution Pareto frontier.

    Hot candidates are *all* plans whose hot size is on the frontier, not only
    the fastest one per size: a slower plan of the same size may be the only
    one a compact cold layout converts into. (The artifact keeps an
    enumeration-order-dependent subset of them; this is the superset.)
    """
    sram = chip.sram_per_core
    fits = plans.hot <= sram
    if not fits.any():
        raise OperatorDoesNotFitError(
            f"{plans.sig.describe()} needs at least {int(plans.hot.min())} bytes per core even fully "
            f"partitioned over {chip.cores} cores, but a core has {sram} bytes of SRAM")
    candidates = np.flatnonzero(fits)
    front = candidates[pareto_front(plans.hot[candidates], plans.time[candidates])]
    hot_plans = candidates[np.isin(plans.hot[candidates], plans.hot[front])]
    first, last = plans.spatial_ranges()
    group = plans.spatial_id[hot_plans]
    sizes = last[group] - first[group]
    h = np.repeat(hot_plans, sizes)
    c = np.repeat(first[group], sizes) + (np.arange(len(h)) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    ok = (plans.cold[c] <= plans.hot[h]) & (plans.cold[c] <= sram)
    h, c = h[ok], c[ok]
    ok = np.all(plans.temporal[c] % plans.temporal[h] == 0, axis=(1, 2))
    h, c = h[ok], c[ok]
    warm = np.empty(len(h))
    for start in range(0, len(h), 1 << 16):  # bounded memory for very large operators
        sl = slice(start, start + (1 << 16))
        warm[sl] = warmup_cycles(plans.sig, chip, plans.temporal[c[sl]], plans.temporal[h[sl]],
                                 plans.var_elems[c[sl]], plans.var_comm_factor[c[sl]])
    total = plans.time[h] + warm
    cold, hot = plans.cold[c], plans.hot[h]
    order = np.lexsort((total, hot, cold))  # per (cold, hot) keep the fastest pair
    first_of = np.concatenate([[True], (cold[order][1:] != cold[order][:-1]) | (hot[order][1:] != hot[order][:-1])])
    keep = order[first_of]
    merged = {"cold": cold[keep], "hot": hot[keep], "time": total[keep], "comp": plans.comp[h[keep]],
              "comm": plans.comm[h[keep]] + warm[keep], "warmup": warm[keep], "hot_plan": h[keep],
              "cold_plan": c[keep]}
    return merged, front


@lru_cache(maxsize=4096)
def plan_table(sig: OpSignature, chip: Chip) -> PlanTable:
    """The plan table of an operator shape on a chip (cached; chips hash by value)."""
    started = _time.perf_counter()
    plans = enumerate_plans(sig, chip)
    if len(plans) == 0:
        raise OperatorDoesNotFitError(f"{sig.describe()}: no partition plan satisfies the utilisation and "
                                      f"padding rules on {chip.cores} cores")
    rows, front = build_table(plans, chip)
    hp, cp = rows["hot_plan"], rows["cold_plan"]
    return PlanTable(
        sig=sig, cold=rows["cold"], hot=rows["hot"], time=rows["time"], comp=rows["comp"],
        comm=rows["comm"], warmup=rows["warmup"], spatial=plans.spatial[plans.spatial_id[hp]],
        hot_temporal=plans.temporal[hp], cold_temporal=plans.temporal[cp],
        frontier_hot=plans.hot[front], frontier_time=plans.time[front], n_plans=len(plans),
        n_spatial=len(plans.spatial), build_seconds=_time.perf_counter() - started)


def tables_for(program, chip: Chip) -> list[PlanTable]:
    """One table per operator of a program (shared between identical shapes)."""
    return [plan_table(op.signature, chip) for op in program.ops]
