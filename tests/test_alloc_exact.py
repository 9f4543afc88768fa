"""Exact allocators (canonical search, CP-SAT, MILP, portfolio), the shrinking before them, and their answers."""
from __future__ import annotations

import numpy as np
import pytest

from alloc_cases import DATA, minimalloc, perfect_packing, random_problem
from elk.allocation import AllocationProblem, capacity_from_name, max_load_lower_bound, read_csv, validate
from solvers.alloc.decompose import common_factor, components, decompose, subproblem
from elk.allocation import maximal_sections
from solvers.alloc.search import canonical_search
from solvers.alloc.allocate import allocate

EXACT = ("search", "cpsat", "milp", "portfolio")
#: Solver tests stop on deterministic work (see solvers.alloc.exact), never on the clock: the wall-clock
#: limit below only guards against a hang, so a slow or busy machine changes how long they take, not
#: whether they pass. One CP-SAT worker (the portfolio's CP-SAT half has one), fixed seeds.
HANG_GUARD = 900.0


def test_maximal_sections_are_the_maximal_cliques():
    # a [0,4) b [2,6) c [4,8): live sets {a}, {a,b}, {b,c}... maximal: {a,b} on [2,4), {b,c} on [4,6)
    t0, t1 = maximal_sections(np.array([0, 2, 4]), np.array([4, 6, 8]))
    assert t0.tolist() == [2, 4] and t1.tolist() == [4, 6]


def test_common_factor_and_components():
    p = AllocationProblem.from_arrays([0, 0, 5], [3, 4, 9], [1024, 3072, 2048])
    assert common_factor(p) == 1024
    parts = components(p.lower, p.upper, np.arange(3))
    assert [c.tolist() for c in parts] == [[0, 1], [2]]
    q = AllocationProblem.from_arrays([0], [1], [6], alignment=[4])
    assert common_factor(q) == 2


def test_decompose_stacks_buffers_that_meet_all_others():
    # L meets everyone; without it the rest splits into two chains (no buffer of a chain meets all of it)
    lower = [0, 0, 1, 2, 3, 5, 6, 7, 8]
    upper = [10, 2, 3, 4, 5, 7, 8, 9, 10]
    p = AllocationProblem.from_arrays(lower, upper, [5, 1, 2, 1, 2, 3, 1, 3, 1], ids="Labcdefgh")
    dec = decompose(p)
    assert dec.stacked == [0] and dec.stacked_offsets == [0]
    assert sorted(piece.buffers.tolist() for piece in dec.pieces) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert all(piece.base == 5 for piece in dec.pieces)
    offsets = dec.assemble(p.n, [np.zeros(len(piece.buffers), np.int64) for piece in dec.pieces])
    assert offsets[0] == 0 and (offsets[1:] == 5).all()
    sub = subproblem(p, dec.pieces[0], g=1)
    assert sub.n == 4 and sub.ids in (tuple("abcd"), tuple("efgh"))
    # a pair that meets each other is stacked whole
    pair = AllocationProblem.from_arrays([0, 1], [2, 3], [4, 2])
    dec = decompose(pair)
    assert dec.pieces == [] and dec.stacked == [0, 1] and dec.stacked_offsets == [0, 4]


def test_decompose_leaves_fixed_and_aligned_buffers_in_place():
    p = AllocationProblem.from_arrays([0, 0, 1], [10, 3, 4], [5, 1, 2], fixed_offset=[3, -1, -1])
    dec = decompose(p)
    assert dec.stacked == [] and len(dec.pieces) == 1


@pytest.mark.parametrize("seed", range(6))
def test_search_places_perfect_packings(seed):
    p, _ = perfect_packing(40, seed)
    out = canonical_search(p.lower, p.upper, p.size, p.alignment, 64, HANG_GUARD, node_limit=300_000)
    assert out.status == "found"
    validate(p, out.offsets, 64)


def test_search_proves_infeasible_with_alignment():
    # three buffers live together, size 1 each, offsets must be multiples of 2: only 0 and 2 fit under 4
    p = AllocationProblem.from_arrays([0, 0, 0], [2, 2, 2], [1, 1, 1], alignment=[2, 2, 2])
    assert max_load_lower_bound(p) == 3
    out = canonical_search(p.lower, p.upper, p.size, p.alignment, 4, HANG_GUARD, node_limit=100_000)
    assert out.status == "infeasible"
    out = canonical_search(p.lower, p.upper, p.size, p.alignment, 5, HANG_GUARD, node_limit=100_000)
    assert out.status == "found" and sorted(out.offsets.tolist()) == [0, 2, 4]


@pytest.mark.solver
def test_search_verdicts_agree_with_cpsat_on_small_instances():
    """The search's pruning (canonical order, dominance, section inference, identical buffers in index
    order, independent sides) must keep every feasible instance feasible: its found / infeasible verdict
    is checked against CP-SAT's on random instances with alignments and identical buffers, at capacities
    around the max-load bound."""
    from ortools.sat.python import cp_model
    from formulations.alloc.cpsat import build_cpsat
    rng = np.random.default_rng(7)
    verdicts = {"found": 0, "infeasible": 0}
    for _ in range(60):
        n = int(rng.integers(3, 13))
        lower = rng.integers(0, 14, n)
        upper = lower + rng.integers(1, 7, n)
        size = rng.integers(1, 6, n)
        lower[1], upper[1], size[1] = lower[0], upper[0], size[0]  # a pair of identical buffers
        align = np.where(rng.random(n) < 0.3, rng.integers(1, 4, n), 1)
        align[1] = align[0]
        p = AllocationProblem.from_arrays(lower, upper, size, alignment=align)
        bound = max_load_lower_bound(p)
        for cap in range(max(int(size.max()), bound - 1), bound + 3):
            out = canonical_search(lower, upper, size, align, cap, HANG_GUARD, node_limit=200_000)
            solver = cp_model.CpSolver()
            solver.parameters.num_workers = 1
            truth = solver.solve(build_cpsat(p, cap, minimize=False).model)
            expected = "found" if truth in (cp_model.OPTIMAL, cp_model.FEASIBLE) else "infeasible"
            assert out.status == expected, (lower.tolist(), upper.tolist(), size.tolist(), align.tolist(), cap)
            if out.status == "found":
                validate(p, out.offsets, cap)
            verdicts[out.status] += 1
    assert min(verdicts.values()) > 20  # both answers exercised


def test_search_solves_independent_sides_apart(monkeypatch):
    """Once the long buffer that links two halves is placed, nothing unplaced crosses the middle: each
    half is searched on its own (a side), and their placements are combined."""
    from solvers.alloc import search
    # buffer 0 spans [0, 10); 1-2 live in [0, 5), 3-4 in [5, 10); 5 (the second longest, so placed second)
    # links the halves until it is placed
    lower = np.array([0, 0, 0, 5, 5, 2])
    upper = np.array([10, 5, 5, 10, 10, 8])
    size = np.array([4, 3, 2, 2, 3, 1])
    sides = []
    original = search.CanonicalSearch._side

    def side(self, bufs, s0, s1):
        sides.append(sorted(bufs.tolist()))
        return original(self, bufs, s0, s1)

    monkeypatch.setattr(search.CanonicalSearch, "_side", side)
    p = AllocationProblem.from_arrays(lower, upper, size)
    out = canonical_search(lower, upper, size, np.ones(6, np.int64), 10, HANG_GUARD, node_limit=1000)
    assert out.status == "found"
    validate(p, out.offsets, 10)
    assert sides[0] == [0, 1, 2, 3, 4, 5]  # the whole problem first
    assert [1, 2] in sides and [3, 4] in sides  # then the halves apart


def test_search_preorders_and_workers_rotate():
    from solvers.alloc.search import PREORDERS, rotated_preorders
    assert rotated_preorders(0) == PREORDERS and rotated_preorders(1) == PREORDERS[1:] + PREORDERS[:1]
    assert rotated_preorders(len(PREORDERS)) == PREORDERS


@pytest.mark.solver
@pytest.mark.parametrize("solver", EXACT)
def test_exact_solvers_reach_capacity_where_greedy_fails(solver):
    for seed in range(30):
        p, _ = perfect_packing(30, seed)
        if allocate(p).status == "unknown":
            break
    else:
        pytest.fail("no perfect packing that greedy misses")
    r = allocate(p, solver=solver, time_limit=HANG_GUARD, work_limit=20)
    assert r.status in ("optimal", "feasible") and r.peak <= 64
    validate(p, r.offsets, 64)
    assert r.solver == solver and r.solver_version and r.workers == 2 and r.seed == 0
    assert r.params["gcd"] == 1


@pytest.mark.solver
@pytest.mark.parametrize("solver", EXACT)
def test_exact_minimise_proves_the_optimum(solver):
    p = random_problem(40, 5)
    r = allocate(p, solver=solver, minimize=True, time_limit=HANG_GUARD, work_limit=20)
    validate(p, r.offsets)
    assert r.status == "optimal" and r.peak == r.proven_bound >= r.lower_bound


@pytest.mark.solver
@pytest.mark.parametrize("solver", ("cpsat", "milp"))
def test_fixed_and_aligned_buffers(solver):
    p = read_csv(DATA / "mixed.96.csv", capacity=96)
    r = allocate(p, solver=solver, minimize=True, time_limit=HANG_GUARD, work_limit=20)
    validate(p, r.offsets, 96)
    assert r.offsets[0] == 0 and r.status == "optimal" and r.peak == 68


@pytest.mark.solver
@pytest.mark.parametrize("solver", ("search", "cpsat", "milp", "portfolio"))
def test_infeasible_capacity_is_proven(solver):
    p = AllocationProblem.from_arrays([0, 0, 0, 3], [2, 2, 2, 5], [1, 1, 1, 4], alignment=[2, 2, 2, 1])
    r = allocate(p, solver=solver, capacity=4, time_limit=HANG_GUARD, work_limit=20)
    assert r.status == "infeasible" and r.offsets is None and "infeasible" in r.message


@pytest.mark.solver
def test_fixed_buffers_make_an_infeasible_middle():
    # P fixed low, Q fixed high: R must avoid both, and no address is left for it
    p = AllocationProblem.from_arrays([0, 2, 1], [2, 4, 3], [2, 2, 1], ids="PQR", fixed_offset=[0, 1, -1])
    for solver in ("cpsat", "milp"):
        r = allocate(p, solver=solver, capacity=3, time_limit=HANG_GUARD, work_limit=10)
        assert r.status == "infeasible", solver


@pytest.mark.solver
@pytest.mark.parametrize("solver", ("search", "cpsat", "portfolio"))  # the MILP's root alone takes 18 s here
def test_work_limit_reached_while_minimising_keeps_the_best_valid_placement_and_the_bound(solver):
    """Forced: far too little work to close the gap on 400 buffers. The greedy placement (or a better one)
    is kept, valid, with the bound that was proven, and the status says the least peak is not proven."""
    p = random_problem(400, 9, horizon=60, max_size=300)
    greedy = allocate(p, solver="heuristic", minimize=True, time_limit=HANG_GUARD, work_limit=1)
    r = allocate(p, solver=solver, minimize=True, time_limit=HANG_GUARD, work_limit=0.01, workers=1)
    validate(p, r.offsets)
    assert r.status == "feasible", r.message
    assert r.lower_bound <= r.proven_bound < r.peak <= greedy.peak
    assert f"peak {r.peak}, proven bound {r.proven_bound}" in r.message
    assert r.params["work_limit"] == 0.01 and "limit_reached" not in r.params  # the work limit, not the clock


@pytest.mark.solver
@pytest.mark.parametrize("solver", EXACT)
def test_work_limit_reached_at_a_capacity_is_unknown_not_a_bad_placement(solver):
    """Forced: a perfect packing greedy misses, and a solve with almost no work: nothing is placed, the
    status is "unknown" and the message names the work limit (not a validation error about no offsets)."""
    p, _ = perfect_packing(120, 4, horizon=200, capacity=256)
    assert allocate(p, solver="heuristic").status == "unknown"
    r = allocate(p, solver=solver, time_limit=HANG_GUARD, work_limit=0.001, workers=1)
    assert r.offsets is None and r.peak is None
    assert r.status == "unknown" and "not placed within the capacity in the work limit" in r.message


@pytest.mark.solver
def test_work_limit_gives_the_same_answer_every_time():
    p = random_problem(400, 9, horizon=60, max_size=300)
    runs = [allocate(p, solver="cpsat", minimize=True, time_limit=HANG_GUARD, work_limit=0.5, workers=1)
            for _ in range(2)]
    assert runs[0].peak == runs[1].peak and np.array_equal(runs[0].offsets, runs[1].offsets)
    q, _ = perfect_packing(40, 3)
    runs = [allocate(q, solver="search", capacity=64, time_limit=HANG_GUARD, work_limit=1) for _ in range(2)]
    assert runs[0].status == runs[1].status != "unknown" and np.array_equal(runs[0].offsets, runs[1].offsets)


@pytest.mark.solver
def test_a_result_the_clock_cut_short_under_a_work_limit_says_so():
    """The wall clock is only a guard under a work limit; when it does end a solve first, the answer may
    depend on the machine, and the result says so (30 units still leave this gap open, so no machine
    closes it in 0.3 s)."""
    p = random_problem(400, 9, horizon=60, max_size=300)
    r = allocate(p, solver="cpsat", minimize=True, time_limit=0.3, work_limit=1000, workers=1)
    validate(p, r.offsets)
    assert r.status == "feasible" and r.params["limit_reached"] == "time"
    assert "time limit ended the search before the work limit" in r.message


def test_work_limit_is_checked():
    from elk.errors import SolverConfigError
    with pytest.raises(SolverConfigError, match="work limit"):
        allocate(random_problem(5, 1), solver="search", work_limit=0)


def test_node_limit_stops_the_search_on_work_not_time():
    p, _ = perfect_packing(60, 5)
    out = canonical_search(p.lower, p.upper, p.size, p.alignment, 64, HANG_GUARD, node_limit=50)
    assert out.status == "timeout" and out.nodes == 50
    two = canonical_search(p.lower, p.upper, p.size, p.alignment, 64, HANG_GUARD, node_limit=50, workers=2)
    assert two.status == "timeout" and two.nodes == 50  # nodes per process: what the limit bounds


@pytest.mark.solver
def test_solver_params_are_checked_and_recorded():
    from elk.errors import SolverConfigError
    p = random_problem(30, 2)
    with pytest.raises(SolverConfigError, match="unknown CP-SAT parameter"):
        allocate(p, solver="cpsat", minimize=True, params={"no_such_knob": 1})
    r = allocate(p, solver="cpsat", minimize=True, params={"linearization_level": 0}, seed=3, workers=1)
    assert r.params["linearization_level"] == 0 and r.seed == 3 and r.workers == 1
    assert r.solver_version.startswith("ortools 9.15")


@pytest.mark.solver
def test_minimalloc_instance_c_within_capacity():
    path = minimalloc("C")
    p = read_csv(path, capacity=capacity_from_name(path))
    r = allocate(p, solver="search", time_limit=HANG_GUARD, work_limit=5)  # C takes about 36,000 nodes, 2.2 units
    assert r.status in ("optimal", "feasible"), r.message
    validate(p, r.offsets, 1_048_576)
    assert r.params["gcd"] == 1024


@pytest.mark.solver
def test_cpsat_branching_bottom_up_places_instance_i():
    """I is an instance neither the old search nor CP-SAT's own branching placed in 60 s; told to branch
    on the lowest offset first, one CP-SAT worker places it (the round robin of tie orders reaches it in
    its third round, with WAT: about 2 work units)."""
    from formulations.alloc.cpsat import build_cpsat
    path = minimalloc("I")
    p = read_csv(path, capacity=capacity_from_name(path))
    assert len(build_cpsat(p, p.capacity, minimize=False).model.proto.search_strategy) == 1
    r = allocate(p, solver="cpsat", time_limit=HANG_GUARD, work_limit=8, workers=1)
    assert r.status in ("optimal", "feasible"), r.message
    validate(p, r.offsets, 1_048_576)


def test_branching_orders():
    from formulations.alloc.cpsat import BRANCHING_ORDERS, branching_order
    p = AllocationProblem.from_arrays([0, 0, 2, 1], [4, 2, 6, 3], [1, 5, 2, 2])
    assert branching_order(p, "start").tolist() == [1, 0, 3, 2]  # earliest start, then largest
    # W (lifespan) 4, 2, 4, 2; A (area) 4, 10, 8, 4; T (fullest live total with it) 8, 8, 5, 8
    assert branching_order(p, "WAT").tolist() == [2, 0, 1, 3]
    assert branching_order(p, "TWA").tolist() == [0, 1, 3, 2]
    assert set(BRANCHING_ORDERS) >= {"start", "WAT", "TWA", "TAW"}
    with pytest.raises(ValueError, match="unknown branching order"):
        branching_order(p, "XYZ")


@pytest.mark.solver
def test_cpsat_round_robin_of_tie_orders_places_instance_k():
    """Within a capacity CP-SAT restarts on a round robin of tie orders: K, which the start order alone
    does not place in 0.3 deterministic seconds (over 4 work units), is placed by the WAT order's first run
    (0.002) within 1 work unit; the answer is the same every time."""
    path = minimalloc("K")
    p = read_csv(path, capacity=capacity_from_name(path))
    runs = [allocate(p, solver="cpsat", time_limit=HANG_GUARD, work_limit=1, workers=1) for _ in range(2)]
    for r in runs:
        assert r.status in ("optimal", "feasible"), r.message
        validate(p, r.offsets, 1_048_576)
    assert np.array_equal(runs[0].offsets, runs[1].offsets)


@pytest.mark.slow
@pytest.mark.solver
@pytest.mark.parametrize("name", "ABCDEFGHIJK")
def test_minimalloc_challenging(name):
    """All 11 placed by the portfolio within 2 work units each (D needs the most: 14,000 search nodes,
    0.9 units; CP-SAT's round robin would need about 6 for it)."""
    path = minimalloc(name)
    p = read_csv(path, capacity=capacity_from_name(path))
    r = allocate(p, solver="portfolio", time_limit=HANG_GUARD, work_limit=2)
    assert r.status in ("optimal", "feasible"), r.message
    validate(p, r.offsets, 1_048_576)


@pytest.mark.solver
def test_milp_with_cbc():
    p = random_problem(40, 5)
    r = allocate(p, solver="milp", backend="cbc", minimize=True, time_limit=HANG_GUARD, work_limit=20, workers=1)
    validate(p, r.offsets)
    assert r.status == "optimal" and r.solver_version.endswith("CBC (bundled)")
    q = AllocationProblem.from_arrays([0, 0, 0, 3], [2, 2, 2, 5], [1, 1, 1, 4], alignment=[2, 2, 2, 1])
    r = allocate(q, solver="milp", backend="cbc", capacity=4, time_limit=HANG_GUARD, work_limit=20)
    assert r.status == "infeasible" and "cbc" in r.message
