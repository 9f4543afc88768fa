"""The ``optimal`` design: the whole program solved exactly with CP-SAT, or refused.

Ground truth is what tells a user whether a certified gap is the schedule's
fault or the bound's: on a program small enough to solve to proven optimality,
``latency / optimum - 1`` is a design's true gap and ``optimum / bound - 1`` a
bound's slack. This design returns a schedule only when CP-SAT proves it optimal
(status OPTIMAL: its objective equals its proven bound) for the whole-program
problem of :mod:`formulations.schedule.whole_program`; otherwise it raises
:class:`NotProven` and presents nothing as optimal.

What "optimal" is relative to: the integer-cycle model (durations,
communication, load lengths and interconnect work rounded up to whole cycles;
every solution valid in the simulator, which times the returned schedule) over
fluid or rigid loads, every undominated plan row, any load order and timing, SRAM
and the interconnect. Under rigid loads the model adds one product row per
(execution, load) pair (``add_rigid_rows``: a constant rate, any length), and its
proven lower bound comes from a second solve of the rows' relaxation.

Two phases: the warm start mapped into the model's integer cycles (with room
for rounding) and completed by CP-SAT into a value for every variable, a
complete feasible hint; then everything free from that hint, with implied
prefix rows that give the linear relaxation the flow-shop and interconnect
prefix arguments.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from elk.chip import Chip, LoadModel
from elk.errors import ScheduleError, SolverConfigError
from elk.schedule import Provenance, Schedule
from elk.simulator import simulate
from elk.ir import Program
from elk.workload import Workload
from formulations.schedule.window import WindowAssignment, WindowProblem, check
from formulations.schedule.whole_program import (add_prefix_cuts, add_rigid_rows, rigid_relaxation_slack,
                                                 whole_program_problem)
from solvers.solver_options import ExactOptions, check_count, check_positive


class NotProven(SolverConfigError):
    """The program is too large for the optimal design, or CP-SAT did not prove optimality within its limit."""


@dataclass(frozen=True, kw_only=True)
class OptimalOptions(ExactOptions):
    """How hard the optimal design tries before it refuses. Every field is checked once, at construction."""

    time_limit: float = 120.0  # seconds for both phases together
    #: reproducible runs: CP-SAT's deterministic time limit (work units), used instead of wall time when set
    deterministic_time: float | None = None
    #: refuse larger programs before any solve: the model has a pair of overlap variables per (execution, later
    #: load), and real-shape pieces of 30-50 operators already leave a gap of 0.1-2% after minutes on 2 cores
    max_operators: int = 64
    #: share of the limit given to completing the warm start into a hint
    hint_share: float = 0.2
    #: rigid loads: share of the limit given to the relaxation that proves the lower bound (the rest solves the
    #: rigid model itself)
    relaxation_share: float = 0.25
    #: model time unit = 1 / ticks cycle: rounding costs at most a unit per duration, so a finer unit narrows
    #: the gap between the model's optimum and the problem's (numbers in the model grow by the same factor)
    ticks: int = 8
    #: CP-SAT's presolve. Off: with it, OR-Tools 9.15 answered INFEASIBLE on whole-program models whose warm
    #: start, fixed as a hint, is a solution of the same model (llama2-13b attn-core, mesh, 192 KiB, 8 TB/s),
    #: and OPTIMAL at 1,295,710 where a solution of 1,295,652 exists (llama2-13b attn-core, default chip: the
    #: MILP's optimum, which CP-SAT's own bound without presolve confirms). A proof must not rest on that.
    presolve: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.presolve, bool):
            raise SolverConfigError(f"optimal: presolve must be true or false, got {self.presolve!r}")
        if self.deterministic_time is not None:
            check_positive(self.deterministic_time, "optimal: deterministic time")
        check_count(self.max_operators, "optimal: max_operators")
        if not isinstance(self.ticks, int) or isinstance(self.ticks, bool) or not 1 <= self.ticks <= 1024:
            raise SolverConfigError(f"optimal: ticks must be an integer from 1 to 1024, got {self.ticks!r}")
        if not 0 < self.hint_share < 1:
            raise SolverConfigError(f"optimal: hint_share must lie in (0, 1), got {self.hint_share!r}")
        if not 0 < self.relaxation_share < 1 - self.hint_share:
            raise SolverConfigError("optimal: relaxation_share must lie in (0, 1 - hint_share), got "
                                    f"{self.relaxation_share!r}")


@dataclass
class OptimalResult:
    """What the proof found: the schedule (None if not proven) and the solver's record."""

    schedule: Schedule | None
    status: str
    objective_cycles: float | None  # model optimum (or best found), cycles
    bound_cycles: float | None  # CP-SAT's proven lower bound on the model's makespan
    #: a proven lower bound on the latency of every valid schedule (the model's bound less its rounding)
    lower_cycles: float | None
    seconds: float
    operators: int
    options: int
    hint_cycles: float | None  # the warm start's timing in the integer model (phase 1)
    warm_start: str
    warm_latency_cycles: float
    solver: str
    workers: int
    seed: int
    search: dict = field(default_factory=dict)
    #: the model's best solution as a schedule (valid in the simulator), proven or not; never called optimal
    found: Schedule | None = None

    @property
    def proven(self) -> bool:
        return self.status == "OPTIMAL" and self.schedule is not None


def check_program(program: Program, chip: Chip, options: OptimalOptions) -> None:
    """Refuse, in one line, what the design cannot prove: before plan tables are built or any model."""
    if any(op.store for op in program.ops):
        raise NotProven("the optimal design's model has no HBM stores (docs/design.md §5.2); a program that "
                        "writes to HBM (a training step, a KV append) cannot be proven optimal by it")
    n = len(program.ops)
    if n > options.max_operators:
        raise NotProven(f"the optimal design proves programs of at most {options.max_operators} operators within "
                        f"its {options.time_limit:g} s limit; {program.name} has {n} (use fewer layers, e.g. "
                        f"a config with layers = 1, or the periodic design)")


def _solver(options: OptimalOptions, seconds: float, share: float):
    from ortools.sat.python import cp_model
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = options.workers
    p.random_seed = options.seed
    p.max_time_in_seconds = max(0.1, seconds)
    p.cp_model_presolve = options.presolve
    if options.deterministic_time is not None:
        p.max_deterministic_time = options.deterministic_time * share
    return solver


def _to_schedule(workload: Workload, problem: WindowProblem, a: WindowAssignment, ticks: int) -> Schedule:
    n = len(workload)
    entry = np.array([w.options[c].row for w, c in zip(problem.ops, a.choice)], dtype=np.int64)
    s = np.array(a.exec_start, dtype=np.float64)
    e = np.array(a.exec_end, dtype=np.float64)
    ls, le = s.copy(), s.copy()
    for k, w in enumerate(problem.ops):
        if w.load == "free":
            ls[k] = a.load_start[w.op]
            le[k] = a.end_of(w.op, w.options[a.choice[k]])
    assert len(entry) == n
    return Schedule("optimal", entry, s / ticks, e / ticks, ls / ticks, le / ticks)


def rounding_stretch(workload: Workload, problem: WindowProblem, ticks: int = 1) -> float:
    """The relative stretch that absorbs the model's rate rounding: 1.5 x the largest factor by which a load's
    shortest length in the model (work rounded up over a rate rounded down) exceeds its continuous shortest
    length, and at least 2e-4."""
    worst = 0.0
    for w in problem.ops:
        if w.load != "free":
            continue
        for o in w.options:
            exact = max(float(workload.hbm_cycles[w.op]), workload.load_noc_cycles(w.op, o.cold))
            worst = max(worst, (o.load_work / o.load_cap) / (exact * ticks) - 1 if exact > 0 else 0.0)
    return max(2e-4, 1.5 * worst)


def event_count(problem: WindowProblem) -> int:
    """At most how many distinct event times a schedule of ``problem`` has (execution and load ends)."""
    return 2 * len(problem.ops) + 2 * sum(1 for w in problem.ops if w.load == "free")


def continuous_lower(model_bound: float, problem: WindowProblem, stretch: float, ticks: int = 1) -> float:
    """A lower bound (cycles) on the continuous problem's optimum from one on the integer model's (units).

    :func:`stretched_hint`'s map turns any valid schedule of latency T cycles into a solution of the integer
    model of makespan at most ``(1 + stretch) T ticks + 2 M + 1`` units (M events), so the continuous optimum
    is at least ``(model bound - 2 M - 1) / (1 + stretch) / ticks`` cycles.
    """
    return max(0.0, (model_bound - 2 * event_count(problem) - 1) / (1 + stretch) / ticks)


def stretched_hint(problem: WindowProblem, warm: Schedule, stretch: float = 1e-3, ticks: int = 1) -> WindowAssignment:
    """The warm start in the model's integer cycles, with room for the model's rounding.

    Every distinct event time (execution and load ends, t cycles from the first) is mapped, in order, to
    ``ceil((1 + stretch) t ticks) + 2 m`` units for the m-th event: the map is increasing, so orders and overlaps survive, and every
    interval grows by at least one cycle plus ``stretch`` of itself, which covers durations rounded up by under
    a cycle and fluid rates rounded down by under 1/SHARE_SCALE of the interconnect.
    """
    loads = np.array([w.load == "free" for w in problem.ops])
    t0 = min(float(warm.exec_start.min()), float(warm.load_start[loads].min()) if loads.any() else np.inf)
    events = np.concatenate([warm.exec_start, warm.exec_end, warm.load_start[loads], warm.load_end[loads]]) - t0
    uniq = np.unique(np.round(events, 6))

    def to_int(t: np.ndarray) -> np.ndarray:
        m = np.searchsorted(uniq, np.round(t - t0, 6))
        return (np.ceil((1 + stretch) * uniq[m] * ticks - 1e-9) + 2 * m).astype(np.int64)

    rows = [[o.row for o in w.options] for w in problem.ops]
    choice = [r.index(int(e)) for r, e in zip(rows, warm.entry)]
    s, e = to_int(warm.exec_start), to_int(warm.exec_end)
    a, b = to_int(warm.load_start), to_int(warm.load_end)
    free = np.flatnonzero(loads)
    return WindowAssignment(choice=choice, exec_start=s.tolist(), exec_end=e.tolist(),
                            load_start={int(k): int(a[k]) for k in free}, load_end={int(k): int(b[k]) for k in free})


def _build(problem: WindowProblem, rigid_slack: int | None = None):
    """The whole-program model; with ``rigid_slack`` (not None) its rigid rows (0: the rigid model itself)."""
    from formulations.schedule.cpsat_window import build_cpsat
    built = build_cpsat(problem)
    add_prefix_cuts(built)
    if rigid_slack is not None:
        add_rigid_rows(built, rigid_slack)
    return built


def complete_hint(problem: WindowProblem, hint: WindowAssignment, options: OptimalOptions,
                  seconds: float, rigid_slack: int | None = None) -> list[int] | None:
    """Every model variable's value at ``hint`` (decisions fixed, CP-SAT fills in the rest), or None.

    CP-SAT uses a hint only if it is complete and consistent; the auxiliary variables (overlaps, fluid work
    per execution) are easiest to get right by letting the solver derive them from the fixed decisions.
    """
    from ortools.sat.python import cp_model
    built = _build(problem, rigid_slack)
    m = built.model
    for bools, c in zip(built.choice, hint.choice):
        m.add(bools[c] == 1)
    for k in range(len(problem.ops)):
        m.add(built.start[k] == hint.exec_start[k])
        m.add(built.end[k] == hint.exec_end[k])
    for op, v in built.load_start.items():
        m.add(v == hint.load_start[op])
    for op, v in built.load_end.items():
        m.add(v == hint.load_end[op])
    solver = _solver(options, seconds, options.hint_share)
    if solver.solve(m) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return [solver.value(m.get_int_var_from_proto_index(i)) for i in range(len(m.proto.variables))]


def _solve(problem: WindowProblem, options: OptimalOptions, seconds: float, values: list[int] | None,
           share: float, rigid_slack: int | None = None):
    """One whole-program solve; returns (status name, assignment or None, objective, bound, every variable's
    value at the solution or None)."""
    from ortools.sat.python import cp_model
    built = _build(problem, rigid_slack)
    m = built.model
    if values is not None:
        for i, value in enumerate(values):
            m.add_hint(m.get_int_var_from_proto_index(i), value)
    solver = _solver(options, seconds, share)
    status = solver.solve(m)
    name = solver.status_name(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        a = built.decode(solver)
        found = [solver.value(m.get_int_var_from_proto_index(i)) for i in range(len(m.proto.variables))]
        return name, a, float(a.makespan()), float(solver.best_objective_bound // problem.tail_weight), found
    bound = float(solver.best_objective_bound // problem.tail_weight) if status == cp_model.UNKNOWN else None
    return name, None, None, bound, None


def optimal_problem(workload: Workload, warm: Schedule, warm_latency_cycles: float,
                    ticks: int) -> tuple[WindowProblem, float, WindowAssignment]:
    """The whole-program problem the optimal design solves, its rounding stretch, and the warm start in it."""
    problem = whole_program_problem(workload, 1, must_include=warm.entry, ticks=ticks)
    stretch = rounding_stretch(workload, problem, ticks)
    # the warm start fits after the stretch (the map's bound), so the optimum does too
    horizon = math.ceil(warm_latency_cycles * ticks * (1 + stretch)) + 2 * event_count(problem) + 2
    problem = dataclasses.replace(problem, horizon=horizon)
    return problem, stretch, stretched_hint(problem, warm, stretch, ticks)


def prove_optimal(workload: Workload, warm: Schedule, options: OptimalOptions = OptimalOptions()) -> OptimalResult:
    """Solve the whole program exactly, starting from ``warm`` (a valid strict schedule)."""
    import ortools

    check_program(workload.program, workload.chip, options)
    verdict = simulate(workload, warm)
    if not verdict.valid:
        raise ScheduleError(f"warm start '{warm.design}' is not valid: "
                            f"{verdict.violations[0].message(workload.chip.clock_hz)}")
    started = time.perf_counter()
    ticks = options.ticks
    rigid = workload.chip.load_model is LoadModel.RIGID
    problem, stretch, hint = optimal_problem(workload, warm, verdict.latency_cycles, ticks)
    model_slack = 0 if rigid else None  # rigid: the rigid rows with no slack (every solution rigid-valid)
    n_options = sum(len(w.options) for w in problem.ops)
    budget = float(options.time_limit)
    values = None
    if not check(problem, hint) and hint.makespan() <= problem.horizon:
        values = complete_hint(problem, hint, options, budget * options.hint_share, model_slack)
    hint_cycles = hint.makespan() / ticks if values is not None else None
    main_share = 1 - options.hint_share - (options.relaxation_share if rigid else 0.0)
    left = budget * (1 - (options.relaxation_share if rigid else 0.0)) - (time.perf_counter() - started)
    status, a, objective, bound, found_values = _solve(problem, options, left, values, main_share, model_slack)
    lower_model = bound
    if rigid:  # the rigid model's bound is not a bound on the continuous problem; its relaxation's is
        left = budget - (time.perf_counter() - started)
        _, _, _, lower_model, _ = _solve(problem, options, left, found_values or values, options.relaxation_share,
                                         rigid_relaxation_slack(event_count(problem)))
    seconds = time.perf_counter() - started
    result = OptimalResult(schedule=None, status=status,
                           objective_cycles=None if objective is None else objective / ticks,
                           bound_cycles=None if bound is None else bound / ticks,
                           lower_cycles=None if lower_model is None else
                           continuous_lower(lower_model, problem, stretch, ticks),
                           seconds=seconds, operators=len(workload), options=n_options, hint_cycles=hint_cycles,
                           warm_start=warm.design, warm_latency_cycles=verdict.latency_cycles,
                           solver=f"cp-sat (ortools {ortools.__version__})", workers=options.workers,
                           seed=options.seed)
    if a is None:
        return result
    errors = check(problem, a)
    if errors:
        raise ScheduleError(f"optimal: the model's solution breaks the window rules: {errors[0]}")
    sched = _to_schedule(workload, problem, a, ticks)
    judged = simulate(workload, sched)
    if not judged.valid:
        raise ScheduleError("optimal: the model's solution is not valid in the simulator: "
                            f"{judged.violations[0].message(workload.chip.clock_hz)}")
    result.found = sched
    if status != "OPTIMAL":
        return result
    sched.info = Provenance(compile_seconds=seconds, warm_start=warm.design,
                            search={"status": status, "objective_cycles": result.objective_cycles,
                                    "bound_cycles": result.bound_cycles, "ticks": ticks,
                                    "operators": len(workload), "options": n_options, "solver": result.solver,
                                    "workers": options.workers, "seed": options.seed,
                                    "hint_cycles": hint_cycles})
    result.schedule = sched
    return result


def optimal(workload: Workload, warm: Schedule, options: OptimalOptions = OptimalOptions()) -> Schedule:
    """The proven-optimal schedule, or :class:`NotProven` (one line: what was found and what was proven)."""
    result = prove_optimal(workload, warm, options)
    if not result.proven:
        found = "no solution" if result.objective_cycles is None else \
            f"best {workload.chip.cycles_to_ms(result.objective_cycles):.4f} ms"
        proven = "" if result.bound_cycles is None else \
            f", proven >= {workload.chip.cycles_to_ms(result.bound_cycles):.4f} ms"
        raise NotProven(f"optimal: not proven within {options.time_limit:g} s ({result.status}: {found}{proven}); "
                        "nothing is presented as optimal")
    return result.schedule


__all__ = ["NotProven", "OptimalOptions", "OptimalResult", "check_program", "optimal_problem", "prove_optimal",
           "optimal"]
