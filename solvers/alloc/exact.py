"""Exact allocation: shrink the problem, solve each piece with search / CP-SAT / MILP, put it back together.

Flow (solvers.alloc.decompose for the shrinking):

1. divide by the common factor g; stack buffers that meet all others; split
   into independent pieces;
2. the greedy allocator places every piece first; a piece it already fits
   (feasibility) or puts at its own lower bound (minimising) is done;
3. the rest go to the exact solver, the greedy placement as the hint / MIP
   start / upper bound. Feasibility: each piece at its share of the
   capacity, with a share of the time in proportion to its size.
   Minimising: the piece that sets the peak is improved first (it gets the
   remaining time), until the peak is proven or time runs out.

An exact solver that runs out of time hands back the best valid placement
it has (at worst the greedy one) and what it proved; nothing here returns
a placement without ``solvers.alloc.allocate`` validating it.
"""
from __future__ import annotations

import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elk.allocation import AllocationProblem, AllocationResult, lower_bound as problem_lower_bound
from solvers.alloc.decompose import Decomposition, common_factor, decompose, subproblem
from solvers.alloc.heuristic import heuristic
from solvers.alloc.search import canonical_search

# pieces larger than these go unsolved by that solver (memory: the search keeps an n x n conflict
# matrix; the MILP has a binary per conflicting pair); the greedy placement stands for them
SEARCH_MAX_BUFFERS = 3000
CPSAT_MAX_MEMBERS = 2_000_000  # total buffers over all cliques
MILP_MAX_PAIRS = 60_000


@dataclass
class PieceOutcome:
    status: str  # "found", "optimal", "infeasible", "timeout", "skipped"
    offsets: np.ndarray | None  # piece units, relative to the piece's base
    peak: int | None = None
    bound: int | None = None  # proven lower bound on the piece's peak (units)
    note: str = ""


def solver_version(solver: str, backend: str) -> str:
    if solver == "search":
        return "elk canonical search"
    if solver == "portfolio":
        return f"elk canonical search + {solver_version('cpsat', backend)}"
    from solvers.solver_options import SolverSettings, solver_version as backend_version
    return backend_version(SolverSettings(solver="cpsat" if solver == "cpsat" else "milp", backend=backend))


def solve_exact(problem: AllocationProblem, *, solver: str, capacity: int | None, minimize: bool, time_limit: float,
                workers: int, seed: int, backend: str, params: dict, lower_bound: int) -> AllocationResult:
    started = time.perf_counter()
    deadline = started + time_limit
    if params and solver != "search":
        from solvers.solver_options import validate_params
        validate_params("milp" if solver == "milp" else "cpsat", backend, params)
    g = common_factor(problem)
    dec = decompose(problem)
    n_pieces = len(dec.pieces)
    subs = [subproblem(problem, piece, g) for piece in dec.pieces]
    caps = [None if capacity is None else (capacity - piece.base) // g for piece in dec.pieces]
    lbs = [problem_lower_bound(sub) for sub in subs]
    # greedy passes cost milliseconds on pieces an exact solver can take and seconds on the 60,000-buffer
    # ones it cannot (where the greedy placement is the answer): a share of the limit in proportion to size
    total_n = max(sum(sub.n for sub in subs), 1)
    greedy = [heuristic(sub, capacity=cap, stop_at=lb if (minimize or cap is None) else cap,
                        time_budget=max(0.05, 0.9 * time_limit * sub.n / total_n))
              for sub, cap, lb in zip(subs, caps, lbs)]
    outcomes: list[PieceOutcome] = []
    for h, cap, lb in zip(greedy, caps, lbs):
        fits = cap is None or h.peak <= cap
        proven = h.peak == lb
        outcomes.append(PieceOutcome("optimal" if proven else ("found" if fits else "timeout"),
                                     h.offsets if fits else None, h.peak if fits else None, lb))
    version = solver_version(solver, backend)
    meta = {"gcd": g, "pieces": n_pieces, "stacked": len(dec.stacked),
            "largest_piece": max((len(p.buffers) for p in dec.pieces), default=0), **params}

    def run(k: int, cap: int, budget: float, want_min: bool, upper: int | None) -> PieceOutcome:
        return _solve_piece(solver, subs[k], cap, lbs[k], want_min, upper, greedy[k].offsets, budget,
                            workers, seed, backend, params)

    if not minimize:
        todo = sorted((k for k, o in enumerate(outcomes) if o.offsets is None), key=lambda k: len(dec.pieces[k].buffers))
        total = sum(len(dec.pieces[k].buffers) for k in todo)
        for k in todo:
            remaining = deadline - time.perf_counter()
            share = remaining * len(dec.pieces[k].buffers) / max(total, 1)
            total -= len(dec.pieces[k].buffers)
            if share <= 0.05:
                break
            outcomes[k] = run(k, caps[k], share, False, None)
            if outcomes[k].status == "infeasible":
                break
    else:
        tried: set[int] = set()
        while time.perf_counter() < deadline - 0.05:
            tops = [dec.pieces[k].base + (o.peak if o.peak is not None else math.inf) * g
                    for k, o in enumerate(outcomes)]
            if not tops:
                break
            k = int(np.argmax(tops))
            o = outcomes[k]
            if o.status in ("optimal", "infeasible") or k in tried:
                break
            tried.add(k)
            cap = caps[k] if caps[k] is not None else o.peak
            new = run(k, cap, deadline - time.perf_counter(), True, o.peak)
            if new.offsets is None and o.offsets is not None:  # keep the greedy placement, take the bound
                new = PieceOutcome("optimal" if new.bound == o.peak else "found", o.offsets, o.peak,
                                   max(o.bound or 0, new.bound or 0), new.note)
            outcomes[k] = new
    return _assemble(problem, dec, g, outcomes, capacity, minimize, lower_bound, solver, version, workers, seed,
                     meta, time.perf_counter() - started)


def _assemble(problem: AllocationProblem, dec: Decomposition, g: int, outcomes: list[PieceOutcome],
              capacity: int | None, minimize: bool, bound: int, solver: str, version: str, workers: int, seed: int,
              params: dict, seconds: float) -> AllocationResult:
    common = dict(solver=solver, solver_version=version, workers=workers, seed=seed, params=params, seconds=seconds)
    infeasible = [k for k, o in enumerate(outcomes) if o.status == "infeasible"]
    if infeasible:
        k = infeasible[0]
        ids = [problem.ids[i] for i in dec.pieces[k].buffers[:3]]
        return AllocationResult(None, None, bound, "infeasible", proven_bound=None,
                                message=f"infeasible: the piece of {len(dec.pieces[k].buffers)} buffers with "
                                        f"{', '.join(repr(i) for i in ids)}... cannot fit above "
                                        f"{dec.pieces[k].base} ({outcomes[k].note or solver + ' proved it'})",
                                **common)
    missing = [k for k, o in enumerate(outcomes) if o.offsets is None]
    if missing:
        notes = sorted({outcomes[k].note for k in missing if outcomes[k].note})
        return AllocationResult(None, None, bound, "unknown", proven_bound=None,
                                message=f"{len(missing)} of {len(outcomes)} pieces not placed within the capacity "
                                        "in the time limit" + (f" ({notes[0]})" if notes else ""), **common)
    offsets = dec.assemble(problem.n, [o.offsets * g for o in outcomes])
    peak = int((offsets + problem.size).max(initial=0))
    proven = bound
    for piece, o in zip(dec.pieces, outcomes):
        if o.bound is not None:
            proven = max(proven, piece.base + o.bound * g)
    status = "optimal" if peak <= proven else "feasible"
    if not minimize and capacity is not None:
        note = "placed within the capacity"
    else:
        note = "least peak proven" if status == "optimal" else f"peak {peak}, proven bound {proven}"
    skipped = [o.note for o in outcomes if o.status == "skipped" and o.note]
    shape = (f"{len(outcomes)} piece{'s' if len(outcomes) != 1 else ''} after stacking {len(dec.stacked)} "
             f"buffer{'s' if len(dec.stacked) != 1 else ''}, units of {g}")
    if skipped:
        shape += f"; greedy placement kept where {skipped[0]}"
    return AllocationResult(offsets, peak, bound, status, proven_bound=proven,
                            message=f"{note} ({shape})", **common)


def _solve_piece(solver: str, sub: AllocationProblem, cap: int, lb: int, minimize: bool, upper: int | None,
                 hint: np.ndarray, budget: float, workers: int, seed: int, backend: str,
                 params: dict) -> PieceOutcome:
    if lb > cap:
        return PieceOutcome("infeasible", None, note="max-load bound above the capacity")
    if solver == "search":
        return _search_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed)
    if solver == "cpsat":
        return _cpsat_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, params)
    if solver == "portfolio":
        return _portfolio_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, params)
    return _milp_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, backend, params)


def _search_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed) -> PieceOutcome:
    if (sub.fixed_offset >= 0).any() or sub.n > SEARCH_MAX_BUFFERS:
        return PieceOutcome("skipped", None, note="search handles free pieces of at most "
                                                  f"{SEARCH_MAX_BUFFERS} buffers")
    deadline = time.perf_counter() + budget

    def attempt(c: int) -> tuple[str, np.ndarray | None]:
        left = deadline - time.perf_counter()
        if left <= 0.05:
            return "timeout", None
        out = canonical_search(sub.lower, sub.upper, sub.size, sub.alignment, c, left, workers=workers, seed=seed)
        return out.status, out.offsets

    if not minimize:
        status, off = attempt(cap)
        if status == "found":
            return PieceOutcome("found", off, int((off + sub.size).max(initial=0)), lb)
        return PieceOutcome(status, None, note="exhaustive canonical search" if status == "infeasible" else "")
    best_off = hint if upper is not None else None
    best = upper if upper is not None else cap + 1
    low = lb
    # first the lower bound itself (usually reached), then bisection on what is left
    target = low
    while low < best and time.perf_counter() < deadline - 0.05:
        status, off = attempt(target)
        if status == "found":
            best, best_off = int((off + sub.size).max(initial=0)), off
        elif status == "infeasible":
            low = target + 1
        else:
            break
        target = (low + best - 1) // 2 if low < best else low
        target = max(target, low)
    if best_off is None:
        return PieceOutcome("timeout", None, bound=low)
    return PieceOutcome("optimal" if best <= low else "found", best_off, best, low)


def _cpsat_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, params, on_solver=None) -> PieceOutcome:
    from ortools.sat.python import cp_model

    from formulations.alloc.cpsat import build_cpsat
    from solvers.solver_options import apply_cpsat_params

    from formulations.alloc.cpsat import clique_sizes

    members = int(clique_sizes(sub).sum())
    if members > CPSAT_MAX_MEMBERS:
        return PieceOutcome("skipped", None, note=f"CP-SAT model too large ({members:,} clique members)")
    built = build_cpsat(sub, cap, lower_bound=lb, minimize=minimize, upper_bound=upper)
    if minimize:  # the greedy placement is a valid start only when minimising (else it is over capacity)
        clipped = np.minimum(hint, np.maximum(cap - sub.size, 0))
        clipped -= clipped % sub.alignment
        built.add_hint(clipped, sub.alignment)
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.max_time_in_seconds = max(float(budget), 0.01)
    p.num_workers = workers
    p.random_seed = seed
    apply_cpsat_params(p, params)
    if on_solver is not None:
        on_solver(solver)
    status = solver.solve(built.model)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        off = built.decode(solver)
        peak = int((off + sub.size).max(initial=0))
        bound = int(math.ceil(solver.best_objective_bound - 1e-6)) if minimize else lb
        if minimize and status == cp_model.OPTIMAL:
            bound = peak
        return PieceOutcome("optimal" if (minimize and status == cp_model.OPTIMAL) else "found", off, peak,
                            max(bound, lb))
    if status == cp_model.INFEASIBLE:
        return PieceOutcome("infeasible", None, note="CP-SAT proved it")
    bound = int(math.ceil(solver.best_objective_bound - 1e-6)) if minimize else lb
    return PieceOutcome("timeout", None, bound=max(bound, lb))


def _search_worker(queue, sub: AllocationProblem, cap: int, budget: float, seed: int) -> None:
    out = canonical_search(sub.lower, sub.upper, sub.size, sub.alignment, cap, budget, workers=1, seed=seed)
    queue.put((out.status, out.offsets))


def _portfolio_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, params) -> PieceOutcome:
    """CP-SAT here and the canonical search in a second process; the first definite answer stops the other.

    Feasibility: both look for a placement within ``cap``. Minimising:
    CP-SAT minimises while the search tries the lower bound itself (found
    there = optimal). Uses two cores whatever ``workers`` says about CP-SAT:
    CP-SAT gets ``workers - 1`` (at least 1).
    """
    import multiprocessing as mp
    import threading

    if (sub.fixed_offset >= 0).any() or sub.n > SEARCH_MAX_BUFFERS:
        return _cpsat_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, params)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    queue = ctx.Queue()
    target = lb if minimize else cap
    proc = ctx.Process(target=_search_worker, args=(queue, sub, target, budget, seed), daemon=True)
    proc.start()
    found: dict = {}
    holder: dict = {}
    done = threading.Event()

    def watch() -> None:
        try:
            while not done.is_set():
                try:
                    found["search"] = queue.get(timeout=0.2)
                    break
                except Exception:
                    if not proc.is_alive() and queue.empty():
                        return
            status = found.get("search", ("timeout", None))[0]
            if status == "found" or (status == "infeasible" and not minimize):
                found["stop"] = True
                # CP-SAT ignores a stop request made before its Solve() has started (model still being
                # built or presolved), so keep asking until the CP-SAT call returns
                while not done.is_set():
                    if "solver" in holder:
                        holder["solver"].stop_search()
                    done.wait(0.05)
        except Exception:  # the watcher must never take the solve down
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def register(solver) -> None:
        holder["solver"] = solver
        if found.get("stop"):
            solver.stop_search()

    try:
        cp = _cpsat_piece(sub, cap, lb, minimize, upper, hint, budget, max(workers - 1, 1), seed, params,
                          on_solver=register)
    finally:
        done.set()
        watcher.join(timeout=2)
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=5)
    status, off = found.get("search", ("timeout", None))
    if status == "found":
        return PieceOutcome("optimal" if minimize else "found", off, int((off + sub.size).max(initial=0)),
                            lb, note="canonical search")
    if status == "infeasible" and not minimize:
        return PieceOutcome("infeasible", None, note="exhaustive canonical search")
    if status == "infeasible" and minimize and cp.bound is not None:
        cp.bound = max(cp.bound, lb + 1)
    return cp


def _milp_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, backend, params) -> PieceOutcome:
    import pulp

    from formulations.alloc.milp import build_milp
    from solvers.exact_backends import WarmHiGHS, milp_bound

    pairs = overlapping_pairs(sub)
    if pairs > MILP_MAX_PAIRS:
        return PieceOutcome("skipped", None, note=f"MILP too large ({pairs:,} buffer pairs)")
    built = build_milp(sub, cap, lower_bound=lb, minimize=minimize, upper_bound=upper)
    use_start = upper is not None and int((hint + sub.size).max(initial=0)) <= cap
    if use_start:
        built.set_start(hint, sub.alignment, sub.size)
    budget = max(float(budget), 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "milp.log"
        if backend == "cbc":
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            options = [f"{k} {v}" for k, v in params.items()] + [f"randomSeed {seed + 1}"]
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=budget, threads=workers, warmStart=use_start,
                                       logPath=str(log_path), options=options, gapRel=0.0)
        else:
            solver = WarmHiGHS(msg=False, timeLimit=budget, threads=workers, log_file=str(log_path), gapRel=0.0,
                               random_seed=seed, **dict(params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            built.problem.solve(solver)
        log = log_path.read_text() if log_path.exists() else ""
    status = pulp.LpStatus[built.problem.status]
    has_solution = built.problem.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if status == "Infeasible":
        return PieceOutcome("infeasible", None, note=f"MILP ({backend}) proved it")
    if has_solution:
        off = built.decode()
        peak = int((off + sub.size).max(initial=0))
        optimal = status == "Optimal" and built.problem.sol_status == pulp.LpSolutionOptimal
        bound = peak if optimal and minimize else (milp_bound(built.problem, backend, log) if minimize else None)
        bound = max(int(bound) if bound is not None else lb, lb)
        return PieceOutcome("optimal" if optimal and minimize else "found", off, peak, bound)
    bound = milp_bound(built.problem, backend, log) if minimize else None
    return PieceOutcome("timeout", None, bound=max(int(bound) if bound is not None else lb, lb))


def overlapping_pairs(problem: AllocationProblem) -> int:
    """Pairs of buffers live at the same time, counted without building them (each by its later start)."""
    starts = np.sort(problem.lower)
    later = np.searchsorted(starts, problem.upper, "left") - np.searchsorted(starts, problem.lower, "right")
    ties = np.searchsorted(starts, problem.lower, "right") - np.searchsorted(starts, problem.lower, "left") - 1
    return int(later.sum() + ties.sum() // 2)


__all__ = ["solve_exact", "solver_version", "SEARCH_MAX_BUFFERS"]
