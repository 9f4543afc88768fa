"""Exact window scheduling: cross-checks between solvers, the warm-start guarantee, records, bad input."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from elk.chip import preset
from elk.errors import SolverConfigError
from elk.simulator import simulate
from elk.workload import Workload
from elk.graphs.zoo import build_program
from solvers.schedule.brute_force import noc_binding, solve_brute_force
from formulations.schedule.cpsat_window import build_cpsat
from formulations.schedule.window import check
from solvers.schedule import designs
from solvers.exact_backends import solve_cpsat, solve_milp
from solvers.schedule.records import write_records
from solvers.registry import run_design
from solvers.solver_options import SolverSettings
from solvers.schedule.windowed import WindowedSolver, window_problems, window_ranges, windowed

pytestmark = pytest.mark.solver


@pytest.fixture(scope="module")
def small():
    """Tiny model on a 64-core chip: memory binds, the interconnect does not (brute force is exhaustive)."""
    chip = preset("ipu-mk2").with_overrides(cores=64, sram_per_core=48 * 1024, noc_scale=1000.0,
                                            hbm_bytes_per_s=2e10)
    w = Workload.build(build_program("tiny", batch=4, seq=128), chip)
    return w, designs.elk_dyn(w)


def test_brute_force_cpsat_and_milp_agree(small):
    w, warm = small
    compared = 0
    for built in window_problems(w, warm, window=3, count=12, max_options=3):
        p = built.problem
        assert not noc_binding(p)  # so enumeration is exhaustive
        try:
            best, _ = solve_brute_force(p, limit=30_000)
        except ValueError:
            continue  # too large to enumerate here
        # deterministic limits for CP-SAT; the MILP's wall-clock limit is far above what these windows need
        cp = solve_cpsat(p, SolverSettings(time_limit=600, workers=1, seed=0, deterministic_time=5.0), built.hint)
        mi = solve_milp(p, SolverSettings(solver="milp", backend="highs", time_limit=600, workers=1), built.hint)
        assert cp.status == "OPTIMAL" and mi.status == "OPTIMAL"
        assert best is not None
        assert best.objective(p) == cp.assignment.objective(p) == mi.assignment.objective(p)
        assert check(p, cp.assignment) == [] and check(p, mi.assignment) == []
        assert cp.bound == cp.makespan  # proven
        compared += 1
    assert compared >= 6


def test_cbc_reaches_the_same_optimum(small):
    w, warm = small
    built = next(b for b in window_problems(w, warm, window=3, count=6, max_options=3) if len(b.problem.future) >= 3)
    cp = solve_cpsat(built.problem, SolverSettings(time_limit=600, workers=1, deterministic_time=10.0), built.hint)
    cbc = solve_milp(built.problem, SolverSettings(solver="milp", backend="cbc", time_limit=600, workers=1),
                     built.hint)
    assert cp.status == "OPTIMAL" and cbc.status == "OPTIMAL"
    assert cbc.assignment.objective(built.problem) == cp.assignment.objective(built.problem)


def test_milp_warm_start_is_checked_in_the_solver_log(small):
    w, warm = small
    built = window_problems(w, warm, window=3, count=3, max_options=3)[2]
    optimum = solve_cpsat(built.problem, SolverSettings(time_limit=10, workers=1), built.hint).assignment
    for backend in ("highs", "cbc"):
        used = solve_milp(built.problem, SolverSettings(solver="milp", backend=backend, time_limit=30, workers=1),
                          optimum)
        assert used.warm_start_used is True, backend
    bad = optimum.__class__(list(optimum.choice), [0] * len(optimum.exec_start), [0] * len(optimum.exec_end),
                            dict(optimum.load_start))
    refused = solve_milp(built.problem, SolverSettings(solver="milp", backend="cbc", time_limit=30, workers=1), bad)
    assert refused.warm_start_used is False


def test_cpsat_hint_covers_every_variable(small):
    w, warm = small
    built = window_problems(w, warm, window=3, count=3, max_options=3)[2]
    model = build_cpsat(built.problem)
    model.add_hint(built.hint)
    proto = model.model.Proto()
    assert len(proto.solution_hint.vars) == len(proto.variables)


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_windowed_never_slower_than_warm_start_and_simulator_agrees(small, solver):
    w, warm = small
    result = windowed(w, warm, solver=solver, window=3, time_limit=10, workers=1)
    verdict = simulate(w, result)
    before = simulate(w, warm)
    assert verdict.valid
    assert verdict.latency_cycles <= before.latency_cycles + 1e-6
    # the latency is the one the window models predict: whole-cycle ends from the first event
    begin = min(result.exec_start.min(), result.load_start[w.has_load].min())
    assert verdict.latency_cycles == pytest.approx(result.exec_end.max() - begin)
    records = result.info.records
    assert len(records) == len(window_ranges(w, 3))
    assert all(r.exact_cycles <= r.heuristic_cycles + 1e-6 for r in records)
    assert all(math.isnan(r.bound_cycles) or r.bound_cycles <= r.exact_cycles + 1e-6 for r in records)


def test_timeouts_keep_the_incumbent(small):
    w, warm = small
    result = windowed(w, warm, solver="cpsat", window=4, time_limit=1e-3, workers=1)
    assert simulate(w, result).valid
    assert simulate(w, result).latency_cycles <= simulate(w, warm).latency_cycles + 1e-6


def test_infeasible_window_is_reported_and_the_heuristic_kept(small, monkeypatch):
    w, warm = small
    runner = WindowedSolver(w, warm, SolverSettings(time_limit=5, workers=1), window=3)
    real_build = runner.build

    def starved(*args):
        built = real_build(*args)
        built.problem = built.problem.__class__(built.problem.ops, built.problem.fixed, built.problem.future,
                                                sram=1, release=built.problem.release,
                                                horizon=built.problem.horizon)
        return built
    monkeypatch.setattr(runner, "build", starved)
    out = runner.run()
    assert all(r.status in ("INFEASIBLE", "REUSED") and "window model infeasible" in r.note for r in out.records)
    assert out.records[0].status == "INFEASIBLE"
    assert not any(r.accepted for r in out.records)
    assert np.array_equal(out.schedule.entry, warm.entry)
    assert simulate(w, out.schedule).latency_cycles == pytest.approx(simulate(w, warm).latency_cycles)


def test_an_infeasible_answer_despite_a_feasible_hint_is_called_a_bug(small, monkeypatch):
    """A window whose hint is a solution of its model cannot be infeasible: such an answer is named a bug in the
    window's record (and the warm start kept), never reported as an ordinary infeasible window."""
    from solvers.exact_backends import Outcome
    w, warm = small
    runner = WindowedSolver(w, warm, SolverSettings(time_limit=5, workers=1), window=3)
    monkeypatch.setattr(runner, "solve_one", lambda built: Outcome(None, "INFEASIBLE", None, None, 0.0))
    out = runner.run()
    built = window_problems(w, warm, 3, count=1)[0]
    assert built.hint_ok
    assert "BUG: window model infeasible although its hint is feasible" in out.records[0].note
    for r in out.records:  # a window whose hint is not a solution may be infeasible without a bug
        if r.status == "INFEASIBLE":
            assert ("BUG" in r.note) != r.note.startswith("warm start infeasible in the rounded model")
    assert simulate(w, out.schedule).latency_cycles == pytest.approx(simulate(w, warm).latency_cycles)


def test_identical_windows_are_solved_once(small):
    w, warm = small
    runner = WindowedSolver(w, warm, SolverSettings(time_limit=5, workers=1), window=3)
    calls = []
    real = runner.solve_one
    runner.solve_one = lambda built: calls.append(1) or real(built)
    out = runner.run()
    reused = sum(r.reused for r in out.records)
    assert reused > 0, "the repeated layers of tiny should repeat window models"
    assert len(calls) + reused == len(out.records)
    assert len(calls) == len(runner.cache)  # one solve per distinct window model


def test_records_carry_solver_facts_and_write_csv(small, tmp_path):
    w, warm = small
    result = windowed(w, warm, solver="cpsat", window=3, time_limit=5, workers=1, seed=7,
                      params={"linearization_level": 2}, records=str(tmp_path / "rec.csv"))
    r = result.info.records[0]
    assert r.solver == "cp-sat" and r.version.startswith("ortools 9.15")
    assert r.seed == 7 and r.workers == 1 and r.time_limit == 5
    assert '"linearization_level": 2' in r.params
    text = (tmp_path / "rec.csv").read_text().splitlines()
    assert text[0].startswith("model,window,first_op,last_op,solver,version,status")
    assert len(text) == len(result.info.records) + 1
    milp = windowed(w, warm, solver="milp", window=3, time_limit=5, workers=1)
    assert "HiGHS 1.12" in milp.info.records[0].version
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # parquet needs an engine elk does not install: a clear error, not a traceback
        with pytest.raises(SolverConfigError, match="pyarrow"):
            write_records(result.info.records, tmp_path / "rec.parquet")


@pytest.mark.parametrize("kwargs, message", [
    ({"window": 0}, "window size"),
    ({"window": 10_000}, "larger than the program"),
    ({"time_limit": 0}, "time limit"),
    ({"time_limit": -1}, "time limit"),
    ({"time_limit": float("nan")}, "time limit"),
    ({"solver": "gurobi"}, "unknown solver"),
    ({"params": {"num_search_wokers": 2}}, "unknown CP-SAT parameter"),
    ({"params": {"linearization_level": "high"}}, "cannot take"),
    ({"workers": 0}, "workers"),
    ({"solver": "milp", "params": {"no_such_option": 1}}, "unknown HiGHS option"),
    ({"solver": "milp", "backend": "glpk"}, "unknown MILP backend"),
    ({"window": 3, "stride": 4}, "stride"),
])
def test_bad_solver_input(small, kwargs, message):
    w, warm = small
    with pytest.raises(SolverConfigError, match=message):
        windowed(w, warm, **kwargs)


def test_registry_passes_the_elk_full_warm_start(small):
    w, warm = small
    full = designs.elk_full(w, dyn=warm)
    sched = run_design("cpsat", w, {"elk-full": full}, {"window": 4, "time_limit": 5, "workers": 1})
    assert sched.info.warm_start == "elk-full"
    with pytest.raises(SolverConfigError, match="no option"):
        run_design("cpsat", w, {"elk-full": full}, {"windw": 4})


def test_highspy_and_ortools_import_in_either_order():
    for first, second in (("highspy", "ortools.sat.python.cp_model"), ("ortools.sat.python.cp_model", "highspy")):
        code = f"import {first}; import {second}; print('ok')"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------------------
# binding interconnect, both load models: CP-SAT and the MILP against exhaustive enumeration
# ---------------------------------------------------------------------------
def tiny_window(rng, fluid: bool):
    """Two or three operators, a communication-heavy one first, one or two loads that must cross it."""
    from formulations.schedule.window import SHARE_SCALE, FutureLoad, Option, WindowOp, WindowProblem
    k = int(rng.integers(2, 4))
    ops = []
    for i in range(k):
        options = []
        for _ in range(int(rng.integers(1, 3))):
            time = int(rng.integers(2, 4))
            comm = int(rng.integers(1, time + 1)) if i == 0 else int(rng.integers(0, time))
            load = i == k - 1
            work = int(rng.integers(2, 4)) if load else 0
            cap = int(rng.choice([SHARE_SCALE, SHARE_SCALE // 2]))
            lt = -(-work * SHARE_SCALE // cap) if load else 0
            share = -(-work * SHARE_SCALE // lt) if load and lt else 0
            options.append(Option(row=len(options), cold=int(rng.integers(1, 6)) if load else 0,
                                  hot=int(rng.integers(2, 8)), time=time, comm=comm, load_time=lt, load_share=share,
                                  load_work=work * SHARE_SCALE, load_cap=cap))
        ops.append(WindowOp(op=i, options=tuple(options), load="free" if i == k - 1 else "none"))
    future = ()
    if rng.random() < 0.5:
        opt = Option(row=0, cold=3, hot=3, time=2, comm=0, load_time=2, load_share=SHARE_SCALE,
                     load_work=2 * SHARE_SCALE, load_cap=SHARE_SCALE)
        future = (FutureLoad(op=k, option=opt, latest_end=9),)
    return WindowProblem(ops=tuple(ops), fixed=(), future=future, sram=int(rng.integers(12, 20)), release=0,
                         horizon=9, fluid=fluid)


def without_interconnect(p):
    import dataclasses
    ops = tuple(dataclasses.replace(w, options=tuple(dataclasses.replace(o, comm=0, load_share=0, load_work=0)
                                                      for o in w.options)) for w in p.ops)
    future = tuple(dataclasses.replace(f, option=dataclasses.replace(f.option, load_share=0, load_work=0))
                   for f in p.future)
    return dataclasses.replace(p, ops=ops, future=future)


@pytest.mark.solver
@pytest.mark.parametrize("fluid", [False, True], ids=["rigid", "fluid"])
def test_exact_models_agree_with_exhaustive_search_when_the_interconnect_binds(fluid):
    from solvers.schedule.brute_force import solve_exhaustive
    rng = np.random.default_rng(11 if fluid else 5)
    binding = compared = 0
    for _ in range(40):
        p = tiny_window(rng, fluid)
        try:
            best, _ = solve_exhaustive(p, limit=60_000)
        except ValueError:
            continue
        if best is None:
            continue
        free, _ = solve_exhaustive(without_interconnect(p), limit=60_000)
        binding += best.objective(p) > free.objective(without_interconnect(p))
        cp = solve_cpsat(p, SolverSettings(time_limit=600, workers=1, deterministic_time=20), None)
        assert cp.status == "OPTIMAL" and not check(p, cp.assignment)
        assert cp.assignment.objective(p) == best.objective(p), (p, best, cp.assignment)
        mi = solve_milp(p, SolverSettings(solver="milp", time_limit=600, workers=1), None)
        assert mi.assignment is not None and not check(p, mi.assignment)
        assert mi.assignment.objective(p) == best.objective(p), (p, best, mi.assignment)
        compared += 1
        if compared >= 8 and binding >= 3:
            break
    assert compared >= 8 and binding >= 3, (compared, binding)


def test_native_output_silenced_only_while_the_solver_runs(capfd):
    """What native code writes to fds 1 and 2 inside the block is dropped (HiGHS 1.12's stray debug line);
    Python's own output before it is flushed first, and both streams work again after it."""
    import os
    import sys

    from solvers.exact_backends import native_output_silenced
    print("before", end="")
    with native_output_silenced():
        os.write(1, b"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\n")
        os.write(2, b"native stderr\n")
    print("after")
    sys.stderr.write("err after\n")
    out, err = capfd.readouterr()
    assert out == "beforeafter\n" and err == "err after\n"


def test_windows_replan_a_rigid_paced_warm_start_with_rigid_loads():
    """A fluid-chip warm start that ELK-Full scheduled with rigid loads is re-planned with rigid loads: every
    accepted window keeps the schedule rigid-valid (so fluid-valid), and it ends no slower than its warm start."""
    from elk.chip import LoadModel
    chip = preset("ipu-pod4").with_overrides(topology_kind="mesh", hbm_bytes_per_s=8e12, sram_per_core=192 * 1024)
    w = Workload.build(build_program("llama2-13b", batch=32, seq=2048), chip).truncated(4)
    warm = designs.elk_full(w, workers=1, max_displacement=1, screen_layers=0)
    assert warm.info.load_order.rigid_loads
    result = windowed(w, warm, solver="milp", window=8, time_limit=5, workers=1, seed=0)
    assert sum(r.accepted for r in result.info.records) > 0
    rigid = w.with_load_model(LoadModel.RIGID)
    for judge in (w, rigid):
        verdict = simulate(judge, result)
        assert verdict.valid, (judge.chip.load_model, verdict.violations[:2])
    assert simulate(w, result).latency_cycles <= simulate(w, warm).latency_cycles


def test_placement_aware_windows_keep_to_the_check(small):
    """Windows that must pass a placement check: a window whose stitched program fails it is avoided and the
    windows run again; the answer passes the check, is valid and is never slower than the warm start. Here the
    check accepts only programs no faster than the first accepted window's (a stand-in for "its buffers get
    addresses" that some windows fail), so the answer is exactly that program's latency."""
    from solvers.schedule.windowed import placeable_windows
    w, _ = small
    warm = designs.basic(w)  # a weak warm start: five windows gain on it
    settings = SolverSettings(solver="cpsat", time_limit=10, workers=1, seed=0)
    plain_runner = WindowedSolver(w, warm, settings, window=3)
    checkpoints: list = []
    plain = plain_runner.run(checkpoints=checkpoints)
    assert len(checkpoints) >= 2, "the fixture must accept at least two windows"
    latency = [simulate(w, s).latency_cycles for _, s in checkpoints]
    assert all(b <= a + 1e-6 for a, b in zip(latency, latency[1:]))  # each accepted window is no slower
    assert latency[-1] == pytest.approx(simulate(w, plain.schedule).latency_cycles)
    threshold = latency[0]
    assert latency[-1] < threshold - 1e-6, "the fixture's later windows must gain on the first"

    def placeable(s):
        return simulate(w, s).latency_cycles >= threshold - 1e-6

    result, info = placeable_windows(WindowedSolver(w, warm, settings, window=3), placeable)
    verdict = simulate(w, result.schedule)
    assert verdict.valid and placeable(result.schedule) and info.placeable
    assert verdict.latency_cycles == pytest.approx(threshold)
    assert verdict.latency_cycles <= simulate(w, warm).latency_cycles + 1e-6
    assert info.avoided and info.avoided[0] == checkpoints[1][0] and 1 <= info.rounds <= 4
    # a check every program passes changes nothing; one none passes keeps the warm start's decisions
    same, info = placeable_windows(WindowedSolver(w, warm, settings, window=3), lambda s: True)
    assert (info.rounds, info.avoided) == (1, [])
    np.testing.assert_array_equal(same.schedule.entry, plain.schedule.entry)
    np.testing.assert_allclose(same.schedule.exec_end, plain.schedule.exec_end)
    none, info = placeable_windows(WindowedSolver(w, warm, settings, window=3), lambda s: False)
    assert not info.placeable and len(info.avoided) == 4
    assert simulate(w, none.schedule).latency_cycles == pytest.approx(simulate(w, warm).latency_cycles)


def test_run_exact_hands_the_check_to_placement_aware_designs_only(small):
    from solvers.registry import EXACT, exact_options, run_exact
    w, _ = small
    warm = designs.basic(w)
    asked = []

    def placeable(s):
        asked.append(s)
        return True

    milp = run_exact("milp", w, warm, exact_options("milp", {"time_limit": 5, "workers": 1, "window": 3}),
                     placeable=placeable)
    assert asked and milp.info.search["placement_rounds"] == 1 and milp.info.search["placement_checked"]
    assert [n for n, k in EXACT.items() if k.placement_aware] == ["cpsat", "milp"]
    asked.clear()
    run_exact("periodic", w, warm, exact_options("periodic", {"time_limit": 5, "workers": 1}), placeable=placeable)
    assert not asked
