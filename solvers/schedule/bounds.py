"""Proven lower bounds on a workload's latency, and the certified gap of a schedule against the best of them.

Every function returns a :class:`Bound`: a number no valid schedule can beat,
with the argument in its docstring. All of them are valid under both load
models: they hold for fluid loads, and every rigid-valid schedule is
fluid-valid, so a fluid bound bounds rigid schedules too (a rigid-only bound
would say so in ``load_models``). Ideal is not among them: it is one heuristic
schedule of a relaxed problem, and nothing proves that no valid schedule beats it.

Notation: ``T_i`` an operator's fastest plan time; ``L_j`` the shortest possible
load of operator j, ``max(HBM cycles, interconnect cycles at its minimum cold
layout)``. Latency runs from the first event (load or execution) to the end
of the last execution.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from elk.errors import ElkError
from elk.workload import Workload
from formulations.schedule.bound_lp import BoundData, build_bound_lp
from solvers.exact_backends import native_output_silenced, use_highs_threads
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


def hbm_bound(workload: Workload) -> Bound:
    """Loads share one HBM channel and each lasts at least ``L_j``; the last to finish is followed by its
    own operator's execution: latency >= sum_j L_j + min over loading operators of T_j."""
    started = time.perf_counter()
    loads = shortest_loads(workload)
    has = workload.has_load
    tail = float(fastest_times(workload)[has].min()) if has.any() else 0.0
    return _make(workload, "hbm", float(loads.sum()) + tail, started, "closed form")


def execution_bound(workload: Workload) -> Bound:
    """Executions run one at a time, each at least its fastest plan: latency >= sum_i T_i."""
    started = time.perf_counter()
    return _make(workload, "execution", float(fastest_times(workload).sum()), started, "closed form")


def flow_shop_bound(workload: Workload) -> Bound:
    """Two-machine flow shop: before operator k starts, the loads of operators 0..k have all finished on
    the one channel (whatever their order), and operators k..n-1 then run one after another:
    latency >= max_k (sum_{j <= k} L_j + sum_{i >= k} T_i)."""
    started = time.perf_counter()
    loads = shortest_loads(workload)
    fast = fastest_times(workload)
    before = np.cumsum(loads)
    after = np.cumsum(fast[::-1])[::-1]
    return _make(workload, "flow-shop", float((before + after).max()), started, "closed form")


def closed_form_bounds(workload: Workload) -> list[Bound]:
    return [hbm_bound(workload), execution_bound(workload), flow_shop_bound(workload)]


def bound_data(workload: Workload) -> BoundData:
    """Each operator's undominated plan rows in (time, communication, hot bytes), and the chip's ratios."""
    rows: dict[int, tuple] = {}
    time_, comm, hot = [], [], []
    for t in workload.tables:
        if id(t) not in rows:
            keep = undominated(np.stack([t.time, t.comm, t.hot.astype(float)], axis=1))
            rows[id(t)] = (t.time[keep].astype(float), t.comm[keep].astype(float), t.hot[keep].astype(float))
        tm, cm, ht = rows[id(t)]
        time_.append(tm)
        comm.append(cm)
        hot.append(ht)
    chip = workload.chip
    return BoundData(time=time_, comm=comm, hot=hot, hbm=workload.hbm_cycles.astype(float),
                     rho_min=chip.hbm_bytes_per_cycle / workload.noc_load_bytes_per_cycle,
                     sram=float(chip.sram_per_core), bwc=chip.hbm_bytes_per_cycle / chip.cores)


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
    lp = build_bound_lp(bound_data(workload), integer=integer, pairs=pairs)
    h = lp.highs
    use_highs_threads(int(threads))
    h.setOptionValue("threads", int(threads))
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("random_seed", 0)
    with native_output_silenced():
        h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    version = f"HiGHS {highspy.Highs().version()}" if hasattr(highspy.Highs(), "version") else "HiGHS"
    name = "milp" if integer else "lp"
    if integer:
        dual = float(info.mip_dual_bound)
        if not math.isfinite(dual) or dual <= 0:
            raise BoundError(f"{name} bound on {workload.program.name}: HiGHS returned no dual bound "
                             f"({h.modelStatusToString(status)})")
        proven = "optimal" if status == highspy.HighsModelStatus.kOptimal else "dual bound at the time limit"
        return _make(workload, name, dual * (1 - LP_SAFETY), started, proven, version)
    if status != highspy.HighsModelStatus.kOptimal:
        raise BoundError(f"{name} bound on {workload.program.name} ({len(workload)} operators, chip "
                         f"{workload.chip.describe()}): HiGHS says {h.modelStatusToString(status)}; a relaxation "
                         f"of a schedulable program always has an optimum, so this is a bug in elk")
    return _make(workload, name, lp.objective() * (1 - LP_SAFETY), started, "optimal", version)


def check_time_limit(value: object, what: str) -> None:
    """A solver time limit must be a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ElkError(f"{what} must be a positive number of seconds, got {value!r}")


def layer_bound(workload: Workload, *, time_limit: float | None = None, threads: int = 1, pairs: int = 4) -> Bound:
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
    """
    import highspy
    started = time.perf_counter()
    structure = workload.program.layers
    if structure is None:
        raise BoundError("the layer bound needs a program with repeated layers")
    data = bound_data(workload)
    first = structure.start
    part = slice(first, first + structure.length)
    layer = BoundData(time=data.time[part], comm=data.comm[part], hot=data.hot[part], hbm=data.hbm[part],
                      rho_min=data.rho_min, sram=data.sram, bwc=data.bwc)
    lp = build_bound_lp(layer, integer=True, pairs=pairs, free_entry=True)
    h = lp.highs
    use_highs_threads(int(threads))
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    with native_output_silenced():
        h.run()
    dual = float(h.getInfo().mip_dual_bound)
    if not math.isfinite(dual) or dual < 0:
        raise BoundError(f"layer bound on {workload.program.name}: no dual bound ({h.modelStatusToString(h.getModelStatus())})")
    outside = np.ones(len(workload), bool)
    outside[structure.start:structure.stop] = False
    rest = float(fastest_times(workload)[outside].sum())
    status = "optimal" if h.getModelStatus() == highspy.HighsModelStatus.kOptimal else "dual bound at the time limit"
    cycles = structure.count * dual * (1 - LP_SAFETY) + rest
    return _make(workload, "layer", cycles, started, status, f"HiGHS {highspy.Highs().version()}")


#: What ``compute_bounds`` computes at each level; the default (``lp``: the closed forms, the LP and, for
#: programs with repeated layers, the layer bound) costs one to three seconds per model.
LEVELS = BOUND_LEVELS


def compute_bounds(workload: Workload, level: str = DEFAULT_BOUND, time_limit: float = DEFAULT_BOUND_TIME_LIMIT,
                   threads: int = 1) -> BoundReport:
    """The closed forms; with ``lp`` also the LP and the layer bound; with ``milp`` also the MILP
    with binary plan choices. All share ``time_limit``.

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
    if level == "milp":
        jobs.append(lambda left: lp_bound(workload, integer=True, time_limit=left, threads=threads))
    for job in jobs:
        left = time_limit - (time.perf_counter() - started)
        try:
            report.bounds.append(job(max(left, 1.0)))
        except BoundError as err:
            report.warnings.append(str(err))
    report.seconds = time.perf_counter() - started
    return report
