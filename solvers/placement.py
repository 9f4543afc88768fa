"""Cost-aware placement: give a design's schedule SRAM addresses, repairing it when they do not exist.

The schedulers budget bytes (rule 4); a byte-feasible schedule can still be
unplaceable because tensors need contiguous addresses. When the allocator's
peak exceeds the SRAM, the design is re-run with a smaller byte budget —
shrunk by the measured overflow, then geometrically — so the scheduler
itself shrinks preloads, delays loads or picks smaller plans where the
budget binds. The budget search repeats only the configuration the design
won with (its variant, split, theta or load order); the whole design, with
its own search, runs once more at the budget that placed. The repaired
schedule is timed by the simulator on the real chip and allocated again at
the real capacity. The latency difference is the price of placement, and
the report shows it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from elk.allocation import AllocationResult
from elk.buffers import ScheduleBuffers, schedule_buffers
from elk.errors import ScheduleError
from elk.schedule import Schedule
from elk.simulator import simulate
from elk.workload import Workload
from solvers.alloc.allocate import allocate


@dataclass
class Placement:
    """How a design's buffers were placed in one core's SRAM."""

    design: str
    status: str  # "placed", "repaired" or "unplaced"
    capacity: int
    buffers: int
    byte_peak: int  # most bytes live at once (what rule 4 charges)
    allocated_peak: int  # highest address used, offset + size
    solver: str
    alloc_status: str
    seconds: float  # allocation and repair time
    budget: int  # byte budget the final schedule was made under
    latency_cost_ms: float = 0.0  # repaired latency - original latency
    unrepaired_peak: int = 0  # highest address the design's own schedule needed
    repairs: list[dict] = field(default_factory=list)
    offsets: np.ndarray | None = field(default=None, repr=False)
    buffer_map: ScheduleBuffers | None = field(default=None, repr=False)

    @property
    def fragmentation(self) -> float:
        """Share of the allocated span not covered at the busiest instant: 1 - bytes / address peak."""
        return 1.0 - self.byte_peak / self.allocated_peak if self.allocated_peak else 0.0

    def row(self) -> dict[str, Any]:
        """The placement's columns of a report row."""
        return {"placement": self.status, "allocated_peak_bytes": self.allocated_peak,
                "fragmentation": self.fragmentation, "placement_cost_ms": self.latency_cost_ms,
                "placement_seconds": self.seconds,
                "placement_repairs": sum(1 for r in self.repairs if not r.get("refine"))}


def fits(result: AllocationResult, capacity: int) -> bool:
    """Whether ``result`` is a placement within ``capacity`` addresses."""
    return result.offsets is not None and result.peak is not None and result.peak <= capacity


def place_schedule(workload: Workload, schedule: Schedule, *, solver: str = "heuristic",
                   time_limit: float = 10.0, granularity: str = "tensor",
                   work_limit: float | None = None) -> tuple[ScheduleBuffers, AllocationResult]:
    """Allocate ``schedule``'s buffers at the chip's SRAM.

    The heuristic minimises the peak, so an overflow is measured, not just
    detected. An exact ``solver`` is only asked when the heuristic overflows,
    as a feasibility problem at the capacity, and only a placement that fits
    replaces the heuristic's. ``work_limit``: see :func:`solvers.alloc.allocate.allocate`;
    with one, the heuristic runs all its passes too (no clock decides), so the
    placement does not depend on the machine's speed.
    """
    bufs = schedule_buffers(workload, schedule, granularity)
    capacity = int(workload.chip.sram_per_core)
    # no capacity for the heuristic: it returns its best placement even when that overflows
    res = allocate(dataclasses.replace(bufs.problem, capacity=None), solver="heuristic", minimize=True,
                   time_limit=time_limit, work_limit=work_limit)
    if solver == "heuristic" or res.peak <= capacity:
        return bufs, res
    exact = allocate(bufs.problem, solver=solver, capacity=capacity, time_limit=time_limit, work_limit=work_limit)
    if fits(exact, capacity):
        return bufs, exact
    return bufs, res


def placement_check(workload: Workload, *, solver: str = "heuristic", time_limit: float = 10.0,
                    granularity: str = "tensor", work_limit: float | None = None) -> Callable[[Schedule], bool]:
    """Whether a schedule's buffers get addresses within the chip's SRAM, with exactly the placement a compile
    then runs (same solver and limits): what placement-aware exact designs keep to."""
    capacity = int(workload.chip.sram_per_core)

    def placeable(schedule: Schedule) -> bool:
        _, res = place_schedule(workload, schedule, solver=solver, time_limit=time_limit, granularity=granularity,
                                work_limit=work_limit)
        return fits(res, capacity)

    return placeable


def with_budget(workload: Workload, budget: int) -> Workload:
    """The same workload (same plan tables) scheduled as if a core had ``budget`` bytes of SRAM."""
    chip = dataclasses.replace(workload.chip, sram_per_core=int(budget))
    return dataclasses.replace(workload, chip=chip, _entry_cache={})


Rerun = Callable[[Workload], Schedule]


def cost_aware_placement(name: str, workload: Workload, schedule: Schedule, rerun: Rerun, *,
                         refine: Rerun | None = None, solver: str = "heuristic", time_limit: float = 10.0,
                         granularity: str = "tensor", max_repairs: int = 8,
                         work_limit: float | None = None) -> tuple[Schedule, Placement]:
    """Place ``schedule``; if it does not fit, re-run the design (``rerun``) under shrinking budgets.

    ``refine``, when given, runs once at the budget that placed: its schedule
    replaces the repair's if it is faster and is placed too.
    """
    started = time.perf_counter()
    capacity = int(workload.chip.sram_per_core)
    bufs, res = place_schedule(workload, schedule, solver=solver, time_limit=time_limit, granularity=granularity,
                               work_limit=work_limit)

    def placement(status: str, sched_bufs, result, budget, cost_ms, repairs) -> Placement:
        return Placement(design=name, status=status, capacity=capacity, buffers=len(sched_bufs.problem),
                         byte_peak=sched_bufs.byte_peak, allocated_peak=int(result.peak), solver=result.solver,
                         alloc_status=result.status, seconds=time.perf_counter() - started, budget=budget,
                         latency_cost_ms=cost_ms, repairs=repairs, unrepaired_peak=int(res.peak),
                         offsets=result.offsets if result.peak <= capacity else None, buffer_map=sched_bufs)

    if fits(res, capacity):
        return schedule, placement("placed", bufs, res, capacity, 0.0, [])
    original_ms = simulate(workload, schedule).latency_ms  # only a repair needs it: its cost is the difference
    repairs: list[dict] = []
    budget = capacity
    best = (schedule, bufs, res)
    for _ in range(max_repairs):
        overflow = int(best[2].peak) - capacity
        shrink = max(overflow, capacity // 100, 1) * (2 ** len(repairs) if repairs else 1)
        budget = max(budget - shrink, 0)
        if budget <= int(workload.min_hot.max()):
            break
        try:
            candidate = rerun(with_budget(workload, budget))
        except ScheduleError as err:
            repairs.append({"budget": budget, "error": str(err)})
            break
        sim = simulate(workload, candidate)
        if not sim.valid:  # a smaller budget can only tighten rule 4; anything else is a strategy bug
            repairs.append({"budget": budget, "error": sim.violations[0].message(workload.chip.clock_hz)})
            continue
        cbufs, cres = place_schedule(workload, candidate, solver=solver, time_limit=time_limit,
                                     granularity=granularity, work_limit=work_limit)
        repairs.append({"budget": budget, "latency_ms": sim.latency_ms, "allocated_peak": int(cres.peak),
                        "byte_peak": cbufs.byte_peak})
        best = (candidate, cbufs, cres)
        if fits(cres, capacity):
            if refine is not None:
                candidate, cbufs, cres, sim = _refined(workload, budget, refine, (candidate, cbufs, cres, sim),
                                                       repairs, solver=solver, time_limit=time_limit,
                                                       granularity=granularity, work_limit=work_limit)
            candidate.info.placement_budget = int(budget)
            return candidate, placement("repaired", cbufs, cres, budget, sim.latency_ms - original_ms, repairs)
    return schedule, placement("unplaced", bufs, res, capacity, 0.0, repairs)


def _refined(workload: Workload, budget: int, refine: Rerun, repaired: tuple, repairs: list[dict], **place):
    """The faster of the repaired schedule and ``refine``'s at the same budget, if that one is placed too."""
    capacity = int(workload.chip.sram_per_core)
    try:
        candidate = refine(with_budget(workload, budget))
    except ScheduleError as err:
        repairs.append({"budget": budget, "refine": True, "error": str(err)})
        return repaired
    sim = simulate(workload, candidate)
    if not sim.valid or sim.latency_ms >= repaired[3].latency_ms - 1e-9:
        repairs.append({"budget": budget, "refine": True, "latency_ms": sim.latency_ms, "kept": False})
        return repaired
    cbufs, cres = place_schedule(workload, candidate, **place)
    kept = fits(cres, capacity)
    repairs.append({"budget": budget, "refine": True, "latency_ms": sim.latency_ms, "allocated_peak": int(cres.peak),
                    "kept": kept})
    return (candidate, cbufs, cres, sim) if kept else repaired


def rerun_design(name: str, options: Any = None, warm_start: Any = None, workers: int | None = None) -> Rerun:
    """Re-run design ``name`` (with its ``options`` and ``warm_start``, as in solvers.registry.RunPlan) and the
    designs it builds on, all under the given (shrunk) workload (passes on ``workers`` processes)."""
    from solvers.registry import RunPlan, run_design
    plan = RunPlan.build([name], {name: options} if options else None, warm_start)

    def run(budget_workload: Workload) -> Schedule:
        done: dict[str, Schedule] = {}
        for dep in plan.order:  # a named warm start is re-run too
            done[dep] = run_design(dep, budget_workload, done, plan.options_of(dep), plan.warm_starts.get(dep),
                                   workers)
        return done[name]

    return run


def repair_reruns(name: str, options: Any, chosen: Schedule, warm_start: Any = None,
                  workers: int | None = None) -> tuple[Rerun, Rerun | None]:
    """(search, refine) for ``cost_aware_placement``: a one-pass re-run and, if that differs, the whole design.

    The budget search repeats only the configuration ``chosen`` won with
    (``solvers.schedule.designs.repeat_choice``; the whole design if that pass cannot
    schedule under a budget); the whole design runs once more at the final
    budget, where its own search may find a faster schedule.
    """
    from solvers.schedule.designs import repeat_choice

    rerun = rerun_design(name, options, warm_start, workers)
    repeat = repeat_choice(name, chosen)
    if repeat is None:
        return rerun, None
    by_budget: dict[int, Schedule] = {}

    def whole(budget_workload: Workload) -> Schedule:
        # the one-pass re-run falls back to the whole design at a budget it cannot schedule; if that budget
        # places, the refine step asks for the same run again
        budget = int(budget_workload.chip.sram_per_core)
        if budget not in by_budget:
            by_budget[budget] = rerun(budget_workload)
        return by_budget[budget]

    def quick(budget_workload: Workload) -> Schedule:
        try:
            return repeat(budget_workload)
        except ScheduleError:
            return whole(budget_workload)

    return quick, whole
