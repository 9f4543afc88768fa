"""Schedules to SRAM buffers, their placement, and the repair of schedules whose buffers do not fit."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import elk
from elk.allocation import AllocationResult, max_load_lower_bound, validate
from elk.buffers import schedule_buffers, tensor_bytes
from elk.chip import preset
from elk.driver.report import compile_report
from elk.simulator import simulate
from elk.workload import Workload
from elk.graphs.zoo import build_program
from solvers import placement as placement_mod
from solvers.schedule.designs import DESIGNS, elk_dyn, repeat_choice
from solvers.placement import cost_aware_placement, place_schedule, repair_reruns, rerun_design, with_budget

MK2 = preset("ipu-mk2")
SMALL = MK2.with_overrides(sram_per_core=1536, hbm_bytes_per_s=0.02e12)


@functools.lru_cache(maxsize=None)
def workload(chip_name: str) -> Workload:
    chip = {"mk2": MK2, "small": SMALL}[chip_name]
    return Workload.build(build_program("tiny", batch=4, seq=128), chip)


@functools.lru_cache(maxsize=None)
def schedules(chip_name: str):
    w = workload(chip_name)
    return {name: DESIGNS[name](w) for name in ("basic", "static", "elk-dyn", "elk-full")}


def test_tensor_bytes_add_up_to_every_table_row():
    w = workload("mk2")
    for table in {id(t): t for t in w.tables}.values():
        for row in range(len(table)):
            hot, cold = tensor_bytes(table, row)
            assert hot.sum() == table.hot[row] and cold.sum() == table.cold[row]
            assert len(hot) == len(table.sig.variables) and len(cold) == sum(table.sig.offchip)


@pytest.mark.parametrize("chip_name", ["mk2", "small"])
@pytest.mark.parametrize("design", ["basic", "static", "elk-dyn", "elk-full"])
def test_buffers_charge_exactly_what_the_simulator_charges(chip_name, design):
    """The buffers' max load is rule 4's peak: the byte accounting and the address problem agree."""
    w, sched = workload(chip_name), schedules(chip_name)[design]
    bufs = schedule_buffers(w, sched)
    assert max_load_lower_bound(bufs.problem) == simulate(w, sched).peak_sram_bytes
    assert bufs.problem.capacity == w.chip.sram_per_core
    per_op = np.bincount(bufs.op[bufs.kind == "hot"], weights=bufs.problem.size[bufs.kind == "hot"],
                         minlength=len(w))
    assert np.array_equal(per_op.astype(np.int64), w.chosen(sched.entry)["hot"])


def test_operator_granularity_has_one_hot_buffer_per_operator():
    w, sched = workload("mk2"), schedules("mk2")["elk-dyn"]
    per_tensor = schedule_buffers(w, sched, "tensor")
    per_op = schedule_buffers(w, sched, "operator")
    assert (per_op.kind == "hot").sum() == len(w)
    assert len(per_op.problem) < len(per_tensor.problem)
    assert per_op.byte_peak == per_tensor.byte_peak
    with pytest.raises(ValueError, match="granularity"):
        schedule_buffers(w, sched, "byte")


@pytest.mark.parametrize("design", ["basic", "elk-dyn", "elk-full"])
def test_placed_schedules_validate(design):
    w, sched = workload("mk2"), schedules("mk2")[design]
    bufs, res = place_schedule(w, sched)
    validate(bufs.problem, res.offsets, capacity=w.chip.sram_per_core)
    assert bufs.byte_peak <= res.peak <= w.chip.sram_per_core


def _overflowing(real, times: int, capacity: int = SMALL.sram_per_core):
    """An allocator that reports the first ``times`` calls as 10% over ``capacity``."""
    calls = {"n": 0}

    def fake(problem, **kwargs):
        calls["n"] += 1
        res = real(problem, **kwargs)
        if calls["n"] <= times:
            return AllocationResult(offsets=None, peak=int(capacity * 1.1), lower_bound=res.lower_bound,
                                    status="feasible", solver="heuristic", solver_version="", seconds=0.0,
                                    proven_bound=res.lower_bound, workers=1, seed=0, params={}, message="forced")
        return res

    return fake, calls


def test_repair_reschedules_under_a_smaller_budget(monkeypatch):
    w, sched = workload("small"), schedules("small")["elk-dyn"]
    fake, calls = _overflowing(placement_mod.allocate, times=1)
    monkeypatch.setattr(placement_mod, "allocate", fake)
    repaired, placed = cost_aware_placement("elk-dyn", w, sched, rerun_design("elk-dyn", {}))
    assert placed.status == "repaired" and len(placed.repairs) == 1
    assert placed.budget < w.chip.sram_per_core
    sim = simulate(w, repaired)
    assert sim.valid and sim.peak_sram_bytes <= placed.budget
    assert placed.latency_cost_ms == pytest.approx(sim.latency_ms - simulate(w, sched).latency_ms)
    validate(placed.buffer_map.problem, placed.offsets, capacity=w.chip.sram_per_core)


def test_a_schedule_that_never_fits_is_reported_unplaced(monkeypatch):
    w, sched = workload("small"), schedules("small")["elk-dyn"]
    fake, _ = _overflowing(placement_mod.allocate, times=10 ** 6)
    monkeypatch.setattr(placement_mod, "allocate", fake)
    kept, placed = cost_aware_placement("elk-dyn", w, sched, rerun_design("elk-dyn", {}), max_repairs=3)
    assert placed.status == "unplaced" and placed.offsets is None and kept is sched
    assert 1 <= len(placed.repairs) <= 3


def test_budget_workload_shares_tables_and_binds_the_scheduler():
    w = workload("small")
    tight = with_budget(w, 1200)
    assert tight.tables is w.tables and tight.chip.sram_per_core == 1200
    sched = elk_dyn(tight)
    assert simulate(w, sched).valid and simulate(w, sched).peak_sram_bytes <= 1200


def test_compile_places_every_strict_design_and_reports_it():
    result = elk.compile("tiny", chip="ipu-mk2", batch=4, seq=128, placement="heuristic")
    for name, d in result.designs.items():
        if name == "ideal":
            assert d.placement is None
            continue
        p = d.placement
        assert p.status in ("placed", "repaired") and p.allocated_peak <= result.chip.sram_per_core
        assert 0.0 <= p.fragmentation < 1.0
        row = d.row(result.ideal_ms, result.chip.clock_hz)
        assert row["allocated_peak_bytes"] == p.allocated_peak
    text = compile_report(result)
    assert "alloc KiB" in text and "frag %" in text


def test_compile_rejects_an_unknown_placement_solver():
    with pytest.raises(elk.ElkError, match="placement"):
        elk.compile("tiny", chip="ipu-mk2", batch=4, seq=128, placement="magic")


def test_fragmentation_forces_a_real_repair():
    """2 KiB cores: ELK-Dyn's schedule fits in bytes (2,046 of 2,048 at its peak) but
    the best greedy placement needs 2,162 addresses; re-scheduled under a smaller budget it is placed."""
    chip = MK2.with_overrides(sram_per_core=2048, hbm_bytes_per_s=0.02e12)
    w = Workload.build(build_program("tiny", batch=8, seq=256), chip)
    sched = elk_dyn(w)
    bufs, first = place_schedule(w, sched)
    assert bufs.byte_peak <= 2048 < first.peak  # byte-feasible, not placeable by the heuristic
    repaired, placed = cost_aware_placement("elk-dyn", w, sched, rerun_design("elk-dyn", {}))
    assert placed.status == "repaired" and placed.unrepaired_peak == first.peak
    assert placed.allocated_peak <= 2048 and placed.budget < 2048
    validate(placed.buffer_map.problem, placed.offsets, capacity=2048)
    sim = simulate(w, repaired)
    assert sim.valid and placed.latency_cost_ms >= -1e-9
    assert sim.latency_ms == pytest.approx(simulate(w, sched).latency_ms + placed.latency_cost_ms)


@pytest.mark.solver
def test_an_exact_allocator_places_what_the_heuristic_could_not():
    """The same 2 KiB schedule: the portfolio (search + CP-SAT) finds addresses within 2,048, so no repair."""
    chip = MK2.with_overrides(sram_per_core=2048, hbm_bytes_per_s=0.02e12)
    w = Workload.build(build_program("tiny", batch=8, seq=256), chip)
    sched = elk_dyn(w)
    # a work limit decides, not the clock (which only guards against a hang): the same on any machine
    kept, placed = cost_aware_placement("elk-dyn", w, sched, rerun_design("elk-dyn", {}), solver="portfolio",
                                        time_limit=900, work_limit=30)
    assert placed.status == "placed" and kept is sched and not placed.repairs
    assert placed.byte_peak <= placed.allocated_peak <= 2048
    validate(placed.buffer_map.problem, placed.offsets, capacity=2048)


def test_the_default_placement_asks_the_search_before_repairing():
    """2.5 KiB cores: the greedy allocator needs 2,636 addresses for ELK-Dyn's schedule, so with it alone the
    schedule is repaired; the default (search, under a work limit) places the same schedule within 2,560 and
    keeps it, and does so identically twice (the work limit ends it, not the clock)."""
    kwargs = dict(chip="ipu-mk2", batch=8, seq=256, designs="elk-dyn", bound=None, workers=1,
                  chip_overrides={"sram_per_core": 2560, "hbm_bytes_per_s": 0.02e12})
    greedy = elk.compile("tiny", placement="heuristic", **kwargs).designs["elk-dyn"]
    assert greedy.placement.status == "repaired" and greedy.placement.unrepaired_peak > 2560
    first, second = (elk.compile("tiny", **kwargs) for _ in range(2))
    d = first.designs["elk-dyn"]
    assert d.placement.status == "placed" and d.placement.solver == "search" and not d.placement.repairs
    assert d.placement.allocated_peak <= 2560 and d.sim.valid
    validate(d.placement.buffer_map.problem, d.placement.offsets, capacity=2560)
    assert np.array_equal(d.placement.offsets, second.designs["elk-dyn"].placement.offsets)
    assert d.sim.latency_ms <= greedy.sim.latency_ms + 1e-12


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True])
def test_compile_rejects_a_bad_placement_work_limit(bad):
    with pytest.raises(elk.ElkError, match="placement work limit"):
        elk.compile("tiny", chip="ipu-mk2", batch=4, seq=128, placement_work_limit=bad)


@pytest.mark.parametrize("chip_name", ["mk2", "small"])
@pytest.mark.parametrize("design", ["basic", "static", "elk-dyn", "elk-full"])
def test_repeating_a_designs_choice_reproduces_its_schedule(chip_name, design):
    """One pass of the winning configuration gives back the design's own schedule (on mk2 ELK-Full
    wins with a load order, on the small chip with ELK-Dyn's schedule: both branches)."""
    w, sched = workload(chip_name), schedules(chip_name)[design]
    again = repeat_choice(design, sched)(w)
    assert again.design == sched.design
    assert np.array_equal(again.entry, sched.entry)
    assert np.allclose(again.exec_start, sched.exec_start) and np.allclose(again.load_start, sched.load_start)
    assert again.info.load_order == sched.info.load_order


def test_designs_without_a_recorded_choice_are_rerun_whole():
    w = workload("mk2")
    assert repeat_choice("ideal", DESIGNS["ideal"](w)) is None
    quick, whole = repair_reruns("ideal", {}, DESIGNS["ideal"](w))
    assert whole is None


def test_repair_searches_budgets_with_one_pass_and_runs_the_whole_design_once(monkeypatch):
    w, sched = workload("mk2"), schedules("mk2")["elk-full"]
    capacity = w.chip.sram_per_core
    fake, _ = _overflowing(placement_mod.allocate, times=2, capacity=capacity)
    monkeypatch.setattr(placement_mod, "allocate", fake)
    quick, whole = repair_reruns("elk-full", {}, sched)
    budgets = {"quick": [], "whole": []}

    def counted(kind, run):
        def wrapped(budget_workload):
            budgets[kind].append(budget_workload.chip.sram_per_core)
            return run(budget_workload)
        return wrapped

    repaired, placed = cost_aware_placement("elk-full", w, sched, counted("quick", quick),
                                            refine=counted("whole", whole))
    assert placed.status == "repaired" and placed.row()["placement_repairs"] == 2
    assert budgets["quick"] == [r["budget"] for r in placed.repairs if not r.get("refine")]
    assert budgets["whole"] == [placed.budget]  # the whole search once, at the budget that placed
    sim = simulate(w, repaired)
    assert sim.valid and sim.peak_sram_bytes <= placed.budget
    assert sim.latency_ms <= placed.repairs[-2]["latency_ms"] + 1e-9  # never slower than the one-pass repair
    validate(placed.buffer_map.problem, placed.offsets, capacity=capacity)


def test_a_budget_the_one_pass_rerun_cannot_schedule_runs_the_whole_design_once(monkeypatch):
    """The one-pass re-run falls back to the whole design; the refine step at that budget reuses that run."""
    import solvers.schedule.designs as designs_mod
    from elk.errors import ScheduleError

    w, sched = workload("mk2"), schedules("mk2")["elk-full"]
    fake, _ = _overflowing(placement_mod.allocate, times=1, capacity=w.chip.sram_per_core)
    monkeypatch.setattr(placement_mod, "allocate", fake)

    def cannot(_w):
        raise ScheduleError("forced")

    monkeypatch.setattr(designs_mod, "repeat_choice", lambda name, chosen: cannot)
    real_rerun = placement_mod.rerun_design
    budgets = []

    def counted_rerun(name, options, *more):
        run = real_rerun(name, options, *more)

        def wrapped(budget_workload):
            budgets.append(budget_workload.chip.sram_per_core)
            return run(budget_workload)
        return wrapped

    monkeypatch.setattr(placement_mod, "rerun_design", counted_rerun)
    quick, whole = repair_reruns("elk-full", {}, sched)
    repaired, placed = cost_aware_placement("elk-full", w, sched, quick, refine=whole)
    assert placed.status == "repaired" and budgets == [placed.budget]
    assert simulate(w, repaired).valid


@pytest.mark.slow
@pytest.mark.solver
def test_windows_whose_result_cannot_be_placed_avoid_the_window_that_fragments_it():
    """Llama2-13B on a mesh at 8 TB/s with 192 KiB: the MILP windows from ELK-Full end in a schedule whose buffers
    fit byte for byte but not in addresses (one accepted window fragments them), so a compile used to report the
    warm start. Placement-aware windows avoid that window: the result is placed as it is (no repair) and is
    never slower than ELK-Full's."""
    chip = preset("ipu-pod4").with_overrides(topology_kind="mesh", hbm_bytes_per_s=8e12, sram_per_core=192 * 1024)
    result = elk.compile("llama2-13b", chip=chip, designs="elk-full,milp", bound=None, workers=1,
                         design_options={"milp": {"time_limit": 5, "workers": 1, "seed": 0}})
    full, milp = result.designs["elk-full"], result.designs["milp"]
    assert milp.sim.valid and milp.placement.status == "placed"
    assert milp.placement.allocated_peak <= chip.sram_per_core
    assert milp.sim.latency_ms <= full.sim.latency_ms + 1e-9
    assert milp.schedule.info.search["placement_checked"]
