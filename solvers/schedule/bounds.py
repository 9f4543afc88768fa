"""Proven lower bounds on a workload's latency, and the certified gap of a schedule against the best of them.

Every function returns a :class:`Bound`: a number no valid schedule can beat,
with the argument in its docstring. All of them are valid under both load
models: they hold for fluid loads, and every rigid-valid schedule is
fluid-valid, so a fluid bound bounds rigid schedules too (a rigid-only bound
would say so in ``load_models``). Ideal is not among them: it is one heuristic
schedule of a relaxed problem, and nothing proves that no valid schedule beats it.

Notation: ``T_i`` an operator's fastest plan time; ``L_j`` the shortest possible
load of operator j, ``max(HBM cycles, interconnect cycles at its minimum cold
layout)``; ``S_i`` the shortest possible store of operator i (docs/design.md §5.2),
``max(HBM cycles, interconnect cycles)`` of its output (0 for an operator that
stores nothing). Latency runs from the first event (load or execution) to the end
of the last execution or store.

Stores only add to a program: dropping a valid schedule's stores leaves a valid
schedule of the same program without them that ends no later. So every bound of
the store-free program (the LP, the MILP, the layer bound, which do not model
stores) bounds the program with them; the closed forms below count the stores too.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from elk.errors import ElkError
from elk.workload import Workload
from formulations.schedule.bound_lp import BoundData, build_bound_lp
from solvers.exact_backends import native_output_silenced, run_highs
from solvers.solver_options import BOUND_LEVELS, DEFAULT_BOUND, DEFAULT_BOUND_TIME_LIMIT

#: LP-based bounds are lowered by this relative margin: HiGHS works to ~1e-7 feasibility/optimality tolerances
LP_SAFETY = 1e-6
BOTH_MODELS = ("fluid", "rigid")


class BoundError(ElkError):
    """A relaxation that should always have an optimum did not (a bug in elk: it is reported, never printed)."""


@dataclass(frozen=True)
class Bound:
    """A proven lower bound on latency, and how it was obtained."""

    name: str
    cycles: float
    ms: float
    seconds: float
    status: str  # "closed form", "optimal", "dual bound at the time limit"
    solver: str = ""
    load_models: tuple[str, ...] = BOTH_MODELS

    def gap(self, latency_cycles: float) -> float:
        """Certified gap of a schedule of this latency: latency / bound - 1."""
        return latency_cycles / self.cycles - 1.0 if self.cycles > 0 else math.inf


@dataclass
class BoundReport:
    """Every bound computed for one workload; ``best`` is the largest (the one that binds)."""

    bounds: list[Bound] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> Bound | None:
        return max(self.bounds, key=lambda b: b.cycles) if self.bounds else None

    def by_name(self) -> dict[str, Bound]:
        return {b.name: b for b in self.bounds}


def shortest_loads(workload: Workload) -> np.ndarray:
    """``L_j``: a load takes at least its HBM time and its interconnect time at the minimum cold layout."""
    return np.maximum(workload.hbm_cycles, workload.load_bytes / workload.noc_load_bytes_per_cycle)


def fastest_times(workload: Workload) -> np.ndarray:
    return np.array([float(t.time.min()) for t in workload.tables])


def _make(workload: Workload, name: str, cycles: float, started: float, status: str, solver: str = "") -> Bound:
    return Bound(name=name, cycles=float(cycles), ms=workload.chip.cycles_to_ms(float(cycles)),
                 seconds=time.perf_counter() - started, status=status, solver=solver)


def shortest_stores(workload: Workload) -> np.ndarray:
    """``S_i``: a store takes at least its HBM time and its interconnect time (0 where nothing is stored)."""
    return workload.store_cycles


def hbm_bound(workload: Workload) -> Bound:
    """Loads and stores share one HBM channel inside the latency, each lasting at least ``L_j`` / ``S_i``.
    Without stores the last load is followed by its own operator's execution: latency >= sum_j L_j + min over
    loading operators of T_j; with stores a store may come last: latency >= sum_j L_j + sum_i S_i."""
    started = time.perf_counter()
    loads = shortest_loads(workload)
    stores = shortest_stores(workload)
    has = workload.has_load
    tail = float(fastest_times(workload)[has].min()) if has.any() and not stores.any() else 0.0
    return _make(workload, "hbm", float(loads.sum()) + float(stores.sum()) + tail, started, "closed form")


def execution_bound(workload: Workload) -> Bound:
    """Executions run one at a time, each at least its fastest plan: latency >= sum_i T_i."""
    started = time.perf_counter()
    return _make(workload, "execution", float(fastest_times(workload).sum()), started, "closed form")


def flow_shop_bound(workload: Workload) -> Bound:
    """Two-machine flow shop: before operator k starts, the loads of operators 0..k have all finished on
    the one channel (whatever their order), and so have the stores those loads read back (a round trip's
    store ends before its load starts; each such store counted once, at the first load that needs it);
    operators k..n-1 then run one after another:
    latency >= max_k (sum_{j <= k} L_j + sum of S_p over stores read back by loads j <= k + sum_{i >= k} T_i)."""
    started = time.perf_counter()
    loads = shortest_loads(workload).copy()
    stores = shortest_stores(workload)
    writers, readers = workload.round_trips
    if len(writers):  # each store charged at the first load that reads it back
        first = np.full(len(workload), len(workload), dtype=np.int64)
        np.minimum.at(first, writers, readers)
        stored = np.flatnonzero(first < len(workload))
        np.add.at(loads, first[stored], stores[stored])
    fast = fastest_times(workload)
    before = np.cumsum(loads)
    after = np.cumsum(fast[::-1])[::-1]
    return _make(workload, "flow-shop", float((before + after).max()), started, "closed form")


def store_flow_shop_bound(workload: Workload) -> Bound:
    """The flow shop mirrored for stores: operators 0..k run one after another before operator k ends, and
    every store of operators k..n-1 starts after its operator ends, so after operator k's end, one at a time:
    latency >= max_k (sum_{i <= k} T_i + sum_{i >= k} S_i)."""
    started = time.perf_counter()
    fast = fastest_times(workload)
    stores = shortest_stores(workload)
    before = np.cumsum(fast)
    after = np.cumsum(stores[::-1])[::-1]
    return _make(workload, "store-flow-shop", float((before + after).max()), started, "closed form")


#: above this many SRAM-conflicting loads the window bound tries only each load's own window (not every pair)
WINDOW_PAIRS_MAX = 1500


def sram_conflicts(workload: Workload) -> np.ndarray:
    """``c(j)`` per operator: the latest operator i < j whose smallest hot footprint and j's smallest cold one
    exceed SRAM together (-1 if none, and for operators that load nothing). Rule 4 then keeps load j from being
    in progress while i runs, whatever plans are chosen, so load j lies between i's end and j's start."""
    n = len(workload)
    sram = float(workload.chip.sram_per_core)
    min_hot = np.array([float(t.hot.min()) for t in workload.tables])
    min_cold = np.array([float(t.cold.min()) for t in workload.tables])
    conflict = np.full(n, -1, dtype=np.int64)
    loads = np.flatnonzero(workload.has_load)
    index = np.arange(n)
    for cold in np.unique(min_cold[loads]):  # a few distinct cold sizes: one vectorized scan each
        latest = np.maximum.accumulate(np.where(min_hot + cold > sram, index, -1))  # latest conflict at or before
        js = loads[min_cold[loads] == cold]
        conflict[js] = np.where(js > 0, latest[np.maximum(js - 1, 0)], -1)
    return conflict


def sram_window_bound(workload: Workload, conflict: np.ndarray | None = None) -> Bound:
    """Loads that SRAM keeps apart from an execution (rule 4, :func:`sram_conflicts`): load j lies in
    ``[e_a, s_b)`` for every window ``a <= c(j) < j <= b``, and so does every other such load; the channel
    carries them one at a time while executions ``a+1..b-1`` run. Windows whose operator ranges do not overlap
    are disjoint in time, so

    latency >= sum_i T_i + max over disjoint windows of sum_w max(0, sum_{j in w} L_j - sum_{a<i<b} T_i).

    The executions inside a window take at least their T_i and the window at least its loads' time; what the
    loads need beyond the executions is time no execution covers. Windows are (c(j), j') over conflicting loads
    j, j' (only (c(j), j) above ``WINDOW_PAIRS_MAX`` of them), chosen by weighted interval scheduling. Sound
    under both load models (rule 4 does not depend on them); stores only add channel time."""
    started = time.perf_counter()
    fast = fastest_times(workload)
    base = float(fast.sum())
    conflict = sram_conflicts(workload) if conflict is None else conflict  # closed_form_bounds has it already
    js = np.flatnonzero(conflict >= 0)
    if not len(js):
        return _make(workload, "sram-window", base, started, "closed form")
    length = shortest_loads(workload)[js]
    cs = conflict[js]
    t_before = np.concatenate([[0.0], np.cumsum(fast)])  # t_before[k] = sum of T_i for i < k
    ends = js  # ascending
    if len(js) <= WINDOW_PAIRS_MAX:  # every window (a, b): a a conflict's start, b a conflicting load
        starts = np.unique(cs)
        # loads inside (a, ends[q]): conflicting loads up to ends[q] whose conflict is at or after a
        load_sum = np.cumsum(np.where(cs[None, :] >= starts[:, None], length[None, :], 0.0), axis=1)
        valid = starts[:, None] < ends[None, :]
    else:  # each conflicting load's own window, counting that load alone
        starts = cs
        load_sum = np.where(np.eye(len(js), dtype=bool), length[None, :], 0.0)
        valid = np.eye(len(js), dtype=bool)
    exec_inside = t_before[ends][None, :] - t_before[starts + 1][:, None]  # sum of T_i for a < i < b
    exposure = np.where(valid, np.maximum(load_sum - exec_inside, 0.0), -np.inf)
    # weighted interval scheduling, windows by end: best[q] = most exposure from disjoint windows ending by ends[q]
    before = np.searchsorted(ends, starts, side="right") - 1  # the last end at or before each window start
    best = np.zeros(len(ends))
    running = 0.0
    for q in range(len(ends)):  # one step per conflicting load, vectorized over the window starts
        prior = np.where(before >= 0, best[np.maximum(before, 0)], 0.0)
        running = max(running, float(np.max(prior + exposure[:, q])))
        best[q] = running
    plain = base + running
    # with the flow shop: before operator k starts the channel has carried loads 0..k; after it, operators k..
    # run and the windows that open after k add their exposure (disjoint from each other and from [0, s_k))
    order = np.argsort(starts, kind="stable")
    starts, exposure = starts[order], exposure[order]
    after_window = np.searchsorted(starts, ends, side="left")  # first window starting at or after each end
    suffix = np.zeros(len(starts) + 1)  # suffix[p] = most exposure from disjoint windows starting at or after starts[p]
    for p in range(len(starts) - 1, -1, -1):  # one step per window start, vectorized over the ends
        value = float(np.max(exposure[p] + suffix[after_window]))
        suffix[p] = max(value, suffix[p + 1])
    n = len(workload)
    first_start = np.searchsorted(starts, np.arange(n), side="left")  # windows with a >= k
    loads_upto = np.cumsum(shortest_loads(workload))
    fast_from = np.cumsum(fast[::-1])[::-1]
    combined = float((loads_upto + fast_from + suffix[first_start]).max())
    return _make(workload, "sram-window", max(plain, combined), started, "closed form")


def closed_form_bounds(workload: Workload) -> list[Bound]:
    forms = [hbm_bound(workload), execution_bound(workload), flow_shop_bound(workload)]
    conflict = sram_conflicts(workload)
    if (conflict >= 0).any():  # otherwise it is the execution bound
        forms.append(sram_window_bound(workload, conflict))
    if workload.has_store.any():
        forms.append(store_flow_shop_bound(workload))
    return forms


def bound_data(workload: Workload) -> BoundData:
    """Each operator's undominated plan rows in (time, communication, hot bytes, cold bytes), the broadcast ratio
    of each row's cold layout (its load's interconnect work per byte), and the chip's ratios."""
    rows: dict[int, tuple] = {}
    time_, comm, hot, ratio = [], [], [], []
    for t in workload.tables:
        if id(t) not in rows:
            keep = undominated(np.stack([t.time, t.comm, t.hot.astype(float), t.cold.astype(float)], axis=1))
            least = float(t.cold.min())
            rel = t.cold[keep] / least if least > 0 else np.ones(len(keep))
            rows[id(t)] = (t.time[keep].astype(float), t.comm[keep].astype(float), t.hot[keep].astype(float),
                           rel.astype(float))
        tm, cm, ht, rl = rows[id(t)]
        time_.append(tm)
        comm.append(cm)
        hot.append(ht)
        ratio.append(rl)
    chip = workload.chip
    return BoundData(time=time_, comm=comm, hot=hot, hbm=workload.hbm_cycles.astype(float),
                     rho_min=chip.hbm_bytes_per_cycle / workload.noc_load_bytes_per_cycle,
                     sram=float(chip.sram_per_core), bwc=chip.hbm_bytes_per_cycle / chip.cores, ratio=ratio)


def undominated(points: np.ndarray) -> np.ndarray:
    """Indices of the rows not dominated by another (<= in every column, < in one); one of equal rows."""
    pts, first = np.unique(points, axis=0, return_index=True)
    le = (pts[:, None, :] <= pts[None, :, :]).all(axis=2)
    np.fill_diagonal(le, False)
    dominated = le.any(axis=0)
    return np.sort(first[~dominated])


def lp_bound(workload: Workload, *, integer: bool = False, time_limit: float | None = None,
             threads: int = 1, pairs: int = 0) -> Bound:
    """Optimum of the linear relaxation in :mod:`formulations.schedule.bound_lp` (the argument is there).

    ``integer=True`` solves it with binary plan choices (a MILP) and returns the
    solver's proven dual bound, at optimality or at the time limit.
    """
    import highspy
    started = time.perf_counter()
    # the LP is solved first without its interconnect prefix rows; where its optimum already meets them (the
    # interconnect does not bind, e.g. all-to-all chips) it is the optimum with them too, and costs nothing more
    lp = build_bound_lp(bound_data(workload), integer=integer, pairs=pairs, staged=not integer)
    h = lp.highs
    run_highs(h, threads=threads, time_limit=time_limit)
    status = h.getModelStatus()
    if lp.late is not None and status == highspy.HighsModelStatus.kOptimal:
        x = np.asarray(h.getSolution().col_value)
        if lp.late_slack(x) < -1e-7 * max(lp.objective(), 1.0):
            lp.add_late()
            if time_limit is not None:
                h.setOptionValue("time_limit", max(float(time_limit) - (time.perf_counter() - started), 1.0))
            with native_output_silenced():
                h.run()
            status = h.getModelStatus()
    name = "milp" if integer else "lp"
    if integer:
        return _dual_bound(workload, h, name, started)
    if status != highspy.HighsModelStatus.kOptimal:
        raise BoundError(f"{name} bound on {workload.program.name} ({len(workload)} operators, chip "
                         f"{workload.chip.describe()}): HiGHS says {h.modelStatusToString(status)}; a relaxation "
                         f"of a schedulable program always has an optimum, so this is a bug in elk")
    return _make(workload, name, lp.objective() * (1 - LP_SAFETY), started, "optimal",
                 f"HiGHS {highspy.Highs().version()}")


def _dual_bound(workload: Workload, h, name: str, started: float) -> Bound:
    """A solved MILP relaxation's proven dual bound (at optimality or at the time limit) as the bound ``name``;
    none is a BoundError, never a number."""
    import highspy
    status = h.getModelStatus()
    dual = float(h.getInfo().mip_dual_bound)
    if not math.isfinite(dual) or dual <= 0:
        raise BoundError(f"{name} bound on {workload.program.name}: HiGHS returned no dual bound "
                         f"({h.modelStatusToString(status)})")
    proven = "optimal" if status == highspy.HighsModelStatus.kOptimal else "dual bound at the time limit"
    return _make(workload, name, dual * (1 - LP_SAFETY), started, proven, f"HiGHS {highspy.Highs().version()}")


#: the whole-load MILP is built for programs up to this many operators (pieces, small models); on whole LLMs
#: (thousands) its binaries stop it at its limit with a weak dual bound, and the layer bounds solve the same
#: relaxation layer by layer
WHOLE_LOAD_MAX_OPERATORS = 400


def whole_load_milp_bound(workload: Workload, *, time_limit: float, threads: int = 1, pairs: int = 4) -> Bound:
    """The MILP of :mod:`formulations.schedule.bound_lp` with whole plan choices, whole-load SRAM charges
    (``pairs``: a begun load holds all of its chosen cold bytes, not a share in proportion to the work done) and
    every load charged at its chosen layout (interconnect work at the chosen broadcast ratio, SRAM at the chosen
    cold bytes): the relaxation the layer bounds solve per layer, here on the whole program from time 0.

    Why: where SRAM is short the plain LP and MILP let a load begin with a sliver of its bytes, and let it use
    the cheapest layout's interconnect work whatever plan its operator runs. Measured on OPT-30B's attention
    (23 operators, mesh, 16 TB/s, 192 KiB): LP and MILP 0.2797 ms, this 0.3001 ms in 0.1 s, the optimum at
    least 0.3071. Every row holds for every valid schedule under both load models (the module docstring and
    :func:`layer_bound` give the arguments), so the proven dual bound is a bound, at optimality or at the limit.
    """
    check_time_limit(time_limit, "whole-load MILP bound time limit")
    started = time.perf_counter()
    h = build_bound_lp(bound_data(workload), integer=True, pairs=pairs, link=True).highs
    run_highs(h, threads=threads, time_limit=time_limit)
    return _dual_bound(workload, h, "whole-load-milp", started)


def check_time_limit(value: object, what: str) -> None:
    """A solver time limit must be a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ElkError(f"{what} must be a positive number of seconds, got {value!r}")


def layer_bound(workload: Workload, *, time_limit: float | None = None, threads: int = 1, pairs: int = 4,
                chosen_layouts: bool | None = None) -> Bound:
    """Repeated layers: ``count x`` (a proven bound on one layer's span) + the other operators' fastest plans.

    Executions run in program order, so a layer's executions occupy a span no
    other execution enters, and the spans of the layers and the other
    operators' executions add up to at most the latency. One layer's span is at
    least the optimum of the relaxation of :mod:`formulations.schedule.bound_lp`
    on that layer alone, its loads free to have done any work before the layer
    (only the SRAM they occupy is charged), every other load ignored; solved as a
    MILP with whole plan choices and whole-load SRAM charges (``pairs``), so it
    sees what exposing a load between two executions costs where SRAM is short.
    The MILP's proven dual bound is used, at optimality or at the time limit.

    ``chosen_layouts`` (default: where one layer's loads and its largest hot
    footprint do not fit in SRAM together) also charges loads at the layouts
    their chosen plans ask for: their interconnect work at the chosen broadcast
    ratio, and the SRAM a begun load holds at its chosen cold bytes (see
    ``_add_link`` and ``_add_full_charge`` in :mod:`formulations.schedule.bound_lp`).
    """
    import highspy
    started = time.perf_counter()
    structure = _layers_of(workload)
    data = bound_data(workload)
    layer = _layers_part(data, structure, 1)
    tight = _sram_tight(layer) if chosen_layouts is None else bool(chosen_layouts)
    # the plain model first; the chosen-layout one is larger and may stop at its time limit with a weaker dual
    # bound, so it only ever raises the plain one's (both are bounds)
    dual, optimal = _layer_dual(workload, layer, pairs, False, time_limit, threads)
    if tight:
        # at most a few times what the plain model took (it may not finish where the plain one barely did)
        plain = time.perf_counter() - started
        left = max(10.0, 4 * plain)
        if time_limit is not None:
            left = min(left, max(float(time_limit) - plain, 1.0))
        more, more_optimal = _layer_dual(workload, layer, pairs, True, left, threads)
        if more > dual:
            dual, optimal = more, more_optimal
    status = "optimal" if optimal else "dual bound at the time limit"
    cycles = structure.count * dual * (1 - LP_SAFETY) + _outside_layers(workload)
    return _make(workload, "layer", cycles, started, status, f"HiGHS {highspy.Highs().version()}")


#: share limits ``lambda x rate`` the steady-state bound tries first (a coarse grid; then it refines the best)
STEADY_GRID = (0.2, 0.4, 0.6, 0.8, 1.0)
#: refinement steps around the best grid point (each halves the step)
STEADY_REFINE = 3


def steady_state_bound(workload: Workload, *, time_limit: float, threads: int = 1, pairs: int = 4,
                       chosen_layouts: bool | None = None) -> Bound:
    """The layer bound with its free entry paid for: a Lagrangian bound over the steady state of the layers.

    The layer bound lets each layer take its loads as done before it, for free.
    In a real schedule that work is done somewhere: during the previous layer's
    span or in a gap between spans. Let, for layer l (of ``N``) with span
    ``[s_l, e_l]``, ``G_l(t)`` be the HBM work (cycles of full bandwidth) done
    by ``t`` on the loads of layer l's operators and every later one; ``E_l =
    G_l(s_l)`` (its entry work) and ``X_l = G_l(e_l) - H`` (work done by ``e_l``
    on later layers' loads; ``H`` = one layer's HBM work, all done by ``e_l``).
    Then ``E_{l+1} = X_l + `` the work done between ``e_l`` and ``s_{l+1}``,
    ``E_1`` is done before the first span, and work outside the spans proceeds
    at most ``rate = min(1, 1/rho_min)`` per cycle, so with ``g`` the time
    outside all spans: ``sum_l (E_l - X_l) <= rate x g``, and ``g >= R``, the
    fastest plans of the operators outside the layers. For any ``0 <= lambda <=
    1/rate``:

    latency >= sum_l span_l + g >= sum_l (span_l + lambda (E_l - X_l)) + (1 - lambda rate) g
            >= N phi(lambda) + (1 - lambda rate) R,

    where ``phi(lambda)`` = the least ``span + lambda (E - X)`` over the layer's
    relaxation (:mod:`formulations.schedule.bound_lp` with free entry, whole
    plan choices and whole-load SRAM charges, as the layer bound; ``E = Gs[0]``,
    ``X = Ge[n-1] - H``). Each layer's own schedule is a point of that
    relaxation with its ``G_l`` (G may count later layers' loads: every row
    holds for them, a begun load holds SRAM for the work it has done and
    interconnect work for its bytes), so ``span_l + lambda (E_l - X_l) >=
    phi(lambda)``; the MILP's proven dual bound on ``phi`` is used. ``lambda =
    0`` is the layer bound. The bound is concave in ``lambda``: a grid
    (``STEADY_GRID``) and a few halving steps around its best point find its
    top. Measured (60 s limit, 1 thread): Llama2-13B mesh 8 TB/s 192 KiB 9.97
    -> 10.87 ms in 5 s, Llama2-70B all-to-all 8 TB/s 192 KiB 24.27 -> 24.96 in
    21 s. Sound under both load models (every row is).
    """
    import highspy
    check_time_limit(time_limit, "steady-state bound time limit")
    started = time.perf_counter()
    structure = _layers_of(workload)
    layer = _layers_part(bound_data(workload), structure, 1)
    link = _sram_tight(layer) if chosen_layouts is None else bool(chosen_layouts)
    rate = layer.rate
    work = float(layer.hbm.sum())
    rest = _outside_layers(workload)
    evaluations = len(STEADY_GRID) + 2 * STEADY_REFINE
    tried: dict[float, float] = {}
    optimal_all = True

    def value(share: float) -> float:
        nonlocal optimal_all
        if share in tried:
            return tried[share]
        left = float(time_limit) - (time.perf_counter() - started)
        if left < 0.5:
            return -math.inf
        lam = share / rate
        lp = build_bound_lp(layer, integer=True, pairs=pairs, free_entry=True, link=link)
        h = lp.highs
        h.changeColCost(int(lp.work_at_start[0]), lam)  # + lambda Gs[0] (E)
        h.changeColCost(int(lp.work_at_end[-1]), -lam)  # - lambda Ge[n-1] (X + H)
        run_highs(h, threads=threads, time_limit=max(left / max(evaluations - len(tried), 1), 0.5))
        dual = float(h.getInfo().mip_dual_bound)
        optimal_all &= h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        # a solve cut off before its first dual bound proves nothing at this lambda (the others still hold)
        tried[share] = structure.count * (dual + lam * work) + (1 - share) * rest if math.isfinite(dual) else -math.inf
        return tried[share]

    best = max(STEADY_GRID, key=value)
    step = STEADY_GRID[1] - STEADY_GRID[0]
    for _ in range(STEADY_REFINE):
        step /= 2
        best = max((best, min(best + step, 1.0), max(best - step, 0.0)), key=value)
    if not tried or not math.isfinite(max(tried.values())):
        raise BoundError(f"steady-state bound on {workload.program.name}: no solve reached a dual bound "
                         f"within {time_limit:g} s")
    cycles = max(tried.values()) * (1 - LP_SAFETY)
    proven = "optimal" if optimal_all else "dual bound at the time limit"
    return _make(workload, "steady-state", cycles, started, f"{proven}; lambda x rate = {best:g}",
                 f"HiGHS {highspy.Highs().version()}")


#: block sizes (consecutive layers) the multi-layer bound tries, in this order, while its time lasts
BLOCK_LAYERS = (2, 3, 4, 6, 8)


def multi_layer_bound(workload: Workload, *, time_limit: float, threads: int = 1, pairs: int = 4,
                      blocks: tuple[int, ...] = BLOCK_LAYERS) -> Bound:
    """The layer bound over blocks of consecutive layers: the layers split into blocks of sizes ``k`` (each a
    proven bound on a ``k``-layer block's span; the split that proves most) + the other operators' fastest plans.

    The argument is the layer bound's: executions run in program order, so the
    executions of k consecutive layers occupy a span no other execution enters,
    and disjoint blocks' spans add up to at most the latency. A block's span is
    at least the optimum of the same relaxation on the k layers together, their
    loads free to have done any work before the block (only the SRAM they hold
    is charged), every other load ignored; its proven dual bound is used, at
    optimality or at the time limit. Why it is stronger: one layer's model may
    take all its loads as done before it, paying SRAM only, and so never pays
    for the next layer's loads; inside a block every layer but the first has to
    load during the block's own executions, as in the steady state. Measured on
    Llama2-13B (mesh, 8 TB/s, 192 KiB): one layer 9.97 ms, blocks of 2 10.38,
    3 10.55, 4 10.66. A block costs a MILP k times the layer's (seconds to
    minutes), so this is the ``layers`` level's, tried for growing k until the
    time is spent or a block stops at its limit; the layers are then split into
    the computed block sizes so that the sum is largest (:func:`best_block_split`).

    Blocks use the chosen layouts (see :func:`layer_bound`) where one layer's
    loads and its largest hot footprint do not fit in SRAM together; elsewhere
    SRAM does not constrain the layers and the bound is the layer bound's.
    """
    import highspy
    check_time_limit(time_limit, "multi-layer bound time limit")
    started = time.perf_counter()
    structure = _layers_of(workload)
    data = bound_data(workload)
    layer = _layers_part(data, structure, 1)
    tight = _sram_tight(layer)
    one, one_optimal = _layer_dual(workload, layer, pairs, tight, time_limit, threads)
    duals, optimal = {1: one}, {1: one_optimal}
    if tight:
        for k in blocks:
            left = float(time_limit) - (time.perf_counter() - started)
            if k > structure.count or left < 1.0:
                break
            block = _layers_part(data, structure, k)
            duals[k], optimal[k] = _layer_dual(workload, block, pairs, True, left, threads)
            if not optimal[k]:  # a larger block would stop at its limit too, with less time
                break
    cover, sizes = best_block_split(structure.count, duals)
    best_cycles = cover * (1 - LP_SAFETY)
    best_optimal = all(optimal[k] for k in sizes)
    proven = "optimal" if best_optimal else "dual bound at the time limit"
    split = " + ".join(f"{sizes.count(k)} x {k}" for k in sorted(set(sizes), reverse=True))
    status = f"{proven}; blocks of layers {split}"
    return _make(workload, "multi-layer", best_cycles + _outside_layers(workload), started, status,
                 f"HiGHS {highspy.Highs().version()}")


def best_block_split(count: int, duals: dict[int, float]) -> tuple[float, list[int]]:
    """The most a split of ``count`` consecutive layers into blocks of the sizes in ``duals`` proves (each block
    its size's bound, blocks disjoint in time), and the block sizes of that split: a knapsack with one item per
    size, any number of times, filling ``count`` exactly (size 1 always fits)."""
    best = np.zeros(count + 1)
    last = np.zeros(count + 1, dtype=np.int64)
    for n in range(1, count + 1):  # count is the number of layers (tens): a few hundred steps
        options = [(best[n - k] + d, k) for k, d in duals.items() if k <= n]
        best[n], last[n] = max(options)
    sizes, n = [], count
    while n:
        sizes.append(int(last[n]))
        n -= int(last[n])
    return float(best[count]), sizes


def _layers_of(workload: Workload):
    structure = workload.program.layers
    if structure is None:
        raise BoundError("the layer bound needs a program with repeated layers")
    return structure


def _layers_part(data: BoundData, structure, count: int) -> BoundData:
    """The bound data of the first ``count`` repeated layers (every layer is the same)."""
    return data.part(slice(structure.start, structure.start + count * structure.length))


def _sram_tight(layer: BoundData) -> bool:
    """One layer's loads and its largest hot footprint do not fit in SRAM at once: SRAM is what its schedule
    fights over, so begun loads are charged at their chosen layouts (more rows and columns, a slower MILP)."""
    return float(layer.hbm.sum() * layer.bwc + max(h.min() for h in layer.hot)) > layer.sram


def _outside_layers(workload: Workload) -> float:
    """The fastest plans of the operators outside the repeated layers (each runs in a span of its own)."""
    structure = workload.program.layers
    outside = np.ones(len(workload), bool)
    outside[structure.start:structure.stop] = False
    return float(fastest_times(workload)[outside].sum())


def _layer_dual(workload: Workload, layer: BoundData, pairs: int, chosen: bool, time_limit: float | None,
                threads: int) -> tuple[float, bool]:
    """The one-layer MILP's proven dual bound (cycles), and whether it was solved to optimality."""
    import highspy
    h = build_bound_lp(layer, integer=True, pairs=pairs, free_entry=True, link=chosen).highs
    run_highs(h, threads=threads, time_limit=time_limit)
    dual = float(h.getInfo().mip_dual_bound)
    if not math.isfinite(dual) or dual < 0:
        raise BoundError(f"layer bound on {workload.program.name}: no dual bound "
                         f"({h.modelStatusToString(h.getModelStatus())})")
    return dual, h.getModelStatus() == highspy.HighsModelStatus.kOptimal


#: What ``compute_bounds`` computes at each level; the default (``lp``: the closed forms, the LP and, for
#: programs with repeated layers, the layer bound) costs one to three seconds per model; ``layers`` (the steady
#: state and blocks of layers) and ``milp`` take their time limit where SRAM binds.
LEVELS = BOUND_LEVELS


def compute_bounds(workload: Workload, level: str = DEFAULT_BOUND, time_limit: float = DEFAULT_BOUND_TIME_LIMIT,
                   threads: int = 1) -> BoundReport:
    """The closed forms; with ``lp`` also the LP and the layer bound; with ``layers`` also the steady-state
    and the multi-layer bound (blocks of layers); with ``milp`` also the MILP with binary plan choices and, on
    programs of at most ``WHOLE_LOAD_MAX_OPERATORS`` operators, the whole-load MILP. All share ``time_limit``,
    in that order.

    A relaxation that fails is a warning in the report, never a number.
    """
    if level not in LEVELS:
        raise ElkError(f"unknown bound level {level!r} (known: {', '.join(LEVELS)})")
    check_time_limit(time_limit, "bound time limit")
    started = time.perf_counter()
    report = BoundReport(closed_form_bounds(workload))
    jobs = []
    if level != "closed":
        jobs.append(lambda left: lp_bound(workload, time_limit=left, threads=threads))
        if workload.program.layers is not None:
            jobs.append(lambda left: layer_bound(workload, time_limit=left, threads=threads))
    if level in ("layers", "milp") and workload.program.layers is not None:
        # the steady state first (seconds), then blocks of layers with what is left: where SRAM binds they are
        # what raises the bound, the MILP rarely does
        jobs.append(lambda left: steady_state_bound(workload, time_limit=left, threads=threads))
        jobs.append(lambda left: multi_layer_bound(workload, time_limit=left, threads=threads))
    if level == "milp":
        jobs.append(lambda left: lp_bound(workload, integer=True, time_limit=left, threads=threads))
        if len(workload) <= WHOLE_LOAD_MAX_OPERATORS:
            jobs.append(lambda left: whole_load_milp_bound(workload, time_limit=left, threads=threads))
    for job in jobs:
        left = time_limit - (time.perf_counter() - started)
        try:
            report.bounds.append(job(max(left, 1.0)))
        except BoundError as err:
            report.warnings.append(str(err))
    report.seconds = time.perf_counter() - started
    return report
