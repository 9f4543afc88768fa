"""A fluid load's top rate is its chosen option's: both window models must accept what the checker accepts.

A replicated cold layout asks the interconnect for more work but may also move
it at a higher rate (the HBM byte rate is the same, the broadcast multiplies the
share). Charging every option the smallest rate among them made both models
stricter than the problem: schedules the checker and the simulator accept were
cut off, and warm starts that chose a replicated layout became infeasible hints.
"""
from __future__ import annotations

import pytest

from formulations.schedule.window import Option, WindowAssignment, WindowOp, WindowProblem, check
from solvers.exact_backends import solve_cpsat, solve_milp
from solvers.solver_options import SolverSettings

pytestmark = pytest.mark.solver

# one operator, its load first: option 0 unreplicated (half-rate interconnect share, slow plan), option 1
# replicated (twice the work at the full rate, fast plan). Right answer: option 1, 100 + 500 = 600 cycles.
SLOW = Option(row=0, cold=10, hot=10, time=1000, comm=0, load_time=100, load_share=5000, load_work=500_000,
              load_cap=5000)
FAST = Option(row=1, cold=20, hot=10, time=500, comm=0, load_time=100, load_share=10_000, load_work=1_000_000,
              load_cap=10_000)
PROBLEM = WindowProblem(ops=(WindowOp(op=0, options=(SLOW, FAST), load="free"),), fixed=(), future=(), sram=1000,
                        release=0, horizon=2000, fluid=True)
BEST = WindowAssignment(choice=[1], exec_start=[100], exec_end=[600], load_start={0: 0}, load_end={0: 100})


def test_the_checker_accepts_the_replicated_option_at_its_own_rate():
    assert check(PROBLEM, BEST) == []


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_models_use_the_chosen_options_rate(solver):
    settings = SolverSettings(solver=solver, time_limit=30, workers=1, seed=0)
    run = solve_cpsat if solver == "cpsat" else solve_milp
    out = run(PROBLEM, settings, None)
    assert out.status == "OPTIMAL"
    assert out.makespan == 600  # the smallest rate for every option gives 700
    assert check(PROBLEM, out.assignment) == []
