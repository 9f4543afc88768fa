"""Exhaustive enumeration of small windows: an independent check of the CP-SAT and MILP models.

Enumerates every plan choice, every order of the loads to place, and for every
load the event it waits for (nothing, or the end of one of the window's
executions, i.e. SRAM being freed); times then follow by earliest-start rules
and each candidate is judged by ``formulations.schedule.window.check``.

Why this is exhaustive when the interconnect does not bind: starting an
execution earlier only shortens the time loads are resident with it, so some
optimal schedule runs every execution as early as its predecessor and its own
load allow; and every load of such a schedule can be moved earlier until it
touches the end of the load before it on the channel, the release time, or
the end of an execution (the only moments SRAM is freed), without breaking any
rule or raising the objective. Instances where interconnect sharing binds are
outside its reach (it reports only what it finds); use ``noc_binding`` to tell.
"""
from __future__ import annotations

from itertools import permutations, product

from formulations.schedule.window import SHARE_SCALE, WindowAssignment, WindowProblem, check


def solve_brute_force(problem: WindowProblem, limit: int = 2_000_000) -> tuple[WindowAssignment | None, int]:
    """Best assignment and the number of candidates judged (raises if more than ``limit``)."""
    ops = problem.ops
    free = [k for k, w in enumerate(ops) if w.load == "free"]
    loads = [("w", k) for k in free] + [("f", f) for f in problem.future]
    n_choices = 1
    for w in ops:
        n_choices *= len(w.options)
    count = n_choices
    for m in range(2, len(loads) + 1):
        count *= m
    count *= (len(ops) + 1) ** len(loads)
    if count > limit:
        raise ValueError(f"{count:,} candidates: too many to enumerate (limit {limit:,})")
    fixed_end = {f.owner: f.end for f in problem.fixed if f.owner >= 0}
    busy = sorted((f.start, f.end) for f in problem.fixed if f.end > f.start)
    best = _Best()
    judged = 0
    for choice in product(*(range(len(w.options)) for w in ops)):
        opts = [w.options[c] for w, c in zip(ops, choice)]
        sizes = {("w", k): opts[k].load_time for k in free}
        sizes.update({("f", f.op): f.option.load_time for f in problem.future})
        for order in permutations(loads):
            keys = [(kind, ref if kind == "w" else ref.op) for kind, ref in order]
            for waits in product(range(-1, len(ops)), repeat=len(order)):
                judged += 1
                a = _times(problem, opts, keys, waits, sizes, fixed_end, busy)
                if a is None:
                    continue
                a.choice = list(choice)
                best.consider(problem, a)
    return best.assignment, judged


def _times(problem, opts, keys, waits, sizes, fixed_end, busy) -> WindowAssignment | None:
    """Earliest start times for one (choice, order, waits) candidate, or None if they never settle."""
    K = len(opts)
    exec_end = [problem.release] * K
    exec_start = [problem.release] * K
    load_start: dict = {}
    for _ in range(2 * (K + len(keys)) + 2):  # monotone fixed point; no convergence = a cycle
        changed = False
        prev_end = problem.release
        for (kind, ref), wait in zip(keys, waits):
            start = max(prev_end, problem.release, exec_end[wait] if wait >= 0 else problem.release)
            start = _after_busy(start, sizes[(kind, ref)], busy)
            op = problem.ops[ref].op if kind == "w" else ref
            if load_start.get(op) != start:
                load_start[op] = start
                changed = True
            prev_end = start + sizes[(kind, ref)]
        t = problem.release
        for k in range(K):
            ready = t
            if problem.ops[k].load == "free":
                ready = max(ready, load_start[problem.ops[k].op] + opts[k].load_time)
            if k in fixed_end:
                ready = max(ready, fixed_end[k])
            end = ready + opts[k].time
            if exec_start[k] != ready or exec_end[k] != end:
                exec_start[k], exec_end[k] = ready, end
                changed = True
            t = end
        if not changed:
            return WindowAssignment([], list(exec_start), list(exec_end), dict(load_start))
    return None


def _after_busy(start: int, size: int, busy: list[tuple[int, int]]) -> int:
    """Earliest start >= ``start`` at which a load of ``size`` avoids the fixed busy spans."""
    for b0, b1 in busy:
        if start < b1 and start + size > b0:
            start = b1
    return start


def noc_binding(problem: WindowProblem) -> bool:
    """Whether interconnect sharing could constrain any execution of this window.

    Loads never overlap each other, so at most the largest share covers a whole
    execution; if even that leaves room for every option's communication at its
    plan time, the interconnect rule can never bind.
    """
    shares = [o.load_share for w in problem.ops for o in w.options] + [f.option.load_share for f in problem.future] \
        + [f.share for f in problem.fixed]
    worst = max(shares + [0])
    return any(worst * o.time > SHARE_SCALE * (o.time - o.comm) for w in problem.ops for o in w.options)


def solve_exhaustive(problem: WindowProblem, limit: int = 3_000_000) -> tuple[WindowAssignment | None, int]:
    """Best assignment over *every* integer timing up to the horizon (tiny windows only; both load models).

    Unlike :func:`solve_brute_force` this makes no earliest-start argument, so
    it stays exhaustive when the interconnect binds (an execution stretched for
    its communication, a fluid load lengthened to pause): every plan choice,
    every execution start and end, every load start and end (a rigid load's end
    is its start plus its option's load time) is tried, and ``check`` judges.
    Raises ValueError past ``limit`` candidates.
    """
    ops = problem.ops
    loads = [(k, w.op) for k, w in enumerate(ops) if w.load == "free"] + [(-1, f.op) for f in problem.future]
    future = {f.op: f for f in problem.future}
    H = problem.horizon
    best = _Best()
    judged = 0

    def execs(k: int, prev: int, starts: list, ends: list, opts):
        if k == len(ops):
            yield list(starts), list(ends)
            return
        lo = max(prev, problem.release if k == 0 else prev)
        for s in range(lo, H + 1):
            for e in range(s + opts[k].time, H + 1):
                starts.append(s)
                ends.append(e)
                yield from execs(k + 1, e, starts, ends, opts)
                starts.pop()
                ends.pop()

    def place(i: int, starts, opts, got: dict, ends_of: dict):
        if i == len(loads):
            yield dict(got), dict(ends_of)
            return
        owner, op = loads[i]
        opt = opts[owner] if owner >= 0 else future[op].option
        last = starts[owner] if owner >= 0 else future[op].latest_end
        for a in range(problem.release, last + 1):
            lengths = range(opt.load_time, last - a + 1) if problem.fluid else [opt.load_time]
            for length in lengths:
                if a + length > last:
                    break
                got[op] = a
                if problem.fluid:
                    ends_of[op] = a + length
                yield from place(i + 1, starts, opts, got, ends_of)
                ends_of.pop(op, None)
        got.pop(op, None)

    for choice in product(*(range(len(w.options)) for w in ops)):
        opts = [w.options[c] for w, c in zip(ops, choice)]
        for starts, ends in execs(0, problem.release, [], [], opts):
            for got, ends_of in place(0, starts, opts, {}, {}):
                judged += 1
                if judged > limit:
                    raise ValueError(f"more than {limit:,} candidates: too many to enumerate")
                best.consider(problem, WindowAssignment(list(choice), starts, ends, got, ends_of))
    return best.assignment, judged


class _Best:
    """The best feasible assignment seen so far (``check`` judges, the window objective ranks)."""

    def __init__(self) -> None:
        self.assignment: WindowAssignment | None = None
        self.value: int | None = None

    def consider(self, problem: WindowProblem, a: WindowAssignment) -> None:
        if check(problem, a):
            return
        value = a.objective(problem)
        if self.value is None or value < self.value:
            self.assignment, self.value = a, value
