"""The optimal design: proven optima of whole programs, checked against brute force, the bounds and every design."""
from __future__ import annotations

import math

import numpy as np
import pytest

from elk.simulator import simulate
from elk.workload import Workload
from formulations.schedule.whole_program import undominated, whole_program_problem
from solvers.schedule import designs
from solvers.schedule.bounds import compute_bounds
from solvers.schedule.brute_force import noc_binding, solve_brute_force
from solvers.schedule.optimal import (NotProven, OptimalOptions, continuous_lower, event_count, optimal,
                                      prove_optimal, rounding_stretch)
from tests.test_bounds import SMALL, random_chip, random_program

pytestmark = pytest.mark.solver

#: reproducible: one worker, a fixed seed, a deterministic limit (the wall-clock limit is only a backstop)
OPTS = OptimalOptions(time_limit=600, workers=1, seed=0, deterministic_time=60)


def best_heuristic(w: Workload):
    runs = [(simulate(w, s).latency_cycles, s) for s in (designs.DESIGNS[d](w) for d in ("static", "elk-dyn",
                                                                                        "elk-full"))]
    return min(runs, key=lambda r: r[0])


def test_undominated_keeps_exactly_the_pareto_rows():
    rng = np.random.default_rng(0)
    cols = rng.integers(0, 4, size=(4, 40))
    keep = set(undominated(*cols).tolist())
    for r in range(40):
        dominated = any((cols[:, q] <= cols[:, r]).all() and (cols[:, q] < cols[:, r]).any() for q in range(40))
        duplicate_of_earlier = any((cols[:, q] == cols[:, r]).all() for q in range(r))
        assert (r in keep) == (not dominated and not duplicate_of_earlier), r


def test_the_optimum_matches_brute_force_where_the_interconnect_does_not_bind():
    """Brute force is exhaustive when the interconnect does not bind: both must find the same makespan."""
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(12):
        chip = SMALL.with_overrides(hbm_bytes_per_s=float(rng.choice([2e10, 1e11])),
                                    noc_scale=float(rng.choice([1.0, 5.0])))
        w = Workload.build(random_program(rng), chip)
        latency, warm = best_heuristic(w)
        res = prove_optimal(w, warm, OPTS)
        assert res.proven, res.status
        problem = whole_program_problem(w, int(res.objective_cycles * OPTS.ticks) + 1, ticks=OPTS.ticks)
        if noc_binding(problem):
            continue
        try:
            best, _ = solve_brute_force(problem, limit=300_000)
        except ValueError:  # too many candidates to enumerate
            continue
        assert best is not None
        assert best.makespan() == res.objective_cycles * OPTS.ticks
        compared += 1
    assert compared >= 4, compared


@pytest.mark.parametrize("seed", [3, pytest.param(5, marks=pytest.mark.slow)])  # seed 5: minutes of CP-SAT
def test_bounds_below_and_designs_above_the_proven_optimum(seed):
    """A bound above a proven optimum, or a valid schedule below the optimum's lower end, is a bug."""
    rng = np.random.default_rng(seed)
    proven = 0
    for _ in range(6):
        w = Workload.build(random_program(rng), random_chip(rng, "fluid"))
        latency, warm = best_heuristic(w)
        res = prove_optimal(w, warm, OPTS)
        report = compute_bounds(w, "milp", time_limit=60)
        found = simulate(w, res.found) if res.found is not None else None
        upper = min([latency] + ([found.latency_cycles] if found is not None and found.valid else []))
        for b in report.bounds:  # no bound above a valid schedule
            assert b.cycles <= upper * (1 + 1e-9), (b.name, b.cycles, upper)
        # every valid schedule lies above the proven lower end of the optimum, proven or not
        assert res.lower_cycles is not None and res.lower_cycles <= upper
        ticks = OPTS.ticks
        problem = whole_program_problem(w, 1, must_include=warm.entry, ticks=ticks)
        stretch = rounding_stretch(w, problem, ticks)
        assert continuous_lower(res.bound_cycles * ticks, problem, stretch, ticks) == pytest.approx(res.lower_cycles)
        if not res.proven:
            continue
        proven += 1
        assert simulate(w, res.schedule).valid
        # the model's optimum is at most the heuristic after the rounding the model pays
        assert res.objective_cycles * ticks <= latency * ticks * (1 + stretch) + 2 * event_count(problem) + 1
    assert proven >= 3, proven


def rigid_and_fluid(seed: int) -> tuple[Workload, Workload]:
    """One random program on a chip whose interconnect is scarce (where rigid loads cost something), under both
    load models."""
    rng = np.random.default_rng(seed)
    prog = random_program(rng)
    chip = SMALL.with_overrides(hbm_bytes_per_s=float(rng.choice([1e11, 1e12])),
                                noc_scale=float(rng.choice([0.05, 0.2])), load_model="rigid")
    return Workload.build(prog, chip), Workload.build(prog, chip.with_overrides(load_model="fluid"))


QUICK = OptimalOptions(time_limit=600, workers=1, seed=0, deterministic_time=5)


@pytest.mark.parametrize("seed", [31, 35, 44])
def test_the_rigid_optimum_is_rigid_valid_and_no_better_than_the_fluid_one(seed):
    """Rigid loads: the model's solution passes the simulator's rigid rule, its optimum is at least the fluid
    optimum of the same program (every rigid schedule is fluid-valid), and its proven lower end lies below every
    rigid design."""
    wr, wf = rigid_and_fluid(seed)
    latency, warm = best_heuristic(wr)
    rigid = prove_optimal(wr, warm, QUICK)
    fluid = prove_optimal(wf, best_heuristic(wf)[1], QUICK)
    assert rigid.proven and fluid.proven, (rigid.status, fluid.status)
    judged = simulate(wr, rigid.schedule)
    assert judged.valid, judged.violations[:1]
    assert rigid.objective_cycles >= fluid.objective_cycles
    assert rigid.lower_cycles <= min(latency, judged.latency_cycles)


def test_the_rigid_rows_cut_off_a_fluid_schedule_that_rigid_loads_cannot_run():
    """A fluid schedule whose loads pause through an exchange is not rigid-valid in the simulator, and the rigid
    model, with that schedule's decisions fixed, has no solution; the fluid model has one."""
    from solvers.schedule.optimal import complete_hint, optimal_problem
    wr, wf = rigid_and_fluid(37)
    fluid = prove_optimal(wf, best_heuristic(wf)[1], QUICK)
    assert fluid.found is not None and simulate(wf, fluid.found).valid
    assert not simulate(wr, fluid.found).valid
    problem, _, hint = optimal_problem(wf, fluid.found, simulate(wf, fluid.found).latency_cycles, QUICK.ticks)
    assert complete_hint(problem, hint, QUICK, 60, rigid_slack=None) is not None
    assert complete_hint(problem, hint, QUICK, 60, rigid_slack=0) is None


def test_programs_above_the_size_limit_are_refused_before_any_solve():
    w = Workload.build(random_program(np.random.default_rng(0)), SMALL)
    small = OptimalOptions(max_operators=2)
    with pytest.raises(NotProven, match=rf"at most 2 operators .* has {len(w)} "):
        optimal(w, designs.elk_dyn(w), small)


def test_an_unfinished_proof_presents_nothing_as_optimal():
    """A limit too small to prove anything: an error that says so, never a schedule called optimal."""
    rng = np.random.default_rng(7)
    w = Workload.build(random_program(rng), random_chip(rng, "fluid"))
    tiny = OptimalOptions(time_limit=600, workers=1, deterministic_time=1e-6)
    with pytest.raises(NotProven, match="not proven within"):
        optimal(w, designs.elk_dyn(w), tiny)


@pytest.mark.parametrize("bad", [dict(time_limit=0), dict(workers=0), dict(seed=-1), dict(max_operators=0),
                                 dict(deterministic_time=0), dict(hint_share=1.0), dict(time_limit=math.inf),
                                 dict(relaxation_share=0.9)])
def test_options_are_checked_once(bad):
    with pytest.raises(NotProven.__mro__[1]):
        OptimalOptions(**bad)


@pytest.mark.slow
def test_a_real_shape_instance_is_proven_and_brackets_every_bound_and_design():
    """Llama2-13B's head (final norm and LM head, full width) at 4 TB/s: CP-SAT (without presolve, the default)
    pins the optimum to a narrow interval; no bound lies above it and no design below its lower end."""
    from experiments.ground_truth import Instance, bound_columns, derive, workload_of
    w = workload_of(Instance("llama2-13b", "head", "all-to-all", 624, 4.0), 32, 2048)
    latency, warm = best_heuristic(w)
    res = prove_optimal(w, warm, OptimalOptions(time_limit=600, workers=1, seed=0, deterministic_time=60, ticks=1))
    assert res.status in ("OPTIMAL", "FEASIBLE"), res.status
    assert res.found is not None and res.lower_cycles is not None
    judged = simulate(w, res.found)
    assert judged.valid
    row = {"best_heuristic_ms": w.chip.cycles_to_ms(latency), "optimum_upper_ms": judged.latency_ms,
           "cpsat_lower_ms": w.chip.cycles_to_ms(res.lower_cycles)}
    bound_columns(row, w)
    derive(row)
    assert not row["bound_above_schedule"]
    assert row["optimum_lower_ms"] <= min(w.chip.cycles_to_ms(latency), judged.latency_ms)
    assert row["width_pct"] < 0.5
