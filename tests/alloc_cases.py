"""Allocation instances for the tests: hand-made files in tests/data/alloc and generated ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import shared_file
from elk.allocation import AllocationProblem

DATA = Path(__file__).parent / "data" / "alloc"
MINIMALLOC = "ABCDEFGHIJK"  # MiniMalloc's 11 challenging instances


def minimalloc(name: str) -> Path:
    """MiniMalloc's challenging instance ``name`` (A-K) from ../shared (see ``conftest.shared_file``)."""
    return shared_file("minimalloc", "challenging", f"{name}.1048576.csv")


def random_problem(n: int, seed: int, horizon: int = 100, max_size: int = 50, name: str = "") -> AllocationProblem:
    rng = np.random.default_rng(seed)
    lower = rng.integers(0, horizon, n)
    upper = lower + rng.integers(1, max(2, horizon // 4), n)
    size = rng.integers(1, max_size, n)
    return AllocationProblem.from_arrays(lower, upper, size, name=name or f"random{n}-{seed}")


def perfect_packing(pieces: int, seed: int, horizon: int = 64, capacity: int = 64) -> tuple[AllocationProblem, np.ndarray]:
    """Cut the rectangle [0, horizon) x [0, capacity) into pieces by random guillotine cuts.

    The pieces fill it exactly, so the instance is feasible at ``capacity``
    and its max-load bound equals the capacity: no slack at all, the kind of
    instance greedy placement fails on. Returns the problem and the known placement.
    """
    rng = np.random.default_rng(seed)
    rects = [(0, horizon, 0, capacity)]  # (t0, t1, a0, a1)
    while len(rects) < pieces:
        k = int(rng.integers(len(rects)))
        t0, t1, a0, a1 = rects[k]
        if rng.random() < 0.5 and t1 - t0 > 1:
            c = int(rng.integers(t0 + 1, t1))
            rects[k:k + 1] = [(t0, c, a0, a1), (c, t1, a0, a1)]
        elif a1 - a0 > 1:
            c = int(rng.integers(a0 + 1, a1))
            rects[k:k + 1] = [(t0, t1, a0, c), (t0, t1, c, a1)]
    r = np.array(rects, np.int64)
    order = rng.permutation(len(r))
    r = r[order]
    problem = AllocationProblem.from_arrays(r[:, 0], r[:, 1], r[:, 3] - r[:, 2], capacity=capacity,
                                            name=f"perfect{pieces}-{seed}")
    return problem, r[:, 2].copy()
