"""The paper's designs: every schedule passes the simulator, and the bounds between designs hold."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from elk.chip import preset
from elk.errors import ScheduleError
from elk.schedule import IDEAL_RELAXATION, STRICT
from elk.simulator import simulate
from elk.workload import Workload
from elk.graphs.zoo import build_program
from solvers.schedule.choice import CostAware, FixedCold
from solvers.schedule.designs import DESIGNS, elk_dyn, preload_depth, span
from solvers.schedule import engine
from solvers.schedule.engine import PassConfig, backward_pass
from solvers.schedule.orders import group_orders, group_types, layer_groups, load_order

MK2 = preset("ipu-mk2")
CASES = {
    "mk2": MK2,
    # a slow HBM and per-core SRAM of a few KiB: loads dominate and preloads compete for memory
    "small-sram": MK2.with_overrides(sram_per_core=1536, hbm_bytes_per_s=0.02e12),
    "mesh": MK2.with_overrides(topology_kind="mesh", hbm_bytes_per_s=0.05e12),
}


@functools.lru_cache(maxsize=None)
def tiny_program():
    return build_program("tiny", batch=4, seq=128)


@functools.lru_cache(maxsize=None)
def run_all(case_name: str):
    """Workload, schedules and simulator results of every design (computed once per module run)."""
    workload = Workload.build(tiny_program(), CASES[case_name])
    schedules = {name: strategy(workload) for name, strategy in DESIGNS.items()}
    results = {name: simulate(workload, s) for name, s in schedules.items()}
    return case_name, workload, schedules, results


@pytest.fixture(scope="module")
def tiny():
    return tiny_program()


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    return run_all(request.param)


def test_designs_are_the_papers_five():
    assert list(DESIGNS) == ["basic", "static", "elk-dyn", "elk-full", "ideal"]


def test_every_design_is_valid(case):
    name, w, schedules, results = case
    for design, r in results.items():
        assert r.valid, f"{name}/{design}: {r.violations[:2]}"
        assert r.design == design
        assert r.peak_sram_bytes <= w.chip.sram_per_core
        assert np.isfinite(r.latency_cycles) and r.latency_cycles > 0
    assert schedules["ideal"].relaxation == IDEAL_RELAXATION
    assert all(schedules[d].relaxation == STRICT for d in DESIGNS if d != "ideal")


def test_bounds_between_designs(case):
    name, w, schedules, results = case
    lat = {d: r.latency_cycles for d, r in results.items()}
    tol = 1e-6 * lat["ideal"]
    for design in DESIGNS:
        assert lat[design] >= lat["ideal"] - tol, (name, design, lat)
    hbm = float(w.hbm_cycles[w.has_load].sum())
    assert lat["ideal"] >= hbm - tol
    assert results["ideal"].latency_ms >= w.hbm_seconds() * 1e3 * (1 - 1e-9)
    assert lat["elk-full"] <= lat["elk-dyn"] + tol
    # each design's own span is the simulator's latency
    for design, s in schedules.items():
        assert span(s, w.has_load) == pytest.approx(lat[design], rel=1e-9)


def test_memory_binds_in_the_small_sram_case(tiny):
    _, w, _, results = run_all("small-sram")
    roomy = Workload.build(tiny, CASES["small-sram"].with_overrides(sram_per_core=624 * 1024))
    # the HBM is the bottleneck, and the small SRAM costs the fixed-split baseline time
    assert float(w.hbm_cycles.sum()) > 0.5 * results["ideal"].latency_cycles
    large = simulate(roomy, DESIGNS["static"](roomy))
    assert results["static"].latency_cycles > large.latency_cycles * 1.001
    assert max(r.peak_sram_bytes for r in results.values()) > 0.9 * w.chip.sram_per_core


def test_designs_are_deterministic():
    _, _, first, _ = run_all("small-sram")
    fresh = Workload.build(tiny_program(), CASES["small-sram"])  # no state carried over from the first run
    for name, strategy in DESIGNS.items():
        a, b = first[name], strategy(fresh)
        for field in ("entry", "exec_start", "exec_end", "load_start", "load_end"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")


@pytest.mark.parametrize("mode", ["stretch", "push", "hybrid", "yield", "none"])
def test_backward_pass_modes(tiny, mode):
    for chip in (CASES["small-sram"], CASES["mesh"]):
        w = Workload.build(tiny, chip)
        s = backward_pass(w, CostAware(w), PassConfig(theta=0.9, noc_mode=mode), design=f"pass-{mode}",
                          max_depth=preload_depth(w))
        r = simulate(w, s)
        if mode == "none":
            # no NoC accounting: only the interconnect rules may be broken
            assert {v.rule for v in r.violations} <= {"3-noc-exec"}
            continue
        assert r.valid, (mode, chip.name, r.violations[:2])
        assert s.exec_end.max() == pytest.approx(0.0)  # the pass ends the last execution at time 0


@pytest.mark.parametrize("mode", ["stretch", "push", "hybrid", "yield"])
def test_backward_pass_with_a_permuted_load_order(tiny, mode):
    groups = layer_groups(tiny)
    perms = group_orders(group_types(tiny, groups))
    assert len(perms) > 1
    for chip in (MK2, CASES["small-sram"]):
        w = Workload.build(tiny, chip)
        for perm in (perms[1], perms[len(perms) // 2], perms[-1]):
            order = load_order(tiny, groups, perm)
            assert sorted(order) == list(range(len(tiny.ops))) and order != list(range(len(tiny.ops)))
            s = backward_pass(w, CostAware(w), PassConfig(theta=0.99, noc_mode=mode), design="perm",
                              load_order=order, max_depth=preload_depth(w))
            r = simulate(w, s)
            assert r.valid, (mode, chip.name, perm, r.violations[:2])
            # loads really happen in the permuted order
            loads = [op for op in order if w.has_load[op]]
            starts = s.load_start[loads]
            assert np.all(np.diff(starts) >= -1e-6)


@pytest.mark.parametrize("sram", [768, 1024])
def test_held_cold_check_rejects_only_orders_that_fail_anyway(tiny, sram, monkeypatch):
    """An order rejected before the pass (the operators held through one leave less than its smallest plan) also
    fails with the check switched off, at the operator the check names or earlier in the pass; orders the check
    admits run as before."""
    groups = layer_groups(tiny)
    w = Workload.build(tiny, CASES["small-sram"].with_overrides(sram_per_core=sram))
    cfg = PassConfig(theta=0.99, noc_mode="push")
    outcomes = {}
    for perm in group_orders(group_types(tiny, groups)):
        try:
            s = backward_pass(w, CostAware(w), cfg, design="p", load_order=load_order(tiny, groups, perm),
                              max_depth=preload_depth(w))
            outcomes[perm] = float(s.exec_end.max() - s.exec_start.min())
        except ScheduleError as e:
            outcomes[perm] = str(e)
    rejected = [p for p, o in outcomes.items() if isinstance(o, str) and "holds the cold bytes" in o]
    assert rejected and len(rejected) < len(outcomes)
    monkeypatch.setattr(engine, "check_held_colds", lambda *args: None)
    for perm, before in outcomes.items():
        try:
            s = backward_pass(w, CostAware(w), cfg, design="p", load_order=load_order(tiny, groups, perm),
                              max_depth=preload_depth(w))
            after: float | str = float(s.exec_end.max() - s.exec_start.min())
        except ScheduleError as e:
            after = str(e)
        if perm in rejected:
            assert isinstance(after, str) and "no plan that fits" in after, perm
        else:
            assert after == before, perm


def test_backward_pass_rejects_a_non_permutation(tiny):
    w = Workload.build(tiny, MK2)
    with pytest.raises(ScheduleError):
        backward_pass(w, CostAware(w), PassConfig(), design="x", load_order=[0] * len(w))


def test_fixed_cold_baseline_pass(tiny):
    w = Workload.build(tiny, CASES["small-sram"])
    for largest in (False, True):
        cfg = PassConfig(theta=0.7, depth="greedy", max_residents=1, preload="min-hot-of-min-cold")
        s = backward_pass(w, FixedCold(w, largest), cfg, design="basic")
        assert simulate(w, s).valid


def test_layer_groups_of_tiny(tiny):
    groups = layer_groups(tiny)
    layers = tiny.layers
    assert layers is not None and layers.count == 2
    assert sorted(k for g in groups for k in g) == list(range(layers.length))
    types = group_types(tiny, groups)
    assert len(types) == len(groups) == 6
    assert all(kind == "matmul" for kind, _ in types)


@pytest.mark.parametrize("types, complete, artifact", [([0, 1, 1, 2, 3, 4], 252, 221),
                                                        ([0, 1, 1, 2, 3, 3], 150, 147)])
def test_group_order_counts(types, complete, artifact):
    for space, count in (("complete", complete), ("artifact", artifact)):
        orders = group_orders(types, 4, space)
        assert len(orders) == count
        assert orders[0] == tuple(range(len(types)))
        assert all(sorted(p) == list(range(len(types))) for p in orders)
        assert all(max(abs(p[k] - k) for k in range(len(p))) <= 4 for p in orders)
        sequences = [tuple(types[j] for j in p) for p in orders]
        assert len(set(sequences)) == len(sequences)
    # the artifact's orders are a subset of the complete space (as type sequences)
    full = {tuple(types[j] for j in p) for p in group_orders(types, 4, "complete")}
    assert {tuple(types[j] for j in p) for p in group_orders(types, 4, "artifact")} <= full
    with pytest.raises(ValueError):
        group_orders(types, 4, "nope")


def test_group_orders_respect_displacement():
    orders = group_orders(list(range(6)), 1)
    assert all(max(abs(p[k] - k) for k in range(6)) <= 1 for p in orders)
    assert len(orders) == 13  # Fibonacci: adjacent swaps only


def test_load_order_permutes_every_layer_the_same_way(tiny):
    groups = layer_groups(tiny)
    perm = group_orders(group_types(tiny, groups))[1]
    order = load_order(tiny, groups, perm)
    layers = tiny.layers
    inner = [k for g in perm for k in groups[g]]
    for layer in range(layers.count):
        base = layers.start + layer * layers.length
        assert order[base: base + layers.length] == [base + k for k in inner]
    assert order[:layers.start] == list(range(layers.start))
    assert order[layers.stop:] == list(range(layers.stop, len(tiny.ops)))


def test_truncated_workload(tiny):
    w = Workload.build(tiny, MK2)
    layers = tiny.layers
    t = w.truncated(1)
    tail = len(tiny.ops) - layers.stop
    assert len(t) == layers.start + layers.length + tail
    keep = list(range(layers.start + layers.length)) + list(range(layers.stop, len(tiny.ops)))
    assert [op.name for op in t.program.ops] == [tiny.ops[k].name for k in keep]
    assert all(a is w.tables[k] for a, k in zip(t.tables, keep))
    np.testing.assert_array_equal(t.load_bytes, w.load_bytes[keep])
    np.testing.assert_array_equal(t.hbm_cycles, w.hbm_cycles[keep])
    assert t.noc_load_bytes_per_cycle == w.noc_load_bytes_per_cycle
    assert w.truncated(layers.count) is w
    assert simulate(t, elk_dyn(t)).valid


@pytest.mark.slow
def test_llama2_13b_on_pod4():
    program = build_program("llama2-13b", batch=32, seq=2048)
    w = Workload.build(program, preset("ipu-pod4"))
    lat = {}
    for name, strategy in DESIGNS.items():
        r = simulate(w, strategy(w))
        assert r.valid, (name, r.violations[:2])
        lat[name] = r.latency_ms
    eps = 1e-9
    assert lat["basic"] >= lat["static"] - eps
    assert lat["static"] >= lat["elk-dyn"] - eps
    assert lat["elk-dyn"] >= lat["elk-full"] - eps
    assert lat["elk-full"] >= lat["ideal"] - eps
    assert lat["ideal"] >= w.hbm_seconds() * 1e3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elk_full_searching_share_limits_is_rigid_valid_and_never_slower(seed):
    """Under rigid loads ELK-Full may search the loads' interconnect share limit with its orders and modes: the
    result passes the simulator, records the limit it won with, and (no screening on a program without layers)
    is never slower than the single default limit."""
    from solvers.schedule.designs import RIGID_THETAS, elk_full
    from tests.test_bounds import random_chip, random_program
    rng = np.random.default_rng(seed)
    w = Workload.build(random_program(rng), random_chip(rng, "rigid"))
    one = simulate(w, elk_full(w))
    searched = elk_full(w, thetas=RIGID_THETAS)
    judged = simulate(w, searched)
    assert one.valid and judged.valid
    assert judged.latency_cycles <= one.latency_cycles + 1e-6
    assert searched.info.theta in RIGID_THETAS + (0.9, 0.7, 0.5)  # its own limit, or ELK-Dyn's if that won


@pytest.mark.parametrize("load_model", ["rigid", "fluid"])
def test_yield_never_stretches_an_exchange_bound_operator(load_model):
    """The yield mode moves loads out of an exchange-bound operator's way (communication >= yield_share of its
    plan time) instead of stretching it: on random programs every such operator runs exactly its plan time and
    the schedule passes the simulator, while the stretch mode does stretch such operators on several of them."""
    from tests.test_bounds import random_chip, random_program
    stretched_somewhere = 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        w = Workload.build(random_program(rng), random_chip(rng, load_model))
        runs = {mode: backward_pass(w, CostAware(w), PassConfig(theta=0.9, noc_mode=mode), design=mode,
                                    max_depth=preload_depth(w)) for mode in ("stretch", "yield")}
        for mode, s in runs.items():
            r = simulate(w, s)
            assert r.valid, (seed, mode, r.violations[:1])
            chosen = w.chosen(s.entry)
            bound_by_exchange = chosen["comm"] >= 0.9 * chosen["time"]
            longer = (s.exec_end - s.exec_start) > chosen["time"] * (1 + 1e-9) + 1e-6
            if mode == "yield":
                assert not (longer & bound_by_exchange).any(), (seed, np.flatnonzero(longer & bound_by_exchange))
            elif (longer & bound_by_exchange).any():
                stretched_somewhere += 1
    if load_model == "rigid":
        assert stretched_somewhere >= 5  # the property is exercised: stretch does stretch such operators


def test_yield_share_decides_which_operators_are_exchange_bound():
    """With yield_share above 1 no operator is exchange-bound, and yield is the stretch mode exactly."""
    from tests.test_bounds import random_chip, random_program
    rng = np.random.default_rng(6)
    w = Workload.build(random_program(rng), random_chip(rng, "rigid"))
    stretch = backward_pass(w, CostAware(w), PassConfig(theta=0.9, noc_mode="stretch"), design="s")
    never = backward_pass(w, CostAware(w), PassConfig(theta=0.9, noc_mode="yield", yield_share=1.01), design="y")
    always = backward_pass(w, CostAware(w), PassConfig(theta=0.9, noc_mode="yield"), design="y")
    for a, b in ((stretch.exec_start, never.exec_start), (stretch.load_start, never.load_start)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(stretch.exec_start, always.exec_start)


def test_rigid_elk_full_searches_yield_and_the_compatible_mode_does_not():
    """ELK-Full's rigid search includes yield; the artifact-compatible mode keeps the modes it reproduces the
    paper with (yield is elk's own correction, reported as one)."""
    from elk.driver.compat import COMPAT_FULL_MODES
    from elk.schedule import NocMode
    from solvers.schedule.designs import RIGID_MODES
    assert NocMode.YIELD in RIGID_MODES and NocMode.YIELD not in COMPAT_FULL_MODES
    assert set(COMPAT_FULL_MODES) < set(RIGID_MODES)


@pytest.mark.parametrize("share", [0, -0.5, float("nan"), float("inf"), "0.9"])
def test_yield_share_must_be_a_positive_number(share):
    from elk.errors import SolverConfigError
    with pytest.raises(SolverConfigError, match="yield share"):
        PassConfig(noc_mode="yield", yield_share=share)


def test_group_load_thetas_give_each_layer_group_its_limit(tiny):
    """One share limit per operator: its group's in every layer, the single limit outside the layers."""
    from solvers.schedule.designs import group_load_thetas
    w = Workload.build(tiny, MK2)
    groups = layer_groups(tiny)
    values = tuple(0.3 + 0.1 * g for g in range(len(groups)))
    limits = np.array(group_load_thetas(w, groups, values, 0.99))
    layers = tiny.layers
    inside = np.zeros(len(w), dtype=bool)
    for layer in range(layers.count):
        for g, offsets in enumerate(groups):
            ops = [layers.start + layer * layers.length + k for k in offsets]
            inside[ops] = True
            assert np.all(limits[ops] == values[g])
    assert np.all(limits[~inside] == 0.99)
    with pytest.raises(ScheduleError, match="share limits"):
        group_load_thetas(w, groups, values[:-1], 0.99)


@pytest.fixture(scope="module")
def llama_rigid_four_layers():
    w = Workload.build(build_program("llama2-13b", batch=32, seq=2048),
                       preset("ipu-pod4").with_overrides(load_model="rigid"))
    return w.truncated(4)


def test_per_group_share_limits_shorten_rigid_elk_full_and_are_repeated(llama_rigid_four_layers):
    """Under rigid loads ELK-Full refines its winner's share limit per layer group: on four Llama2-13B layers
    (a small search: yield, one limit, orders one step from the identity) the refined schedule is valid, no
    longer than the unrefined one, records the limits that won, and a placement repair's repeat of the choice
    rebuilds it exactly."""
    from elk.schedule import NocMode
    from solvers.schedule.designs import (GROUP_THETA_ROUNDS, RIGID_GROUP_THETA_RESTARTS, RIGID_GROUP_THETAS,
                                          elk_full, repeat_choice)
    w = llama_rigid_four_layers
    search = dict(workers=1, modes=(NocMode.YIELD,), thetas=(0.99,), max_displacement=1, screen_layers=0)
    plain = elk_full(w, group_thetas=None, **search)
    refined = elk_full(w, **search)
    a, b = simulate(w, plain), simulate(w, refined)
    assert a.valid and b.valid
    assert b.latency_cycles <= a.latency_cycles + 1e-6
    assert span(refined, w.has_load) < span(plain, w.has_load) - 1e-6  # it pays here
    choice = refined.info.load_order
    assert plain.info.load_order.group_thetas is None
    assert choice.group_thetas is not None and len(choice.group_thetas) == len(layer_groups(w.program))
    grids = (RIGID_GROUP_THETAS, *RIGID_GROUP_THETA_RESTARTS)
    assert set(choice.group_thetas) <= set().union(*grids) | {0.99}
    passes = refined.info.search["full_passes"] - plain.info.search["full_passes"]
    assert 0 < passes <= GROUP_THETA_ROUNDS * len(choice.group_thetas) * sum(len(g) for g in grids)
    again = repeat_choice("elk-full", refined)(w)
    np.testing.assert_array_equal(again.exec_start, refined.exec_start)
    np.testing.assert_array_equal(again.load_start, refined.load_start)


def test_share_limits_searched_on_the_screening_program_are_confirmed_in_full(llama_rigid_four_layers, monkeypatch):
    """By default the per-group descent runs on the screening program (here 2 of the 4 layers) and its limits are
    kept only where the whole program is shorter with them, then the winner takes one round on the whole program:
    every other descent sees the cut program, the result is valid and never longer than the search without
    refinement, and the kept limits are repeated exactly."""
    from elk.schedule import NocMode
    from solvers.schedule import designs
    w = llama_rigid_four_layers
    search = dict(workers=1, modes=(NocMode.YIELD,), thetas=(0.99,), max_displacement=1, screen_layers=2,
                  finalists=1)
    plain = designs.elk_full(w, group_thetas=None, **search)
    real, seen = designs.refine_group_thetas, []

    def recorded(run, workload, *args, **kwargs):
        seen.append((len(workload), kwargs.get("rounds", designs.GROUP_THETA_ROUNDS)))
        return real(run, workload, *args, **kwargs)

    monkeypatch.setattr(designs, "refine_group_thetas", recorded)
    screened = designs.elk_full(w, **search)
    # every descent on the cut program, then one closing round on the whole program
    assert len(seen) >= 2 and all(n < len(w) for n, _ in seen[:-1]) and seen[-1] == (len(w), 1)
    assert simulate(w, screened).valid
    assert span(screened, w.has_load) <= span(plain, w.has_load) + 1e-6
    assert screened.info.load_order.group_thetas is not None  # the screened limits pay on the whole program here
    again = designs.repeat_choice("elk-full", screened)(w)
    np.testing.assert_array_equal(again.exec_start, screened.exec_start)
    seen.clear()
    whole = designs.elk_full(w, refine_on_screen=False, **search)
    assert seen and all(n == len(w) and rounds == designs.GROUP_THETA_ROUNDS for n, rounds in seen)
    assert simulate(w, whole).valid


def test_every_modes_best_is_refined_not_the_winners_alone(llama_rigid_four_layers, monkeypatch):
    """The refinement may favour a mode the single-limit search ranked lower (Llama2-13B on a mesh at 16 TB/s,
    192 KiB: refined stretch 10.815 ms against the refined push winner's 11.246): each mode's fastest full run
    is refined, and the search ends no slower than either mode searched alone."""
    from elk.schedule import NocMode
    from solvers.schedule import designs
    w = llama_rigid_four_layers
    search = dict(workers=1, thetas=(0.99,), max_displacement=1, screen_layers=0)
    alone = [designs.elk_full(w, modes=(mode,), **search) for mode in (NocMode.STRETCH, NocMode.PUSH)]
    real, calls = designs.refine_group_thetas, []

    def counted(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(designs, "refine_group_thetas", counted)
    both = designs.elk_full(w, modes=(NocMode.STRETCH, NocMode.PUSH), **search)
    assert len(calls) == 2 + len(designs.RIGID_GROUP_THETA_RESTARTS)  # one per mode, then the winner per grid
    assert simulate(w, both).valid
    assert span(both, w.has_load) <= min(span(s, w.has_load) for s in alone) + 1e-6
    one_grid = designs.elk_full(w, modes=(NocMode.STRETCH, NocMode.PUSH), group_theta_restarts=(), **search)
    assert span(both, w.has_load) <= span(one_grid, w.has_load) + 1e-6  # a restart keeps the best of both


def test_fluid_elk_full_refines_share_limits_only_in_rigid_paced_passes(tiny):
    from solvers.schedule.designs import elk_full
    w = Workload.build(tiny, MK2)
    for paced in (False, True):
        choice = elk_full(w, workers=1, rigid_paced=paced).info.load_order
        assert choice is None or choice.group_thetas is None or (paced and choice.rigid_loads)


def test_fluid_elk_full_takes_a_rigid_paced_schedule_where_it_is_shorter():
    """Under fluid loads ELK-Full also runs its winning order with rigid loads (every mode and share limit, then
    per group): on four Llama2-13B layers on a mesh at 8 TB/s with 192 KiB that schedule is shorter, valid under
    the fluid load model, recorded as rigid-paced, and a placement repair's repeat rebuilds it exactly; it is
    never longer than the search without it."""
    from solvers.schedule.designs import elk_full, repeat_choice
    chip = preset("ipu-pod4").with_overrides(topology_kind="mesh", hbm_bytes_per_s=8e12, sram_per_core=192 * 1024)
    w = Workload.build(build_program("llama2-13b", batch=32, seq=2048), chip).truncated(4)
    assert w.chip.load_model.value == "fluid"
    search = dict(workers=1, max_displacement=1, screen_layers=0)
    fluid_only = elk_full(w, rigid_paced=False, **search)
    paced = elk_full(w, **search)  # the default under fluid loads
    assert paced.info.load_order.rigid_loads and paced.info.search["rigid_paced"]
    assert span(paced, w.has_load) < span(fluid_only, w.has_load) - 1e-6
    result = simulate(w, paced)
    assert result.valid, result.violations[:2]
    again = repeat_choice("elk-full", paced)(w)
    np.testing.assert_array_equal(again.exec_start, paced.exec_start)
    np.testing.assert_array_equal(again.load_start, paced.load_start)
    rigid = w.with_load_model(type(w.chip.load_model)("rigid"))
    assert rigid.tables is w.tables and rigid.chip.load_model.value == "rigid"
    assert simulate(rigid, paced).valid  # it is a rigid schedule, judged under fluid loads as one of theirs


@pytest.mark.parametrize("limits", [(0.5, 0.0), (1.2, 0.5), (0.5, float("nan"))])
def test_load_share_limits_must_lie_in_zero_one(limits):
    from elk.errors import SolverConfigError
    with pytest.raises(SolverConfigError, match="share limit"):
        PassConfig(load_thetas=limits)


def test_a_share_limit_per_operator_must_cover_the_program(tiny):
    w = Workload.build(tiny, MK2.with_overrides(load_model="rigid"))
    with pytest.raises(ScheduleError, match="load share limits"):
        backward_pass(w, CostAware(w), PassConfig(load_thetas=(0.5,) * (len(w) - 1)), design="x")


def test_windows_keep_the_warm_starts_per_group_share_limits(llama_rigid_four_layers):
    """A window re-planning a rigid warm start with per-group share limits gives each load its group's length:
    the warm start's own loads stay expressible, and every window's hint is feasible."""
    import math
    from elk.schedule import NocMode
    from solvers.schedule.designs import elk_full, group_load_thetas
    from solvers.schedule.windowed import WindowedSolver, window_problems
    from solvers.solver_options import SolverSettings
    w = llama_rigid_four_layers
    warm = elk_full(w, workers=1, modes=(NocMode.YIELD,), thetas=(0.99,), max_displacement=1, screen_layers=0)
    limits = group_load_thetas(w, layer_groups(w.program), warm.info.load_order.group_thetas, warm.info.theta)
    runner = WindowedSolver(w, warm, SolverSettings(time_limit=1, workers=1))
    for op in np.flatnonzero(w.has_load):
        row = int(warm.entry[op])
        noc = w.load_noc_cycles(int(op), int(w.tables[op].cold[row]))
        expected = math.ceil(max(float(w.hbm_cycles[op]), noc / limits[op]) - 1e-9)
        assert runner.option(int(op), row).load_time == expected
    assert all(built.hint_ok for built in window_problems(w, warm, 8))
