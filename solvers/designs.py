"""The designs of the Elk paper as strategies: each returns a Schedule.

A strategy may compare its own candidate schedules (variants, sweeps, load
orders) by their span, which the backward pass computes under the same rules
the simulator checks; the latency users see is always the simulator's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from elk.errors import ScheduleError
from elk.schedule import IDEAL_RELAXATION, Schedule
from elk.workload import Workload
from solvers.choice import CostAware, Fastest, FixedCold
from solvers.engine import PassConfig, backward_pass
from solvers.orders import group_orders, group_types, layer_groups, load_order


def span(schedule: Schedule, has_load: np.ndarray) -> float:
    first = float(schedule.exec_start.min())
    if has_load.any():
        first = min(first, float(schedule.load_start[has_load].min()))
    return float(schedule.exec_end.max()) - first


def preload_depth(workload: Workload) -> int:
    """At most one layer's worth of loads may be resident (the paper's bound)."""
    layers = workload.program.layers
    if layers is None:
        return int(workload.has_load.sum())
    block = workload.has_load[layers.start: layers.start + layers.length]
    return max(1, int(block.sum()))


def _best(candidates: list[Schedule], workload: Workload) -> Schedule:
    return min(candidates, key=lambda s: span(s, workload.has_load))


def basic(workload: Workload) -> Schedule:
    """Preload only up to the next operator with HBM data; fixed min- or max-cold plans; best variant."""
    started = time.perf_counter()
    variants = []
    for largest in (False, True):
        cfg = PassConfig(theta=0.7, noc_mode="stretch", depth="greedy", max_residents=1,
                         preload="min-hot-of-min-cold")
        sched = backward_pass(workload, FixedCold(workload, largest), cfg, design="basic")
        sched.info["variant"] = "max-cold" if largest else "min-cold"
        variants.append(sched)
    best = _best(variants, workload)
    best.info["compile_seconds"] = time.perf_counter() - started
    return best


def static(workload: Workload, step_kib: int = 10) -> Schedule:
    """One global split of SRAM into execution and preload regions, swept; best split and variant."""
    started = time.perf_counter()
    sram_kib = workload.chip.sram_per_core / 1024
    lowest = math.ceil(workload.min_hot.max() / 1024)
    candidates = []
    for kib in np.arange(lowest, sram_kib + 1e-9, step_kib):
        region = min(float(kib) * 1024, float(workload.chip.sram_per_core))
        for largest in (False, True):
            cfg = PassConfig(theta=0.7, noc_mode="stretch", depth="greedy", preload="static",
                             plan_budget="exec-region", exec_region=region)
            try:
                sched = backward_pass(workload, FixedCold(workload, largest), cfg, design="static")
            except ScheduleError:
                continue
            sched.info.update(exec_region_kib=float(kib), variant="max-cold" if largest else "min-cold")
            candidates.append(sched)
    if not candidates:
        raise ScheduleError("static: no execution-region size admits every operator")
    best = _best(candidates, workload)
    best.info.update(compile_seconds=time.perf_counter() - started, splits_tried=len(candidates))
    return best


def elk_dyn(workload: Workload, thetas: tuple[float, ...] = (0.9, 0.7, 0.5)) -> Schedule:
    """The inductive scheduler in program load order, best over the loads' interconnect share limit."""
    started = time.perf_counter()
    chooser = CostAware(workload)
    depth = preload_depth(workload)
    candidates = []
    for theta in thetas:
        sched = backward_pass(workload, chooser, PassConfig(theta=theta, noc_mode="stretch"), design="elk-dyn",
                              max_depth=depth)
        sched.info["theta"] = theta
        candidates.append(sched)
    best = _best(candidates, workload)
    best.info["compile_seconds"] = time.perf_counter() - started
    return best


@dataclass
class FullSearch:
    """What ELK-Full tried, for reports."""

    orders: int = 0
    passes: int = 0
    best_order: tuple[int, ...] = ()
    best_mode: str = ""
    spans: list[float] = field(default_factory=list)


def elk_full(workload: Workload, *, space: str = "complete", max_displacement: int = 4,
             modes: tuple[str, ...] = ("stretch", "push"), theta: float = 0.99,
             dyn: Schedule | None = None) -> Schedule:
    """ELK-Dyn over permuted HBM load orders (same group permutation every layer), both NoC modes.

    ELK-Dyn's own schedule is a candidate, so ELK-Full is never worse.
    """
    started = time.perf_counter()
    chooser = CostAware(workload)
    depth = preload_depth(workload)
    program = workload.program
    groups = layer_groups(program)
    perms: list[tuple[int, ...]] = [()]
    if groups is not None and len(groups) > 1:
        perms = group_orders(group_types(program, groups), max_displacement, space)
    dyn = dyn if dyn is not None else elk_dyn(workload)
    best, best_span, search = dyn, span(dyn, workload.has_load), FullSearch()
    best_label = ("elk-dyn", "stretch")
    for perm in perms:
        order = load_order(program, groups, perm) if perm else None
        search.orders += 1
        for mode in modes:
            try:
                sched = backward_pass(workload, chooser, PassConfig(theta=theta, noc_mode=mode), design="elk-full",
                                      load_order=order, max_depth=depth)
            except ScheduleError:
                continue
            search.passes += 1
            s = span(sched, workload.has_load)
            search.spans.append(s)
            if s < best_span - 1e-6:
                best, best_span, best_label = sched, s, (perm, mode)
    result = Schedule("elk-full", best.entry, best.exec_start, best.exec_end, best.load_start, best.load_end,
                      best.relaxation, dict(best.info))
    result.info.update(compile_seconds=time.perf_counter() - started, orders_tried=search.orders,
                       passes=search.passes, order_space=space,
                       best_order=list(best_label[0]) if best_label[0] != "elk-dyn" else "elk-dyn",
                       best_noc_mode=best_label[1])
    return result


def ideal(workload: Workload) -> Schedule:
    """Optimistic bound: fastest plans, preloads bounded only by minimum footprints, no NoC contention."""
    started = time.perf_counter()
    cfg = PassConfig(theta=1.0, noc_mode="none", depth="greedy", preload="min-hot", charge_min_cold=True)
    sched = backward_pass(workload, Fastest(workload), cfg, design="ideal", relaxation=IDEAL_RELAXATION)
    sched.info["compile_seconds"] = time.perf_counter() - started
    return sched


DESIGNS = {"basic": basic, "static": static, "elk-dyn": elk_dyn, "elk-full": elk_full, "ideal": ideal}
