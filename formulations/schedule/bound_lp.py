"""A linear relaxation of the whole scheduling problem whose optimum is a proven lower bound on latency.

What it keeps of DESIGN.md §5 (rules 1-4), per operator i in program order:

* plan choice as a convex combination ``y[i, p]`` of its undominated plan rows
  (``integer=True`` makes it a binary choice: a MILP, tighter and slower);
* executions one at a time: ``s[i] + d[i] <= s[i+1]``, ``d[i] >= sum_p y[i,p] T_p``;
* ``G(t)``, the HBM work (in cycles of full HBM bandwidth) all loads have done by
  ``t``, at the execution boundaries: ``Gs[i] = G(s[i])``, ``Ge[i] = G(e[i])``.
  It never decreases and grows at most ``r = min(1, 1/rho)`` per cycle (the HBM
  bandwidth, and the interconnect: a load's interconnect work is ``rho >= rho_min``
  times its HBM work, ``rho_min`` = HBM / load-distribution bandwidth at the
  minimum, unreplicated cold layout);
* rule 2, whatever the load order: every load of operators ``<= i`` is done before
  operator i starts: ``Gs[i] >= H[<= i]`` (prefix sums of HBM work);
* rule 3, the interconnect: inside execution i the loads' interconnect work is at
  most what its communication leaves: ``rho_min * (Ge[i] - Gs[i]) <= d[i] - sum_p y C_p``
  (valid for fluid loads, hence for rigid ones, which are a special case);
* rule 4, SRAM: while i runs, every load of a later operator that has begun holds
  its whole cold layout, at least its minimum cold size, which is exactly
  ``bwc`` bytes per core per cycle of its HBM work (``bwc`` = HBM bytes per cycle /
  cores). Work done by ``e[i]`` beyond ``H[<= i]`` is work on such loads, so
  ``(Ge[i] - H[<= i]) * bwc + sum_p y hot_p <= SRAM``.

The first event is at time 0 (``G(0) = 0``, every time >= 0); the objective is the
end of the last execution. Every valid schedule, under either load model and
any load order, gives a feasible point with the same objective (its own plan
choices, times and ``G``), so the optimum is a lower bound. The model is built
as sparse arrays and handed to HiGHS directly (tens of thousands of columns in
well under a second).
"""
from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np


@dataclass(frozen=True)
class BoundData:
    """What the relaxation needs from a workload (one entry per operator, program order)."""

    time: list[np.ndarray]  # plan times of each operator's candidate rows (cycles)
    comm: list[np.ndarray]  # their communication cycles
    hot: list[np.ndarray]  # their hot bytes per core
    hbm: np.ndarray  # HBM cycles of each operator's load (0: nothing to load)
    rho_min: float  # interconnect work per HBM cycle of the cheapest load
    sram: float  # bytes per core
    bwc: float  # HBM bytes per cycle per core (min-cold bytes a cycle of HBM work brings to each core)


@dataclass
class BoundLp:
    """The relaxation as a HiGHS model, and where its columns are."""

    highs: highspy.Highs
    n: int
    start: np.ndarray  # column of s[i]
    duration: np.ndarray  # column of d[i]
    choice: list[np.ndarray]  # columns of y[i, :]

    def objective(self) -> float:
        return float(self.highs.getInfo().objective_function_value)


def build_bound_lp(data: BoundData, integer: bool = False) -> BoundLp:
    n = len(data.hbm)
    sizes = np.array([len(t) for t in data.time])
    # columns: s, d, Gs, Ge (n each), then the choice columns
    s, d, gs, ge = (np.arange(k * n, (k + 1) * n) for k in range(4))
    offsets = 4 * n + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    choice = [np.arange(o, o + k) for o, k in zip(offsets, sizes)]
    ncols = 4 * n + int(sizes.sum())
    inf = highspy.kHighsInf
    lower = np.zeros(ncols)
    upper = np.full(ncols, inf)
    upper[4 * n:] = 1.0
    cost = np.zeros(ncols)
    cost[s[-1]] = cost[d[-1]] = 1.0

    rho = float(data.rho_min)
    rate = min(1.0, 1.0 / rho) if rho > 0 else 1.0
    prefix = np.cumsum(data.hbm)
    rows = _Rows()
    ops = np.arange(n)
    all_choice = np.concatenate(choice)
    owner = np.repeat(ops, sizes)  # operator of each choice column
    t_all = np.concatenate(data.time)
    c_all = np.concatenate(data.comm)
    h_all = np.concatenate(data.hot)
    # sum_p y = 1
    rows.add_block(np.ones(n), np.ones(n), row_of=owner, cols=all_choice, vals=np.ones(len(all_choice)))
    # d - sum y T >= 0
    rows.add_pairs(np.zeros(n), np.full(n, inf), [(d, 1.0)], extra=(owner, all_choice, -t_all))
    # G rises at most ``rate`` inside an execution, and only as far as the communication leaves room for
    rows.add_pairs(np.zeros(n), np.full(n, inf), [(ge, 1.0), (gs, -1.0)])
    rows.add_pairs(np.full(n, -inf), np.zeros(n), [(ge, 1.0), (gs, -1.0), (d, -rate)])
    rows.add_pairs(np.full(n, -inf), np.zeros(n), [(ge, rho), (gs, -rho), (d, -1.0)], extra=(owner, all_choice, c_all))
    # every load of an operator <= i is done when i starts
    rows.add_pairs(prefix, np.full(n, inf), [(gs, 1.0)])
    # SRAM while i runs: preloaded work at min cold plus the running plan's hot bytes
    rows.add_pairs(np.full(n, -inf), data.sram / data.bwc + prefix, [(ge, 1.0)],
                   extra=(owner, all_choice, h_all / data.bwc))
    if n > 1:
        # executions in order; G between them never falls and rises at most ``rate``
        rows.add_pairs(np.zeros(n - 1), np.full(n - 1, inf), [(s[1:], 1.0), (s[:-1], -1.0), (d[:-1], -1.0)])
        rows.add_pairs(np.zeros(n - 1), np.full(n - 1, inf), [(gs[1:], 1.0), (ge[:-1], -1.0)])
        rows.add_pairs(np.full(n - 1, -inf), np.zeros(n - 1),
                       [(gs[1:], 1.0), (ge[:-1], -1.0), (s[1:], -rate), (s[:-1], rate), (d[:-1], rate)])
    # from the first event at time 0
    rows.add_pairs(np.array([-inf]), np.array([0.0]), [(gs[:1], 1.0), (s[:1], -rate)])

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(ncols, lower, upper)
    h.changeColsCost(ncols, np.arange(ncols, dtype=np.int32), cost)
    lo, hi, starts, index, value = rows.csr()
    h.addRows(len(lo), lo, hi, len(index), starts, index, value)
    if integer:
        h.changeColsIntegrality(len(all_choice), all_choice.astype(np.int32),
                                np.full(len(all_choice), highspy.HighsVarType.kInteger))
    return BoundLp(h, n, s, d, choice)


class _Rows:
    """Row-wise sparse constraints built from whole arrays at once (no loop over operators)."""

    def __init__(self) -> None:
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.count = 0

    def add_block(self, lo, hi, row_of, cols, vals) -> None:
        self.lo.append(np.asarray(lo, float))
        self.hi.append(np.asarray(hi, float))
        self.r.append(self.count + np.asarray(row_of))
        self.c.append(np.asarray(cols))
        self.v.append(np.asarray(vals, float))
        self.count += len(lo)

    def add_pairs(self, lo, hi, terms, extra=None) -> None:
        """One row per element of ``lo``: sum of coef * column over ``terms``, plus ``extra`` (row, col, val)."""
        m = len(lo)
        rows_of = np.arange(m)
        rs, cs, vs = [], [], []
        for cols, coef in terms:
            rs.append(rows_of)
            cs.append(np.asarray(cols))
            vs.append(np.full(m, coef, float))
        if extra is not None:
            rs.append(np.asarray(extra[0]))
            cs.append(np.asarray(extra[1]))
            vs.append(np.asarray(extra[2], float))
        self.add_block(lo, hi, np.concatenate(rs), np.concatenate(cs), np.concatenate(vs))

    def csr(self):
        r = np.concatenate(self.r)
        c = np.concatenate(self.c)
        v = np.concatenate(self.v)
        order = np.lexsort((c, r))
        r, c, v = r[order], c[order], v[order]
        starts = np.searchsorted(r, np.arange(self.count)).astype(np.int32)
        return (np.concatenate(self.lo), np.concatenate(self.hi), starts, c.astype(np.int32), v)
