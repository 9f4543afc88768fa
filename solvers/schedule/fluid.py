"""Interconnect bookkeeping of the backward pass under fluid loads (docs/design.md §5.1, elk/noc.py).

The backward pass places executions from the last to the first. Everything at
or after the *frontier* F (the start of the earliest placed execution) is
*accounted*: each placed execution k knows how much interconnect it still has
free for loads (``slack[k]``), and each placed load j knows how much of its work
is not yet assigned to accounted time (``need[j]``), which it must do below F
in its interval. Invariant: ``need[j] <= cap[j] * (F - a[j])`` (a load's rate is
at most ``cap = min(1, work / HBM time)``).

Placing execution i at ``[s, d)`` accounts ``[s, F)``: loads overlapping the gap
``[d, F)`` run at full rate there, and inside ``[s, d)`` they share the
execution's slack ``(d - s) - comm``, latest load first (the mirror of the
simulator's earliest-first split, which is optimal: only the earliest load can
still work below ``s``). What a load cannot do by then must fit below ``s``:

* ``stretch`` keeps the loads where they are and starts the execution early
  enough (the smallest stretch that leaves every load room);
* ``push`` keeps the execution's plan time and lets the loads yield: the first
  load (latest first) that cannot finish starts earlier, at its planning rate,
  and every earlier load moves up behind it.

Both produce schedules the simulator's exact fluid check accepts by
construction: the assignment they build is one valid choice of rates.
"""
from __future__ import annotations

from dataclasses import dataclass

EPS = 1e-9


@dataclass
class FluidLoads:
    """Per-operator state of the fluid bookkeeping (plain lists: the pass reads them in tight loops)."""

    need: list[float]  # work not yet assigned to accounted time
    cap: list[float]  # top rate, as a share of the interconnect
    plan_rate: list[float]  # rate a load is planned at in unaccounted time (min(theta, cap))
    slack: list[float]  # per placed execution: interconnect still free for loads

    @classmethod
    def empty(cls, n: int) -> "FluidLoads":
        """Books for ``n`` operators with no load placed yet."""
        return cls([0.0] * n, [1.0] * n, [1.0] * n, [0.0] * n)


def open_loads(chain: list[int], load_s: list[float], frontier: float) -> list[int]:
    """Loads that start before the frontier (the only ones that can have unassigned work), latest first."""
    out = []
    q = len(chain) - 1
    while q >= 0 and load_s[chain[q]] < frontier:
        q -= 1
    for k in range(q + 1, len(chain)):
        out.append(chain[k])
    return out


def needy(ops: list[int], st: FluidLoads) -> list[int]:
    """The open loads that still have work to place (the others take no part in the accounting)."""
    return [op for op in ops if st.need[op] > EPS]


def after_gap(op: int, d: float, frontier: float, load_s, load_e, st: FluidLoads) -> float:
    """An open load's need once it has run at full rate in the gap ``[d, frontier)``."""
    need = st.need[op]
    hi = load_e[op] if load_e[op] < frontier else frontier
    if hi > d and need > 0:
        lo = load_s[op] if load_s[op] > d else d
        got = st.cap[op] * (hi - lo)
        need = need - got if need > got else 0.0
    return need


def stretch_start(d: float, t_plan: float, comm: float, ops: list[int], frontier: float, load_s, load_e,
                  st: FluidLoads) -> float:
    """Latest start of an execution ending at ``d`` that leaves every open load room for its work.

    Mandatory work inside ``[s, d)``: each load's need minus what it can do below
    ``s`` at full rate. It grows by at most the active load's cap per cycle of
    stretch while the capacity grows by one, so the latest feasible ``s`` is found
    by one walk down the loads. ``ops`` are the loads with work left, latest first;
    a load ending before ``s`` can do all its work below it, which ends each loop.
    """
    s = d - t_plan
    needs: list[tuple[int, float]] = []  # (op, need after the gap) of the loads that matter, latest first

    st_need, cap = st.need, st.cap
    total = 0.0  # mandatory work inside [s, d): each load's need minus what it can do below s
    for op in ops:
        b = load_e[op]
        if b <= s:
            break
        need = st_need[op]  # after_gap(), inlined: this loop runs for every candidate plan
        hi = b if b < frontier else frontier
        a = load_s[op]
        if hi > d and need > 0:
            got = cap[op] * (hi - (a if a > d else d))
            need = need - got if need > got else 0.0
        below = cap[op] * (s - a) if s > a else 0.0
        if need > below:
            total += need - below

    short = total - (d - s - comm)
    if short <= EPS:
        return s
    for op in ops:
        need = after_gap(op, d, frontier, load_s, load_e, st)
        if need > 0:
            needs.append((op, need))
    # walk down: breakpoints are where a load's mandatory part starts growing (a + need/cap) and its start
    points = []
    for op, need in needs:
        points.append(load_s[op] + need / st.cap[op])
        points.append(load_s[op])
    points = sorted((p for p in points if p < s), reverse=True)
    cur = s
    for point in points + [float("-inf")]:
        active = 0.0  # cap of the load whose mandatory part grows between ``point`` and ``cur``
        probe = cur - 1e-9 if point == float("-inf") else (cur + point) / 2
        for op, need in needs:
            if load_s[op] < probe < load_s[op] + need / st.cap[op]:
                active = st.cap[op]
                break
        slope = 1.0 - active  # shortfall falls this much per cycle of stretch
        if slope > EPS and (point == float("-inf") or short - slope * (cur - point) <= EPS):
            return cur - short / slope
        if point != float("-inf"):
            short -= slope * (cur - point)
            cur = point
    return cur - short  # not reached: below every load the slope is 1


@dataclass(slots=True)
class Push:
    """How loads must yield to an execution: the load that cannot finish and its new start (or none)."""

    op: int = -1
    new_start: float = 0.0
    frontier: float = 0.0  # earliest load start after the move


def push_loads(s: float, d: float, comm: float, ops: list[int], frontier: float, chain_end: list[int],
               load_s, load_e, st: FluidLoads) -> Push:
    """Loads yield to an execution at ``[s, d)``: which one must start earlier, and where the chain then begins.

    ``ops``: the loads with work left, latest first; ``chain_end``: every placed
    load from the open ones down to the earliest, latest first (the loads that
    move up behind a load that starts earlier).
    """
    slack = d - s - comm
    st_need, cap = st.need, st.cap
    for op in ops:
        need = st_need[op]  # after_gap(), inlined: this loop is the pass's hottest
        b = load_e[op]
        hi = b if b < frontier else frontier
        if hi > d and need > 0:
            a = load_s[op]
            got = cap[op] * (hi - (a if a > d else d))
            need = need - got if need > got else 0.0
        if need > EPS:
            hi = b if b < d else d
            lo = load_s[op] if load_s[op] > s else s
            if hi > lo and slack > 0:
                got = cap[op] * (hi - lo)
                got = got if got < slack else slack
                got = got if got < need else need
                need -= got
                slack -= got
            room = cap[op] * (s - load_s[op]) if s > load_s[op] else 0.0
            if need > room + EPS:
                new_start = s - need / st.plan_rate[op]
                return Push(op, new_start, _cascade(op, new_start, chain_end, load_s, load_e))
        if load_s[op] < s:  # every earlier load lies below s, with room for its work there
            break
    return Push(-1, 0.0, load_s[chain_end[-1]] if chain_end else d)


def _cascade(op: int, new_start: float, chain_end: list[int], load_s, load_e) -> float:
    """Start of the earliest load once ``op`` starts at ``new_start`` and every earlier load moves up behind it."""
    k = chain_end.index(op)
    t = new_start
    for other in chain_end[k + 1:]:
        if load_e[other] > t:
            t = load_s[other] - (load_e[other] - t)
        else:
            return load_s[chain_end[-1]]
    return t


def apply_push(push: Push, chain_end: list[int], load_s, load_e) -> None:
    """Move the load that yields and every earlier one (as far as they overlap)."""
    k = chain_end.index(push.op)
    load_s[push.op] = push.new_start
    t = push.new_start
    for other in chain_end[k + 1:]:
        if load_e[other] <= t:
            break
        shift = load_e[other] - t
        load_s[other] -= shift
        load_e[other] -= shift
        t = load_s[other]


def account(i: int, s: float, d: float, comm: float, ops: list[int], frontier: float, load_s, load_e,
            st: FluidLoads) -> None:
    """Assign the loads' work in ``[s, frontier)`` (gap at full rate, then execution i's slack, latest first)."""
    slack = d - s - comm
    for op in ops:
        if load_e[op] <= s:
            break  # this load and every earlier one lie below s: nothing of theirs is accounted yet
        need = after_gap(op, d, frontier, load_s, load_e, st)
        if need > EPS and slack > 0:
            hi = load_e[op] if load_e[op] < d else d
            lo = load_s[op] if load_s[op] > s else s
            if hi > lo:
                got = st.cap[op] * (hi - lo)
                got = got if got < slack else slack
                got = got if got < need else need
                need -= got
                slack -= got
        st.need[op] = need if need > EPS else 0.0
    st.slack[i] = slack if slack > 0 else 0.0


def place_load(op: int, end: float, frontier: float, placed: list[int], exec_s, exec_e, work: float,
               st: FluidLoads) -> float:
    """Start of a load ending at ``end`` that does ``work``: in accounted time first (gaps at full rate,
    executions' slack), the rest below the frontier at its planning rate. Returns the start."""
    need = work
    t = end
    if end > frontier:
        cap = st.cap[op]
        for k in placed:  # placed executions overlapping [frontier, end), latest first
            if exec_s[k] >= t:
                continue
            if exec_e[k] < t:  # gap above execution k
                got = cap * (t - exec_e[k])
                if got >= need:
                    st.need[op] = 0.0
                    return t - need / cap
                need -= got
                t = exec_e[k]
            lo = exec_s[k] if exec_s[k] > frontier else frontier
            got = min(cap * (t - lo), st.slack[k], need)
            st.slack[k] -= got
            need -= got
            if need <= EPS:
                st.need[op] = 0.0
                return lo
            t = lo
        if t > frontier:  # gap down to the frontier
            got = cap * (t - frontier)
            if got >= need:
                st.need[op] = 0.0
                return t - need / cap
            need -= got
        t = frontier
    st.need[op] = need
    return t - need / st.plan_rate[op]
