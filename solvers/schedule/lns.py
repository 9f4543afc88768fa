"""Large-neighbourhood search over the whole program, repaired exactly with CP-SAT.

The windowed design walks the program once, in layer-aligned windows, and
each window may only place the loads its warm start issued during it. Its
stitched schedule can therefore never take a decision that needs room the
warm start used later, and a window that spans a layer boundary never exists.
This search keeps one complete incumbent schedule and improves it where it
loses most:

1. **Choose** a neighbourhood from the incumbent's simulated timeline
   (:func:`losses`): where executions wait (stall), where loads run with no
   execution next to them (exposed loads), where the HBM channel idles while
   an operator runs (the preload depth is starved, by SRAM or by the load
   order: on these chips the channel is the bottleneck, so every idle channel
   cycle is latency nobody recovers) and where executions are stretched past
   their plan time by the interconnect. A neighbourhood is a window of
   consecutive operators anywhere in the program (across layer boundaries).
2. **Destroy** it: the window's operators get their plans, executions and
   (not yet issued) loads freed; the loads the incumbent issued during the
   window for later operators, plus the next ``pull`` loads on its channel,
   are freed in time (so they may be pulled forward). Everything issued
   before the window stays where it is.
3. **Repair** it with the window model of :mod:`formulations.schedule.window`
   and CP-SAT, hinted with the incumbent (shifted onto the model's whole
   cycles), minimising first the end-to-end lag (:func:`lag`: the rest of the
   program moves as one block, so that is all a window can gain). The model's conservative rounding can make a tight incumbent
   unrepresentable by a few cycles; the neighbourhood's boundary (how late a
   freed later load may end, how much interconnect work a load issued before
   the window still owes) is widened by ``slack`` cycles so that the
   incumbent stays a feasible hint. That makes the model optimistic at its
   boundary only, which is safe because of 4.
4. **Accept** on the simulated latency of the whole stitched program (the
   window's solution, then the incumbent shifted by the lead the window
   gained): strictly faster, or equally fast with loads further ahead
   (the window's objective), which lets the next neighbourhood downstream
   turn that lead into latency. The simulator is the only judge: a move it
   rejects is dropped, and the result is never slower than the warm start.

Budget: a number of neighbourhoods, a wall-clock cap, and per neighbourhood a
CP-SAT time limit (and, for reproducible runs, a deterministic time).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError, SolverConfigError
from elk.schedule import Provenance, Schedule
from elk.simulator import simulate
from elk.workload import Workload
from formulations.schedule.cpsat_window import build_cpsat
from formulations.schedule.window import FixedLoad, Option, WindowAssignment, check
from solvers.exact_backends import Outcome
from solvers.schedule.records import WindowRecord
from solvers.schedule.windowed import BuiltWindow, StitchState, WindowedSolver
from solvers.solver_options import (ExactOptions, SolverSettings, check_count, check_positive, check_seconds,
                                    solver_version)

#: neighbourhood kinds, in the order the search cycles through them
KINDS = ("stall", "exposed", "starved", "stretch")


@dataclass(frozen=True, kw_only=True)
class LnsSettings(ExactOptions):
    """What the search may spend and where it looks.

    ``window`` operators per neighbourhood and ``pull`` later loads freed with
    them; ``iterations`` neighbourhoods at most, ``budget`` wall seconds at most;
    each repair gets ``time_limit`` seconds (and ``deterministic_time`` CP-SAT
    units when set: with one worker and a fixed seed a run is then reproducible).
    The four kinds say which losses pick neighbourhoods (at least one is needed).
    """

    window: int = 8
    pull: int = 4
    iterations: int = 12
    budget: float = 40.0
    time_limit: float = 3.0
    workers: int = 1
    deterministic_time: float | None = None
    slack: int = 16
    stall: bool = True
    exposed: bool = True
    starved: bool = True
    stretch: bool = True
    #: a CSV (or Parquet) file for one record per repair
    records: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("window", "iterations"):
            check_count(getattr(self, name), f"lns {name}")
        for name in ("pull", "slack"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SolverConfigError(f"lns {name} must be a non-negative integer, got {value!r}")
        check_seconds(self.budget, "lns budget")
        if self.deterministic_time is not None:
            check_positive(self.deterministic_time, "lns deterministic time")
        if not self.kinds:
            raise SolverConfigError("lns needs at least one neighbourhood kind (stall, exposed, starved, stretch)")

    def without_outputs(self) -> "LnsSettings":
        return replace(self, records=None)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if getattr(self, k))


def _merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint union of intervals (sorted)."""
    keep = ends > starts
    order = np.argsort(starts[keep], kind="stable")
    a, b = starts[keep][order], ends[keep][order]
    out_a: list[float] = []
    out_b: list[float] = []
    for x, y in zip(a, b):
        if out_b and x <= out_b[-1]:
            out_b[-1] = max(out_b[-1], y)
        else:
            out_a.append(float(x))
            out_b.append(float(y))
    return np.array(out_a), np.array(out_b)


def _covered(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length of [lo, hi) covered by the disjoint sorted intervals [a, b), per query (vectorized)."""
    if len(a) == 0:
        return np.zeros(len(lo))
    cum = np.concatenate([[0.0], np.cumsum(b - a)])

    def upto(t: np.ndarray) -> np.ndarray:  # covered length of (-inf, t)
        k = np.searchsorted(a, t, side="right")  # intervals starting at or before t
        full = cum[np.maximum(k - 1, 0)]
        part = np.where(k > 0, np.clip(t - a[np.maximum(k - 1, 0)], 0, b[np.maximum(k - 1, 0)]
                                       - a[np.maximum(k - 1, 0)]), 0.0)
        return np.where(k > 0, full + part, 0.0)

    return np.maximum(upto(hi) - upto(lo), 0.0)


def losses(workload: Workload, schedule: Schedule) -> dict[str, np.ndarray]:
    """Cycles the schedule loses at each operator, per kind (see the module docstring).

    stall: idle time between the previous execution and this one; exposed: the
    part of that idle time in which the HBM channel is busy (a load nobody
    hides); starved: channel idle time while this operator runs; stretch: how
    much longer this execution runs than its plan time (interconnect contention).
    """
    s, e = schedule.exec_start.astype(float), schedule.exec_end.astype(float)
    n = len(s)
    has = workload.has_load
    begin = min(s[0], float(schedule.load_start[has].min())) if has.any() else s[0]
    prev = np.concatenate([[begin], e[:-1]])  # the first operator waits for the prologue's loads
    gap_lo, gap_hi = prev, np.maximum(s, prev)
    a, b = _merged(schedule.load_start[has].astype(float), schedule.load_end[has].astype(float))
    busy_in_gap = _covered(a, b, gap_lo, gap_hi)
    busy_in_exec = _covered(a, b, s, e)
    chosen_time = np.array([float(workload.tables[i].time[schedule.entry[i]]) for i in range(n)])
    # the channel idling is a loss only while loads remain to be issued
    pending = s < float(schedule.load_start[has].max()) if has.any() else np.zeros(n, dtype=bool)
    return {"stall": gap_hi - gap_lo, "exposed": busy_in_gap,
            "starved": np.where(pending, np.maximum((e - s) - busy_in_exec, 0.0), 0.0),
            "stretch": np.maximum((e - s) - chosen_time, 0.0)}


def _forgive(problem, ops: set[int], cycles: int):
    """``problem`` with the loads of ``ops`` owing ``cycles`` cycles less interconnect work at their top rate."""
    def less(o: Option) -> Option:
        return replace(o, load_work=max(0, o.load_work - cycles * o.load_cap)) if o.load_work > 0 else o
    return replace(
        problem,
        ops=tuple(replace(w, options=tuple(less(o) for o in w.options)) if w.op in ops and w.load == "free" else w
                  for w in problem.ops),
        future=tuple(replace(f, option=less(f.option)) if f.op in ops else f for f in problem.future),
        fixed=tuple(replace(f, work=max(0, f.work - cycles * f.cap)) if f.op in ops else f for f in problem.fixed))


def lag(built: BuiltWindow, a: WindowAssignment) -> int:
    """How much later than the incumbent the stitched program's rest must start after ``a`` (negative: earlier).

    The rest of the program is the incumbent shifted by one amount, so it can
    start only when the window's last execution and every freed later load are
    done, each measured against where the incumbent (the hint) had it: this is
    the window's end-to-end effect, what the repair minimises first.
    """
    p, h = built.problem, built.hint
    out = a.makespan() - h.makespan()
    for f in p.future:
        out = max(out, a.end_of(f.op, f.option) - h.end_of(f.op, f.option))
    return out


def _lag_weight(problem) -> int:
    return (len(problem.future) + 1) * (problem.horizon - problem.lower + 1) + 1


def objective(built: BuiltWindow, a: WindowAssignment) -> int:
    """The repair's objective: the lag, then the makespan plus the freed loads' ends (earlier is more room)."""
    p = built.problem
    tail = sum(a.end_of(f.op, f.option) for f in p.future)
    return lag(built, a) * _lag_weight(p) + a.makespan() + tail


def solve_neighbourhood(built: BuiltWindow, settings: SolverSettings) -> Outcome:
    """CP-SAT on the window model with the end-to-end objective (:func:`objective`), hinted with the incumbent.

    A freed load that runs on past the incumbent's window (its end is after
    the window's last execution) overlaps executions the model does not see;
    it must move exactly with the rest of the program (end = incumbent's end +
    lag) and keep at least the incumbent's interval (start no later, moved by
    the lag too), so after the window it has the room the incumbent gave it.
    ``Outcome.bound`` is the proven lower bound on the lag.
    """
    from ortools.sat.python import cp_model

    p, h = built.problem, built.hint
    cw = build_cpsat(p)
    cw.add_hint(h)
    m = cw.model
    span = p.horizon - p.lower + 1
    lag_var = m.new_int_var(-span, span, "lag")
    makespan = h.makespan()
    m.add(lag_var >= cw.end[-1] - makespan)
    tail = []
    for f in p.future:
        end = cw.load_end[f.op] if f.op in cw.load_end else cw.load_start[f.op] + f.option.load_time
        ref = h.end_of(f.op, f.option)
        m.add(lag_var >= end - ref)
        if ref > makespan:
            m.add(end == ref + lag_var)
            m.add(cw.load_start[f.op] <= h.load_start[f.op] + lag_var)
        tail.append(end)
    m.add_hint(lag_var, lag(built, h))
    weight = _lag_weight(p)
    m.clear_objective()
    m.minimize(lag_var * weight + cw.end[-1] + sum(tail))
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.max_time_in_seconds = float(settings.time_limit)
    prm.num_workers = settings.workers
    prm.random_seed = settings.seed
    if settings.deterministic_time is not None:
        prm.max_deterministic_time = float(settings.deterministic_time)
    hint_obj = objective(built, h)
    started = time.perf_counter()
    first: list[float] = []

    class Progress(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            if not first and self.objective_value < hint_obj:
                first.append(time.perf_counter() - started)

    status = solver.solve(m, Progress())
    seconds = time.perf_counter() - started
    name = solver.status_name(status)
    bound = math.floor(solver.best_objective_bound / weight) if status in (
        cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN) else None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        a = cw.decode(solver)
        return Outcome(a, name, float(a.makespan()), bound, seconds, first[0] if first else None)
    return Outcome(None, name, None, bound, seconds)


def _pinned(built: BuiltWindow, ops: set[int]) -> BuiltWindow:
    """``built`` with the freed later loads of ``ops`` fixed where its hint (the incumbent) has them."""
    p, h = built.problem, built.hint
    fixed = list(p.fixed)
    for f in p.future:
        if f.op in ops:
            o = f.option
            fixed.append(FixedLoad(op=f.op, start=h.load_start[f.op], end=h.end_of(f.op, o), share=o.load_share,
                                   cold=o.cold, owner=-1, work=o.load_work, cap=o.load_cap))
    problem = replace(p, fixed=tuple(fixed), future=tuple(f for f in p.future if f.op not in ops))
    return replace(built, problem=problem, hint_ok=not check(problem, h),
                   future_ops=[j for j in built.future_ops if j not in ops])


def pick(score: np.ndarray, window: int, tried: set[int]) -> int | None:
    """First operator of the untried window of ``window`` operators with the largest loss, placed so the
    worst operator sits near its end (its loss is usually caused by decisions made before it)."""
    n = len(score)
    if n <= window:
        return None if 0 in tried else 0
    sums = np.convolve(score, np.ones(window), mode="valid")  # sums[f] = score[f:f + window].sum()
    # shift right by one so the operator that waits is inside the window with most of what fed it
    for f in np.argsort(-sums, kind="stable"):
        first = int(min(f + 1 if score[0] == 0 or f > 0 else 0, n - window))
        if first not in tried and sums[f] > 0:
            return first
    return None


@dataclass
class LnsResult:
    schedule: Schedule
    records: list[WindowRecord] = field(default_factory=list)
    latency_cycles: float = 0.0
    warm_latency_cycles: float = 0.0


class Lns:
    """The search (module docstring): one incumbent, neighbourhoods destroyed and repaired one at a time."""

    def __init__(self, workload: Workload, warm: Schedule, settings: LnsSettings):
        self.w = workload
        self.settings = settings
        self.solver = SolverSettings(solver="cpsat", time_limit=settings.time_limit, workers=settings.workers,
                                     seed=settings.seed, deterministic_time=settings.deterministic_time)
        self.version = solver_version(self.solver)
        verdict = simulate(workload, warm)
        if not verdict.valid:
            raise ScheduleError(f"warm start '{warm.design}' is not valid: "
                                f"{verdict.violations[0].message(workload.chip.clock_hz)}")
        self.warm = warm
        self.incumbent = self._plain(warm)
        self.latency = verdict.latency_cycles
        self.warm_latency = verdict.latency_cycles
        self.fluid = workload.chip.load_model is LoadModel.FLUID

    @staticmethod
    def _plain(s: Schedule) -> Schedule:
        return Schedule("lns", s.entry.copy(), s.exec_start.astype(float), s.exec_end.astype(float),
                        s.load_start.astype(float), s.load_end.astype(float),
                        info=Provenance(theta=s.info.theta, load_order=s.info.load_order))

    # -- one neighbourhood -----------------------------------------------------------
    def neighbourhood(self, first: int) -> tuple[WindowedSolver, StitchState, BuiltWindow, int]:
        """The window [first, first + window) over the incumbent, its later loads freed, boundary widened."""
        stop = min(first + self.settings.window, len(self.w))
        runner = WindowedSolver(self.w, self.incumbent, self.solver, window=1)
        state = StitchState.from_schedule(self.incumbent)
        origin = float(self.incumbent.exec_end[first - 1]) if first > 0 else runner.begin
        # loads issued before the window are fixed (the window cannot undo what happened before it)
        state.committed[:] = self.w.has_load & (self.incumbent.load_start < origin - 1e-9)
        state.committed[:first] = True
        # the model holds a later load's data until its horizon, though the incumbent runs some later operators
        # (and frees their data) before the last pulled load: pull fewer while that overfills SRAM in the hint
        pull = self.settings.pull
        while True:
            built = self._widened(runner.build(first, stop, stop, state, pull=pull))
            if pull == 0 or not any(x.startswith("SRAM") for x in check(built.problem, built.hint)):
                return runner, state, built, stop
            pull //= 2

    def _widened(self, built: BuiltWindow) -> BuiltWindow:
        """The boundary widened by ``slack`` cycles (module docstring, 3): freed later loads may end that much
        later, loads in flight from before the window owe that much less interconnect work at their top rate."""
        slack = self.settings.slack
        if slack == 0:
            return built
        p = built.problem
        future = tuple(replace(f, latest_end=f.latest_end + slack) for f in p.future)
        ops = tuple(replace(o, latest_end=o.latest_end + slack) if o.latest_end is not None else o for o in p.ops)
        problem = replace(p, ops=ops, future=future, horizon=p.horizon + slack)
        # a fluid load the rounding leaves a little short of interconnect time in the incumbent's own interval:
        # forgive it that work (one cycle at its top rate, doubling up to 64), and nothing anywhere else
        slack = 1
        for _ in range(7):
            errors = check(problem, built.hint)
            short = {int(x.split()[3]) for x in errors if x.startswith("load of op ") and "interconnect work" in x}
            if not short or len(errors) > len(short):
                break
            problem = _forgive(problem, short, slack)
            slack *= 2
        return replace(built, problem=problem, hint_ok=not check(problem, built.hint))

    def repair(self, built: BuiltWindow) -> Outcome:
        return solve_neighbourhood(built, self.solver)

    def stitch(self, runner: WindowedSolver, state: StitchState, built: BuiltWindow, a: WindowAssignment,
               stop: int) -> Schedule:
        """The whole program with the neighbourhood's solution: decided up to ``stop``, the incumbent after it."""
        trial = StitchState(*(x.copy() for x in (state.entry, state.exec_start, state.exec_end, state.load_start,
                                                  state.load_end, state.committed)))
        runner._apply_solution(trial, built, a, stop)
        sched = runner.stitched(trial, stop) if stop < len(self.w) else \
            Schedule("lns", trial.entry, trial.exec_start, trial.exec_end, trial.load_start, trial.load_end)
        quiet = np.flatnonzero(~self.w.has_load)
        sched.load_start[quiet] = sched.load_end[quiet] = sched.exec_start[quiet]
        # the incumbent's share limits carry over: the next neighbourhood's rigid loads keep their lengths
        sched.info = Provenance(theta=self.incumbent.info.theta, load_order=self.incumbent.info.load_order)
        return self._plain(sched)

    # -- the search --------------------------------------------------------------------
    def run(self, model_name: str = "") -> LnsResult:
        st = self.settings
        records: list[WindowRecord] = []
        params = json.dumps({"window": st.window, "pull": st.pull, "slack": st.slack,
                             "deterministic_time": st.deterministic_time}, sort_keys=True)
        tried: set[int] = set()
        follow: list[int] = []  # windows right after an accepted one: where its lead can turn into latency
        kinds = st.kinds
        started = time.perf_counter()
        for it in range(st.iterations):
            if time.perf_counter() - started > st.budget:
                break
            kind = kinds[it % len(kinds)]
            if follow:
                first, kind = follow.pop(0), "follow"
            else:
                score = losses(self.w, self.incumbent)[kind]
                first = pick(score, st.window, tried)
                if first is None:
                    kind = next((k for k in kinds if pick(losses(self.w, self.incumbent)[k], st.window, tried)
                                 is not None), "")
                    if not kind:
                        break
                    first = pick(losses(self.w, self.incumbent)[kind], st.window, tried)
            # nearby windows share most of their model: try them only after the incumbent changes there
            tried.update(range(first - st.window // 2, first + st.window // 2 + 1))
            t0 = time.perf_counter()
            runner, state, built, stop = self.neighbourhood(first)
            outcome = self.repair(built)
            solution = outcome.assignment if outcome.assignment is not None and \
                not check(built.problem, outcome.assignment) else None
            notes = [f"kind {kind}", f"{len(built.problem.future)} later loads freed"]
            if not built.hint_ok:
                notes.append("incumbent infeasible in the widened model: " + "; ".join(
                    check(built.problem, built.hint)[:2]))
            if outcome.status == "INFEASIBLE" and built.hint_ok:
                notes.append("BUG: model infeasible although the incumbent is a feasible hint")
            accepted = False
            latency = self.latency
            for retry in range(3):
                hint_obj = objective(built, built.hint)
                if solution is None or objective(built, solution) >= hint_obj:
                    break
                trial = self.stitch(runner, state, built, solution, stop)
                verdict = simulate(self.w, trial)
                if not verdict.valid:
                    notes.append("rejected: " + verdict.violations[0].message(self.w.chip.clock_hz))
                    # a freed later load the model moved next to executions it does not see (after the window):
                    # pin it where the incumbent had it and repair again
                    culprits = {v.op for v in verdict.violations} & {f.op for f in built.problem.future}
                    if not culprits or retry == 2:
                        break
                    built = _pinned(built, culprits)
                    notes.append(f"pinned later loads {sorted(culprits)}")
                    outcome = self.repair(built)
                    solution = outcome.assignment if outcome.assignment is not None and \
                        not check(built.problem, outcome.assignment) else None
                    continue
                if verdict.latency_cycles < self.latency - 1e-6 or (
                        verdict.latency_cycles <= self.latency + 1e-6 and built.hint_ok):
                    accepted = True
                    latency = verdict.latency_cycles
                else:
                    notes.append(f"rejected: {verdict.latency_cycles - self.latency:.0f} cycles slower end to end")
                break
            if accepted:
                notes.append(f"latency {self.latency:.0f} -> {latency:.0f} cycles")
                self.incumbent = trial
                self.latency = latency
                tried = {f for f in tried if f < first - st.window or f >= stop + st.window}
                if stop < len(self.w) - 1:
                    follow.append(min(stop, len(self.w) - st.window))
            # in end-to-end terms: the incumbent's window makespan, moved by the lag (solution's and proven)
            heuristic = float(built.hint.makespan())
            exact = heuristic + lag(built, solution) if accepted else heuristic
            bound = None if outcome.bound is None else min(heuristic + float(outcome.bound), exact)
            records.append(WindowRecord(
                model=model_name or self.w.program.name, window=it, first_op=first, last_op=stop - 1,
                solver=self.solver.name, version=self.version, status=outcome.status,
                heuristic_cycles=heuristic, exact_cycles=exact,
                bound_cycles=float(bound) if bound is not None else float("nan"),
                gap=(exact - bound) / exact if bound is not None and exact > 0 else float("nan"),
                seconds=time.perf_counter() - t0, workers=st.workers, seed=st.seed, time_limit=st.time_limit,
                params=params, ahead_cycles=float(self.warm_latency - latency), accepted=accepted,
                note="; ".join(notes), first_improvement_s=outcome.first_improvement_s))
        return LnsResult(self.incumbent, records, self.latency, self.warm_latency)


def lns(workload: Workload, warm: Schedule, settings: LnsSettings | None = None, *,
        records: str | None = None) -> Schedule:
    """The search from ``warm``; never slower than it (the simulator judges every move and the result)."""
    settings = settings or LnsSettings()
    started = time.perf_counter()
    search = Lns(workload, warm, settings)
    result = search.run()
    sched = result.schedule
    verdict = simulate(workload, sched)
    info = Provenance(theta=warm.info.theta, warm_start=warm.design, window=settings.window,
                      records=tuple(result.records))
    if not verdict.valid or verdict.latency_cycles > result.warm_latency_cycles + 1e-6:
        reason = ("invalid: " + verdict.violations[0].message(workload.chip.clock_hz)) if not verdict.valid \
            else "slower than the warm start"
        sched = Schedule("lns", warm.entry.copy(), warm.exec_start.copy(), warm.exec_end.copy(),
                         warm.load_start.copy(), warm.load_end.copy(), warm.relaxation, info)
        info.kept_warm_start = reason
    sched.design = "lns"
    sched.info = info
    recs = result.records
    info.search.update(neighbourhoods=len(recs), improved=sum(1 for r in recs if r.accepted),
                       solver="cp-sat", version=search.version, workers=settings.workers, seed=settings.seed,
                       time_limit=settings.time_limit, deterministic_time=settings.deterministic_time,
                       kinds=",".join(settings.kinds), warm_latency_cycles=result.warm_latency_cycles,
                       latency_cycles=float(simulate(workload, sched).latency_cycles),
                       statuses=json.dumps({s: sum(1 for r in recs if r.status == s)
                                            for s in sorted({r.status for r in recs})}))
    info.compile_seconds = time.perf_counter() - started
    if records:
        from solvers.schedule.records import write_records
        write_records(recs, records)
    return sched
