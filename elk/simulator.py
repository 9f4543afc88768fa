"""The judge: validates a schedule against the four rules and times it.

Rules (cycles; intervals half-open):

1. executions run one at a time in program order (``end[i] <= start[i+1]``)
   and none is faster than its plan (``end - start >= plan time``);
2. a load ends before its operator starts, lasts at least bytes / HBM
   bandwidth, and loads never overlap (one HBM channel, any order);
3. loads spread data over the interconnect: a load whose layout replicates
   data needs ``bytes * broadcast ratio`` of it (its interconnect *work*), so it
   lasts at least that long. At every instant the loads' share plus the running
   operator's share is at most 1, and an operator's communication must fit in
   its own interval (it may use any free capacity there). Under the chip's
   ``load_model`` a load runs at one constant rate (``rigid``) or at any rate up
   to the HBM bandwidth (``fluid``, the default): :mod:`elk.noc` decides either
   exactly and returns the rate profile it found.
4. per-core SRAM: at every instant, the hot bytes of the running operator
   plus the cold bytes of every operator whose load has started and which has
   not started executing fit in SRAM.

Everything is computed with sorted event arrays and cumulative sums; there is
no Python loop over operators or events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from elk.chip import LoadModel
from elk.noc import NocProfile, check_fluid, check_rigid
from elk.schedule import Relaxation, Schedule
from elk.workload import Workload

RULES = {
    "0-structure": "schedule shape and plan choices",
    "1-order": "executions one at a time in program order",
    "1-duration": "an execution lasts at least its plan time",
    "2-deadline": "a load finishes before its operator starts",
    "2-bandwidth": "a load takes at least bytes / HBM bandwidth",
    "2-channel": "loads share one HBM channel (no overlap)",
    "3-noc-share": "a load's interconnect share is at most 1",
    "3-noc-exec": "an execution's communication fits in the interconnect share loads leave",
    "3-noc-load": "a load's interconnect work fits in what the executions it overlaps leave (fluid loads)",
    "4-sram": "running hot bytes + waiting cold bytes fit in SRAM",
}


@dataclass(frozen=True)
class Violation:
    """One broken rule: which, by which operator, when, and the numbers that break it."""
    rule: str
    op: int
    op_name: str
    time_cycles: float
    detail: str

    def message(self, clock_hz: float) -> str:
        where = f"operator {self.op} ({self.op_name})" if self.op >= 0 else "between operators"
        return (f"rule {self.rule} ({RULES[self.rule]}) violated by {where} at "
                f"{self.time_cycles / clock_hz * 1e3:.6f} ms: {self.detail}")


@dataclass(kw_only=True)
class Timeline:
    """Arrays for traces and plots (cycles from the schedule's first event)."""

    exec_start: np.ndarray
    exec_end: np.ndarray
    load_ops: np.ndarray  # operators with a real load, in load order
    load_start: np.ndarray
    load_end: np.ndarray
    load_share: np.ndarray  # interconnect share of each load
    sram_time: np.ndarray  # step function: value sram_bytes[k] from sram_time[k]
    sram_bytes: np.ndarray
    busy: np.ndarray  # plan time / execution duration of each operator
    #: interconnect use over time (times from the schedule's first event; load_op holds operator ids)
    noc: NocProfile | None = None


@dataclass(kw_only=True)
class SimResult:
    """The simulator's verdict on one schedule: valid or the rules it breaks, its latency and where the time went.

    ``relaxation`` is the schedule's own (the rules it was timed under; STRICT for every design but Ideal).
    """

    design: str
    valid: bool
    violations: list[Violation]
    relaxation: Relaxation
    latency_cycles: float
    latency_ms: float
    breakdown_ms: dict[str, float]
    hbm_utilisation: float
    noc_utilisation: float
    achieved_tflops: float
    peak_sram_bytes: int
    execute_ms: float  # sum of execution intervals
    load_ms: float  # sum of load intervals
    hbm_bytes: int
    timeline: Timeline = field(repr=False)

    @property
    def first_violation(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    def summary(self) -> dict:
        return {"design": self.design, "valid": self.valid, "relaxation": self.relaxation.describe(),
                "latency_ms": self.latency_ms, "breakdown_ms": dict(self.breakdown_ms),
                "hbm_utilisation": self.hbm_utilisation, "noc_utilisation": self.noc_utilisation,
                "achieved_tflops": self.achieved_tflops, "peak_sram_bytes": self.peak_sram_bytes,
                "execute_ms": self.execute_ms, "load_ms": self.load_ms, "hbm_bytes": self.hbm_bytes,
                "violations": [v.__dict__ for v in self.violations[:20]]}


def _tolerance(scale):
    """Absolute slack of a comparison between times of this magnitude (float error of differences)."""
    return 1e-6 + 1e-9 * np.abs(scale)


def _pair_tol(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per comparison: a far-off event loosens only the comparisons it takes part in."""
    return _tolerance(np.maximum(np.abs(x), np.abs(y)))


def simulate(workload: Workload, schedule: Schedule, max_violations: int = 50) -> SimResult:
    """Validate ``schedule`` and compute its metrics."""
    names = [op.name for op in workload.program.ops]
    violations: list[Violation] = []

    structural = _check_structure(workload, schedule)
    if structural:
        return _invalid_shape(workload, schedule, structural)

    s, e = schedule.exec_start, schedule.exec_end
    a, b = schedule.load_start, schedule.load_end
    relax = schedule.relaxation
    chosen = workload.chosen(schedule.entry)
    plan_time, comm = chosen["time"], chosen["comm"]
    hot = workload.min_hot if relax.sram_uses_min_hot else chosen["hot"]
    cold = workload.min_cold if relax.cold_uses_min else chosen["cold"]
    noc_work = (workload.load_bytes / workload.noc_load_bytes_per_cycle) if relax.cold_uses_min \
        else chosen["noc"]
    loads = np.flatnonzero(workload.has_load)
    # rule 3's exact checks compare accumulated work over the loads' span: one tolerance from the loads' times
    tol = float(_tolerance(max(np.abs(a[loads]).max(), np.abs(b[loads]).max()) if len(loads) else 0.0))

    def flag(rule: str, ops: np.ndarray, times: np.ndarray, detail) -> None:
        for op, t in zip(ops[:max_violations], times[:max_violations]):
            violations.append(Violation(rule, int(op), names[op] if op >= 0 else "", float(t), detail(int(op))))

    # rule 1 ---------------------------------------------------------------
    bad = np.flatnonzero(e[:-1] > s[1:] + _pair_tol(e[:-1], s[1:]))
    flag("1-order", bad + 1, s[bad + 1],
         lambda i: f"starts at cycle {s[i]:.1f} before operator {i - 1} ends at {e[i - 1]:.1f}")
    dur = e - s
    bad = np.flatnonzero(dur < plan_time - _pair_tol(s, e))
    flag("1-duration", bad, s[bad], lambda i: f"runs {dur[i]:.1f} cycles, plan needs {plan_time[i]:.1f}")

    # rule 2 ---------------------------------------------------------------
    la, lb = a[loads], b[loads]
    bad = loads[lb > s[loads] + _pair_tol(lb, s[loads])]
    flag("2-deadline", bad, s[bad], lambda i: f"load ends at cycle {b[i]:.1f} after the operator starts")
    ldur = lb - la
    bad = loads[ldur < workload.hbm_cycles[loads] - _pair_tol(la, lb)]
    flag("2-bandwidth", bad, a[bad],
         lambda i: f"load of {workload.load_bytes[i]} B takes {b[i] - a[i]:.1f} cycles, HBM needs "
                   f"{workload.hbm_cycles[i]:.1f}")
    order = np.argsort(la, kind="stable")
    lo, la_s, lb_s = loads[order], la[order], lb[order]
    bad = np.flatnonzero(lb_s[:-1] > la_s[1:] + _pair_tol(lb_s[:-1], la_s[1:]))
    flag("2-channel", lo[bad + 1], la_s[bad + 1],
         lambda i: "load starts while the load of another operator is still running")

    # rule 3 ---------------------------------------------------------------
    lw = noc_work[lo]
    ld = np.maximum(lb_s - la_s, 0.0)
    share = np.where(ld > 0, lw / np.where(ld > 0, ld, 1.0), np.where(lw > 0, np.inf, 0.0))
    # in cycles, not as a ratio: a 1-cycle load placed 2e7 cycles from zero carries ~4e-9 cycles of float
    # error in its duration, which a relative test on the share would flag
    bad_mask = lw > ld + _pair_tol(la_s, lb_s)
    flag("3-noc-share", lo[bad_mask], la_s[bad_mask],
         lambda i: f"load needs {noc_work[i]:.1f} interconnect cycles in {b[i] - a[i]:.1f} cycles")
    # the exact checks assume what rules 1 and 2 say: executions in order, loads one at a time
    ordered = not any(v.rule in ("1-order", "2-channel") for v in violations)
    fluid = workload.chip.load_model is LoadModel.FLUID
    checker = check_fluid if fluid and relax.noc_contention else check_rigid
    hbm_sorted = workload.hbm_cycles[lo]
    verdict = checker(s, e, comm if relax.noc_contention else np.zeros(len(s)), la_s, lb_s, lw, hbm_sorted,
                      tol) if ordered else None
    if verdict is not None and relax.noc_contention:
        free = dict(zip(verdict.bad_execs.tolist(), verdict.bad_exec_free.tolist()))
        flag("3-noc-exec", verdict.bad_execs, s[verdict.bad_execs],
             lambda i: f"communication needs {comm[i]:.1f} cycles but loads leave {free[i]:.1f} free "
                       f"in its {dur[i]:.1f}-cycle run")
        done = dict(zip(lo[verdict.bad_loads].tolist(), verdict.bad_load_done.tolist()))
        # a load too short for its work at full rate is already named by rule 2-bandwidth or 3-noc-share
        own = verdict.bad_loads[~bad_mask[verdict.bad_loads] & (ld[verdict.bad_loads] >= hbm_sorted[verdict.bad_loads] - tol)]
        # only the first is reported: a later load may fail only because this one took its room
        own = own[:1]
        flag("3-noc-load", lo[own], la_s[own],
             lambda i: f"load must move {noc_work[i]:.1f} interconnect cycles in [{a[i]:.1f}, {b[i]:.1f}) but "
                       f"the executions it overlaps leave room for {done[i]:.1f}")
    profile = None
    if verdict is not None:
        pr = verdict.profile
        profile = NocProfile(time=pr.time, load_op=np.where(pr.load_op >= 0, lo[np.maximum(pr.load_op, 0)], -1),
                             load_rate=pr.load_rate, load_share=pr.load_share, exec_share=pr.exec_share)

    # rule 4 ---------------------------------------------------------------
    sram_t, sram_v = _sram_profile(s, e, a[loads], s[loads], hot, cold[loads])
    peak = int(sram_v.max()) if len(sram_v) else 0
    over = np.flatnonzero(sram_v > workload.chip.sram_per_core)
    if len(over):
        t_over = sram_t[over]
        running = np.searchsorted(s, t_over, side="right") - 1
        running = np.where((running >= 0) & (t_over < e[np.maximum(running, 0)]), running, -1)
        first = np.unique(running, return_index=True)[1]
        for k in sorted(first):
            op = running[k]
            violations.append(Violation(
                "4-sram", int(op), names[op] if op >= 0 else "", float(t_over[k]),
                f"{int(sram_v[over[k]])} B per core in use, SRAM holds {workload.chip.sram_per_core}"))

    violations.sort(key=lambda v: (v.time_cycles, v.rule))
    return _metrics(workload, schedule, violations=violations, plan_time=plan_time, comm=comm, noc_work=noc_work,
                    lo=lo, la=la_s, lb=lb_s, share=share, sram_t=sram_t, sram_v=sram_v, peak=peak, profile=profile)


def _sram_profile(s, e, load_start, load_op_start, hot, cold) -> tuple[np.ndarray, np.ndarray]:
    """Step function of per-core SRAM in use (releases before acquisitions at equal times)."""
    wait_from = load_start
    wait_to = np.maximum(load_op_start, load_start)
    times = np.concatenate([s, e, wait_from, wait_to])
    delta = np.concatenate([hot, -hot, cold, -cold]).astype(np.float64)
    order = np.lexsort((delta, times))
    times, delta = times[order], delta[order]
    level = np.cumsum(delta)
    return times, level


def _check_structure(workload: Workload, schedule: Schedule) -> str:
    n = len(workload)
    for name in ("entry", "exec_start", "exec_end", "load_start", "load_end"):
        if len(getattr(schedule, name)) != n:
            return f"{name} has {len(getattr(schedule, name))} values for {n} operators"
    sizes = np.array([len(t) for t in workload.tables])
    bad = np.flatnonzero((schedule.entry < 0) | (schedule.entry >= sizes))
    if len(bad):
        return f"operator {bad[0]} chooses plan row {schedule.entry[bad[0]]} of a {sizes[bad[0]]}-row table"
    times = [schedule.exec_start, schedule.exec_end,
             schedule.load_start[workload.has_load], schedule.load_end[workload.has_load]]
    if not all(np.isfinite(t).all() for t in times):
        return "some times are not finite"
    return ""


def _invalid_shape(workload: Workload, schedule: Schedule, detail: str) -> SimResult:
    empty = np.zeros(0)
    nan = float("nan")
    return SimResult(design=schedule.design, valid=False,
                     violations=[Violation("0-structure", -1, "", 0.0, detail)],
                     relaxation=schedule.relaxation, latency_cycles=nan, latency_ms=nan, breakdown_ms={},
                     hbm_utilisation=nan, noc_utilisation=nan, achieved_tflops=nan, peak_sram_bytes=0,
                     execute_ms=nan, load_ms=nan, hbm_bytes=int(workload.load_bytes.sum()),
                     timeline=Timeline(exec_start=empty, exec_end=empty, load_ops=empty.astype(np.int64),
                                       load_start=empty, load_end=empty, load_share=empty, sram_time=empty,
                                       sram_bytes=empty, busy=empty))


def _metrics(workload: Workload, schedule: Schedule, **checked) -> SimResult:
    """The SimResult of a checked schedule (``checked``: the keyword arrays of :func:`_metrics_of`)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # extreme times of invalid schedules
        return _metrics_of(workload, schedule, **checked)


def _metrics_of(workload: Workload, schedule: Schedule, *, violations: list[Violation], plan_time: np.ndarray,
                comm: np.ndarray, noc_work: np.ndarray, lo: np.ndarray, la: np.ndarray, lb: np.ndarray,
                share: np.ndarray, sram_t: np.ndarray, sram_v: np.ndarray, peak: int,
                profile: NocProfile | None) -> SimResult:
    """Latency, breakdown and utilisations from what the checks computed: per-operator plan time and
    communication, loads' interconnect work; ``lo``/``la``/``lb``/``share``: the loading operators, their
    start, end and interconnect share; the SRAM step function and its peak; the interconnect rate profile."""
    chip = workload.chip
    s, e = schedule.exec_start, schedule.exec_end
    begin = min(float(s.min()), float(la.min()) if len(la) else np.inf)
    end = float(e.max())
    latency = end - begin
    dur = e - s
    busy = np.where(dur > 0, plan_time / np.where(dur > 0, dur, 1.0), 1.0)

    # four-way breakdown over elementary intervals
    points = np.unique(np.concatenate([s, e, la, lb, [begin, end]]))
    points = points[(points >= begin) & (points <= end)]
    width = np.diff(points)
    mid = points[:-1] + width / 2
    k = np.searchsorted(s, mid, side="right") - 1
    kk = np.maximum(k, 0)
    u_exec = np.where((k >= 0) & (mid < e[kk]), busy[kk], 0.0)
    j = np.searchsorted(la, mid, side="right") - 1
    jj = np.maximum(j, 0)
    ldur = np.where(lb > la, lb - la, 1.0)
    u_hbm = np.zeros_like(mid)
    if profile is not None and len(profile.time) > 1:  # the rates the rule-3 check found (fluid: not constant)
        k = np.clip(np.searchsorted(profile.time, mid, side="right") - 1, 0, len(profile.load_rate) - 1)
        inside = (mid >= profile.time[0]) & (mid < profile.time[-1])
        u_hbm = np.where(inside, profile.load_rate[k], 0.0)
    elif len(la):
        u_hbm = np.where((j >= 0) & (mid < lb[jj]), workload.hbm_cycles[lo][jj] / ldur[jj], 0.0)
    to_ms = 1e3 / chip.clock_hz
    overlapped = float((u_hbm * u_exec * width).sum())
    preload = float((u_hbm * (1 - u_exec) * width).sum())
    execute = float((u_exec * (1 - u_hbm) * width).sum())
    breakdown = {"overlapped": overlapped * to_ms, "preload_only": preload * to_ms,
                 "execute_only": execute * to_ms,
                 "stall": max(0.0, latency - overlapped - preload - execute) * to_ms}
    seconds = latency / chip.clock_hz
    hbm_cycles = float(workload.hbm_cycles[lo].sum())
    noc_cycles = float(noc_work[lo].sum() + (comm.sum() if schedule.relaxation.noc_contention else 0.0))
    shifted = None if profile is None else NocProfile(
        time=profile.time - begin, load_op=profile.load_op, load_rate=profile.load_rate,
        load_share=profile.load_share, exec_share=profile.exec_share)
    timeline = Timeline(exec_start=s - begin, exec_end=e - begin, load_ops=lo, load_start=la - begin,
                        load_end=lb - begin, load_share=share, sram_time=sram_t - begin, sram_bytes=sram_v,
                        busy=busy, noc=shifted)
    return SimResult(
        design=schedule.design, valid=not violations, violations=violations,
        relaxation=schedule.relaxation, latency_cycles=latency, latency_ms=latency * to_ms,
        breakdown_ms=breakdown, hbm_utilisation=hbm_cycles / latency if latency > 0 else 0.0,
        noc_utilisation=noc_cycles / latency if latency > 0 else 0.0,
        achieved_tflops=float(workload.flops.sum()) / seconds / 1e12 if seconds > 0 else 0.0,
        peak_sram_bytes=peak, execute_ms=float(dur.sum()) * to_ms, load_ms=float((lb - la).sum()) * to_ms,
        hbm_bytes=int(workload.load_bytes.sum()), timeline=timeline)
