"""The warm start as a window's hint: whole cycles that keep the warm start's order (solvers.schedule.windowed).

Rounding each time on its own (execution ends up, load starts down) made a
load the warm start issues the instant an operator ends start a cycle before
that operator ends in the hint, holding both the operator's hot bytes and the
load's cold bytes: an overfull SRAM in a hint whose warm start the simulator
accepts, so the window model started from an infeasible hint.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from formulations.schedule.window import FixedLoad, Option, check
from solvers.schedule.windowed import interconnect_short, warm_hint, window_problems

pytestmark = pytest.mark.solver


def option(time: int, load_time: int = 0) -> Option:
    return Option(row=0, cold=100, hot=100, time=time, comm=0, load_time=load_time, load_share=0)


def test_a_load_issued_as_an_operator_ends_starts_after_it_ends_in_the_hint():
    """Operator 0 runs [0.4, 10.3); the load of a later operator starts at 10.3, the instant it ends."""
    hint = warm_hint([0, 0], [option(10), option(5)], np.array([0.4, 10.3]), np.array([10.3, 15.5]),
                     {7: (10.3, 20.2, option(1, load_time=9))}, [], fluid=True)
    assert hint.load_start[7] >= hint.exec_end[0]
    assert hint.exec_end[0] <= hint.exec_start[1]
    assert hint.exec_end[0] - hint.exec_start[0] >= 10 and hint.exec_end[1] - hint.exec_start[1] >= 5
    assert hint.load_end[7] - hint.load_start[7] >= 9


def test_events_keep_their_order_and_stay_clear_of_fixed_loads():
    """Random warm times: every pair of events keeps its order (ties may stay ties), every duration its whole
    cycles, and no placed load enters a fixed load's span."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        times = np.cumsum(rng.uniform(0.0, 3.0, 8)) + 4.0
        opts = [option(int(np.ceil(times[2 * k + 1] - times[2 * k] - 1e-9))) for k in range(2)]
        loads = {9: (float(times[4]), float(times[6]), option(1, load_time=int(np.ceil(times[6] - times[4] - 1e-9))))}
        fixed = [FixedLoad(op=3, start=-5, end=int(np.ceil(times[0])), share=0, cold=10, owner=-1)]
        hint = warm_hint([0, 0], opts, times[[0, 2]], times[[1, 3]], loads, fixed, fluid=True)
        got = [hint.exec_start[0], hint.exec_end[0], hint.exec_start[1], hint.exec_end[1],
               hint.load_start[9], None, hint.load_end[9]]
        for i in range(len(got)):
            for j in range(i + 1, len(got)):
                if got[i] is not None and got[j] is not None:
                    assert got[i] <= got[j]
        assert hint.load_start[9] >= fixed[0].end


def test_interconnect_short_names_what_to_lengthen_only_when_nothing_else_breaks():
    assert interconnect_short(["op 14: communication does not fit next to overlapping loads",
                               "load of op 21 cannot move its interconnect work in its interval"], 12) == \
        {("exec", 2), ("load", 21)}
    assert interconnect_short(["op 14: communication does not fit next to overlapping loads",
                               "SRAM 10 > 5 at time 3"], 12) == set()


@pytest.mark.slow
@pytest.mark.parametrize("load_model", ["fluid", "rigid"])
def test_hints_of_a_tight_real_program_keep_sram_order_and_channel(load_model):
    """OPT-30B, one layer, 192 KiB, 16 TB/s, ELK-Dyn's schedule in windows of 4: the window at operator 12 used
    to get a hint in which the load of operator 21 starts a cycle before operator 14 (hot 176,470 B) ends
    (``SRAM 338262 > 196608``). No hint breaks SRAM, order, the channel or its own bounds now; every hint is
    feasible, under fluid loads too since a committed load's top rate is rounded up where the hint needs it."""
    from elk.chip import preset
    from elk.graphs.zoo import build_program, resolve_model
    from elk.simulator import simulate
    from elk.workload import Workload
    from solvers.schedule.designs import elk_dyn

    chip = preset("ipu-pod4").with_overrides(sram_per_core=192 * 1024, topology_kind="all-to-all",
                                             hbm_bytes_per_s=16e12, load_model=load_model)
    w = Workload.build(build_program(dataclasses.replace(resolve_model("opt-30b"), layers=1)), chip)
    warm = elk_dyn(w)
    assert simulate(w, warm).valid
    built = window_problems(w, warm, 4)
    for b in built:
        errors = check(b.problem, b.hint)
        assert not [e for e in errors if "interconnect" not in e and "communication" not in e], errors
    assert all(b.hint_ok for b in built)


@pytest.mark.parametrize("model,topology,hbm_tbps,sram_kib", [("llama2-13b", "all-to-all", 16, 624),
                                                              ("gemma2-27b", "all-to-all", 8, 624),
                                                              ("llama2-13b", "mesh", 8, 192)])
def test_fluid_warm_start_is_a_solution_of_every_window_after_committed_loads(model, topology, hbm_tbps, sram_kib):
    """One layer under fluid loads, ELK-Full's schedule in windows of 8, each window built after the warm
    start's decisions of the ones before. A load committed by an earlier window often runs at its top rate
    for its whole interval; with that rate rounded down in the model (as a free load's is) it came out a few
    cycles of work short, the warm start was no solution and the window model was infeasible: 4, 6 and 3 of
    these 7-8 windows (Gemma2-27B all-to-all 8 TB/s whole: 278 of 324), so the windows kept the warm start.
    Every hint is a solution now: such a load's rate is rounded up where the warm start needs it."""
    from elk.chip import preset
    from elk.graphs.zoo import build_program, resolve_model
    from elk.workload import Workload
    from formulations.schedule.window import SHARE_SCALE
    from solvers.schedule.designs import elk_full

    chip = preset("ipu-pod4").with_overrides(sram_per_core=sram_kib * 1024, topology_kind=topology,
                                             hbm_bytes_per_s=hbm_tbps * 1e12, load_model="fluid")
    w = Workload.build(build_program(dataclasses.replace(resolve_model(model), layers=1)), chip)
    built = window_problems(w, elk_full(w), 8)
    assert len(built) >= 7
    assert [check(b.problem, b.hint) for b in built if not b.hint_ok] == []
    fixed = [f for b in built for f in b.problem.fixed if f.end > max(f.start, 0)]
    assert fixed  # loads do cross windows here
    raised = 0
    for f in fixed:  # the rate rounded down, or up where the warm start needed it: one unit either way
        rate = min(1.0, w.load_noc_cycles(f.op, float(f.cold)) / float(w.hbm_cycles[f.op])) * SHARE_SCALE
        assert abs(f.cap - rate) < 1
        raised += f.cap > rate
    assert raised >= 1


@pytest.mark.parametrize("model,topology,hbm_tbps,sram_kib", [("opt-30b", "mesh", 16, 192),
                                                              ("llama2-13b", "mesh", 16, 192)])
def test_a_later_load_past_the_window_is_charged_what_the_rest_of_the_program_leaves_it(model, topology,
                                                                                       hbm_tbps, sram_kib):
    """A window's model sees no execution after its own and credited a later operator's fluid load its top rate
    there; on a mesh the rest of the program's communication leaves it less, and the simulator rejected such
    solutions (Gemma2-27B mesh 8 TB/s 624 KiB: 140 of 324 windows). Such a load's work is raised by the
    difference between that credit and what the warm start did there: never lowered, raised somewhere here,
    and the warm start is still a solution of every window."""
    from elk.chip import preset
    from elk.graphs.zoo import build_program, resolve_model
    from elk.workload import Workload
    from solvers.schedule.designs import elk_full
    from solvers.schedule.windowed import WindowedSolver
    from solvers.solver_options import SolverSettings

    chip = preset("ipu-pod4").with_overrides(sram_per_core=sram_kib * 1024, topology_kind=topology,
                                             hbm_bytes_per_s=hbm_tbps * 1e12, load_model="fluid")
    w = Workload.build(build_program(dataclasses.replace(resolve_model(model), layers=1)), chip)
    warm = elk_full(w)
    built = window_problems(w, warm, 8)
    assert all(b.hint_ok for b in built), [check(b.problem, b.hint) for b in built if not b.hint_ok]
    plain = WindowedSolver(w, warm, SolverSettings(time_limit=10, workers=1))
    raised = [f.option.load_work - plain.option(f.op, f.option.row).load_work
              for b in built for f in b.problem.future if f.option.load_work > 0]
    assert raised and min(raised) >= 0 and max(raised) > 0
