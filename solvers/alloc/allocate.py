"""One entry point for on-chip memory allocation: ``allocate(problem, solver=...)``.

Five allocators answer the same two questions, "place everything within
capacity C" and "place everything with the least peak (within C if given)":

* ``heuristic``: greedy best/first fit over several orders (solvers.alloc.heuristic);
* ``search``: elk's canonical branch-and-bound (solvers.alloc.search), exact;
* ``cpsat``: CP-SAT (formulations.alloc.cpsat), exact;
* ``milp``: a MILP through PuLP with HiGHS or CBC (formulations.alloc.milp), exact;
* ``portfolio``: the search and CP-SAT side by side on two cores, first answer wins.

The exact ones share solvers.alloc.exact: common factor, stacking and
independent pieces first, the greedy placement as hint and fallback.

What every allocator shares lives here: settings checks, the instant
infeasibility proofs (the max-load bound above the capacity, two fixed
buffers on top of each other), and the final check that every returned
placement passes :func:`elk.allocation.validate` — an allocator bug must
never reach the caller as a placement.
"""
from __future__ import annotations

import time

import numpy as np

from elk.allocation import AllocationProblem, AllocationResult, first_overlap, load_profile, lower_bound, validate
from elk.errors import SolverConfigError
from solvers.alloc.heuristic import heuristic
from solvers.solver_options import check_backend, check_common, check_positive

ALLOC_SOLVERS = ("heuristic", "search", "cpsat", "milp", "portfolio")


def check_settings(solver: str, time_limit: float, workers: int, seed: int, backend: str,
                   work_limit: float | None = None) -> None:
    """An allocation run's settings, by the same rules as every other solver run (solvers.solver_options)."""
    if solver not in ALLOC_SOLVERS:
        raise SolverConfigError(f"unknown allocation solver '{solver}' (choose from {', '.join(ALLOC_SOLVERS)})")
    check_common(time_limit, workers, seed)
    if work_limit is not None:
        check_positive(work_limit, "work limit")
    check_backend(backend)


def infeasibility_proof(problem: AllocationProblem, capacity: int | None) -> str | None:
    """A reason no placement exists, found without search, or None."""
    fixed = np.flatnonzero(problem.fixed_offset >= 0)
    if len(fixed) > 1:
        sub = AllocationProblem.from_arrays(problem.lower[fixed], problem.upper[fixed], problem.size[fixed],
                                            ids=[problem.ids[i] for i in fixed])
        pair = first_overlap(sub, problem.fixed_offset[fixed])
        if pair is not None:
            a, b = (problem.ids[fixed[k]] for k in pair)
            return f"fixed buffers '{a}' and '{b}' overlap"
    if capacity is not None and problem.n:
        times, load = load_profile(problem)
        k = int(np.argmax(load))
        if load[k] > capacity:
            return f"the live buffers at time {times[k]} need {load[k]} > capacity {capacity} (max-load bound)"
    return None


def allocate(problem: AllocationProblem, *, solver: str = "heuristic", capacity: int | None = None,
             minimize: bool = False, time_limit: float = 10.0, workers: int = 2, seed: int = 0,
             backend: str = "highs", params: dict | None = None, work_limit: float | None = None) -> AllocationResult:
    """Place the buffers of ``problem``.

    ``capacity`` (default: the problem's) turns the question into "within C";
    ``minimize`` asks for the least peak (within C if there is one); with no
    capacity the peak is always minimised. Statuses: "optimal" (least peak
    proven: the peak equals a proven bound), "feasible" (a valid placement;
    for a pure feasibility question this is the answer), "infeasible" (proven
    impossible within C), "unknown" (nothing within C found in the limit).
    The heuristic uses ``time_limit`` as its budget too (its first pass always
    completes). Every returned placement has passed ``validate``.

    ``work_limit`` (work units, about core-seconds) makes the answer independent
    of the machine's speed: the solvers stop on deterministic work (CP-SAT's
    deterministic time, search and MILP nodes, every greedy pass) and
    ``time_limit`` only guards against a hang (see :mod:`solvers.alloc.exact`).
    Reproducible with one CP-SAT worker (``workers=1``, or the portfolio on 2).
    """
    check_settings(solver, time_limit, workers, seed, backend, work_limit)
    cap = problem.capacity if capacity is None else int(capacity)
    if cap is not None:
        problem.check_capacity(cap)  # a buffer larger than C is an input error, not a search outcome
    minimize = minimize or cap is None
    started = time.perf_counter()
    bound = lower_bound(problem)
    common = dict(lower_bound=bound, capacity=cap, time_limit=float(time_limit), seed=seed)
    proof = infeasibility_proof(problem, cap)
    if proof is not None:
        return AllocationResult(None, None, status="infeasible", solver=solver, solver_version=_version(solver, backend),
                                seconds=time.perf_counter() - started,
                                message=f"infeasible: {proof}", workers=1 if solver == "heuristic" else workers,
                                **common)
    if problem.n == 0 or not (problem.size > 0).any():
        offsets = np.where(problem.fixed_offset >= 0, problem.fixed_offset, 0).astype(np.int64)
        return _checked(problem, cap, AllocationResult(offsets, _peak(problem, offsets), status="optimal",
                                                       solver=solver, solver_version=_version(solver, backend),
                                                       seconds=time.perf_counter() - started,
                                                       proven_bound=bound, message="nothing to place", **common))
    if solver == "heuristic":
        result = run_heuristic(problem, cap, minimize, None if work_limit is not None else time_limit, bound)
    else:
        from solvers.alloc.exact import solve_exact
        result = solve_exact(problem, solver=solver, capacity=cap, minimize=minimize, time_limit=time_limit,
                             workers=workers, seed=seed, backend=backend, params=dict(params or {}),
                             lower_bound=bound, work_limit=work_limit)
    result.seconds = time.perf_counter() - started
    result.capacity, result.time_limit, result.seed = cap, float(time_limit), seed
    return _checked(problem, cap, result)


def _version(solver: str, backend: str) -> str:
    if solver == "heuristic":
        return "elk greedy"
    from solvers.alloc.exact import solver_version
    return solver_version(solver, backend)


def run_heuristic(problem: AllocationProblem, cap: int | None, minimize: bool, time_limit: float | None,
                  bound: int) -> AllocationResult:
    """The greedy allocator's answer: a placement within ``cap`` (or the least peak), or unknown."""
    h = heuristic(problem, capacity=cap, stop_at=bound if minimize or cap is None else cap, time_budget=time_limit)
    params = {"order": h.order, "passes": len(h.tried)}
    common = dict(lower_bound=bound, solver="heuristic", solver_version="elk greedy", params=params, workers=1)
    if cap is not None and h.peak > cap:
        return AllocationResult(None, None, status="unknown", proven_bound=None,
                                message=f"best greedy peak {h.peak} exceeds capacity {cap} (lower bound {bound})",
                                **common)
    proven = h.peak == bound
    status = "optimal" if proven else "feasible"
    return AllocationResult(h.offsets, h.peak, status=status, proven_bound=bound if proven else None,
                            message=f"best of {len(h.tried)} greedy passes ({h.order}), compacted", **common)


def _peak(problem: AllocationProblem, offsets: np.ndarray) -> int:
    return int((offsets + problem.size).max(initial=0))


def _checked(problem: AllocationProblem, cap: int | None, result: AllocationResult) -> AllocationResult:
    """The guarantee of this module: a returned placement is valid (within the capacity asked for)."""
    if result.offsets is not None:
        validate(problem, result.offsets, cap)
        result.peak = _peak(problem, result.offsets)
    return result


__all__ = ["allocate", "ALLOC_SOLVERS", "infeasibility_proof", "check_settings"]
