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

Work limits: with ``work_limit`` W the answer does not depend on the
machine's speed. Each piece gets the share W x (its buffers / buffers of all
pieces the exact solver sees), whatever earlier pieces took; CP-SAT gets that
share times ``CPSAT_DETERMINISTIC_PER_WORK`` as its deterministic time
(``max_deterministic_time``), the search
``SEARCH_NODES_PER_WORK`` nodes per unit (per process), the MILP
``MILP_NODES_PER_WORK`` branch-and-bound nodes per unit; the greedy passes
all run, and the portfolio lets both of its halves use their budgets before
it decides. One unit is about one second of one core of the machine the
constants were measured on. The wall clock (``time_limit``) is then only a
guard against a hang, and a result that reached it says so. CP-SAT with more
than one worker is not deterministic (its workers race), so a reproducible
run uses one CP-SAT worker (the portfolio's CP-SAT half has one on two cores).
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
#: Work units -> each solver's deterministic measure, so that one unit is about one second of one core on
#: the machine these were measured on (MiniMalloc's instances, 2-core machine): CP-SAT's deterministic
#: time runs at 0.06-0.075 of its wall time there (K: 1.35 in 18.1 s), the search visits about 16,000
#: nodes a CPU second (11,000-26,000 by instance; a node of the decomposing search does about twice the
#: work of the earlier one's, which ran at 30,000), the MILP's node rate varies most (a rough figure).
CPSAT_DETERMINISTIC_PER_WORK = 0.07
SEARCH_NODES_PER_WORK = 16_000
MILP_NODES_PER_WORK = 200
#: Feasibility (a capacity to fit, no peak to minimise): CP-SAT restarts on a round robin over these tie
#: orders of its bottom-up strategy (formulations.alloc.cpsat.branching_order), each run given
#: ``CPSAT_FIRST_RUN`` deterministic time in the first round, doubling every round (a restart costs about
#: 40 ms and keeps nothing). Which order is fast is instance-specific: on MiniMalloc's set ``start`` places
#: A, B, E, G, H in 0.001-0.006 and fails F, J, K in 0.3; ``WAT`` places F in 0.010 and K in 0.002.
CPSAT_ROUND_ROBIN = ("start", "WAT")
CPSAT_FIRST_RUN = 0.01


@dataclass
class Budget:
    """What one solve may spend: wall-clock seconds, and (when set) deterministic work units."""

    seconds: float
    work: float | None = None

    @property
    def nodes(self) -> int | None:
        """Search nodes the deterministic work allows (None without a work limit)."""
        return None if self.work is None else max(1, int(self.work * SEARCH_NODES_PER_WORK))


@dataclass
class PieceOutcome:
    """What an exact allocator found for one piece, and whether the wall clock decided it."""

    status: str  # "found", "optimal", "infeasible", "timeout", "skipped"
    offsets: np.ndarray | None  # piece units, relative to the piece's base
    peak: int | None = None
    bound: int | None = None  # proven lower bound on the piece's peak (units)
    note: str = ""
    clock: bool = False  # the wall clock, not the work limit, ended it (the answer depends on the machine)


def solver_version(solver: str, backend: str) -> str:
    """Name and version of an allocator for records (``search``, ``portfolio``, ``cpsat`` or ``milp``)."""
    if solver == "search":
        return "elk canonical search"
    if solver == "portfolio":
        return f"elk canonical search + {solver_version('cpsat', backend)}"
    from solvers.solver_options import SolverSettings, solver_version as backend_version
    return backend_version(SolverSettings(solver="cpsat" if solver == "cpsat" else "milp", backend=backend))


def solve_exact(problem: AllocationProblem, *, solver: str, capacity: int | None, minimize: bool, time_limit: float,
                workers: int, seed: int, backend: str, params: dict, lower_bound: int,
                work_limit: float | None = None) -> AllocationResult:
    """An exact allocator (canonical search, CP-SAT or MILP) on every piece of ``problem``, joined.

    ``minimize`` asks for the smallest peak (proven where the solver proves it), else any placement within
    ``capacity``; ``lower_bound`` is a proven lower bound on the peak known beforehand (the result's bound is
    never below it); ``work_limit`` makes the result independent of the machine's speed where the solver
    supports it.
    """
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
    # (under a work limit every pass runs: the hint must not depend on the machine's speed)
    greedy = [heuristic(sub, capacity=cap, stop_at=lb if (minimize or cap is None) else cap,
                        time_budget=None if work_limit is not None else max(0.05, 0.9 * time_limit * sub.n / total_n))
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
    if work_limit is not None:
        meta["work_limit"] = work_limit
    # pieces the exact solver will see (not already settled by the greedy pass): their sizes share the work
    unsettled = [(o.status != "optimal") if minimize else (o.offsets is None) for o in outcomes]
    open_size = sum(len(piece.buffers) for piece, u in zip(dec.pieces, unsettled) if u)

    def work_share(k: int) -> float | None:
        if work_limit is None:
            return None
        return work_limit * len(dec.pieces[k].buffers) / max(open_size, 1)

    def run(k: int, cap: int, seconds: float, want_min: bool, upper: int | None) -> PieceOutcome:
        return _solve_piece(solver, subs[k], cap, lbs[k], want_min, upper, greedy[k].offsets,
                            Budget(seconds, work_share(k)), workers, seed, backend, params)

    clock_hit = False
    if not minimize:
        todo = sorted((k for k, o in enumerate(outcomes) if o.offsets is None), key=lambda k: len(dec.pieces[k].buffers))
        total = sum(len(dec.pieces[k].buffers) for k in todo)
        for k in todo:
            remaining = deadline - time.perf_counter()
            share = remaining * len(dec.pieces[k].buffers) / max(total, 1)
            total -= len(dec.pieces[k].buffers)
            if work_limit is not None:  # the work share decides; the clock is a guard (all that is left)
                share = remaining
            if share <= 0.05:
                clock_hit = work_limit is not None
                break
            outcomes[k] = run(k, caps[k], share, False, None)
            if outcomes[k].status == "infeasible":
                break
    else:
        tried: set[int] = set()
        while True:
            if time.perf_counter() >= deadline - 0.05:
                clock_hit = work_limit is not None
                break
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
                                   max(o.bound or 0, new.bound or 0), new.note, clock=new.clock)
            outcomes[k] = new
    result = _assemble(problem, dec, g, outcomes, capacity, minimize, lower_bound, solver, version, workers, seed,
                       meta, time.perf_counter() - started, "work limit" if work_limit is not None else "time limit")
    if work_limit is not None and (clock_hit or any(o.clock for o in outcomes)):
        result.params["limit_reached"] = "time"
        result.message += (f"; the {time_limit:g} s time limit ended the search before the work limit: "
                           "this answer may depend on the machine's speed")
    return result


def _assemble(problem: AllocationProblem, dec: Decomposition, g: int, outcomes: list[PieceOutcome],
              capacity: int | None, minimize: bool, bound: int, solver: str, version: str, workers: int, seed: int,
              params: dict, seconds: float, limit: str = "time limit") -> AllocationResult:
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
                                        f"in the {limit}" + (f" ({notes[0]})" if notes else ""), **common)
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
                 hint: np.ndarray, budget: Budget, workers: int, seed: int, backend: str,
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


def _search_piece(sub, cap, lb, minimize, upper, hint, budget: Budget, workers, seed) -> PieceOutcome:
    if (sub.fixed_offset >= 0).any() or sub.n > SEARCH_MAX_BUFFERS:
        return PieceOutcome("skipped", None, note="search handles free pieces of at most "
                                                  f"{SEARCH_MAX_BUFFERS} buffers")
    deadline = time.perf_counter() + budget.seconds
    nodes_left = budget.nodes  # None: no work limit
    clock = False

    def attempt(c: int) -> tuple[str, np.ndarray | None]:
        nonlocal nodes_left, clock
        left = deadline - time.perf_counter()
        if nodes_left is not None and nodes_left <= 0:
            return "timeout", None
        if left <= 0.05:
            clock = budget.work is not None
            return "timeout", None
        out = canonical_search(sub.lower, sub.upper, sub.size, sub.alignment, c, left, workers=workers, seed=seed,
                               node_limit=nodes_left)
        if nodes_left is not None:
            nodes_left -= out.nodes
            if out.status == "timeout" and nodes_left > 0:
                clock = True  # stopped by the clock, with work left
        return out.status, out.offsets

    if not minimize:
        status, off = attempt(cap)
        if status == "found":
            return PieceOutcome("found", off, int((off + sub.size).max(initial=0)), lb)
        return PieceOutcome(status, None, note="exhaustive canonical search" if status == "infeasible" else "",
                            clock=clock)
    best_off = hint if upper is not None else None
    best = upper if upper is not None else cap + 1
    low = lb
    # first the lower bound itself (usually reached), then bisection on what is left
    target = low
    while low < best:
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
        return PieceOutcome("timeout", None, bound=low, clock=clock)
    return PieceOutcome("optimal" if best <= low else "found", best_off, best, low, clock=clock and best > low)


def _cpsat_piece(sub, cap, lb, minimize, upper, hint, budget: Budget, workers, seed, params,
                 on_solver=None, stopped=None) -> PieceOutcome:
    """CP-SAT on one piece. Minimising: one run (the greedy placement as a complete hint). Feasibility: a
    round robin over ``CPSAT_ROUND_ROBIN`` tie orders, each run's deterministic time doubling every round.
    ``on_solver`` sees every solver before it runs (to stop it); ``stopped()`` true ends the round robin."""
    from ortools.sat.python import cp_model

    from formulations.alloc.cpsat import branching_order, build_cpsat, clique_sizes
    from solvers.solver_options import apply_cpsat_params

    members = int(clique_sizes(sub).sum())
    if members > CPSAT_MAX_MEMBERS:
        return PieceOutcome("skipped", None, note=f"CP-SAT model too large ({members:,} clique members)")
    started = time.perf_counter()
    work = None if budget.work is None else max(float(budget.work) * CPSAT_DETERMINISTIC_PER_WORK, 1e-6)
    # each tie order once per piece: the round robin rebuilds the model every run, not the orders
    orders = {name: branching_order(sub, name) for name in (("start",) if minimize else CPSAT_ROUND_ROBIN)}

    def solve(order: str, dtime: float | None, seconds: float):
        built = build_cpsat(sub, cap, lower_bound=lb, minimize=minimize, upper_bound=upper, order=orders[order])
        if minimize:  # the greedy placement is a valid start only when minimising (else it is over capacity)
            clipped = np.minimum(hint, np.maximum(cap - sub.size, 0))
            clipped -= clipped % sub.alignment
            built.add_hint(clipped, sub.alignment)
        solver = cp_model.CpSolver()
        p = solver.parameters
        p.max_time_in_seconds = max(seconds, 0.01)
        if dtime is not None:
            p.max_deterministic_time = dtime
        p.num_workers = workers
        p.random_seed = seed
        apply_cpsat_params(p, params)
        if on_solver is not None:
            on_solver(solver)
        return solver.solve(built.model), solver, built

    if minimize:
        status, solver, built = solve("start", work, float(budget.seconds))
        p = solver.parameters
        # stopped by the clock although work was left: the answer is the machine's, not the work limit's
        clock = work is not None and solver.deterministic_time < 0.99 * p.max_deterministic_time and \
            solver.wall_time >= 0.99 * p.max_time_in_seconds
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            off = built.decode(solver)
            peak = int((off + sub.size).max(initial=0))
            optimal = status == cp_model.OPTIMAL
            bound = peak if optimal else int(math.ceil(solver.best_objective_bound - 1e-6))
            return PieceOutcome("optimal" if optimal else "found", off, peak, max(bound, lb),
                                clock=clock and not optimal)
        if status == cp_model.INFEASIBLE:
            return PieceOutcome("infeasible", None, note="CP-SAT proved it")
        bound = int(math.ceil(solver.best_objective_bound - 1e-6))
        return PieceOutcome("timeout", None, bound=max(bound, lb), clock=clock)
    run_budget = CPSAT_FIRST_RUN
    while True:
        for order in CPSAT_ROUND_ROBIN:
            seconds = float(budget.seconds) - (time.perf_counter() - started)
            if stopped is not None and stopped():
                return PieceOutcome("timeout", None, bound=lb)
            if work is not None and work <= 1e-9:
                return PieceOutcome("timeout", None, bound=lb)
            if seconds <= 0.01:  # the clock ended it: under a work limit, with work left
                return PieceOutcome("timeout", None, bound=lb, clock=work is not None)
            status, solver, built = solve(order, run_budget if work is None else min(run_budget, work), seconds)
            if work is not None:
                work -= solver.deterministic_time
            if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                off = built.decode(solver)
                return PieceOutcome("found", off, int((off + sub.size).max(initial=0)), lb,
                                    note=f"CP-SAT, {order} order")
            if status == cp_model.INFEASIBLE:
                return PieceOutcome("infeasible", None, note="CP-SAT proved it")
        run_budget *= 2


def _search_worker(queue, sub: AllocationProblem, cap: int, budget: Budget, seed: int, parent: int) -> None:
    from elk.procs import die_with_parent
    die_with_parent(parent)  # a SIGKILLed caller must not leave the search running
    out = canonical_search(sub.lower, sub.upper, sub.size, sub.alignment, cap, budget.seconds, workers=1, seed=seed,
                           node_limit=budget.nodes)
    queue.put((out.status, out.offsets, out.nodes))


def _portfolio_piece(sub, cap, lb, minimize, upper, hint, budget: Budget, workers, seed, params) -> PieceOutcome:
    """CP-SAT here and the canonical search in a second process; the first definite answer stops the other.

    Feasibility: both look for a placement within ``cap``. Minimising:
    CP-SAT minimises while the search tries the lower bound itself (found
    there = optimal). Uses two cores whatever ``workers`` says about CP-SAT:
    CP-SAT gets ``workers - 1`` (at least 1). Under a work limit, when
    CP-SAT ends without a definite answer the search is given the rest of
    its own budget (not stopped), so the answer does not depend on which
    half happened to be faster on this machine.
    """
    import multiprocessing as mp
    import os
    import threading

    if (sub.fixed_offset >= 0).any() or sub.n > SEARCH_MAX_BUFFERS:
        return _cpsat_piece(sub, cap, lb, minimize, upper, hint, budget, workers, seed, params)
    started = time.perf_counter()
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    queue = ctx.Queue()
    target = lb if minimize else cap
    proc = ctx.Process(target=_search_worker, args=(queue, sub, target, budget, seed, os.getpid()), daemon=True)
    proc.start()
    found: dict = {}
    holder: dict = {}
    done = threading.Event()  # stop everything
    cp_returned = threading.Event()  # CP-SAT's call is over: no need to keep stopping it

    def watch() -> None:
        try:
            while not done.is_set():
                try:
                    found["search"] = queue.get(timeout=0.2)
                    break
                except Exception:
                    if not proc.is_alive() and queue.empty():
                        return
            status = found.get("search", ("timeout", None, 0))[0]
            if status == "found" or (status == "infeasible" and not minimize):
                found["stop"] = True
                # CP-SAT ignores a stop request made before its Solve() has started (model still being
                # built or presolved), so keep asking until the CP-SAT call returns
                while not done.is_set() and not cp_returned.is_set():
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
                          on_solver=register, stopped=lambda: bool(found.get("stop")))
        cp_returned.set()
        definite = cp.status in ("optimal", "infeasible") or (cp.status == "found" and not minimize)
        if budget.work is not None and not definite and not found.get("stop"):
            # the search's half of the work is still to be used: wait for it (the clock stays a guard)
            watcher.join(timeout=max(budget.seconds - (time.perf_counter() - started), 0.0) + 5.0)
    finally:
        done.set()
        cp_returned.set()
        watcher.join(timeout=2)
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=5)
    status, off, nodes = found.get("search", ("timeout", None, 0))
    if status == "found":
        return PieceOutcome("optimal" if minimize else "found", off, int((off + sub.size).max(initial=0)),
                            lb, note="canonical search")
    if status == "infeasible" and not minimize:
        return PieceOutcome("infeasible", None, note="exhaustive canonical search")
    if status == "infeasible" and minimize and cp.bound is not None:
        cp.bound = max(cp.bound, lb + 1)
    if budget.nodes is not None and status == "timeout" and nodes < budget.nodes and not cp.clock:
        # CP-SAT used its work but the search was cut short by the clock (or died)
        cp.clock = cp.status != "optimal" and not (cp.status == "found" and not minimize)
    return cp


def _milp_piece(sub, cap, lb, minimize, upper, hint, budget: Budget, workers, seed, backend, params) -> PieceOutcome:
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
    seconds = max(float(budget.seconds), 0.5)
    nodes = None if budget.work is None else max(1, int(budget.work * MILP_NODES_PER_WORK))
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "milp.log"
        if backend == "cbc":
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            options = [f"{k} {v}" for k, v in params.items()] + [f"randomSeed {seed + 1}"]
            if nodes is not None:
                options.append(f"maxNodes {nodes}")
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=seconds, threads=workers, warmStart=use_start,
                                       logPath=str(log_path), options=options, gapRel=0.0)
        else:
            extra = dict(params)
            if nodes is not None:
                extra["mip_max_nodes"] = nodes
            solver = WarmHiGHS(msg=False, timeLimit=seconds, threads=workers, log_file=str(log_path), gapRel=0.0,
                               random_seed=seed, **extra)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            built.problem.solve(solver)
        elapsed = time.perf_counter() - t0
        log = log_path.read_text() if log_path.exists() else ""
    clock = nodes is not None and elapsed >= 0.99 * seconds
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
        return PieceOutcome("optimal" if optimal and minimize else "found", off, peak, bound,
                            clock=clock and minimize and not optimal)
    bound = milp_bound(built.problem, backend, log) if minimize else None
    return PieceOutcome("timeout", None, bound=max(int(bound) if bound is not None else lb, lb), clock=clock)


def overlapping_pairs(problem: AllocationProblem) -> int:
    """Pairs of buffers live at the same time, counted without building them (each by its later start)."""
    starts = np.sort(problem.lower)
    later = np.searchsorted(starts, problem.upper, "left") - np.searchsorted(starts, problem.lower, "right")
    ties = np.searchsorted(starts, problem.lower, "right") - np.searchsorted(starts, problem.lower, "left") - 1
    return int(later.sum() + ties.sum() // 2)


__all__ = ["solve_exact", "solver_version", "SEARCH_MAX_BUFFERS"]
