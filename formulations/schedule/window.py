"""The window problem both exact models encode, and an exact checker of it.

A window is K consecutive operators re-planned while everything before it is
fixed. Times are integer cycles relative to the window's origin (the end of
the last fixed execution). What the window decides: each operator's plan-table
row, its execution interval, and the HBM load of every operator whose load is
not yet issued; plus the loads of *future* operators (after the window) that
the warm start issued during the window's time, each bounded to end no later
than it did there. That bound is what keeps a window from starving the next
one, and it makes the warm start's own decisions a feasible solution of every
window, so stitching windows can only improve on it.

Semantics are the simulator's four rules under either load model
(``fluid``): rigid loads run at one share over a length fixed by their option;
fluid loads have a length of their own (at least the option's shortest) and
may pause: per (execution, load) pair they do some interconnect work inside
the execution, the pairs of an execution fit in what its communication leaves,
and a load's work inside executions plus what it can do outside them (its top
rate times the rest of its interval) covers its whole work. Loads committed
before the window keep their interval; rigid ones their constant share, fluid
ones the work they still have to do from the window's origin on.

Integer data are rounded so that any solution of the window is valid in the
simulator (conservative by at most one cycle per duration and 1/SHARE_SCALE
of a share or rate): execution, load and communication times and interconnect
work are rounded up, load shares up, fluid rate caps down, fixed loads widened
to whole cycles. SRAM bytes are exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SHARE_SCALE = 10_000  # load interconnect share in 1/10,000
#: The constraint families of a window model, in the order both models (cpsat_window, milp_window) add them:
#: each builder has one method per name, so their feasible sets can be compared family by family.
FAMILIES = ("executions", "loads", "channel", "sram", "interconnect", "fluid_progress", "objective")


@dataclass(frozen=True)
class Option:
    """One plan-table row an operator may take, in the window's integer units."""

    row: int
    cold: int  # bytes per core while waiting
    hot: int  # bytes per core while running
    time: int  # plan time, cycles (rounded up)
    comm: int  # communication cycles (rounded up)
    load_time: int  # cycles its HBM load takes in this layout (0: nothing to load); fluid: the shortest
    load_share: int  # rigid: interconnect share of that load, 1/SHARE_SCALE (rounded up)
    load_work: int = 0  # fluid: interconnect work of the load, SHARE_SCALE x cycles (rounded up)
    load_cap: int = SHARE_SCALE  # fluid: the load's top interconnect rate, 1/SHARE_SCALE (rounded down)


@dataclass(frozen=True)
class WindowOp:
    """One operator of a window: its plan options and the state of its load (none, free to place, committed)."""

    op: int  # program index
    options: tuple[Option, ...]
    load: str  # "none" (nothing from HBM), "free" (to place), "committed" (already in ``fixed``)
    latest_end: int | None = None  # bound on a free load's end (overlapping windows: ops past the stride)


@dataclass(frozen=True)
class FixedLoad:
    """A load already in the schedule that still matters: in flight, or its data still waiting."""

    op: int
    start: int
    end: int
    share: int
    cold: int
    owner: int  # position of its operator in the window, or -1 if that operator runs after the window
    #: fluid windows: interconnect work still to do from the window's origin on (SHARE_SCALE x cycles) and the
    #: load's top rate; it may do that work at any rate inside [max(start, 0), end)
    work: int = 0
    cap: int = SHARE_SCALE


@dataclass(frozen=True)
class FutureLoad:
    """A load the warm start issued during the window for an operator after it (plan fixed).

    Only these may be placed: bringing forward a load the warm start issued
    later would take channel time and SRAM the warm start still needs for its
    own later loads, and the warm start would stop being a feasible fallback.
    """

    op: int
    option: Option
    latest_end: int


@dataclass(frozen=True)
class WindowProblem:
    """A window of consecutive operators to re-plan, everything before it fixed (integer cycles from its origin).

    ``fixed`` loads are already issued, ``future`` ones belong to later operators and must be placed too;
    ``fluid`` says which load model the window is checked under.
    """

    ops: tuple[WindowOp, ...]
    fixed: tuple[FixedLoad, ...]
    future: tuple[FutureLoad, ...]
    sram: int
    release: int  # nothing new (execution or load) starts before this
    horizon: int  # no time exceeds this
    fluid: bool = False  # fluid loads (variable rate and length) or rigid ones

    def signature(self) -> tuple:
        """Everything the models are built from, operator ids relative to the window's first operator.

        Equal signatures mean identical models up to renaming operators, so a
        window of layer 12 can reuse the solution of the same window in layer 11.
        """
        base = self.ops[0].op
        ops = tuple((w.op - base, w.options, w.load, w.latest_end) for w in self.ops)
        fixed = tuple((f.op - base, f.start, f.end, f.share, f.cold, f.owner, f.work, f.cap) for f in self.fixed)
        future = tuple((f.op - base, f.option, f.latest_end) for f in self.future)
        return (ops, fixed, future, self.sram, self.release, self.horizon, self.fluid)

    @property
    def lower(self) -> int:
        """Earliest time any interval of the model may occupy."""
        return min([self.release] + [f.start for f in self.fixed])

    @property
    def tail_weight(self) -> int:
        """Weight of the makespan over the tail term, so the makespan always dominates."""
        return max(1, len(self.future)) * (self.horizon - self.lower + 1) + 1


@dataclass
class WindowAssignment:
    """A solution: option index per window op, execution intervals, start of every placed load."""

    choice: list[int]
    exec_start: list[int]
    exec_end: list[int]
    load_start: dict[int, int] = field(default_factory=dict)  # program op -> start (free and future loads)
    #: program op -> end, for fluid loads (a rigid load ends its option's load_time after its start)
    load_end: dict[int, int] = field(default_factory=dict)

    def makespan(self) -> int:
        """End of the window's last execution."""
        return self.exec_end[-1]

    def renamed(self, offset: int) -> "WindowAssignment":
        """The same assignment with every operator id shifted by ``offset`` (for reuse across layers)."""
        return WindowAssignment(list(self.choice), list(self.exec_start), list(self.exec_end),
                                {op + offset: t for op, t in self.load_start.items()},
                                {op + offset: t for op, t in self.load_end.items()})

    def end_of(self, op: int, option: Option) -> int:
        """End of a placed load: its own for fluid loads, start + the option's load time for rigid ones."""
        return self.load_end.get(op, self.load_start[op] + option.load_time)

    def objective(self, problem: WindowProblem) -> int:
        """Makespan, then the tail term: the sum of future-load ends (early loads feed the next window)."""
        tail = sum(self.end_of(f.op, f.option) for f in problem.future)
        return self.makespan() * problem.tail_weight + tail


def _interconnect(problem: WindowProblem, a: WindowAssignment, opts: list[Option], loads, placed,
                  channel_ok: bool) -> list[str]:
    """Rule 3 on the window: rigid shares per execution, or (fluid) the exact check of elk.noc."""
    errors = []
    ops = problem.ops
    fixed_ops = {f.op for f in problem.fixed}
    for k, (w, opt) in enumerate(zip(ops, opts)):
        s, e = a.exec_start[k], a.exec_end[k]
        rigid = [(start, end, share) for op, start, end, share, owner in loads
                 if (owner < 0 or owner > k) and not problem.fluid]
        used = sum(overlap(s, e, start, end) * share for start, end, share in rigid)
        if used > SHARE_SCALE * (e - s - opt.comm):
            errors.append(f"op {w.op}: communication does not fit next to overlapping loads")
    if not problem.fluid or errors or not channel_ok:
        return errors
    free, verdict = _fluid_check(problem, a, opts, loads, placed)
    if verdict is None:
        return errors
    for k in verdict.bad_execs:
        errors.append(f"op {ops[int(k)].op}: communication does not fit next to overlapping loads")
    for j in verdict.bad_loads[:1]:
        errors.append(f"load of op {free[int(j)][2]} cannot move its interconnect work in its interval")
    return errors


def _fluid_check(problem: WindowProblem, a: WindowAssignment, opts: list[Option], loads, placed):
    """elk.noc's exact fluid check on the window: its free, future and committed loads (the committed ones
    from the origin on, with the work they still have to do) against its executions. (loads, verdict), or
    (loads, None) when no load has work."""
    import numpy as np

    from elk.noc import check_fluid
    fixed_ops = {f.op for f in problem.fixed}
    work_cap = {op: (o.load_work, o.load_cap) for op, o in placed.items()}
    work_cap.update({f.op: (f.work, f.cap) for f in problem.fixed})
    free = sorted((max(start, 0) if op in fixed_ops else start, end, op) for op, start, end, _, _ in loads
                  if (op in placed or op in fixed_ops) and end > max(start, 0) and work_cap[op][0] > 0)
    if not free:
        return free, None
    la = np.array([x[0] for x in free], float)
    lb = np.array([x[1] for x in free], float)
    work = np.array([work_cap[x[2]][0] for x in free], float) / SHARE_SCALE
    cap = np.array([work_cap[x[2]][1] for x in free], float) / SHARE_SCALE
    comm = np.array([o.comm for o in opts], float)
    return free, check_fluid(np.array(a.exec_start, float), np.array(a.exec_end, float), comm, la, lb, work,
                             work / np.maximum(cap, 1e-12), 1e-9)


def fluid_split(problem: WindowProblem, a: WindowAssignment) -> dict[tuple[int, int], float]:
    """Work (SHARE_SCALE x cycles) each fluid load does inside each window execution, in a valid split of ``a``.

    The split elk.noc finds (loads as early as they can); keys are (execution
    position, program op). Used to complete warm starts of the fluid models.
    """
    import numpy as np
    opts = [w.options[c] for w, c in zip(problem.ops, a.choice)]
    free, verdict = _fluid_check(problem, a, opts, loads_of(problem, a), placed_options(problem, a))
    if verdict is None:
        return {}
    prof = verdict.profile
    seg = np.diff(prof.time)
    mid = prof.time[:-1] + seg / 2
    out: dict[tuple[int, int], float] = {}
    for k in range(len(problem.ops)):
        inside = (mid >= a.exec_start[k]) & (mid < a.exec_end[k]) & (prof.load_op >= 0)
        for j in np.unique(prof.load_op[inside]):
            sel = inside & (prof.load_op == j)
            out[(k, free[int(j)][2])] = float((prof.load_share[sel] * seg[sel]).sum()) * SHARE_SCALE
    return out


def fixed_channel_blocks(problem: WindowProblem) -> list[tuple[int, int]]:
    """Fixed loads merged into disjoint busy spans of the HBM channel.

    Fixed loads are widened to whole cycles, so two that were back to back may
    now share a cycle; they are fixed, so only the union matters to new loads.
    """
    spans = sorted((f.start, f.end) for f in problem.fixed if f.end > f.start)
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    """Length of the intersection of ``[a0, a1)`` and ``[b0, b1)`` (0 if disjoint)."""
    return max(0, min(a1, b1) - max(a0, b0))


def loads_of(problem: WindowProblem, a: WindowAssignment) -> list[tuple[int, int, int, int, int]]:
    """(op, start, end, rigid share, owner position or -1) of every load in the window's view."""
    out = [(f.op, f.start, f.end, f.share, f.owner) for f in problem.fixed]
    for k, w in enumerate(problem.ops):
        if w.load == "free":
            opt = w.options[a.choice[k]]
            out.append((w.op, a.load_start[w.op], a.end_of(w.op, opt), opt.load_share, k))
    for f in problem.future:
        out.append((f.op, a.load_start[f.op], a.end_of(f.op, f.option), f.option.load_share, -1))
    return out


def placed_options(problem: WindowProblem, a: WindowAssignment) -> dict[int, Option]:
    """The option each free or future load is placed with, by program op."""
    out = {w.op: w.options[a.choice[k]] for k, w in enumerate(problem.ops) if w.load == "free"}
    out.update({f.op: f.option for f in problem.future})
    return out


def check(problem: WindowProblem, a: WindowAssignment) -> list[str]:
    """Every constraint of the window model that ``a`` breaks (empty if feasible)."""
    errors: list[str] = []
    ops = problem.ops
    if len(a.choice) != len(ops):
        return [f"{len(a.choice)} choices for {len(ops)} operators"]
    for k, w in enumerate(ops):
        if not 0 <= a.choice[k] < len(w.options):
            return [f"operator {w.op}: option {a.choice[k]} out of range"]
    missing = [f.op for f in problem.future if f.op not in a.load_start] + \
        [w.op for w in ops if w.load == "free" and w.op not in a.load_start]
    if missing:
        return [f"load of op {op} is not placed" for op in missing]
    opts = [w.options[c] for w, c in zip(ops, a.choice)]
    for k, (w, opt) in enumerate(zip(ops, opts)):
        s, e = a.exec_start[k], a.exec_end[k]
        if e - s < opt.time:
            errors.append(f"op {w.op}: runs {e - s} < plan time {opt.time}")
        if k == 0 and s < problem.release:
            errors.append(f"op {w.op}: starts before the release time")
        if k > 0 and s < a.exec_end[k - 1]:
            errors.append(f"op {w.op}: starts before op {ops[k - 1].op} ends")
        if e > problem.horizon:
            errors.append(f"op {w.op}: ends after the horizon")
    loads = loads_of(problem, a)
    placed = placed_options(problem, a)
    for op, start, end, share, owner in loads:
        if owner >= 0 and end > a.exec_start[owner]:
            errors.append(f"load of op {op} ends after the operator starts")
        if op in placed:
            opt = placed[op]
            if end - start < opt.load_time or (not problem.fluid and end - start != opt.load_time):
                errors.append(f"load of op {op} lasts {end - start}, its layout needs {opt.load_time}")
    for f in problem.future:
        end = a.end_of(f.op, f.option)
        if end > f.latest_end:
            errors.append(f"future load of op {f.op} ends at {end} > {f.latest_end}")
    for k, w in enumerate(ops):
        if w.load == "free" and w.latest_end is not None:
            end = a.end_of(w.op, w.options[a.choice[k]])
            if end > w.latest_end:
                errors.append(f"load of op {w.op} ends at {end} > {w.latest_end}")
    fixed_ops = {f.op for f in problem.fixed}
    for op, start, end, share, owner in loads:
        if op not in fixed_ops and start < problem.release:
            errors.append(f"load of op {op} starts before the release time")
    spans = sorted([(start, end, op) for op, start, end, _, _ in loads if end > start and op not in fixed_ops]
                   + [(s0, e0, -1) for s0, e0 in fixed_channel_blocks(problem)])
    channel_ok = True
    for (s0, e0, op0), (s1, e1, op1) in zip(spans, spans[1:]):
        if s1 < e0:
            errors.append(f"loads of ops {op0} and {op1} overlap on the HBM channel")
            channel_ok = False
    order_ok = all(a.exec_end[k] <= a.exec_start[k + 1] and a.exec_start[k] <= a.exec_end[k]
                   for k in range(len(ops) - 1))
    errors += _interconnect(problem, a, opts, loads, placed, channel_ok and order_ok)
    # SRAM at every event time
    events = sorted({a.exec_start[k] for k in range(len(ops))} | {start for _, start, _, _, _ in loads})
    for t in events:
        used = 0
        for k, opt in enumerate(opts):
            if a.exec_start[k] <= t < a.exec_end[k]:
                used += opt.hot
        for f in problem.fixed:
            until = a.exec_start[f.owner] if f.owner >= 0 else problem.horizon + 1
            if f.start <= t < until:
                used += f.cold
        for k, (w, opt) in enumerate(zip(ops, opts)):
            if w.load == "free" and a.load_start[w.op] <= t < a.exec_start[k]:
                used += opt.cold
        for f in problem.future:
            if a.load_start[f.op] <= t:
                used += f.option.cold
        if used > problem.sram:
            errors.append(f"SRAM {used} > {problem.sram} at time {t}")
            break
    return errors
