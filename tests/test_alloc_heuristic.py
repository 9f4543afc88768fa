"""The greedy allocator and the ``allocate`` entry point with solver="heuristic"."""
from __future__ import annotations


import numpy as np
import pytest

from alloc_cases import DATA, perfect_packing, random_problem
from conftest import shared_file
from elk.allocation import AllocationProblem, max_load_lower_bound, read_csv, validate
from elk.errors import AllocationInputError, SolverConfigError
from solvers.alloc.heuristic import FITS, ORDERS, compact, greedy, heuristic
from solvers.alloc.allocate import allocate


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("fit", FITS)
def test_every_greedy_pass_is_valid(seed, order, fit):
    p = random_problem(120, seed)
    off = greedy(p, ORDERS[order](p), fit)
    validate(p, off)
    peak = int((off + p.size).max())
    assert peak >= max_load_lower_bound(p)
    packed = compact(p, off)
    validate(p, packed)
    assert int((packed + p.size).max()) <= peak
    assert (packed <= off).all()  # compaction only moves buffers down


def test_heuristic_keeps_the_best_pass():
    p = random_problem(200, 7)
    h = heuristic(p)
    assert len(h.tried) == len(ORDERS) * len(FITS)
    assert h.peak <= min(h.tried.values())
    validate(p, h.offsets)


def test_heuristic_respects_fixed_offsets_and_alignment():
    p = read_csv(DATA / "mixed.96.csv", capacity=96)
    r = allocate(p, minimize=True)
    validate(p, r.offsets, 96)
    assert r.offsets[0] == 0 and (r.offsets % p.alignment == 0).all()
    rng = np.random.default_rng(3)
    base = random_problem(150, 3)
    align = rng.choice([1, 2, 4, 16], base.n)
    fixed = np.full(base.n, -1)
    fixed[:5] = np.arange(5) * 1000 * 16  # far apart: never on top of each other
    q = AllocationProblem.from_arrays(base.lower, base.upper, base.size, alignment=align, fixed_offset=fixed)
    for fit in FITS:
        off = greedy(q, ORDERS["size"](q), fit)
        validate(q, off)


def test_allocate_minimize_reaches_the_bound_on_the_worked_example():
    p = read_csv(DATA / "worked.csv")
    r = allocate(p)
    assert r.status == "optimal" and r.peak == r.lower_bound == r.proven_bound == 8
    assert r.solver == "heuristic" and r.offsets is not None and r.ratio == 1.0


def test_allocate_at_capacity():
    p = read_csv(DATA / "tight.8.csv", capacity=8)
    r = allocate(p)
    assert r.status == "optimal" and r.peak == 8 and r.capacity == 8
    validate(p, r.offsets, 8)


def test_capacity_below_the_bound_is_infeasible_with_the_reason():
    p = read_csv(DATA / "worked.csv")
    r = allocate(p, capacity=7)
    assert r.status == "infeasible" and r.offsets is None and r.peak is None
    assert "time 2 need 8 > capacity 7" in r.message


def test_fixed_buffers_on_top_of_each_other_are_infeasible():
    p = AllocationProblem.from_arrays([0, 1, 0], [3, 4, 4], [2, 2, 1], ids="abc", fixed_offset=[0, 1, -1])
    r = allocate(p)
    assert r.status == "infeasible" and "fixed buffers 'a' and 'b' overlap" in r.message


def test_greedy_that_misses_the_capacity_says_unknown_not_infeasible():
    for seed in range(20):
        p, known = perfect_packing(30, seed)
        r = allocate(p)
        if r.status == "unknown":
            assert r.offsets is None and "exceeds capacity 64" in r.message
            validate(p, known)  # it was feasible: the heuristic does not claim otherwise
            return
        validate(p, r.offsets, 64)
    pytest.fail("expected a perfect packing the greedy cannot find")


def test_buffer_larger_than_the_capacity_is_an_input_error():
    p = read_csv(DATA / "worked.csv")
    with pytest.raises(AllocationInputError, match="buffer 'y' of size 5 does not fit in capacity 4"):
        allocate(p, capacity=4)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(solver="magic"), "unknown allocation solver 'magic'"),
    (dict(time_limit=0), "time limit must be a positive number"),
    (dict(time_limit=-1.0), "time limit must be a positive number"),
    (dict(time_limit=float("nan")), "time limit must be a positive number"),
    (dict(workers=0), "workers must be a positive integer"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(backend="gurobi"), "unknown MILP backend 'gurobi'"),
])
def test_bad_settings_are_named(kwargs, pattern):
    with pytest.raises(SolverConfigError, match=pattern):
        allocate(read_csv(DATA / "worked.csv"), **kwargs)


def test_empty_and_zero_size_problems():
    r = allocate(AllocationProblem.from_arrays([], [], []))
    assert r.status == "optimal" and r.peak == 0
    r = allocate(AllocationProblem.from_arrays([0, 0], [2, 2], [0, 0]))
    assert r.status == "optimal" and r.peak == 0 and r.offsets.tolist() == [0, 0]


def test_thousands_of_buffers_are_placed_near_the_bound():
    # a compiled schedule per core: a few thousand buffers with short live ranges (speed: bench_placement.py)
    p = random_problem(3000, 11, horizon=20000, max_size=1 << 16)
    r = allocate(p)
    validate(p, r.offsets)
    assert r.peak <= 1.1 * r.lower_bound


def test_iree_traces_beat_iree():
    for name, iree_ratio in (("iree_mobilenet", 1.281), ("iree_mobilebert", 1.439)):
        p = read_csv(shared_file("idealloc", "iree", f"{name}.csv"), offsets="ignore")
        r = allocate(p, minimize=True)
        validate(p, r.offsets)
        assert r.ratio < iree_ratio and r.ratio <= 1.05
