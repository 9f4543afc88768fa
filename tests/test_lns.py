"""The large-neighbourhood search: never slower than its warm start (both load models), valid, reproducible,
records what every repair found and proved, and refuses bad settings."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from elk.chip import LoadModel, preset
from elk.errors import SolverConfigError
from elk.graphs.zoo import build_program
from elk.simulator import simulate
from elk.workload import Workload
from formulations.schedule.window import check
from solvers.registry import RunPlan
from solvers.run_plan import run_plan
from solvers.schedule import designs
from solvers.schedule.lns import Lns, LnsSettings, losses, lns, pick

pytestmark = pytest.mark.solver

#: reproducible: one worker, a fixed seed, deterministic time per repair (the wall limit is a safety net far above
#: what these repairs take; CP-SAT can overrun its deterministic time on hard fluid models)
SETTINGS = LnsSettings(window=4, pull=2, iterations=4, budget=600.0, time_limit=120.0, workers=1, seed=0,
                       deterministic_time=1.0)


def small(load_model: LoadModel, noc_scale: float = 1000.0) -> Workload:
    chip = preset("ipu-mk2").with_overrides(cores=64, sram_per_core=48 * 1024, noc_scale=noc_scale,
                                            hbm_bytes_per_s=2e10, load_model=load_model)
    return Workload.build(build_program("tiny", batch=4, seq=128), chip)


@pytest.mark.parametrize("load_model, noc_scale", [(LoadModel.FLUID, 1000.0), (LoadModel.RIGID, 1000.0),
                                                   (LoadModel.RIGID, 0.05)])
def test_never_slower_than_the_warm_start_and_valid(load_model, noc_scale):
    """Both load models; a binding interconnect too (rigid: with it binding, fluid repairs take minutes here)."""
    w = small(load_model, noc_scale)
    settings = SETTINGS if noc_scale > 1 else replace(SETTINGS, iterations=2)  # its repairs are the slow ones
    for warm in (designs.elk_dyn(w), designs.basic(w)):
        sched = lns(w, warm, settings)
        verdict = simulate(w, sched)
        assert verdict.valid
        assert verdict.latency_cycles <= simulate(w, warm).latency_cycles + 1e-6
        assert sched.design == "lns" and sched.info.warm_start == warm.design
        assert sched.info.search["latency_cycles"] == pytest.approx(verdict.latency_cycles)


def test_improves_a_weak_warm_start():
    """Basic leaves the channel idle behind every load: the repairs must find some of it."""
    w = small(LoadModel.FLUID)
    warm = designs.basic(w)
    sched = lns(w, warm, SETTINGS)
    assert simulate(w, sched).latency_cycles < simulate(w, warm).latency_cycles - 1
    assert sched.info.search["improved"] >= 1


def test_reproducible_with_deterministic_time():
    w = small(LoadModel.FLUID)
    warm = designs.basic(w)
    a, b = lns(w, warm, SETTINGS), lns(w, warm, SETTINGS)
    for x, y in ((a.entry, b.entry), (a.exec_start, b.exec_start), (a.load_start, b.load_start)):
        np.testing.assert_array_equal(x, y)
    assert [r.first_op for r in a.info.records] == [r.first_op for r in b.info.records]


def test_records_carry_solver_facts():
    w = small(LoadModel.FLUID)
    sched = lns(w, designs.basic(w), SETTINGS)
    assert 1 <= len(sched.info.records) <= SETTINGS.iterations
    for r in sched.info.records:
        assert r.solver == "cp-sat" and r.version.startswith("ortools") and r.workers == 1 and r.seed == 0
        assert r.status in ("OPTIMAL", "FEASIBLE", "UNKNOWN", "INFEASIBLE")
        assert "kind " in r.note
        assert not r.note.count("BUG")  # an infeasible model with a feasible incumbent hint
        if r.accepted:
            assert r.exact_cycles <= r.heuristic_cycles
        if r.status == "OPTIMAL":
            assert r.bound_cycles <= r.exact_cycles
    assert sched.info.search["solver"] == "cp-sat" and sched.info.search["workers"] == 1


def test_neighbourhoods_span_layer_boundaries_and_free_later_loads():
    """A window may start anywhere (not only at a layer's first operator), and frees later loads."""
    w = small(LoadModel.FLUID)
    warm = designs.elk_dyn(w)
    search = Lns(w, warm, SETTINGS)
    layers = w.program.layers
    first = layers.start + layers.length - 2  # the last two operators of a layer and the next layer's first two
    _, _, built, stop = search.neighbourhood(first)
    assert [o.op for o in built.problem.ops] == list(range(first, first + 4))
    assert stop == first + 4
    if built.hint_ok:
        assert check(built.problem, built.hint) == []


def test_losses_and_pick():
    w = small(LoadModel.FLUID)
    warm = designs.basic(w)
    loss = losses(w, warm)
    assert set(loss) == {"stall", "exposed", "starved", "stretch"}
    for v in loss.values():
        assert v.shape == (len(w),) and (v >= -1e-9).all()
    assert (loss["exposed"] <= loss["stall"] + 1e-6).all()
    score = np.zeros(20)
    score[12] = 5.0
    first = pick(score, 4, set())
    assert first is not None and first <= 12 < first + 4
    assert pick(np.zeros(20), 4, set()) is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(iterations=0), "iterations"), (dict(window=0), "window"), (dict(pull=-1), "pull"),
    (dict(budget=0), "budget"), (dict(stall=False, exposed=False, starved=False, stretch=False), "kind"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(SolverConfigError, match=message):
        LnsSettings(**kwargs)


def test_the_run_plan_runs_lns_from_the_fastest_design():
    w = small(LoadModel.FLUID)
    plan = RunPlan.build("basic,elk-dyn,lns", {"lns": dict(iterations=2, deterministic_time=1.0, window=4)})
    runs = run_plan(plan, w, placement=None, workers=1)
    sched = runs["lns"].schedule
    fastest = min((runs[d].schedule for d in ("basic", "elk-dyn")), key=lambda s: simulate(w, s).latency_cycles)
    assert sched.info.warm_start == fastest.design
    assert simulate(w, sched).latency_cycles <= simulate(w, fastest).latency_cycles + 1e-6
    with pytest.raises(SolverConfigError, match="no option"):
        RunPlan.build("lns", {"lns": dict(nonsense=1)})


def test_a_stitched_incumbent_keeps_the_warm_starts_share_limits():
    """Rigid loads: every neighbourhood's window runs the loads at the incumbent's share limits, so a stitched
    incumbent carries them on (it used to fall back to 0.99 after the first accepted move)."""
    w = small(LoadModel.RIGID, 0.05)
    warm = designs.elk_dyn(w, thetas=(0.5,))
    search = Lns(w, warm, SETTINGS)
    runner, state, built, stop = search.neighbourhood(w.program.layers.start)
    stitched = search.stitch(runner, state, built, built.hint, stop)
    assert warm.info.theta == 0.5
    assert stitched.info.theta == 0.5 and runner.theta == 0.5
