"""Run a window model with a solver and report what it found and proved.

The same ``WindowProblem`` goes to CP-SAT or to a MILP (HiGHS or CBC through
PuLP); both start from the complete warm-start assignment and both report an
``Outcome`` in the window's own units (makespan cycles from the origin).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from formulations.schedule.cpsat_window import build_cpsat
from formulations.schedule.window import WindowAssignment, WindowProblem
from solvers.solver_options import SolverSettings, apply_cpsat_params


@dataclass
class Outcome:
    """What a window solver returned: its best assignment, status, makespan and proven bound (window cycles)."""

    assignment: WindowAssignment | None
    status: str
    makespan: float | None  # of the best solution found
    bound: float | None  # proven lower bound on the makespan
    seconds: float
    first_improvement_s: float | None = None
    anytime: list = field(default_factory=list)
    warm_start_used: bool | None = None  # MILP: the solver log shows it read the start
    log: str = ""


def solve_cpsat(problem: WindowProblem, settings: SolverSettings, hint: WindowAssignment | None,
                anytime: bool = False, extend: Callable[[Any], object] | None = None) -> Outcome:
    """Solve a window with CP-SAT under ``settings``, hinted by ``hint`` (``anytime`` records each incumbent).

    ``extend(built)`` may add implied rows to the built model (the whole-program model's prefix cuts,
    formulations.schedule.whole_program.add_prefix_cuts) and replace the hint, so a study of solver settings
    runs the model a design runs."""
    from ortools.sat.python import cp_model

    built = build_cpsat(problem)
    if hint is not None:
        built.add_hint(hint)
    if extend is not None:  # after the hint: it may replace it (with one over its own rows too)
        extend(built)
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.max_time_in_seconds = float(settings.time_limit)
    p.num_workers = settings.workers
    p.random_seed = settings.seed
    if settings.deterministic_time is not None:
        p.max_deterministic_time = float(settings.deterministic_time)
    apply_cpsat_params(p, settings.params)
    weight = problem.tail_weight
    hint_obj = hint.objective(problem) if hint is not None else None
    trace: list = []
    started = time.perf_counter()

    class Progress(cp_model.CpSolverSolutionCallback):
        def __init__(self) -> None:
            super().__init__()
            self.first_better: float | None = None

        def on_solution_callback(self) -> None:
            now = time.perf_counter() - started
            obj = self.objective_value
            if anytime:
                trace.append((now, obj // weight, None))
            if self.first_better is None and hint_obj is not None and obj < hint_obj:
                self.first_better = now

    progress = Progress()
    if anytime:
        solver.best_bound_callback = lambda b: trace.append((time.perf_counter() - started, None, b // weight))
    status = solver.solve(built.model, progress)
    seconds = time.perf_counter() - started
    name = solver.status_name(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        a = built.decode(solver)
        return Outcome(a, name, float(a.makespan()), float(solver.best_objective_bound // weight), seconds,
                       progress.first_better, trace)
    bound = float(solver.best_objective_bound // weight) if status == cp_model.UNKNOWN else None
    return Outcome(None, name, None, bound, seconds, None, trace)


def solve_milp(problem: WindowProblem, settings: SolverSettings, hint: WindowAssignment | None) -> Outcome:
    """Solve a window as a MILP (HiGHS or CBC under ``settings``); CBC reads ``hint`` as a MIP start."""
    import pulp

    from formulations.schedule.milp_window import build_milp

    built = build_milp(problem)
    if hint is not None:
        built.set_start(hint)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "milp.log"
        if settings.backend == "cbc":
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            options = [f"{k} {v}" for k, v in settings.params.items()] + [f"randomSeed {settings.seed + 1}"]
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=settings.time_limit, threads=settings.workers,
                                       warmStart=hint is not None, logPath=str(log_path), options=options,
                                       gapRel=0.0)
        else:
            solver = WarmHiGHS(msg=False, timeLimit=settings.time_limit, threads=settings.workers,
                               log_file=str(log_path), gapRel=0.0, random_seed=settings.seed,
                               **dict(settings.params))
        started = time.perf_counter()
        with warnings.catch_warnings():  # PuLP 3.3 announces 4.0 API changes; the pinned version is fine
            warnings.simplefilter("ignore", DeprecationWarning)
            built.problem.solve(solver)
        seconds = time.perf_counter() - started
        log = log_path.read_text() if log_path.exists() else ""
    status = pulp.LpStatus[built.problem.status]
    assignment = built.decode() if built.problem.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) \
        else None
    makespan = float(assignment.makespan()) if assignment is not None else None
    if status == "Optimal" and built.problem.sol_status == pulp.LpSolutionIntegerFeasible:
        status = "Feasible"
    # a proven optimum is its own bound; otherwise read what the solver proved (CBC's log lines
    # before the end of the search report bounds of sub-problems, so they are not used then)
    bound = makespan if status == "Optimal" else milp_bound(built.problem, settings.backend, log)
    return Outcome(assignment, status.upper(), makespan, bound, seconds,
                   warm_start_used=warm_start_in_log(settings.backend, log) if hint is not None else None, log=log)


def milp_bound(problem, backend: str, log: str) -> float | None:
    """Proven lower bound on the makespan.

    The MILP objective is makespan + tail / weight with tail / weight < 1, so
    the floor of a bound on it bounds the (integer) makespan.
    """
    if backend == "highs":
        model = getattr(problem, "solverModel", None)
        if model is not None:
            bound = getattr(model.getInfo(), "mip_dual_bound", None)
            if bound is not None and abs(bound) < 1e30:
                return float(math.floor(bound + 1e-6))
        return None
    found = re.findall(r"(?:Lower bound|best possible|Best possible)\s*:?\s*([-\d.eE+]+)", log)
    if found:
        return float(math.floor(float(found[-1]) + 1e-6))
    if re.search(r"Result - Optimal solution found", log):
        values = re.findall(r"Objective value:\s*([-\d.eE+]+)", log)
        if values:
            return float(math.floor(float(values[-1]) + 1e-6))
    return None


def warm_start_in_log(backend: str, log: str) -> bool:
    """Whether the solver's own log says it used the start as a feasible solution.

    CBC: "MIPStart provided solution with cost ..." (versus "mipstart values
    could not be used"). HiGHS: the start's summary shows no row or integer
    infeasibilities.
    """
    if backend == "cbc":
        return "MIPStart provided solution" in log
    summary = re.search(r"Solution has.*?Row\s+infeasibilities\s+(\d+)", log, re.DOTALL)
    integer = re.search(r"Integer infeasibilities\s+(\d+)", log)
    return bool(summary) and summary.group(1) == "0" and (integer is None or integer.group(1) == "0")


_HIGHS_THREADS: int | None = None


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Silence what native code writes to this process's stdout and stderr while the block runs.

    HiGHS 1.12.0 (pinned: ortools 9.15 bundles it) prints a stray debug line,
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();``,
    straight to the terminal whatever ``output_flag`` says (ERGO-Code/HiGHS#2783),
    sometimes hundreds of times in a study. Its own log still goes to the log
    file elk reads; Python's streams are flushed first so nothing of elk's is lost.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, sink):
            os.close(fd)


def run_highs(h, *, threads: int, time_limit: float | None, seed: int = 0) -> None:
    """Solve a built HiGHS model in this process: its thread count (``use_highs_threads``), a fixed seed, an
    optional time limit, and HiGHS's own printing silenced."""
    use_highs_threads(int(threads))
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", int(seed))
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    with native_output_silenced():
        h.run()


def use_highs_threads(threads: int) -> None:
    """Every in-process HiGHS solve asks for its thread count through this.

    HiGHS fixes its global thread pool at the first solve in a process and
    refuses another count later (the solve then ends "Not Set"), so a change of
    count resets the pool first.
    """
    import highspy
    global _HIGHS_THREADS
    if threads != _HIGHS_THREADS:
        highspy.Highs.resetGlobalScheduler(True)
        _HIGHS_THREADS = threads

try:
    import pulp as _pulp

    class WarmHiGHS(_pulp.HiGHS):  # type: ignore[misc, valid-type]
        """PuLP's HiGHS (highspy API) plus a MIP start from the variables' initial values.

        PuLP's own class ignores initial values; highspy's ``setSolution`` passes
        them to HiGHS, which logs whether it accepted the start.
        """

        def __init__(self, *args, log_file: str | None = None, **kwargs):
            self._log_file = log_file
            super().__init__(*args, **kwargs)

        def callSolver(self, lp):  # noqa: N802 - PuLP's hook name
            import highspy
            if self.threads is not None:
                use_highs_threads(int(self.threads))
            model = lp.solverModel
            if self._log_file:
                model.setOptionValue("log_file", self._log_file)
                model.setOptionValue("output_flag", True)
                model.setOptionValue("log_to_console", False)
            values = [(var.index, var.varValue) for var in lp.variables() if var.varValue is not None]
            if values:
                column = [0.0] * model.getNumCol()
                for index, value in values:
                    column[index] = float(value)
                sol = highspy.HighsSolution()
                sol.col_value = column  # assign whole: element writes would hit a pybind11 copy
                sol.value_valid = True
                model.setSolution(sol)
            with native_output_silenced():
                model.run()

        def findSolutionValues(self, lp):  # noqa: N802 - PuLP's hook name
            """PuLP's reading, with a node limit (``mip_max_nodes``: HiGHS says kSolutionLimit, which PuLP's
            table lacks) read like an iteration limit: the incumbent, if there is one, is kept."""
            import highspy
            model = lp.solverModel
            if model.getModelStatus() != highspy.HighsModelStatus.kSolutionLimit:
                return super().findSolutionValues(lp)
            lp.solverModel = _StatusAs(model, highspy.HighsModelStatus.kIterationLimit)
            try:
                return super().findSolutionValues(lp)
            finally:
                lp.solverModel = model

    class _StatusAs:
        """A highspy model that reports another model status (everything else is the model's)."""

        def __init__(self, model, status):
            self._model, self._status = model, status

        def getModelStatus(self):  # noqa: N802 - highspy's name
            return self._status

        def __getattr__(self, name):
            return getattr(self._model, name)
except ImportError:  # pragma: no cover - pulp is a dependency
    WarmHiGHS = None  # type: ignore[assignment]
