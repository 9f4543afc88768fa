"""Plan-choice rules: which plan-table row an operator takes under a memory budget.

Each rule answers ``choose(op, budget) -> row | None`` in O(log rows) using
per-table arrays prepared once: rows sorted by the memory they need and a
running best, so a budget query is a binary search.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from elk.plantable import PlanTable
from elk.workload import Workload


@dataclass
class _Prefix:
    """Rows sorted by footprint with the best row among each prefix."""

    footprint: list[float]
    best_row: list[int]

    @classmethod
    def build(cls, footprint: np.ndarray, score: np.ndarray, tie: np.ndarray) -> "_Prefix":
        order = np.lexsort((tie, footprint))
        fp = footprint[order]
        sc = score[order]
        best_rows, best = [], None
        for k in range(len(order)):
            if best is None or sc[k] < score[best] - 1e-9:
                best = int(order[k])
            best_rows.append(best)
        return cls(fp.astype(float).tolist(), best_rows)

    def query(self, budget: float) -> int | None:
        k = bisect_right(self.footprint, budget) - 1
        return None if k < 0 else self.best_row[k]


class CostAware:
    """ELK's rule: fastest time plus a charge for interconnect use of a replicated cold layout.

    The charge is half the cycles one core needs to receive its cold bytes at
    its share of the load-distribution bandwidth (the artifact's penalty).
    """

    def __init__(self, workload: Workload, noc_penalty: float = 0.5):
        per_core_rate = workload.noc_load_bytes_per_cycle / workload.chip.cores
        cache: dict[int, _Prefix] = {}
        self.prefix: list[_Prefix] = []
        for t in workload.tables:
            key = id(t)
            if key not in cache:
                score = t.time + noc_penalty * t.cold / per_core_rate
                cache[key] = _Prefix.build(t.footprint(), score, t.cold)
            self.prefix.append(cache[key])

    def choose(self, op: int, budget: float) -> int | None:
        """The row of lowest cost (time plus the interconnect penalty of its cold layout) that fits ``budget``."""
        return self.prefix[op].query(budget)


class Fastest:
    """Ideal's rule (a relaxed schedule, not a bound): the fastest plan, whatever memory it needs."""

    def __init__(self, workload: Workload):
        self.rows = [t.fastest for t in workload.tables]

    def choose(self, op: int, budget: float) -> int | None:
        """The fastest row, whatever ``budget`` says (Ideal's relaxed rule)."""
        return self.rows[op]


class FixedCold:
    """Basic/Static's rule: a fixed cold choice, then the largest (fastest) hot plan that fits.

    ``largest=False``: the smallest cold layout. ``largest=True``: the largest
    cold layout whose smallest hot plan still fits. Then the fastest fitting
    hot plan for that cold layout (the artifact takes the largest, which is the
    fastest on a Pareto frontier before warm-up is added).
    """

    def __init__(self, workload: Workload, largest: bool):
        self.largest = largest
        self.tables: list[PlanTable] = workload.tables
        self._cache: dict[tuple[int, int], int | None] = {}

    def choose(self, op: int, budget: float) -> int | None:
        """The fastest row with this design's cold layout (smallest or largest that fits) within ``budget``; None if
        nothing fits."""
        t = self.tables[op]
        key = (id(t), int(budget))
        if key in self._cache:
            return self._cache[key]
        fits = (t.cold <= budget) & (t.hot <= budget)
        row = None
        if fits.any():
            if self.largest:
                cold = t.cold[fits].max()
            else:
                cold = t.cold[fits].min()
            cand = np.flatnonzero(fits & (t.cold == cold))
            row = int(cand[np.lexsort((-t.hot[cand], t.time[cand]))[0]])
        self._cache[key] = row
        return row

    def smallest_hot_of_smallest_cold(self, op: int) -> int:
        """Smallest hot size among the rows with the smallest cold size."""
        t = self.tables[op]
        return int(t.hot[t.cold == t.cold.min()].min())
