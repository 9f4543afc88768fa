"""The designs of the Elk paper as strategies: each returns a Schedule.

A strategy may compare its own candidate schedules (variants, sweeps, load
orders) by their span, which the backward pass computes under the same rules
the simulator checks; the latency users see is always the simulator's.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError
from elk.schedule import IDEAL_RELAXATION, ColdVariant, LoadOrderChoice, NocMode, Schedule
from elk.workload import Workload
from solvers.schedule.choice import CostAware, Fastest, FixedCold
from solvers.schedule.engine import DepthRule, PassConfig, PlanBudget, PreloadRule, backward_pass
from solvers.schedule.parallel import map_passes
from solvers.schedule.orders import group_orders, group_types, layer_groups, load_order


def span(schedule: Schedule, has_load: np.ndarray) -> float:
    """Latency of a schedule: its first event (execution or real load) to its last execution's end."""
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
    best = _best([_basic_pass(workload, variant) for variant in ColdVariant], workload)
    best.info.compile_seconds = time.perf_counter() - started
    return best


def static(workload: Workload, step_kib: int = 10, *, workers: int | None = None) -> Schedule:
    """One global split of SRAM into execution and preload regions, swept; best split and variant (the sweep's
    passes on ``workers`` processes: solvers.schedule.parallel)."""
    started = time.perf_counter()
    sram_kib = workload.chip.sram_per_core / 1024
    lowest = math.ceil(workload.min_hot.max() / 1024)
    configs = [(variant, min(float(kib) * 1024, float(workload.chip.sram_per_core)))
               for kib in np.arange(lowest, sram_kib + 1e-9, step_kib) for variant in ColdVariant]

    def attempt(k: int) -> float | None:
        try:
            return span(_static_pass(workload, *configs[k]), workload.has_load)
        except ScheduleError:
            return None

    spans = map_passes(attempt, len(configs), workers)
    tried = [k for k, value in enumerate(spans) if value is not None]
    if not tried:
        raise ScheduleError("static: no execution-region size admits every operator")
    winner = min(tried, key=lambda k: spans[k])  # the first of equals, as a serial sweep keeps
    best = _static_pass(workload, *configs[winner])
    best.info.compile_seconds = time.perf_counter() - started
    best.info.search["splits_tried"] = len(tried)
    return best


#: ELK-Full's interconnect share limit in the paper (one value; elk keeps it under fluid loads)
PAPER_THETA = 0.99
#: the interconnect share limits ELK-Full searches under rigid loads (see :func:`elk_full`)
RIGID_THETAS = (PAPER_THETA, 0.7, 0.6, 0.45, 0.4)
#: the share limits ELK-Full tries for each group of a layer under rigid loads, once its full runs are done
#: (coordinate descent from a configuration's single limit: a KV-cache load may do best slow and a weight load fast)
RIGID_GROUP_THETAS = (0.99, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: rounds of that descent over the groups
GROUP_THETA_ROUNDS = 2
#: further descents of the winner, each over its own grid from its single limit, the best kept: a coordinate
#: descent is path-dependent (Llama2-13B on a mesh at 16 TB/s with 192 KiB ends at 10.445 ms with 0.2 in the
#: grid, though no group keeps 0.2, and at 10.815 without; Llama2-70B on a mesh at 8 TB/s with 192 KiB the other
#: way round, 28.615 against 28.474)
RIGID_GROUP_THETA_RESTARTS = (RIGID_GROUP_THETAS + (0.2,),)
#: ELK-Full's NoC modes under rigid loads: the paper's two, elk's hybrid, and yield (loads move out of the way of
#: exchange-bound operators, which a rigid load would stretch by 1 / (1 - its share))
RIGID_MODES = (NocMode.STRETCH, NocMode.PUSH, NocMode.HYBRID, NocMode.YIELD)


def elk_dyn(workload: Workload, thetas: tuple[float, ...] = (0.9, 0.7, 0.5)) -> Schedule:
    """The inductive scheduler in program load order, best over the loads' interconnect share limit."""
    started = time.perf_counter()
    chooser = CostAware(workload)
    depth = preload_depth(workload)
    candidates = []
    for theta in thetas:
        sched = backward_pass(workload, chooser, PassConfig(theta=theta, noc_mode=NocMode.STRETCH),
                              design="elk-dyn", max_depth=depth)
        candidates.append(sched)
    best = _best(candidates, workload)
    best.info.compile_seconds = time.perf_counter() - started
    return best


def elk_full(workload: Workload, *, space: str = "complete", max_displacement: int = 4,
             modes: tuple[NocMode, ...] | None = None, theta: float = PAPER_THETA,
             thetas: tuple[float, ...] | None = None, penalties: tuple[float, ...] = (0.5,), screen_layers: int = 12,
             finalists: int = 6,
             screen_modes: tuple[NocMode, ...] | None | str = "auto", order_finalists: int = 8,
             dyn: Schedule | None = None, workers: int | None = None,
             group_thetas: tuple[float, ...] | None | str = "auto", refine_every_mode: bool = True,
             group_theta_restarts: tuple[tuple[float, ...], ...] | str = "auto",
             rigid_paced: bool | str = "auto", refine_on_screen: bool = True) -> Schedule:
    """ELK-Dyn over permuted HBM load orders (the same group permutation in every layer).

    Every (order, NoC mode, NoC penalty) is first ranked on the program cut to
    ``screen_layers`` layers, where a permutation acts exactly as on the full
    program; the ``finalists`` best are re-run in full (``screen_layers=0``
    runs everything in full). Measured on Llama2-13B: 12 layers / 6 finalists
    find the same best order as the full search (7.869 ms under the rigid load model, the
    paper's) in 14 s instead of 107 s; 4 or 8 layers pick a 1.3% worse one. Screening runs in two stages: each of
    ``screen_modes`` ranks the orders alone and nominates its ``order_finalists`` best, and
    only the nominated orders are screened in every mode. On the four LLMs (B32 S2048) this
    finds the same latency as screening every (order, mode) at half the time; stretch alone
    as the nominating mode missed Llama2-70B's best order (7% worse), push alone OPT-30B's.
    ``screen_modes=None`` screens every (order, mode). ELK-Dyn's own schedule is a candidate,
    so ELK-Full is never worse. Modes: the artifact's ``stretch`` (delay compute)
    and ``push`` (delay loads), and elk's ``hybrid`` (the better of the two per
    operator).

    The modes depend on the load model (``modes=None``, ``screen_modes="auto"``):
    rigid loads use all three and yield (``RIGID_MODES``), orders nominated by stretch, push and yield.
    Measured under rigid loads (B32 S2048; ``experiments/bench_rigid_modes.py``, in one run): Llama2-13B on
    the default chip 7.621 -> 7.256 ms (yield wins), OPT-30B all-to-all at 16 TB/s 13.723 -> 13.363, at 1.0-1.9x
    the time; on a mesh and on Llama2-70B and Gemma2-27B the other modes still win. Fluid loads
    pause for an operator's exchange by themselves, so stretching alone no longer
    pays: on the four LLMs (B32 S2048) push and hybrid, orders nominated by push
    alone, give the same latency as all three modes at half the time.

    ``thetas``: the loads' interconnect share limits searched with the orders and modes. Default: ``theta``
    alone under fluid loads (a fluid load pauses through an exchange by itself), ``RIGID_THETAS`` under rigid
    ones: a rigid load runs at one rate through every operator it overlaps, and the best limit depends on the
    program. Measured under rigid loads (B32 S2048, one run, against ``theta`` alone): Llama2-13B on the default
    chip 7.869 -> 7.621 ms (at 0.4), OPT-30B on a mesh at 16 TB/s 19.40 -> 18.64 ms (0.7), OPT-30B all-to-all
    13.98 -> 13.72 (0.45), Gemma2-27B on a mesh at 400 KiB 13.44 -> 13.24 (0.6), for 1.3-1.8x the time. The
    artifact-compatible mode keeps the paper's single limit (``elk.driver.compat``).

    ``group_thetas``: share limits tried for each group of the layer once the full runs are done (``"auto"``:
    ``RIGID_GROUP_THETAS`` under rigid loads, none under fluid ones; None: no refinement). A coordinate descent
    (``GROUP_THETA_ROUNDS`` rounds over the groups, each group's limit set to the value that shortens the span,
    the others kept) on the whole program, from a configuration's single limit (which configurations:
    ``refine_every_mode``); the limits that won are recorded in
    the choice (``LoadOrderChoice.group_thetas``) so a placement repair repeats them. Measured under rigid
    loads (B32 S2048, one run; ``experiments/bench_rigid_modes.py``): Llama2-13B default chip 7.256 -> 7.180
    ms, on a mesh at 16 TB/s 10.104 -> 9.798; OPT-30B and Gemma2-27B on the default chip unchanged; at most 72
    passes on the whole program (7 s on Llama2-13B, 17 s on Gemma2-27B). ``refine_every_mode``: each NoC mode's
    fastest configuration is refined (each mode's best screened one joins the finalists), not only the
    single-limit winner's: the refinement may favour a mode the single-limit search ranked lower. Llama2-13B on
    a mesh at 16 TB/s with 192 KiB, rigid: 11.246 -> 10.815 ms (refined stretch against the refined push winner).
    ``group_theta_restarts``: further grids over which the winner so far descends again from its single limit,
    the best kept (``"auto"``: ``RIGID_GROUP_THETA_RESTARTS`` under rigid loads, none under fluid ones); the
    same configuration then ends at 10.445 ms.

    ``refine_on_screen`` (default): each of those descents runs on the screening program (a group's limit acts
    the same way in every layer) and its limits are kept only where the whole program, run once with them, is
    shorter; the winner then takes one more round of the descent on the whole program from its limits (what the
    cut program cannot see). ``False``: every descent on the whole program (the earlier default). Measured on
    the gap study's 48 rigid configurations (B32 S2048, one worker, both in one run;
    ``experiments/bench_refine_screen.py``): ELK-Full in 0.69x the time (summed: 1,125 -> 772 s), the same
    latency at 46, 1.0% shorter at Llama2-70B on a mesh at 8 TB/s 192 KiB (28.474 -> 28.188 ms), 0.27% longer at
    OPT-30B on a mesh at 16 TB/s 624 KiB (18.162 -> 18.211); without the closing round on the whole program it was
    0.62x but 0.27-0.87% longer at three 624 KiB configurations.

    ``rigid_paced`` (``"auto"``: under fluid loads): the winning order is also run with rigid loads, in every
    mode at every ``RIGID_THETAS`` limit, and the best of those refined per group, all on the screening
    program; the refined configuration is then confirmed on the whole program and kept where it is shorter. A
    constant rate is one a fluid load may take, so such a schedule is valid under fluid loads (docs/design.md
    §5.1), and its pass can hold a slow KV-cache load through compute that the fluid pass would rather have
    finished early. Measured on the gap study's 48 fluid configurations (B32 S2048, one process): shorter at 7,
    never longer, e.g. Llama2-70B on a mesh at 8 TB/s 192 KiB 29.083 -> 28.304 ms, 624 KiB 21.509 -> 20.884,
    OPT-30B on a mesh at 8 TB/s 192 KiB 26.175 -> 25.638, Llama2-13B 12.309 -> 12.072; the default
    ``elk compile llama2-13b`` (no gain there) took as long as before, in the same run.
    """
    started = time.perf_counter()
    fluid = workload.chip.load_model is LoadModel.FLUID
    if modes is None:
        modes = (NocMode.PUSH, NocMode.HYBRID) if fluid else RIGID_MODES
    if screen_modes == "auto":
        screen_modes = (NocMode.PUSH,) if fluid else (NocMode.STRETCH, NocMode.PUSH, NocMode.YIELD)
    if thetas is None:
        thetas = (theta,) if fluid else RIGID_THETAS
    if group_thetas == "auto":
        group_thetas = None if fluid else RIGID_GROUP_THETAS
    if group_theta_restarts == "auto":
        group_theta_restarts = () if fluid else RIGID_GROUP_THETA_RESTARTS
    program = workload.program
    groups = layer_groups(program)
    perms: list[tuple[int, ...]] = [()]
    if groups is not None and len(groups) > 1:
        perms = group_orders(group_types(program, groups), max_displacement, space)
    configs = [(perm, mode, pen, th) for perm in perms for mode in modes for pen in penalties for th in thetas]

    def run(w: Workload, perm, mode, pen, th, limits: tuple[float, ...] | None = None) -> Schedule | None:
        try:
            return _full_pass(w, groups, perm, mode, choosers(w, pen), th, limits)
        except ScheduleError:
            return None

    cache: dict = {}

    def choosers(w: Workload, pen: float) -> CostAware:
        key = (len(w), pen)  # the screening program (cut to a few layers) or the whole one: their lengths differ
        if key not in cache:
            cache[key] = CostAware(w, noc_penalty=pen)
        return cache[key]

    small = workload.truncated(screen_layers) if screen_layers > 0 else workload
    refining = bool(group_thetas) and groups is not None and len(groups) > 1
    every_mode = refining and refine_every_mode

    def rank(candidates: list) -> list:
        def attempt(k: int) -> float | None:
            sched = run(small, *candidates[k])
            return None if sched is None else span(sched, small.has_load)

        spans = map_passes(attempt, len(candidates), workers)
        scores = [(value, cfg) for value, cfg in zip(spans, candidates) if value is not None]
        scores.sort(key=lambda x: x[0])
        return [cfg for _, cfg in scores]

    screened = 0
    if small is not workload and len(configs) > finalists:
        if screen_modes is not None and set(screen_modes) != set(modes) and len(perms) > order_finalists:
            # stage 1: orders alone, in the cheap modes; stage 2: the best orders in every mode
            best_perms: list = []
            for mode in screen_modes:  # each mode nominates its own best orders
                first = rank([(perm, mode, pen, thetas[0]) for perm in perms for pen in penalties])
                best_perms += list(dict.fromkeys(cfg[0] for cfg in first))[:order_finalists]
                screened += len(perms) * len(penalties)
            configs = [(perm, mode, pen, th) for perm in dict.fromkeys(best_perms) for mode in modes
                       for pen in penalties for th in thetas]
        screened += len(configs)
        ranked = rank(configs)
        configs = ranked[:finalists]
        if every_mode:  # each mode's best reaches the full runs too: the refinement may favour it
            configs += [cfg for cfg in {c[1]: c for c in reversed(ranked)}.values() if cfg not in configs]
    dyn = dyn if dyn is not None else elk_dyn(workload)
    dyn = dyn.info.before_stores or dyn  # compared as the passes make them, before stores are placed
    best, best_span, best_cfg = dyn, span(dyn, workload.has_load), None
    def final(k: int) -> float | None:
        sched = run(workload, *configs[k])
        return None if sched is None else span(sched, workload.has_load)

    passes = len(configs)
    mode_best: dict = {}  # each mode's fastest full run: (span, config)
    for value, cfg in zip(map_passes(final, len(configs), workers), configs):
        if value is None:
            continue
        if value < best_span - 1e-6:
            best_span, best_cfg = value, cfg
        if cfg[1] not in mode_best or value < mode_best[cfg[1]][0]:
            mode_best[cfg[1]] = (value, cfg)
    limits = None  # per-group share limits, where refining them paid
    if refining and best_cfg is not None:
        # every mode's best is refined, not the winner's alone: on Llama2-13B on a mesh at 16 TB/s with 192 KiB
        # the refined stretch configuration (10.815 ms) beats the refined winner, a push one (11.246)
        unrefined = {cfg: value for value, cfg in mode_best.values()} | {best_cfg: best_span}
        screen_spans: dict = {}  # a configuration's span on the screening program, single limit

        def descend(cfg, grid: tuple[float, ...]) -> None:
            nonlocal best_span, best_cfg, limits, passes
            if refine_on_screen and small is not workload:
                # searched on the screening program (a group's limit acts the same way in every layer), confirmed
                # on the whole program: kept only where the whole program is shorter
                start_span = screen_spans.get(cfg)
                if start_span is None:
                    first = run(small, *cfg)
                    passes += 1
                    start_span = screen_spans[cfg] = math.inf if first is None else span(first, small.has_load)
                found, _, refine_passes = refine_group_thetas(
                    lambda group_limits: run(small, *cfg, group_limits), small, len(groups), cfg[3],
                    values=tuple(grid), span_now=start_span, workers=workers)
                passes += refine_passes
                if found is None:
                    return
                confirmed = run(workload, *cfg, found)
                passes += 1
                refined_span = math.inf if confirmed is None else span(confirmed, workload.has_load)
            else:
                found, refined_span, refine_passes = refine_group_thetas(
                    lambda group_limits: run(workload, *cfg, group_limits), workload, len(groups), cfg[3],
                    values=tuple(grid), span_now=unrefined[cfg], workers=workers)
                passes += refine_passes
            if found is not None and refined_span < best_span - 1e-6:
                best_span, best_cfg, limits = refined_span, cfg, found

        for _, cfg in (sorted(mode_best.values(), key=lambda vc: vc[0]) if every_mode else [(best_span, best_cfg)]):
            descend(cfg, group_thetas)
        winner = best_cfg
        for grid in group_theta_restarts:  # the winner again, from its single limit, over each further grid
            descend(winner, grid)
        if refine_on_screen and small is not workload:
            # one round on the whole program from the winner's limits (screened and confirmed, else its single
            # limit): what the cut program cannot see
            polished, polished_span, polish_passes = refine_group_thetas(
                lambda group_limits: run(workload, *best_cfg, group_limits), workload, len(groups), best_cfg[3],
                values=tuple(sorted(set(group_thetas).union(*group_theta_restarts), reverse=True)),
                span_now=best_span, workers=workers, start=limits, rounds=1)
            passes += polish_passes
            if polished is not None:
                best_span, limits = polished_span, polished
    paced_won = False
    if rigid_paced == "auto":
        rigid_paced = fluid
    if rigid_paced and fluid and groups is not None and len(groups) > 1:
        # the winning order again with rigid loads, each mode and share limit, then per group: a constant rate is
        # one a fluid load may take, so these schedules are valid under fluid loads too (docs/design.md §5.1).
        # Searched on the screening program (the limits act the same way in every layer), confirmed in full.
        rigid_small = small.with_load_model(LoadModel.RIGID)
        perm, pen = (best_cfg[0], best_cfg[2]) if best_cfg is not None else (perms[0], penalties[0])
        paced = [(perm, mode, pen, th) for mode in RIGID_MODES for th in RIGID_THETAS]

        def paced_pass(k: int) -> float | None:
            sched = run(rigid_small, *paced[k])
            return None if sched is None else span(sched, small.has_load)

        scored = [(value, cfg) for value, cfg in zip(map_passes(paced_pass, len(paced), workers), paced)
                  if value is not None]
        passes += len(paced)
        if scored:
            paced_span, paced_cfg = min(scored, key=lambda vc: vc[0])
            found, _, refine_passes = refine_group_thetas(
                lambda group_limits: run(rigid_small, *paced_cfg, group_limits), small, len(groups), paced_cfg[3],
                values=RIGID_GROUP_THETAS, span_now=paced_span, workers=workers)
            passes += refine_passes + 1
            confirmed = run(workload.with_load_model(LoadModel.RIGID), *paced_cfg, found)
            confirmed_span = math.inf if confirmed is None else span(confirmed, workload.has_load)
            if confirmed_span < best_span - 1e-6:
                best_span, best_cfg, limits, paced_won = confirmed_span, paced_cfg, found, True
                best = confirmed  # run here, in this process: no need to run it again
    if best_cfg is not None and not paced_won:  # the winning pass again, here (workers return only spans)
        best = run(workload, *best_cfg, limits)
    choice = None if best_cfg is None else LoadOrderChoice(tuple(best_cfg[0]), NocMode.parse(best_cfg[1]),
                                                            float(best_cfg[2]), limits, rigid_loads=paced_won)
    result = _as_full(best, choice)
    result.info.compile_seconds = time.perf_counter() - started
    result.info.search.update(order_space=space, orders=len(perms), configs_screened=screened,
                              screen_layers=screen_layers, full_passes=passes, rigid_paced=paced_won)
    return result


def refine_group_thetas(run: Callable[[tuple[float, ...]], Schedule | None], workload: Workload, count: int,
                         theta: float, *, values: tuple[float, ...], span_now: float,
                         workers: int | None, start: tuple[float, ...] | None = None,
                         rounds: int = GROUP_THETA_ROUNDS) -> tuple[tuple[float, ...] | None, float, int]:
    """Coordinate descent on one share limit per layer group (``count`` groups) from a configuration's
    single limit ``theta``; ``run`` is that configuration's pass with given group limits (None if it
    fails). Each group in turn takes the value of ``values`` that shortens the whole program's span most,
    ``rounds`` times over; from ``start`` (whose span is ``span_now``) if given. Returns (the limits, or None if
    none paid; the span; passes)."""
    current = [float(theta)] * count if start is None else [float(x) for x in start]
    best_span, passes, improved = span_now, 0, False
    for _ in range(rounds):
        moved = False
        for g in range(count):
            trials = [v for v in values if v != current[g]]

            def attempt(k: int, g: int = g, trials: list[float] = trials) -> float | None:
                limits = list(current)
                limits[g] = trials[k]
                sched = run(tuple(limits))
                return None if sched is None else span(sched, workload.has_load)

            spans = map_passes(attempt, len(trials), workers)
            passes += len(trials)
            scored = [(value, v) for value, v in zip(spans, trials) if value is not None]
            if scored:
                value, v = min(scored)
                if value < best_span - 1e-6:
                    best_span, current[g], moved, improved = value, v, True, True
        if not moved:
            break
    return (tuple(current) if improved else None), best_span, passes


def _basic_pass(w: Workload, variant: ColdVariant) -> Schedule:
    """One Basic pass: fixed min- or max-cold plans, preloads only up to the next operator with HBM data."""
    cfg = PassConfig(theta=0.7, noc_mode=NocMode.STRETCH, depth=DepthRule.GREEDY, max_residents=1,
                     preload=PreloadRule.MIN_HOT_OF_MIN_COLD)
    sched = backward_pass(w, FixedCold(w, variant is ColdVariant.MAX), cfg, design="basic")
    sched.info.variant = variant
    return sched


def _static_pass(w: Workload, variant: ColdVariant, region: float) -> Schedule:
    """One Static pass: ``region`` bytes for execution, the rest of SRAM for preloads."""
    cfg = PassConfig(theta=0.7, noc_mode=NocMode.STRETCH, depth=DepthRule.GREEDY, preload=PreloadRule.STATIC,
                     plan_budget=PlanBudget.EXEC_REGION, exec_region=region)
    sched = backward_pass(w, FixedCold(w, variant is ColdVariant.MAX), cfg, design="static")
    sched.info.exec_region_kib = region / 1024
    sched.info.variant = variant
    return sched


def _full_pass(w: Workload, groups, perm: tuple[int, ...], mode: NocMode | str, chooser: CostAware,
               theta: float, group_thetas: tuple[float, ...] | None = None) -> Schedule:
    """One ELK-Full pass: ELK-Dyn's scheduler with the layer groups' loads in order ``perm`` (and, given
    ``group_thetas``, each layer group's loads at its own share limit, the operators outside layers at
    ``theta``)."""
    order = load_order(w.program, groups, perm) if perm else None
    limits = None if group_thetas is None else group_load_thetas(w, groups, group_thetas, theta)
    return backward_pass(w, chooser, PassConfig(theta=theta, noc_mode=mode, load_thetas=limits), design="elk-full",
                         load_order=order, max_depth=preload_depth(w))


def group_load_thetas(w: Workload, groups, group_thetas: tuple[float, ...], theta: float) -> tuple[float, ...]:
    """One share limit per operator: its layer group's (the same group of every layer), ``theta`` outside the
    repeated layers."""
    layers = w.program.layers
    if layers is None or len(group_thetas) != len(groups):
        raise ScheduleError(f"{len(group_thetas)} share limits for a layer of "
                            f"{len(groups) if groups is not None else 0} groups")
    limits = np.full(len(w), float(theta))
    for g, offsets in enumerate(groups):
        ops = (layers.start + np.arange(layers.count)[:, None] * layers.length + np.asarray(offsets)[None, :])
        limits[ops.ravel()] = group_thetas[g]
    return tuple(limits.tolist())


def _as_full(best: Schedule, choice: LoadOrderChoice | None) -> Schedule:
    """``best`` under ELK-Full's name; ``choice`` None means ELK-Dyn's own schedule won."""
    return best.renamed("elk-full", best.info.copy(load_order=choice))


def repeat_choice(name: str, chosen: Schedule) -> Callable[[Workload], Schedule] | None:
    """The configuration ``chosen`` won with, as a one-pass scheduler for another workload (or None).

    A placement repair re-schedules under a smaller byte budget. Re-running
    the whole design repeats its search (ELK-Full's order search costs up to
    100 s on the paper's points); repeating only the winning variant, split,
    theta or (order, NoC mode, penalty) costs one or two passes. Under the
    smaller budget the search might prefer another configuration (two of the
    paper's repairs were 11-14% slower with the choice alone), which is why
    the repair still runs the whole design once, at the budget it settles
    on. Designs without a recorded choice (Ideal, the exact ones) return None
    and are re-run whole.
    """
    info = chosen.info
    if name == "basic" and info.variant is not None:
        return lambda w: _basic_pass(w, info.variant)
    if name == "static" and info.exec_region_kib is not None and info.variant is not None:
        return lambda w: _static_pass(w, info.variant, min(info.exec_region_kib * 1024, float(w.chip.sram_per_core)))
    if name == "elk-dyn" and info.theta is not None:
        return lambda w: elk_dyn(w, thetas=(info.theta,))
    if name == "elk-full" and info.theta is not None:
        choice = info.load_order
        if choice is None:
            return lambda w: _as_full(elk_dyn(w, thetas=(info.theta,)), None)

        def run(w: Workload) -> Schedule:
            chooser = CostAware(w, noc_penalty=choice.noc_penalty)
            paced = w.with_load_model(LoadModel.RIGID) if choice.rigid_loads else w
            return _as_full(_full_pass(paced, layer_groups(w.program), choice.order, choice.noc_mode, chooser,
                                       info.theta, choice.group_thetas), choice)
        return run
    return None


def ideal(workload: Workload) -> Schedule:
    """Ideal: a relaxed schedule, not a bound (nothing proves a valid schedule cannot beat it; the proven bounds are
    in solvers.schedule.bounds). Fastest plans, preloads limited only by minimum footprints, no NoC contention."""
    started = time.perf_counter()
    cfg = PassConfig(theta=1.0, noc_mode=NocMode.NONE, depth=DepthRule.GREEDY, preload=PreloadRule.MIN_HOT,
                     charge_min_cold=True)
    sched = backward_pass(workload, Fastest(workload), cfg, design="ideal", relaxation=IDEAL_RELAXATION)
    sched.info.compile_seconds = time.perf_counter() - started
    return sched


DESIGNS = {"basic": basic, "static": static, "elk-dyn": elk_dyn, "elk-full": elk_full, "ideal": ideal}
