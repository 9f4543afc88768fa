"""A slow, independent reference for the simulator's verdict (test-only code).

Written from docs/design.md §5 and §5.1, not from ``elk/simulator.py`` or ``elk/noc.py``: plain
Python loops over operators, loads, event times and elementary time segments, on purpose, so
that the vectorized judge is checked against something that shares none of its tricks
(no sorted-array searches, no cumulative sums, no closed form). Only the workload's facts are
shared: the chosen plan rows (``workload.chosen``), the HBM cycles of each load and which
operators load anything, and the chip's SRAM and load model.

The rules, for a strict schedule (relaxed schedules are not handled):

1. executions run in program order (``e_i <= s_{i+1}``) and each lasts at least its plan time;
2. a load ends before its operator starts, lasts at least bytes / HBM bandwidth (its HBM cycles),
   and no two loads overlap (one HBM channel); a store (§5.2) starts after its operator ends, lasts at
   least its bytes / HBM bandwidth, shares the channel with the loads, and ends before a load that
   reads what it wrote starts;
3. the interconnect: a load must move its interconnect work (``noc``) inside its interval, so it
   lasts at least that long; an execution needs its communication cycles of interconnect inside
   its own interval; at every instant the loads' share plus the execution's share is at most 1.

   * rigid: each load runs at one constant share (work / duration); an execution's communication
     must fit in the integral of (1 - load share) over its run, summed segment by segment;
   * fluid: a load's rate may vary, at most ``min(1, work / HBM cycles)`` of the interconnect;
     feasibility is a small linear program (PuLP + HiGHS) over the elementary time segments.

   Like docs/design.md's statement of rule 3, this presumes one execution and one load at a time: it is
   only evaluated when rules 1-order and 2-channel hold;
4. SRAM, at every event time t: hot bytes of the operators running at t (``s_i <= t < e_i``) plus
   cold bytes of every operator whose load has started and which has not started executing
   (``a_j <= t < s_j``), plus ``ceil(bytes / cores)`` of every store pending since its operator ended
   (``e_i <= t < store end``) fit in SRAM per core.

Latency = last execution or store end - first event (first load start or first execution start).

Every comparison is made with the simulator's kind of tolerance, ``tol = 1e-6 + 1e-9 * |time|``
(the largest time of the schedule): a requirement missed by ``excess`` is a violation iff
``excess > tol``. Each check's excess is kept, so that tests can leave out schedules whose verdict
sits within a factor of the tolerance of the boundary (:meth:`Verdict.near_boundary`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pulp

from elk.schedule import Schedule
from elk.workload import Workload


@dataclass(frozen=True)
class Finding:
    """One violated requirement: the simulator's rule name, the operator (-1: none), when, and by how much."""

    rule: str
    op: int
    time: float
    excess: float

    @property
    def family(self) -> str:
        return self.rule.split("-")[0]


@dataclass
class Verdict:
    valid: bool
    findings: list[Finding]
    latency: float
    tol: float
    #: (rule, excess) of every tolerance-based comparison made, violated or not
    margins: list[tuple[str, float]] = field(default_factory=list)

    @property
    def families(self) -> set[str]:
        return {f.family for f in self.findings}

    @property
    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def near_boundary(self, factor: float = 10.0) -> bool:
        """Whether some comparison's excess lies within ``factor`` of the tolerance (either side)."""
        return any(self.tol / factor < x < self.tol * factor for _, x in self.margins)


def tolerance(scale: float) -> float:
    return 1e-6 + 1e-9 * abs(scale)


class _Record:
    """Findings and margins of one check, under one tolerance."""

    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.findings: list[Finding] = []
        self.margins: list[tuple[str, float]] = []

    def require(self, rule: str, op: int, time: float, excess: float) -> None:
        """A requirement missed by ``excess`` (<= 0: met); a violation iff ``excess > tol``."""
        self.margins.append((rule, excess))
        if excess > self.tol:
            self.findings.append(Finding(rule, op, time, excess))


def check(workload: Workload, schedule: Schedule, *, rate_caps: bool = True) -> Verdict:
    """Judge ``schedule`` against rules 1-4, event by event.

    ``rate_caps=False`` lets fluid loads use the whole interconnect whatever their HBM time (not a
    rule: tests use it to count the schedules whose verdict the rate caps decide).
    """
    if not schedule.relaxation.strict:
        raise ValueError("the reference checker judges strict schedules only")
    n = len(workload.tables)
    if _structure(workload, schedule, n):
        return Verdict(False, [Finding("0-structure", -1, 0.0, math.inf)], math.nan, 0.0)

    facts = workload.chosen(schedule.entry)
    plan = [float(facts["time"][i]) for i in range(n)]
    comm = [float(facts["comm"][i]) for i in range(n)]
    hot = [int(facts["hot"][i]) for i in range(n)]
    cold = [int(facts["cold"][i]) for i in range(n)]
    loads = [i for i in range(n) if bool(workload.has_load[i])]
    stores = [i for i in range(n) if bool(workload.has_store[i])]
    # transfers are keyed by the operator for a load and by n + the operator for a store
    transfers = loads + [n + i for i in stores]
    noc = {j: float(facts["noc"][j]) for j in loads}
    hbm = {j: float(workload.hbm_cycles[j]) for j in loads}
    for i in stores:
        noc[n + i] = float(workload.store_bytes[i]) / workload.noc_load_bytes_per_cycle
        hbm[n + i] = float(workload.store_bytes[i]) / workload.chip.hbm_bytes_per_cycle
    sram = int(workload.chip.sram_per_core)
    fluid = workload.chip.load_model.value == "fluid"

    s = [float(x) for x in schedule.exec_start]
    e = [float(x) for x in schedule.exec_end]
    a = {j: float(schedule.load_start[j]) for j in loads}
    b = {j: float(schedule.load_end[j]) for j in loads}
    for i in stores:
        a[n + i] = float(schedule.store_start[i])
        b[n + i] = float(schedule.store_end[i])

    def owner(k: int) -> int:
        return k - n if k >= n else k

    scale = 0.0
    for t in s + e + list(a.values()) + list(b.values()):
        scale = max(scale, abs(t))
    rec = _Record(tolerance(scale))

    # rule 1 ----------------------------------------------------------------------------------
    for i in range(n - 1):
        rec.require("1-order", i + 1, s[i + 1], e[i] - s[i + 1])
    for i in range(n):
        rec.require("1-duration", i, s[i], plan[i] - (e[i] - s[i]))

    # rule 2 ----------------------------------------------------------------------------------
    for j in loads:
        rec.require("2-deadline", j, s[j], b[j] - s[j])
        rec.require("2-bandwidth", j, a[j], hbm[j] - (b[j] - a[j]))
    for i in stores:
        rec.require("2-store-start", i, a[n + i], e[i] - a[n + i])
        rec.require("2-store-bandwidth", i, a[n + i], hbm[n + i] - (b[n + i] - a[n + i]))
    for writer, reader in workload.program.round_trips:
        rec.require("2-round-trip", reader, a[reader], b[n + writer] - a[reader])
    for x in transfers:
        for y in transfers:
            if x < y:
                overlap = min(b[x], b[y]) - max(a[x], a[y])
                later = y if (a[y], y) > (a[x], x) else x
                rec.require("2-channel", owner(later), max(a[x], a[y]), overlap)

    # rule 3 ----------------------------------------------------------------------------------
    for j in transfers:
        rec.require("3-noc-share", owner(j), a[j], noc[j] - (b[j] - a[j]))
    ordered = not any(f.rule in ("1-order", "2-channel") for f in rec.findings)
    if ordered:
        segments = _segments(s, e, a, b, transfers, n)
        if fluid:
            _fluid(rec, segments, s, e, a, comm, noc, hbm if rate_caps else noc, transfers, n, owner)
        else:
            _rigid(rec, segments, s, e, a, b, comm, noc, transfers, n)

    # rule 4 ----------------------------------------------------------------------------------
    events = sorted(set(s + e + [a[j] for j in loads]))
    reported: set[int] = set()
    for t in events:
        running = [i for i in range(n) if s[i] <= t < e[i]]
        waiting = [j for j in loads if a[j] <= t < s[j]]
        pending = [i for i in stores if e[i] <= t < b[n + i]]
        used = sum(hot[i] for i in running) + sum(cold[j] for j in waiting) + \
            sum(-(-int(workload.store_bytes[i]) // workload.chip.cores) for i in pending)
        if used > sram:  # whole bytes: no tolerance
            op = running[0] if running else -1
            if op not in reported:
                reported.add(op)
                rec.findings.append(Finding("4-sram", op, t, float(used - sram)))

    first = min(s)
    for j in loads:
        first = min(first, a[j])
    last = max(e + [b[n + i] for i in stores])
    latency = last - first
    findings = sorted(rec.findings, key=lambda f: (f.time, f.rule))
    return Verdict(not findings, findings, latency, rec.tol, rec.margins)


def _structure(workload: Workload, schedule: Schedule, n: int) -> str:
    for name in ("entry", "exec_start", "exec_end", "load_start", "load_end"):
        if len(getattr(schedule, name)) != n:
            return f"{name} has the wrong length"
    for i in range(n):
        if not 0 <= int(schedule.entry[i]) < len(workload.tables[i]):
            return f"operator {i}: plan row out of range"
        times = [schedule.exec_start[i], schedule.exec_end[i]]
        if workload.has_load[i]:
            times += [schedule.load_start[i], schedule.load_end[i]]
        if not all(math.isfinite(float(t)) for t in times):
            return f"operator {i}: a time is not finite"
    return ""


@dataclass
class _Segment:
    start: float
    end: float
    load_ops: list[int]  # operators whose load is active throughout the segment
    exec_ops: list[int]  # operators executing throughout the segment

    @property
    def length(self) -> float:
        return self.end - self.start


def _segments(s, e, a, b, loads, n) -> list[_Segment]:
    """The elementary segments between consecutive event times, each with what is active in it."""
    points = sorted(set(s + e + [a[j] for j in loads] + [b[j] for j in loads]))
    out = []
    for k in range(len(points) - 1):
        lo, hi = points[k], points[k + 1]
        active = [j for j in loads if a[j] <= lo and hi <= b[j]]
        running = [i for i in range(n) if s[i] <= lo and hi <= e[i]]
        out.append(_Segment(lo, hi, active, running))
    return out


def _rigid(rec: _Record, segments, s, e, a, b, comm, noc, loads, n) -> None:
    """Constant shares: an execution gets the integral of (1 - load share) over its run."""
    share = {}
    for j in loads:
        share[j] = noc[j] / (b[j] - a[j]) if b[j] > a[j] else 0.0
    for i in range(n):
        free = 0.0
        for seg in segments:
            if i in seg.exec_ops:
                used = 0.0
                for j in seg.load_ops:
                    used += share[j]
                free += (1.0 - used) * seg.length
        rec.require("3-noc-exec", i, s[i], comm[i] - free)


def _fluid(rec: _Record, segments, s, e, a, comm, noc, hbm, loads, n, owner) -> None:
    """Variable rates: an execution's communication fits in its own run, and an LP splits the loads' work."""
    for i in range(n):
        rec.require("3-noc-exec", i, s[i], comm[i] - (e[i] - s[i]))
    in_time_order = sorted(loads, key=lambda j: (a[j], j))
    total = sum(noc[j] for j in in_time_order)
    shortfall = total - _max_work(segments, s, e, comm, noc, hbm, in_time_order, n)
    rec.margins.append(("3-noc-load", shortfall))
    if shortfall <= rec.tol:
        return
    # name the first load (in time order) that cannot finish even with every later one left out
    for k in range(len(in_time_order)):
        prefix = in_time_order[: k + 1]
        missing = sum(noc[j] for j in prefix) - _max_work(segments, s, e, comm, noc, hbm, prefix, n)
        if missing > rec.tol:
            j = prefix[-1]
            rec.findings.append(Finding("3-noc-load", owner(j), a[j], missing))
            return
    rec.findings.append(Finding("3-noc-load", -1, a[in_time_order[-1]], shortfall))


def _max_work(segments, s, e, comm, noc, hbm, loads, n) -> float:
    """Most interconnect work ``loads`` can move in their intervals (an LP over the segments)."""
    cap = {j: min(1.0, noc[j] / hbm[j]) if hbm[j] > 0 else 1.0 for j in loads}
    prob = pulp.LpProblem("fluid_reference", pulp.LpMaximize)
    pieces = []  # (variable, load, segment index)
    for k, seg in enumerate(segments):
        for j in seg.load_ops:
            if j in cap:
                var = prob.add_variable(f"u_{j}_{k}", 0.0, cap[j] * seg.length)
                pieces.append((var, j, k))
    if not pieces:
        return 0.0
    prob += pulp.lpSum(v for v, _, _ in pieces)
    for j in loads:
        mine = [v for v, jj, _ in pieces if jj == j]
        if mine:
            prob += pulp.lpSum(mine) <= noc[j]
    for k, seg in enumerate(segments):
        here = [v for v, _, kk in pieces if kk == k]
        if len(here) > 1:  # loads overlapping within the tolerance: together at most the whole interconnect
            prob += pulp.lpSum(here) <= seg.length
    for i in range(n):
        inside = [v for v, _, k in pieces if i in segments[k].exec_ops]
        if inside:
            prob += pulp.lpSum(inside) <= max(0.0, (e[i] - s[i]) - comm[i])
    prob.solve(pulp.HiGHS(msg=False))
    status = pulp.LpStatus[prob.status]
    if status != "Optimal":
        raise RuntimeError(f"reference LP ended {status}")
    return float(pulp.value(prob.objective) or 0.0)
