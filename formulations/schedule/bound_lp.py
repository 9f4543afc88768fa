"""A linear relaxation of the whole scheduling problem whose optimum is a proven lower bound on latency.

What it keeps of docs/design.md §5 (rules 1-4), per operator i in program order:

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

* rule 3 again, with each load charged at the layout its operator's plan asks
  for: a load of HBM work ``h_j`` whose operator runs row p needs ``h_j *
  rho_min * ratio_p`` cycles of interconnect (``ratio_p`` = the row's cold bytes
  / the minimum cold bytes: the broadcast ratio), linear in the same ``y[j, p]``
  the time, communication and SRAM rows use. Loads and communication share the
  one interconnect, one cycle of it per cycle, and every load of an operator
  ``<= i`` is done when i starts, so ``s[i] >= sum_{j <= i} sum_p y[j,p] noc_p +
  sum_{k < i} sum_p y[k,p] C_p`` (kept at the operators with a load: elsewhere
  it follows from the one before, executions being serial), and the last
  execution ends after all of it: ``s[n-1] + d[n-1] >= all loads' and all
  communication's interconnect cycles``. Under fluid loads a load's
  interconnect work is still bytes x ratio (only its rate varies), and rigid
  loads are a special case, so this holds under both models. (A part of a
  program, ``free_entry``, is charged its own communication only.) These rows
  can be left out of a first solve (``staged``): if its optimum meets them it
  is optimal with them too; either optimum is a bound.

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
    #: broadcast ratio (cold bytes / minimum cold bytes) of each candidate row's cold layout; None: all 1
    ratio: list[np.ndarray] | None = None

    @property
    def rate(self) -> float:
        """How fast G may rise (HBM work per cycle): the HBM bandwidth, and the interconnect at ``rho_min``."""
        rho = float(self.rho_min)
        return min(1.0, 1.0 / rho) if rho > 0 else 1.0

    def ratios(self) -> list[np.ndarray]:
        if self.ratio is None:
            return [np.ones(len(t)) for t in self.time]
        return self.ratio

    def part(self, part: slice) -> "BoundData":
        """The data of a run of consecutive operators (one layer)."""
        return BoundData(time=self.time[part], comm=self.comm[part], hot=self.hot[part], hbm=self.hbm[part],
                         rho_min=self.rho_min, sram=self.sram, bwc=self.bwc, ratio=self.ratios()[part])


@dataclass
class BoundLp:
    """The relaxation as a HiGHS model, and where its columns are."""

    highs: highspy.Highs
    n: int
    start: np.ndarray  # column of s[i]
    duration: np.ndarray  # column of d[i]
    choice: list[np.ndarray]  # columns of y[i, :]
    work_at_start: np.ndarray  # column of Gs[i]
    work_at_end: np.ndarray  # column of Ge[i]
    late: "_Rows | None" = None  # rows not yet in the model (``staged``)
    late_slack: "object | None" = None  # primal values -> least slack of the late rows (negative: violated)

    def add_late(self) -> None:
        """Add the rows left out by ``staged``; HiGHS then re-solves from the basis it has."""
        if self.late is not None:
            self.highs.addRows(*_csr_args(self.late))
            self.late = None

    def objective(self) -> float:
        """The solved model's objective (cycles)."""
        return float(self.highs.getInfo().objective_function_value)


def build_bound_lp(data: BoundData, integer: bool = False, pairs: int = 0, free_entry: bool = False,
                   staged: bool = False, link: bool = False) -> BoundLp:
    """The relaxation; ``pairs`` > 0 adds, for each execution, binaries saying whether each of the next
    ``pairs`` large loads has begun before it ends (see :func:`_add_full_charge`); useful with ``integer``.

    ``free_entry``: a *part* of a program (one layer): its loads may have done any
    work before its first execution, at no cost but the SRAM it then occupies;
    the objective is the span of its executions (see solvers.schedule.bounds.layer_bound).
    """
    n = len(data.hbm)
    sizes = np.array([len(t) for t in data.time])
    # columns: s, d, Gs, Ge (n each), the choice columns, the pair binaries, then P and Q (one per loading operator)
    s, d, gs, ge = (np.arange(k * n, (k + 1) * n) for k in range(4))
    offsets = 4 * n + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    choice = [np.arange(o, o + k) for o, k in zip(offsets, sizes)]
    pair_k, pair_j = _pairs(data.hbm, pairs)
    first_z = 4 * n + int(sizes.sum())
    first_u = first_z + len(pair_k)  # u[k, j]: the cold bytes j's begun load holds while k runs (0 if not begun)
    first_pq = first_u + len(pair_k)
    first_link = first_pq + (0 if free_entry else 2 * int((data.hbm > 0).sum()))
    ncols = first_link + (3 * n if link else 0)
    inf = highspy.kHighsInf
    lower = np.zeros(ncols)
    upper = np.full(ncols, inf)
    upper[4 * n:first_u] = 1.0
    cost = np.zeros(ncols)
    cost[s[-1]] = cost[d[-1]] = 1.0

    rho = float(data.rho_min)
    rate = data.rate
    prefix = np.cumsum(data.hbm)
    rows = _Rows()
    ops = np.arange(n)
    all_choice = np.concatenate(choice)
    owner = np.repeat(ops, sizes)  # operator of each choice column
    t_all = np.concatenate(data.time)
    c_all = np.concatenate(data.comm)
    h_all = np.concatenate(data.hot)
    # interconnect cycles of the operator's load if it runs this row: HBM work x rho_min x the row's broadcast ratio
    noc_all = data.hbm[owner] * rho * np.concatenate(data.ratios())
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
    # the interconnect, with every load charged at its chosen row's layout (see the module docstring), at the
    # starts of the operators with a load (elsewhere the row follows from the one before: executions are serial):
    # P[m] = P[m-1] + sum_p y[l_m,p] noc_p (loads of operators <= l_m), Q[m] = Q[m-1] + the communication of
    # the operators in [l_{m-1}, l_m) (those < l_m); a part of a program is charged its communication only
    late = _Rows()  # solved after the rest, from its optimal basis (see BoundLp.add_late)
    loaded = np.flatnonzero(data.hbm > 0) if not free_entry else np.zeros(0, np.int64)
    m = len(loaded)
    if m:
        pc, qc = (first_pq + np.arange(k * m, (k + 1) * m) for k in range(2))
        seg = np.searchsorted(loaded, owner, side="right")  # choice column's operator is < l_seg, >= l_{seg-1}
        mine = np.flatnonzero(np.isin(owner, loaded))
        late.add_block(np.zeros(m), np.zeros(m),
                       row_of=np.concatenate([np.arange(m), np.arange(1, m), np.searchsorted(loaded, owner[mine])]),
                       cols=np.concatenate([pc, pc[:-1], all_choice[mine]]),
                       vals=np.concatenate([np.ones(m), -np.ones(m - 1), -noc_all[mine]]))
        before = seg < m
        late.add_block(np.zeros(m), np.zeros(m),
                       row_of=np.concatenate([np.arange(m), np.arange(1, m), seg[before]]),
                       cols=np.concatenate([qc, qc[:-1], all_choice[before]]),
                       vals=np.concatenate([np.ones(m), -np.ones(m - 1), -c_all[before]]))
        late.add_pairs(np.zeros(m), np.full(m, inf), [(s[loaded], 1.0), (pc, -1.0), (qc, -1.0)])
        # by the end: every load, and all communication
        after = ~before
        late.add_block(np.zeros(1), np.array([inf]), row_of=np.zeros(4 + int(after.sum()), int),
                       cols=np.concatenate([[s[-1], d[-1], pc[-1], qc[-1]], all_choice[after]]),
                       vals=np.concatenate([[1.0, 1.0, -1.0, -1.0], -c_all[after]]))
    else:
        late.add_block(np.zeros(1), np.array([inf]), row_of=np.zeros(2 + len(all_choice), int),
                       cols=np.concatenate([[s[-1], d[-1]], all_choice]), vals=np.concatenate([[1.0, 1.0], -c_all]))
    if n > 1:
        # executions in order; G between them never falls and rises at most ``rate``
        rows.add_pairs(np.zeros(n - 1), np.full(n - 1, inf), [(s[1:], 1.0), (s[:-1], -1.0), (d[:-1], -1.0)])
        rows.add_pairs(np.zeros(n - 1), np.full(n - 1, inf), [(gs[1:], 1.0), (ge[:-1], -1.0)])
        rows.add_pairs(np.full(n - 1, -inf), np.zeros(n - 1),
                       [(gs[1:], 1.0), (ge[:-1], -1.0), (s[1:], -rate), (s[:-1], rate), (d[:-1], rate)])
    # from the first event at time 0 (for a part of a program: its first execution at time 0)
    if free_entry:
        upper[s[0]] = 0.0
    else:
        rows.add_pairs(np.array([-inf]), np.array([0.0]), [(gs[:1], 1.0), (s[:1], -rate)])
    if link:
        _add_link(rows, data, n, s, d, gs, ge, owner, all_choice, c_all, h_all, noc_all, first_link, free_entry, rho)
    if len(pair_k):
        _add_full_charge(rows, data, s, d, owner, all_choice, h_all, pair_k, pair_j, first_z, rho, choice,
                         first_u if link else None)

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(ncols, lower, upper)
    h.changeColsCost(ncols, np.arange(ncols, dtype=np.int32), cost)
    lo, hi, starts, index, value = rows.csr()
    h.addRows(len(lo), lo, hi, len(index), starts, index, value)
    if integer or not staged:
        h.addRows(*_csr_args(late))
        late = None

    def late_slack(x: np.ndarray) -> float:
        """The least slack of the interconnect rows at primal values ``x`` (P and Q recomputed from y)."""
        y = x[all_choice]
        noc_op = np.bincount(owner, y * noc_all, minlength=n)
        comm_op = np.bincount(owner, y * c_all, minlength=n)
        before = np.concatenate([[0.0], np.cumsum(comm_op)[:-1]])  # communication of the operators < i
        end = x[s[-1]] + x[d[-1]] - comm_op.sum()
        if free_entry:
            return float(end)
        need = np.cumsum(noc_op) + before
        return float(min(end - noc_op.sum(), (x[s[loaded]] - need[loaded]).min() if len(loaded) else np.inf))
    if integer:
        binaries = np.concatenate([all_choice, np.arange(first_z, first_u)]).astype(np.int32)
        h.changeColsIntegrality(len(binaries), binaries, np.full(len(binaries), highspy.HighsVarType.kInteger))
    return BoundLp(h, n, s, d, choice, gs, ge, late, late_slack)


def _add_link(rows: "_Rows", data: BoundData, n, s, d, gs, ge, owner, all_choice, c_all, h_all, noc_all, first,
              free_entry: bool, rho: float) -> None:
    """``N(t)``, the interconnect work the loads have done by ``t``, at the execution boundaries
    (``Ns[i]``, ``Ne[i]``), with each load charged at its chosen row's broadcast ratio; ``P[i]`` that of the loads
    of operators ``<= i``.

    * every load of an operator ``<= i`` is done when i starts: ``Ns[i] >= P[i]``;
    * N rises at least ``rho_min`` x G's rise (a ratio is at least 1), inside an execution at most what its
      communication leaves, between executions at most one cycle a cycle (and, for a whole program, from 0);
    * SRAM while i runs: the loads of later operators have done ``Ne[i] - P[i]`` of interconnect work, and a begun
      load holds its chosen layout, ratio x its minimum cold bytes, which is ``bwc / rho_min`` bytes per core per
      cycle of its whole interconnect work, so at least that per cycle of what it has done:
      ``hot + (bwc / rho_min) (Ne[i] - P[i]) <= SRAM``.
    Valid under either load model (a load's interconnect work is bytes x ratio however its rate varies).
    """
    inf = highspy.kHighsInf
    ns, ne, pn = (first + np.arange(k * n, (k + 1) * n) for k in range(3))
    ops = np.arange(n)
    rows.add_block(np.zeros(n), np.zeros(n), row_of=np.concatenate([ops, np.arange(1, n), owner]),
                   cols=np.concatenate([pn, pn[:-1], all_choice]),
                   vals=np.concatenate([np.ones(n), -np.ones(n - 1), -noc_all]))
    rows.add_pairs(np.zeros(n), np.full(n, inf), [(ns, 1.0), (pn, -1.0)])
    rows.add_pairs(np.zeros(n), np.full(n, inf), [(ne, 1.0), (ns, -1.0), (ge, -rho), (gs, rho)])
    rows.add_pairs(np.full(n, -inf), np.zeros(n), [(ne, 1.0), (ns, -1.0), (d, -1.0)], extra=(owner, all_choice, c_all))
    if rho > 0:
        rows.add_pairs(np.full(n, -inf), np.full(n, data.sram), [(ne, data.bwc / rho), (pn, -data.bwc / rho)],
                       extra=(owner, all_choice, h_all))
    if n > 1:
        rows.add_pairs(np.zeros(n - 1), np.full(n - 1, inf),
                       [(ns[1:], 1.0), (ne[:-1], -1.0), (gs[1:], -rho), (ge[:-1], rho)])
        rows.add_pairs(np.full(n - 1, -inf), np.zeros(n - 1),
                       [(ns[1:], 1.0), (ne[:-1], -1.0), (s[1:], -1.0), (s[:-1], 1.0), (d[:-1], 1.0)])
    rows.add_pairs(np.zeros(1), np.array([inf]), [(ns[:1], 1.0), (gs[:1], -rho)])
    if not free_entry:
        rows.add_pairs(np.array([-inf]), np.zeros(1), [(ns[:1], 1.0), (s[:1], -1.0)])


def _pairs(hbm: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, j) for every operator k and each of the next ``count`` operators j > k with a large load
    (at least 1% of the largest; the many tiny loads are left to the fractional SRAM row)."""
    if count <= 0 or not (hbm > 0).any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    loaded = np.flatnonzero(hbm >= 0.01 * hbm.max())
    n = len(hbm)
    ks, js = [], []
    for q in range(count):
        pos = np.searchsorted(loaded, np.arange(n), side="right") + q
        ok = pos < len(loaded)
        ks.append(np.arange(n)[ok])
        js.append(loaded[pos[ok]])
    k = np.concatenate(ks)
    j = np.concatenate(js)
    order = np.lexsort((j, k))
    return k[order], j[order]


def _add_full_charge(rows: "_Rows", data: BoundData, s, d, owner, all_choice, h_all, pair_k, pair_j, first_z,
                     rho: float, choice: list[np.ndarray], first_u: int | None) -> None:
    """Loads charged whole: ``z[k, j] = 1`` iff operator j's load has begun when execution k ends.

    * SRAM while k runs: its hot bytes plus the cold bytes of every such j (a
      begun load holds its whole layout, not only what has arrived): its
      minimum cold bytes, or with ``first_u`` the cold bytes of the layout its
      chosen row asks for (``u[k, j]``, an exact linearisation of ``z[k, j]`` x
      the chosen row's cold bytes);
    * otherwise j's load lies wholly after k and before j starts, and so do those
      of the operators between them that have not begun either (one channel):
      ``s[j] - e[k] >= sum over i in (k, j] with z[k, i] = 0 of L_i``, with
      ``L_i = h_i * max(1, rho_min)`` the shortest load (HBM and interconnect);
    * a load begun before k ends has begun before k + 1 ends.
    All valid for every schedule (under either load model), whatever its load order.
    """
    inf = highspy.kHighsInf
    n = len(data.hbm)
    z = first_z + np.arange(len(pair_k))
    cold = data.hbm * data.bwc  # minimum cold bytes per core, exactly what a cycle of HBM work brings
    shortest = data.hbm * max(1.0, rho)
    # SRAM rows, one per execution that has pairs
    ks = np.unique(pair_k)
    row_of_k = np.full(n, -1)
    row_of_k[ks] = np.arange(len(ks))
    has = row_of_k[owner] >= 0
    if first_u is None:  # begun loads charged their minimum cold bytes
        rows.add_block(np.full(len(ks), -inf), np.full(len(ks), data.sram),
                       row_of=np.concatenate([row_of_k[owner[has]], row_of_k[pair_k]]),
                       cols=np.concatenate([all_choice[has], z]), vals=np.concatenate([h_all[has], cold[pair_j]]))
    else:
        u = first_u + np.arange(len(pair_k))
        rows.add_block(np.full(len(ks), -inf), np.full(len(ks), data.sram),
                       row_of=np.concatenate([row_of_k[owner[has]], row_of_k[pair_k]]),
                       cols=np.concatenate([all_choice[has], u]), vals=np.concatenate([h_all[has], np.ones(len(u))]))
        # u[k, j] = z[k, j] x the cold bytes of j's chosen row (ratio x its minimum cold), linearised exactly for
        # binaries: u >= min cold x z, and u >= chosen cold - max cold x (1 - z)
        ratios = data.ratios()
        npair = len(pair_k)
        rows.add_block(np.zeros(npair), np.full(npair, inf), row_of=np.repeat(np.arange(npair), 2),
                       cols=np.column_stack([u, z]).ravel(), vals=np.column_stack([np.ones(npair), -cold[pair_j]]).ravel())
        cmax = np.array([cold[j] * ratios[j].max() for j in pair_j])
        r_, c_, v_ = [np.arange(npair), np.arange(npair)], [u, z], [np.ones(npair), -cmax]
        for q, j in enumerate(pair_j):
            r_.append(np.full(len(choice[j]), q))
            c_.append(choice[j])
            v_.append(-cold[j] * ratios[j])
        rows.add_block(-cmax, np.full(npair, inf), row_of=np.concatenate(r_), cols=np.concatenate(c_),
                       vals=np.concatenate(v_))
    # exposure rows, one per pair: s[j] - s[k] - d[k] + sum_{i <= j in k's pairs} L_i z[k, i] >= sum L_i
    r, c, v, lo = [], [], [], []
    for row, (k, j) in enumerate(zip(pair_k, pair_j)):
        r += [row, row, row]
        c += [s[j], s[k], d[k]]
        v += [1.0, -1.0, -1.0]
        lo.append(0.0)
    # the per-pair sums: pairs are sorted by (k, j), so k's pairs up to j are a run ending at this pair
    start_of = np.searchsorted(pair_k, pair_k, side="left")
    for row in range(len(pair_k)):
        span_ = np.arange(start_of[row], row + 1)
        r += [row] * len(span_)
        c += list(first_z + span_)
        v += list(shortest[pair_j[span_]])
        lo[row] = float(shortest[pair_j[span_]].sum())
    rows.add_block(np.array(lo), np.full(len(lo), inf), row_of=np.array(r), cols=np.array(c), vals=np.array(v))
    # monotone: z[k, j] <= z[k + 1, j] where both pairs exist
    key = {(int(k), int(j)): q for q, (k, j) in enumerate(zip(pair_k, pair_j))}
    mono = [(q, key[(int(k) + 1, int(j))]) for q, (k, j) in enumerate(zip(pair_k, pair_j)) if (int(k) + 1, int(j)) in key]
    if mono:
        m = len(mono)
        rows.add_block(np.full(m, -inf), np.zeros(m), row_of=np.repeat(np.arange(m), 2),
                       cols=np.array([[first_z + a, first_z + b] for a, b in mono]).ravel(),
                       vals=np.tile([1.0, -1.0], m))


def _csr_args(rows: "_Rows") -> tuple:
    lo, hi, starts, index, value = rows.csr()
    return len(lo), lo, hi, len(index), starts, index, value


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
        if not self.count:
            return np.zeros(0), np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
        r = np.concatenate(self.r)
        c = np.concatenate(self.c)
        v = np.concatenate(self.v)
        order = np.lexsort((c, r))
        r, c, v = r[order], c[order], v[order]
        starts = np.searchsorted(r, np.arange(self.count)).astype(np.int32)
        return (np.concatenate(self.lo), np.concatenate(self.hi), starts, c.astype(np.int32), v)
