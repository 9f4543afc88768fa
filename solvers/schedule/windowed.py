"""Windowed exact scheduling, warm-started by the inductive heuristic.

Windows of consecutive operators are re-planned in program order. Everything
before a window is fixed; the window's operators get a new plan row, execution
interval and load (unless their load is already issued); the loads the warm
start issued for later operators during the window are placed too, each ending
no later than the warm start had it end. The warm start, shifted by the
smallest lead the schedule built so far has over it, is then a feasible
solution of every window (a complete hint), so each window either improves on
it or keeps it, and the stitched schedule is never slower than the warm start.
The final schedule is checked by the simulator all the same, and the warm
start is returned if anything went wrong.

Windows are aligned to the repeated layers, so identical windows recur; a
window whose model (operators, plan options, carried-in state, bounds) is
identical to one already solved reuses that solution.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError, SolverConfigError
from elk.schedule import Provenance, Schedule
from elk.simulator import simulate
from elk.workload import Workload
from formulations.schedule.window import (SHARE_SCALE, FixedLoad, FutureLoad, Option, WindowAssignment, WindowOp,
                                 WindowProblem, check)
from solvers.exact_backends import Outcome, solve_cpsat, solve_milp
from solvers.schedule.bounds import undominated
from solvers.schedule.designs import group_load_thetas
from solvers.schedule.orders import layer_groups
from solvers.schedule.fallback import keep_faster
from solvers.schedule.records import WindowRecord
from solvers.solver_options import CpsatOptions, MilpOptions, SolverSettings, WindowOptions, solver_version


def window_ranges(workload: Workload, size: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """(first, stop, commit_stop) per window, aligned to layer boundaries when there are layers."""
    n = len(workload)
    if not isinstance(size, int) or size < 1:
        raise SolverConfigError(f"window size must be a positive integer, got {size!r}")
    if size > n:
        raise SolverConfigError(f"window size {size} is larger than the program ({n} operators)")
    stride = size if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= size:
        raise SolverConfigError(f"stride must be between 1 and the window size {size}, got {stride!r}")
    layers = workload.program.layers
    cuts = [0, n]
    if layers is not None:
        cuts += [layers.start + k * layers.length for k in range(layers.count + 1)]
    cuts = sorted(set(cuts))
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        first = lo
        while first < hi:
            stop = min(first + size, hi)
            commit = min(first + stride, stop) if stop < hi else stop
            out.append((first, stop, commit))
            first = commit
    return out


def undominated_rows(table) -> list[int]:
    """Rows of a plan table not dominated in (cold, hot, time, comm): the only ones a window model offers."""
    return [int(r) for r in undominated(np.stack([table.cold, table.hot, table.time, table.comm], axis=1)
                                        .astype(float))]


def warm_hint(choice: list[int], options: list[Option], exec_start: np.ndarray, exec_end: np.ndarray,
              loads: dict[int, tuple[float, float, Option]], fixed: list[FixedLoad] | tuple[FixedLoad, ...],
              fluid: bool, extra: dict[tuple[str, int], int] | None = None) -> WindowAssignment:
    """A window's warm start (times in cycles from the window's origin) as a whole-cycle assignment that keeps
    the order of its events.

    Rounding each time on its own (ends up, starts down) breaks ties the wrong
    way: a load the warm start issues the instant an operator ends, in the
    SRAM that operator's hot bytes free, would start a cycle before that
    operator ends and overfill SRAM; a chain of loads drifts past the
    executions waiting for them. Here every event (execution start and end,
    load start and end) is mapped by one non-decreasing map of time: each
    distinct event time rounded up, pushed later where a duration in whole
    cycles (plan time, a load's shortest length) needs it, every later event
    pushed as much. Events keep their order (ties stay ties; events a
    fraction of a cycle apart may become one), so every instant of the hint
    holds what some instant of the warm start holds: precedence, channel order
    and SRAM occupancy stay as valid as the warm start's; the cost is a cycle
    per duration the rounding lengthens.
    ``loads`` maps each placed (free or future) load's op to its warm start, end and option; ``fixed`` loads
    keep their whole-cycle spans, which placed loads stay clear of. ``extra`` delays the end of an execution
    (``("exec", position)``) or a fluid load (``("load", op)``) by that many cycles, and every later event with
    it: room for interconnect work the rounding of shares and rates takes away.
    """
    extra = extra or {}
    events: list[tuple[float, int, tuple]] = []  # (time, 0 start / 1 end, what)
    for k in range(len(options)):
        events += [(float(exec_start[k]), 0, ("exec", k)), (float(exec_end[k]), 1, ("exec", k))]
    for op, (a, b, _) in loads.items():
        events += [(a, 0, ("load", op)), (b, 1, ("load", op))]
    events.sort(key=lambda e: e[0])
    busy = sorted((f.start, f.end) for f in fixed if f.end > f.start)
    ready = {}  # window position -> end of its committed load
    for f in fixed:
        if f.owner >= 0:
            ready[f.owner] = max(ready.get(f.owner, 0), f.end)
    at: dict[tuple, int] = {}  # (kind, id, 0/1) -> whole-cycle time
    push = 0
    i = 0
    while i < len(events):
        t = events[i][0]
        group = [events[i]]
        while i + 1 < len(events) and events[i + 1][0] <= t + 1e-9:
            i += 1
            group.append(events[i])
        i += 1
        base = max(0, math.ceil(t - 1e-9))
        tau = base + push
        for _, edge, (kind, key) in group:
            if kind == "exec" and edge == 1 and (kind, key, 0) in at:
                tau = max(tau, at[(kind, key, 0)] + options[key].time)
            elif kind == "exec" and edge == 0:
                tau = max(tau, ready.get(key, 0))
            elif kind == "load" and edge == 1 and (kind, key, 0) in at:
                tau = max(tau, at[(kind, key, 0)] + loads[key][2].load_time)
        tau += max([extra.get((kind, key), 0) for _, edge, (kind, key) in group if edge == 1] + [0])
        for _, edge, (kind, key) in group:
            if kind == "load" and edge == 0:  # clear of the fixed loads' (widened) spans
                length = loads[key][2].load_time
                for b0, b1 in busy:
                    if tau < b1 and tau + length > b0:
                        tau = b1
        for _, edge, (kind, key) in group:
            at[(kind, key, edge)] = tau
        push = tau - base
    starts = [at[("exec", k, 0)] for k in range(len(options))]
    ends = [at[("exec", k, 1)] for k in range(len(options))]
    load_start = {op: at[("load", op, 0)] for op in loads}
    load_end = {op: at[("load", op, 1)] for op in loads} if fluid else {}
    return WindowAssignment(list(choice), starts, ends, load_start, load_end)


#: rounds of lengthening a hint's executions or loads where the interconnect comes out short (1, 2, 4... cycles)
HINT_REPAIRS = 8


def segment_work(prof, begin: float, lo: float, hi: float) -> np.ndarray:
    """Interconnect work (cycles) the loads of a simulated interconnect profile (``timeline.noc``, its times
    from ``begin``) do inside ``[lo, hi)``, per segment of the profile (``prof.load_op`` says whose)."""
    t0, t1 = prof.time[:-1] + begin, prof.time[1:] + begin
    return np.clip(np.minimum(t1, hi) - np.maximum(t0, lo), 0.0, None) * prof.load_share


def interconnect_short(errors: list[str], first: int) -> set[tuple[str, int]]:
    """The executions (by window position) and loads (by op) the window checker finds short of interconnect
    room, as ``warm_hint``'s ``extra`` keys; empty if any other rule is broken too."""
    out: set[tuple[str, int]] = set()
    for e in errors:
        words = e.split()
        if e.endswith("communication does not fit next to overlapping loads"):
            out.add(("exec", int(words[1].rstrip(":")) - first))
        elif e.startswith("load of op ") and e.endswith("cannot move its interconnect work in its interval"):
            out.add(("load", int(words[3])))
        else:
            return set()
    return out


@dataclass
class StitchState:
    """The schedule being stitched window by window: every operator's decisions so far.

    Starts as a copy of the warm start; a window overwrites the operators it
    commits. ``committed[j]`` says operator j's load is issued for good (its
    interval and cold layout can no longer change).
    """

    entry: np.ndarray
    exec_start: np.ndarray
    exec_end: np.ndarray
    load_start: np.ndarray
    load_end: np.ndarray
    committed: np.ndarray

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> "StitchState":
        return cls(schedule.entry.copy(), schedule.exec_start.copy(), schedule.exec_end.copy(),
                   schedule.load_start.copy(), schedule.load_end.copy(), np.zeros(len(schedule), dtype=bool))


@dataclass
class BuiltWindow:
    """One window as its backends get it: the problem, the warm start as a hint, where it sits in time."""
    problem: WindowProblem
    hint: WindowAssignment
    hint_ok: bool
    origin: float
    lead: float
    future_ops: list[int]
    heuristic_makespan: float  # warm start's window makespan, in cycles from the origin


@dataclass
class WindowedResult:
    """The stitched schedule of a windowed run and one record per window solve."""
    schedule: Schedule
    records: list[WindowRecord] = field(default_factory=list)


class WindowedSolver:
    """Re-plans a complete warm-start schedule window by window with CP-SAT or a MILP."""

    def __init__(self, workload: Workload, warm: Schedule, settings: SolverSettings, *, window: int = 8,
                 stride: int | None = None, reuse: bool = True, anytime: bool = False,
                 max_options: int | None = None):
        self.w = workload
        self.warm = warm
        self.settings = settings
        self.ranges = window_ranges(workload, window, stride)
        self.reuse = reuse
        self.anytime = anytime
        self.max_options = max_options
        self.theta = float(warm.info.theta or 0.99)
        # rigid loads run at the warm start's share limits: one per layer group where ELK-Full refined them
        choice = warm.info.load_order
        self.op_theta = (group_load_thetas(workload, layer_groups(workload.program), choice.group_thetas, self.theta)
                         if choice is not None and choice.group_thetas is not None else None)
        self.fluid = workload.chip.load_model is LoadModel.FLUID
        verdict = simulate(workload, warm)
        if not verdict.valid:
            raise ScheduleError(f"warm start '{warm.design}' is not valid: "
                                f"{verdict.violations[0].message(workload.chip.clock_hz)}")
        self.warm_latency = verdict.latency_cycles
        self.best_latency = verdict.latency_cycles  # of the stitched program after the last accepted window
        loads = workload.has_load
        self.begin = min(float(warm.exec_start[0]), float(warm.load_start[loads].min()) if loads.any() else np.inf)
        self.warm_noc = verdict.timeline.noc if self.fluid else None  # the warm start's own fluid split
        self.version = solver_version(settings)
        self.cache: dict[tuple, tuple[WindowAssignment | None, str]] = {}
        self._undominated: dict[object, list[int]] = {}  # per operator shape (identical operators share a table)

    # -- options ---------------------------------------------------------------
    def options(self, op: int, cold: int | None, warm_row: int) -> tuple[tuple[Option, ...], int]:
        """Undominated rows of the operator's table (only those with ``cold`` if its load is issued)."""
        t = self.w.tables[op]
        shape = self.w.program.ops[op].signature
        if shape not in self._undominated:
            self._undominated[shape] = undominated_rows(t)
        rows = list(self._undominated[shape])
        if warm_row not in rows:
            rows.append(warm_row)
        if cold is not None:
            rows = [r for r in rows if t.cold[r] == cold]
            if warm_row not in rows:
                rows.append(warm_row)
        if self.max_options is not None and len(rows) > self.max_options:
            rows = sorted(rows, key=lambda r: t.time[r])[:self.max_options - 1]
            if warm_row not in rows:
                rows.append(warm_row)
        rows = sorted(set(rows))
        return tuple(self.option(op, r) for r in rows), rows.index(warm_row)

    def option(self, op: int, row: int) -> Option:
        """A plan row in the window's integer units (rounded to the safe side; see formulations.schedule.window)."""
        t = self.w.tables[op]
        cold = int(t.cold[row])
        work = cap = 0
        if self.w.load_bytes[op] > 0:
            noc = self.w.load_noc_cycles(op, cold)
            hbm = float(self.w.hbm_cycles[op])
            if self.fluid:  # shortest length at the top rate (rounded down); any longer one is allowed
                cap = max(1, math.floor(SHARE_SCALE * self.top_rate(op, cold) + 1e-9))
                work = math.ceil(SHARE_SCALE * noc - 1e-9)
                load_time = max(math.ceil(hbm - 1e-9), math.ceil(work / cap))
            else:
                limit = self.theta if self.op_theta is None else self.op_theta[op]
                load_time = math.ceil(max(hbm, noc / limit) - 1e-9)
            share = math.ceil(SHARE_SCALE * noc / load_time - 1e-9) if load_time > 0 else 0
        else:
            load_time = share = 0
        return Option(row=int(row), cold=cold, hot=int(t.hot[row]), time=math.ceil(float(t.time[row]) - 1e-9),
                      comm=math.ceil(float(t.comm[row]) - 1e-9), load_time=load_time, load_share=share,
                      load_work=work, load_cap=cap or SHARE_SCALE)

    def fixed_cap(self, op: int, row: int) -> int:
        """A committed fluid load's top interconnect rate, rounded *up*: used where the rate rounded down (as
        every load's is first) leaves the warm start no solution of the window.

        A free load's rate is rounded down (it may only take longer than it could). A committed load's interval
        is fixed and the simulator has already found room for its work there, often at its top rate for the
        whole interval: rounded down by up to 1/SHARE_SCALE over ~10^5 cycles, that rate leaves it cycles of
        work short, and the window becomes infeasible and keeps its warm start (Gemma2-27B all-to-all 8 TB/s:
        278 of 324 windows). Rounded up, the model may credit it up to 1/SHARE_SCALE of the interconnect it
        does not have; the simulator, which judges every stitched program before it is accepted (``rejects``),
        takes that back. Only where needed: elsewhere the rounded-down rate keeps solutions valid as solved."""
        return min(SHARE_SCALE, math.ceil(SHARE_SCALE * self.top_rate(op, int(self.w.tables[op].cold[row])) - 1e-9))

    def top_rate(self, op: int, cold: int) -> float:
        """The interconnect share a fluid load of ``op`` in a layout of ``cold`` bytes per core uses at full HBM
        speed (at most 1): its top rate, before any rounding."""
        noc, hbm = self.w.load_noc_cycles(op, cold), float(self.w.hbm_cycles[op])
        return min(1.0, noc / hbm if hbm > 0 else 1.0)

    def past_window(self, op: int, opt: Option, stop: int) -> Option:
        """A later operator's fluid load as the window [.., stop) sees it: its work raised by what the model
        would credit it past the window that the rest of the program does not give it.

        The model sees no execution after the window's own and credits a load its top rate there. In the
        stitched program the rest is the warm start's, and never earlier relative to such a load's end than in
        the warm start (the stitching lead is at most ``ws.load_end - b`` of every committed load). So from the
        first later execution's start to the load's end the load gets at most its top rate times that span and
        at least what it did there in the warm start (the simulator's split, loads as early as they can); the
        work is raised by the difference, rounded up. Solutions stay valid and the warm start stays one.
        Without it the simulator rejected 140 of 324 windows' solutions on Gemma2-27B mesh 8 TB/s 624 KiB fluid
        (rule 3-noc-load on such a load; 4 with it), and ELK-Full's schedule kept its latency on OPT-30B mesh
        16 TB/s 192 KiB fluid (20.641 ms; 20.576 with it)."""
        ws, prof = self.warm, self.warm_noc
        if prof is None or stop >= len(self.w) or opt.load_work <= 0 or ws.load_start[op] >= ws.exec_end[stop - 1]:
            return opt  # a load pulled in from after the window (``pull``) is the search's to move: left as it is
        after = float(ws.exec_start[stop])
        span = float(ws.load_end[op]) - after
        if span <= 0:
            return opt
        done = float(segment_work(prof, self.begin, after, math.inf)[prof.load_op == op].sum())
        extra = math.ceil(opt.load_cap * span - SHARE_SCALE * done - 1e-9)
        return replace(opt, load_work=opt.load_work + extra) if extra > 0 else opt

    # -- one window --------------------------------------------------------------
    def build(self, first: int, stop: int, commit: int, state: StitchState, *, pull: int = 0) -> BuiltWindow:
        """The window [first, stop) over ``state``; ``pull`` more loads the warm start issued after the window
        (the next ones on its channel) are placed too, so a large-neighbourhood search may bring them forward."""
        w, ws = self.w, self.warm
        entry, e, a, b, committed = state.entry, state.exec_end, state.load_start, state.load_end, state.committed
        origin = float(e[first - 1]) if first > 0 else self.begin
        leads = [float(ws.exec_end[first - 1] - e[first - 1])] if first > 0 else [0.0]
        leads += [float(ws.load_end[j] - b[j]) for j in np.flatnonzero(committed[first:]) + first]
        lead = min(leads)

        def rel_floor(t: float) -> int:
            return math.floor(t - origin + 1e-9)

        def rel_ceil(t: float) -> int:
            return math.ceil(t - origin - 1e-9)

        window_end_ws = float(ws.exec_end[stop - 1])
        future_ops = [int(j) for j in range(stop, len(w)) if w.load_bytes[j] > 0 and not committed[j]
                      and ws.load_start[j] < window_end_ws]
        if pull > 0:
            later = [int(j) for j in range(stop, len(w)) if w.load_bytes[j] > 0 and not committed[j]
                     and ws.load_start[j] >= window_end_ws]
            future_ops += sorted(later, key=lambda j: (ws.load_start[j], j))[:pull]
        # each load is rounded up to whole cycles: a chain of them may end this much later than the warm start
        slack = 1 + len(future_ops) + int(sum(1 for i in range(first, stop) if w.load_bytes[i] > 0))
        ops, hint_choice = [], []
        for i in range(first, stop):
            # a committed load fixes the operator's cold layout: hint with the row it was committed with
            cold = int(w.tables[i].cold[entry[i]]) if committed[i] else None
            opts, k = self.options(i, cold, int(entry[i]) if committed[i] else int(ws.entry[i]))
            status = "none" if w.load_bytes[i] == 0 else ("committed" if committed[i] else "free")
            latest = rel_ceil(ws.load_end[i] - lead) + slack if status == "free" and i >= commit else None
            ops.append(WindowOp(op=i, options=opts, load=status, latest_end=latest))
            hint_choice.append(k)
        fixed = []
        left = self.work_left(state, first, origin) if self.fluid else {}
        for j in np.flatnonzero(committed[first:]) + first:
            row = int(entry[j])
            opt = self.option(int(j), row)
            start, end = rel_floor(a[j]), rel_ceil(b[j])
            if end <= 0:  # finished: only its waiting data matters
                start = end = 0
            owner = int(j) - first if j < stop else -1
            work = math.ceil(SHARE_SCALE * left.get(int(j), 0.0) - 1e-9) if end > 0 else 0
            fixed.append(FixedLoad(op=int(j), start=start, end=end, share=opt.load_share if end > start else 0,
                                   cold=opt.cold, owner=owner, work=work, cap=opt.load_cap))
        future = [FutureLoad(op=j, option=self.past_window(j, self.option(j, int(ws.entry[j])), stop),
                             latest_end=rel_ceil(ws.load_end[j] - lead) + slack) for j in future_ops]
        heuristic = window_end_ws - lead - origin

        # the warm start, shifted by the lead, as a complete assignment in whole cycles (order kept, see warm_hint)
        placed = {i: ops[k].options[hint_choice[k]] for k, i in enumerate(range(first, stop)) if ops[k].load == "free"}
        placed.update({f.op: f.option for f in future})
        warm_loads = {op: (float(ws.load_start[op] - lead - origin), float(ws.load_end[op] - lead - origin), opt)
                      for op, opt in placed.items()}
        chosen = [ops[k].options[c] for k, c in enumerate(hint_choice)]

        def with_hint(extra: dict[tuple[str, int], int]) -> tuple[WindowProblem, WindowAssignment]:
            hint = warm_hint(hint_choice, chosen, ws.exec_start[first:stop] - lead - origin,
                             ws.exec_end[first:stop] - lead - origin, warm_loads, fixed, self.fluid, extra)
            # the bounds on free loads' ends leave room for the hint's rounding (a window never starts infeasible)
            fut = tuple(replace(f, latest_end=max(f.latest_end, hint.end_of(f.op, f.option))) for f in future)
            wops = tuple(replace(x, latest_end=max(x.latest_end, hint.end_of(x.op, chosen[k])))
                         if x.latest_end is not None else x for k, x in enumerate(ops))
            horizon = max([hint.exec_end[-1]] + [f.latest_end for f in fut] + [f.end for f in fixed]
                          + [x.latest_end for x in wops if x.latest_end is not None]
                          + list(hint.load_end.values())) + 1
            return WindowProblem(ops=wops, fixed=tuple(fixed), future=fut, sram=w.chip.sram_per_core, release=0,
                                 horizon=horizon, fluid=self.fluid), hint

        problem, hint = with_hint({})
        errors = check(problem, hint)
        # shares and rates are rounded against the hint: where the interconnect comes out short, lengthen the
        # execution or the load that lacks room (a cycle, doubling), every later event moving with it
        extra: dict[tuple[str, int], int] = {}
        fixed_span = {f.op: (f.start, f.end) for f in fixed if f.end > max(f.start, 0)}
        for attempt in range(HINT_REPAIRS):
            short = interconnect_short(errors, first)
            if not short or len(short) < len(errors):
                break
            # a committed load cannot move: its top rate rounded up first (``fixed_cap``), then room in the
            # executions it overlaps
            for key in [k for k in short if k[0] == "load" and k[1] in fixed_span]:
                short.discard(key)
                at = next(i for i, f in enumerate(fixed) if f.op == key[1])
                raised = self.fixed_cap(key[1], int(entry[key[1]]))
                if fixed[at].cap < raised:
                    fixed[at] = replace(fixed[at], cap=raised)
                    continue
                lo, hi = fixed_span[key[1]]
                short.update(("exec", k) for k in range(len(ops))
                             if hint.exec_start[k] < hi and hint.exec_end[k] > max(lo, 0))
            for key in short:
                extra[key] = extra.get(key, 0) + 2 ** attempt
            problem, hint = with_hint(extra)
            errors = check(problem, hint)
        return BuiltWindow(problem, hint, not errors, origin, lead, future_ops, heuristic)

    def solve_one(self, built: BuiltWindow) -> Outcome:
        if self.settings.solver == "cpsat":
            return solve_cpsat(built.problem, self.settings, built.hint, self.anytime)
        return solve_milp(built.problem, self.settings, built.hint)

    # -- the whole program ---------------------------------------------------------
    def work_left(self, state: StitchState, first: int, origin: float) -> dict[int, float]:
        """Interconnect work (cycles) each committed load still has to do after ``origin``, in the stitched
        program's own fluid split (the simulator's, loads as early as they can: that split is valid for the
        past, so the rest is what the window must leave room for)."""
        sched = self.stitched(state, first)
        verdict = simulate(self.w, sched)
        prof = verdict.timeline.noc
        if not verdict.valid or prof is None:
            return {}
        begin = min(float(sched.exec_start.min()), float(sched.load_start[self.w.has_load].min()))
        done = segment_work(prof, begin, -math.inf, origin)
        chosen = self.w.chosen(sched.entry)["noc"]
        out = {}
        for j in np.flatnonzero(state.committed[first:]) + first:
            out[int(j)] = max(0.0, float(chosen[j]) - float(done[prof.load_op == j].sum()))
        return out

    def stitched(self, state: StitchState, commit: int) -> Schedule:
        """The whole program: what is decided up to ``commit``, then the warm start shifted by the lead."""
        ws, n = self.warm, len(self.w)
        e, b, committed = state.exec_end, state.load_end, state.committed
        leads = [float(ws.exec_end[commit - 1] - e[commit - 1])]
        leads += [float(ws.load_end[j] - b[j]) for j in np.flatnonzero(committed[commit:]) + commit]
        lead = min(leads)
        entry, s, e2, a, b2 = (x.copy() for x in (state.entry, state.exec_start, state.exec_end, state.load_start,
                                                   state.load_end))
        rest = np.arange(commit, n)
        entry[rest], s[rest], e2[rest] = ws.entry[rest], ws.exec_start[rest] - lead, ws.exec_end[rest] - lead
        loose = rest[~committed[rest]]
        a[loose], b2[loose] = ws.load_start[loose] - lead, ws.load_end[loose] - lead
        quiet = np.flatnonzero(~self.w.has_load)
        a[quiet] = b2[quiet] = s[quiet]
        return Schedule(self.settings.solver, entry, s, e2, a, b2)

    def rejects(self, state: StitchState, commit: int) -> str:
        """Why the stitched program is not acceptable (invalid, or slower than the best so far), or ''."""
        verdict = simulate(self.w, self.stitched(state, commit))
        if not verdict.valid:
            return verdict.violations[0].message(self.w.chip.clock_hz)
        if verdict.latency_cycles > self.best_latency + 1e-6:
            return f"{verdict.latency_cycles - self.best_latency:.0f} cycles slower end to end"
        self.best_latency = verdict.latency_cycles
        return ""

    def run(self, model_name: str = "", *, avoid: frozenset[int] = frozenset(),
            checkpoints: list[tuple[int, Schedule]] | None = None) -> WindowedResult:
        """Every window in turn; a window that cuts at a commit in ``avoid`` keeps the warm start's decisions.
        ``checkpoints`` (if given) gets (commit, the stitched program) after each accepted window. The window
        cache persists across runs: a second run re-solves only windows whose model changed."""
        w, ws = self.w, self.warm
        state = StitchState.from_schedule(ws)
        self.best_latency = self.warm_latency
        records: list[WindowRecord] = []
        params = json.dumps(dict(self.settings.params), sort_keys=True, default=str)
        for index, (first, stop, commit) in enumerate(self.ranges):
            built = self.build(first, stop, commit, state)
            key = built.problem.signature()
            started = time.perf_counter()
            reused_from = ""
            if self.reuse and key in self.cache:  # cached with operator ids relative to the window start
                cached, reused_from = self.cache[key]
                solution = cached.renamed(first) if cached is not None else None
                outcome = Outcome(solution, "REUSED", float(solution.makespan()) if solution else None, None, 0.0)
            else:
                outcome = self.solve_one(built)
                solution = outcome.assignment if outcome.assignment is not None and \
                    not check(built.problem, outcome.assignment) else None
                self.cache[key] = (solution.renamed(-first) if solution is not None else None, outcome.status)
            # accept a strictly shorter window, or an equally short one that leaves loads further ahead
            better = solution is not None and (
                solution.makespan() < built.heuristic_makespan - 1e-6
                or (solution.makespan() <= built.heuristic_makespan + 1e-6 and built.hint_ok
                    and solution.objective(built.problem) < built.hint.objective(built.problem)))
            rejected = ""
            if better and commit in avoid:
                better, rejected = False, "its stitched program's buffers could not be placed"
            if better:
                trial = StitchState(*(x.copy() for x in (state.entry, state.exec_start, state.exec_end,
                                                          state.load_start, state.load_end, state.committed)))
                self._apply_solution(trial, built, solution, commit)
                rejected = self.rejects(trial, commit)  # the whole stitched program, judged by the simulator
                better = not rejected
            if better:
                state = trial
                if checkpoints is not None:
                    checkpoints.append((commit, self.stitched(state, commit)))
            else:
                self.apply_warm(state, built, first, stop, commit)
            # report in the rounded model's units when the warm start is expressible there
            heuristic = float(built.hint.makespan()) if built.hint_ok else built.heuristic_makespan
            exact = float(solution.makespan()) if better else heuristic
            bound = None if outcome.bound is None else min(float(outcome.bound), exact)
            notes = [] if built.hint_ok else ["warm start infeasible in the rounded model"]
            if rejected:
                notes.append(f"window solution rejected on the whole program: {rejected}")
            if reused_from:
                notes.append(f"same model as an earlier window ({reused_from})")
            if "INFEASIBLE" in (outcome.status, reused_from):
                notes.append("window model infeasible: kept the warm start")
                if built.hint_ok:  # the hint is a solution of the model: the solver or a model is wrong
                    notes.append("BUG: window model infeasible although its hint is feasible")
            note = "; ".join(notes)
            records.append(WindowRecord(
                model=model_name or w.program.name, window=index, first_op=first, last_op=stop - 1,
                solver=self.settings.name, version=self.version, status=outcome.status,
                heuristic_cycles=heuristic, exact_cycles=exact,
                bound_cycles=float(bound) if bound is not None else float("nan"),
                gap=(exact - bound) / exact if bound is not None and exact > 0 else float("nan"),
                seconds=time.perf_counter() - started, workers=self.settings.workers, seed=self.settings.seed,
                time_limit=self.settings.time_limit, params=params,
                ahead_cycles=float(ws.exec_end[commit - 1] - state.exec_end[commit - 1]),
                reused=outcome.status == "REUSED",
                accepted=bool(better), note=note, first_improvement_s=outcome.first_improvement_s,
                anytime=outcome.anytime))
        entry, s, e, a, b = state.entry, state.exec_start, state.exec_end, state.load_start, state.load_end
        for op in np.flatnonzero(~w.has_load):
            a[op] = b[op] = s[op]
        result = Schedule(self.settings.solver, entry.copy(), s.copy(), e.copy(), a.copy(), b.copy())
        return WindowedResult(self.finished(result), records)

    def finished(self, result: Schedule) -> Schedule:
        """``result`` under the solver's name, or the warm start where that is not valid and faster."""
        kept, reason = keep_faster(self.w, result, self.warm)  # checked by the simulator all the same
        if reason:
            return kept.renamed(self.settings.solver, Provenance(theta=self.theta, kept_warm_start=reason))
        return result.renamed(self.settings.solver, Provenance(theta=self.theta))

    def _apply_solution(self, state: StitchState, built: BuiltWindow, a: WindowAssignment, commit: int) -> None:
        entry, s, e, ls, le, committed = (state.entry, state.exec_start, state.exec_end, state.load_start,
                                          state.load_end, state.committed)
        p, origin = built.problem, built.origin
        last_exec_end = None
        for k, wop in enumerate(p.ops):
            if wop.op >= commit:
                break
            opt = wop.options[a.choice[k]]
            entry[wop.op] = opt.row
            s[wop.op] = origin + a.exec_start[k]
            e[wop.op] = origin + a.exec_end[k]
            last_exec_end = a.exec_end[k]
            if wop.load == "free":
                ls[wop.op] = origin + a.load_start[wop.op]
                le[wop.op] = origin + a.end_of(wop.op, opt)
                committed[wop.op] = True
        assert last_exec_end is not None
        for k, wop in enumerate(p.ops):  # loads of uncommitted window ops issued before the cut
            if wop.op >= commit and wop.load == "free" and a.load_start[wop.op] < last_exec_end:
                opt = wop.options[a.choice[k]]
                entry[wop.op] = opt.row
                ls[wop.op] = origin + a.load_start[wop.op]
                le[wop.op] = origin + a.end_of(wop.op, opt)
                committed[wop.op] = True
        for f in p.future:
            if commit < p.ops[-1].op + 1 and a.load_start[f.op] >= last_exec_end:
                continue  # overlapping windows: the next window places it again
            entry[f.op] = f.option.row
            ls[f.op] = origin + a.load_start[f.op]
            le[f.op] = origin + a.end_of(f.op, f.option)
            committed[f.op] = True

    def apply_warm(self, state: StitchState, built: BuiltWindow, first: int, stop: int, commit: int) -> None:
        """Keep the warm start's decisions, shifted by the lead (exactly feasible, no rounding)."""
        entry, s, e, ls, le, committed = (state.entry, state.exec_start, state.exec_end, state.load_start,
                                          state.load_end, state.committed)
        ws, lead = self.warm, built.lead
        for i in range(first, commit):
            entry[i] = ws.entry[i]
            s[i] = ws.exec_start[i] - lead
            e[i] = ws.exec_end[i] - lead
            if self.w.load_bytes[i] > 0 and not committed[i]:
                ls[i] = ws.load_start[i] - lead
                le[i] = ws.load_end[i] - lead
                committed[i] = True
        cut = ws.exec_end[commit - 1]
        for j in list(range(commit, stop)) + built.future_ops:
            if self.w.load_bytes[j] > 0 and not committed[j] and ws.load_start[j] < cut:
                entry[j] = ws.entry[j]
                ls[j] = ws.load_start[j] - lead
                le[j] = ws.load_end[j] - lead
                committed[j] = True


def window_problems(workload: Workload, warm: Schedule, window: int, count: int | None = None, *,
                    max_options: int | None = None) -> list[BuiltWindow]:
    """The first ``count`` windows of ``warm`` as built problems, the state advanced by the warm start's decisions.

    What the windowed solver would hand its backends if no window improved:
    for studies of the window models (tuning, cross-checks) without solving.
    """
    runner = WindowedSolver(workload, warm, SolverSettings(time_limit=10, workers=1), window=window,
                            max_options=max_options)
    state = StitchState.from_schedule(warm)
    out = []
    for first, stop, commit in runner.ranges[:count]:
        built = runner.build(first, stop, commit, state)
        out.append(built)
        runner.apply_warm(state, built, first, stop, commit)
    return out


def windowed(workload: Workload, warm: Schedule, *, solver: str = "cpsat", anytime: bool = False,
             max_options: int | None = None, **options) -> Schedule:
    """Windowed exact re-planning of ``warm`` with ``solver``'s window model; ``options`` are the fields of
    its options dataclass (solvers.solver_options.CpsatOptions / MilpOptions), checked there."""
    kinds = {"cpsat": CpsatOptions, "milp": MilpOptions}
    if solver not in kinds:
        raise SolverConfigError(f"unknown solver '{solver}' (choose from {', '.join(kinds)})")
    own = {f.name for f in fields(kinds[solver])}
    # one backend's knob given to the other (a MILP backend to cpsat, a deterministic time to milp) does not apply
    options = {k: v for k, v in options.items() if k in own or k not in ("backend", "deterministic_time")}
    return windowed_with(workload, warm, kinds[solver].from_mapping(solver, options), anytime=anytime,
                         max_options=max_options)


#: how many times placement-aware windows run again, each avoiding one more window whose result could not be placed
PLACEMENT_ROUNDS = 4


@dataclass
class PlacedWindows:
    """What placement-aware windows did: the windows they kept to the warm start's decisions, the rounds run,
    and whether the result is a schedule the check placed."""

    avoided: list[int] = field(default_factory=list)  # commits (first operator after the cut) of avoided windows
    rounds: int = 0
    placeable: bool = True


def placeable_windows(runner: WindowedSolver, placeable: Callable[[Schedule], bool],
                      rounds: int = PLACEMENT_ROUNDS) -> tuple[WindowedResult, PlacedWindows]:
    """Windows whose result ``placeable`` accepts (its buffers get SRAM addresses), never slower than the warm start.

    Windows budget bytes, not addresses: a stitched program can fit SRAM byte for byte and still need more
    addresses than a core has, when one accepted window leaves its buffers' lifetimes too fragmented
    (Llama2-13B on a mesh at 8 TB/s with 192 KiB: 216,636 B of addresses for 191,654 B of bytes in a 196,608 B
    core), and ``elk.compile`` then reports the warm start. Each accepted window's stitched program is
    valid, so the search bisects them for the first that cannot be placed (assuming, as it finds in practice,
    that a program stays unplaceable once a window made it so), runs the windows again with that one window
    kept to the warm start's decisions (the cache re-solves nothing that did not change) and repeats, at most
    ``rounds`` times. The answer is the last round's result if it is placed, else the fastest placed stitched
    program seen (the warm start's own decisions if none); ``PlacedWindows.placeable`` says whether the check
    accepted it, and it is checked, not assumed. The records are those of the round the answer comes from
    (when it is an earlier stitched program, the windows that round accepted after it are not in it).
    """
    info = PlacedWindows()
    best: Schedule | None = None
    best_cycles = math.inf  # ``best``'s simulated latency
    best_records: list[WindowRecord] = []  # of the round whose stitched program ``best`` is
    result = None
    for _ in range(max(1, rounds)):
        info.rounds += 1
        checkpoints: list[tuple[int, Schedule]] = []
        result = runner.run(avoid=frozenset(info.avoided), checkpoints=checkpoints)
        if not checkpoints or placeable(result.schedule):
            return result, info
        lo, hi = -1, len(checkpoints) - 1  # hi cannot be placed; lo (-1: the warm start) is taken as placeable
        # the result can differ from the last stitched program (the windows after it keep the warm start's
        # decisions at their own lead; or the result fell back to the warm start), so that one is checked too
        if placeable(checkpoints[hi][1]):
            return WindowedResult(runner.finished(checkpoints[hi][1]), result.records), info
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if placeable(checkpoints[mid][1]):
                lo = mid
            else:
                hi = mid
        if lo >= 0:
            cycles = simulate(runner.w, checkpoints[lo][1]).latency_cycles
            if cycles < best_cycles:
                best, best_cycles, best_records = checkpoints[lo][1], cycles, result.records
        info.avoided.append(checkpoints[hi][0])
    assert result is not None
    if best is None:
        info.placeable = placeable(runner.warm)
        return WindowedResult(runner.finished(runner.warm), result.records), info
    return WindowedResult(runner.finished(best), best_records), info


def windowed_with(workload: Workload, warm: Schedule, options: WindowOptions, *, anytime: bool = False,
                  max_options: int | None = None, placeable: Callable[[Schedule], bool] | None = None) -> Schedule:
    """Windowed exact re-planning of ``warm``; per-window records go to ``schedule.info.records`` (and to the
    ``options.records`` file when set).

    A warm start that ELK-Full scheduled with rigid loads on a chip with fluid ones (``rigid_paced``) is
    re-planned with rigid loads too: its loads run at their layer group's share limit, which the fluid window
    model does not keep, and most window solutions then fail on the whole program (on Llama2-13B on a mesh at
    8 TB/s with 192 KiB, 120 of the 242 windows broke a rule of the simulator there and 40 more ended slower:
    12.072 -> 12.072 ms); with rigid loads each accepted window stays rigid-valid,
    so fluid-valid (docs/design.md §5.1), and the same windows reach 11.946 ms (a schedule whose buffers the
    default placement then cannot place in 192 KiB, so ``elk.compile`` reports the warm start there).

    ``placeable`` (a check that a schedule's buffers get SRAM addresses; ``elk.compile`` passes its placement
    when one is on) makes the windows placement-aware (:func:`placeable_windows`): with it, that same run ends
    at 11.946 ms and is placed.
    """
    choice = warm.info.load_order
    if choice is not None and choice.rigid_loads:
        workload = workload.with_load_model(LoadModel.RIGID)
    settings = options.settings()
    started = time.perf_counter()
    runner = WindowedSolver(workload, warm, settings, window=options.window, stride=options.stride,
                            reuse=options.reuse, anytime=anytime, max_options=max_options)
    placed = None
    if placeable is None:
        result = runner.run()
    else:
        result, placed = placeable_windows(runner, placeable)
    sched = result.schedule
    sched.design = settings.solver
    sched.info.records = tuple(result.records)
    sched.info.window = options.window
    sched.info.warm_start = warm.design
    sched.info.compile_seconds = time.perf_counter() - started
    sched.info.search.update(windows=len(runner.ranges), solver=settings.name, version=runner.version,
                             windows_solved=sum(1 for r in result.records if not r.reused),
                             windows_improved=sum(1 for r in result.records if r.accepted))
    if placed is not None:
        sched.info.search.update(placement_rounds=placed.rounds, placement_avoided=list(placed.avoided),
                                 placement_checked=placed.placeable)
    if options.records:
        from solvers.schedule.records import write_records
        write_records(result.records, options.records)
    return sched
