"""Executing a run plan: every design in order, exact designs from their warm starts, buffers placed in SRAM.

What a compile decides about schedules lives here, so the front doors only
build a plan (solvers.registry.RunPlan) and report: which warm start an exact
design begins from (the reported, placed schedules of the designs before it),
how a schedule whose buffers do not fit is repaired (solvers.placement), and
the exact designs' promise after placement: a repaired exact schedule slower
than its placed warm start is replaced by that warm start, under its name.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Iterable

from elk.errors import ScheduleError
from elk.schedule import Schedule
from elk.simulator import simulate
from elk.workload import Workload
from solvers.registry import EXACT, RunPlan, pick_warm_start, run_design, run_exact
from solvers.schedule.fallback import keep_faster
from solvers.schedule.stores import StorePlacementError, place_stores
from solvers.solver_options import DEFAULT_PLACEMENT, DEFAULT_PLACEMENT_WORK_LIMIT


@dataclass
class DesignRun:
    """One requested design's schedule as reported (after placement and any repair), and what it cost."""

    name: str
    schedule: Schedule
    seconds: float
    #: SRAM addresses of the schedule's buffers (solvers.placement.Placement); None when placement is off
    placement: object | None = None
    #: exact designs: the simulated latency of the schedule they started from
    warm_start_ms: float | None = None


def check_warm_schedules(plan: RunPlan, workload: Workload) -> None:
    """A warm start given as a schedule (from a file) must hold on this workload, or its design would start
    invalid; checked before any design runs."""
    for warm in plan.warm_starts.values():
        if isinstance(warm, Schedule):
            verdict = simulate(workload, warm)
            if not verdict.valid:
                raise ScheduleError(f"warm start '{warm.design}' is not valid on this program and chip: "
                                    f"{verdict.violations[0].message(workload.chip.clock_hz)}")


def fastest_valid(workload: Workload, schedules: Iterable[Schedule]) -> Schedule | None:
    """The fastest of ``schedules`` the simulator accepts on ``workload`` (None if none does), each with the
    program's stores placed first (a schedule carried from elsewhere may have none)."""
    timed = [(v.latency_cycles, s) for s in _with_stores(workload, schedules) for v in [simulate(workload, s)]
             if v.valid]
    return min(timed, key=lambda pair: pair[0])[1] if timed else None


def _with_stores(workload: Workload, schedules: Iterable[Schedule]) -> list[Schedule]:
    placed = []
    for schedule in schedules:
        try:
            placed.append(place_stores(workload, schedule))
        except StorePlacementError:
            continue
    return placed


def run_plan(plan: RunPlan, workload: Workload, *, carry: Iterable[Schedule] = (),
             placement: str | None = DEFAULT_PLACEMENT, placement_time_limit: float = 10.0,
             placement_work_limit: float | None = DEFAULT_PLACEMENT_WORK_LIMIT,
             workers: int | None = None) -> dict[str, DesignRun]:
    """Run ``plan`` on ``workload``; one DesignRun per requested design, in the order requested.

    ``carry``: schedules from elsewhere (a neighbouring point of a sweep); the
    fastest that holds here competes as the exact designs' default warm start.
    ``placement``: the allocator that gives strict schedules' buffers SRAM
    addresses (None: byte budgets only), ``placement_work_limit`` its work
    limit (None: its time limit alone ends it). ``workers``: processes the heuristics'
    searches fan their passes out to (None: elk.tablecache.default_workers()).
    """
    check_warm_schedules(plan, workload)
    designed: dict[str, Schedule] = {}  # every schedule as its design made it (ELK-Full reuses ELK-Dyn's)
    runs: dict[str, DesignRun] = {}
    carried = fastest_valid(workload, carry)
    if carried is not None:  # not a design of its own: only a candidate warm start
        designed["carried"] = carried
    for name in plan.order:
        t0 = time.perf_counter()
        warm_name, warm = "", None
        if name in EXACT:  # from the schedules as reported, so that it is compared with what the report shows
            reported = {**designed, **{n: r.schedule for n, r in runs.items()}}
            warm_name, warm = pick_warm_start(workload, reported, plan.warm_starts[name])
            schedule = run_exact(name, workload, warm, plan.exact[name],
                                 placeable=_placement_check(workload, placement, placement_time_limit,
                                                            placement_work_limit))
        else:
            schedule = run_design(name, workload, designed, plan.heuristic.get(name), workers=workers)
        designed[name] = schedule
        if name not in plan.requested:
            continue
        run = DesignRun(name, schedule, time.perf_counter() - t0,
                        warm_start_ms=simulate(workload, warm).latency_ms if warm is not None else None)
        if placement is not None and schedule.relaxation.strict:
            run = _placed(run, plan, workload, placement, placement_time_limit, placement_work_limit,
                          runs.get(warm_name), workers)
        runs[name] = run
    return {n: runs[n] for n in plan.requested}


def _placement_check(workload: Workload, solver: str | None, time_limit: float, work_limit: float | None):
    """The compile's own placement as a check an exact design can keep to (None when placement is off)."""
    if solver is None:
        return None
    from solvers.placement import placement_check
    return placement_check(workload, solver=solver, time_limit=time_limit, work_limit=work_limit)


def _placed(run: DesignRun, plan: RunPlan, workload: Workload, solver: str, time_limit: float,
            work_limit: float | None, warm: DesignRun | None, workers: int | None) -> DesignRun:
    """``run`` with its buffers placed (its schedule repaired if they did not fit). An exact design whose repair
    made it slower than its placed warm start reports that warm start, with the placement it already has."""
    from solvers.placement import cost_aware_placement, repair_reruns
    name = run.name
    options = plan.exact[name].without_outputs() if name in plan.exact else plan.heuristic.get(name)
    quick, whole = repair_reruns(name, options, run.schedule, plan.warm_starts.get(name), workers)
    schedule, placed = cost_aware_placement(name, workload, run.schedule, quick, refine=whole, solver=solver,
                                            time_limit=time_limit, work_limit=work_limit)
    seconds = run.seconds + placed.seconds
    if warm is not None and warm.placement is not None:
        kept, reason = keep_faster(workload, schedule, warm.schedule)
        if reason:
            schedule = kept.renamed(name, run.schedule.info)
            placed = dataclasses.replace(warm.placement, design=name)
    return dataclasses.replace(run, schedule=schedule, placement=placed, seconds=seconds)
