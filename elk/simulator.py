"""The judge: validates a schedule against the four rules and times it.

Rules (cycles; intervals half-open):

1. executions run one at a time in program order (``end[i] <= start[i+1]``)
   and none is faster than its plan (``end - start >= plan time``);
2. a load ends before its operator starts, lasts at least bytes / HBM
   bandwidth, and loads never overlap (one HBM channel, any order); a store
   (docs/design.md §5.2) starts after its operator ends, lasts at least bytes /
   HBM bandwidth, shares the channel with the loads, and ends before any load
   that reads what it wrote starts;
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
   not started executing, plus the output of every store that has not ended
   since its operator did, fit in SRAM.

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
    "2-store-start": "a store starts after its operator ends",
    "2-store-bandwidth": "a store takes at least bytes / HBM bandwidth",
    "2-round-trip": "a load of a stored output starts after the store ends",
    "2-channel": "loads and stores share one HBM channel (no overlap)",
    "3-noc-share": "a transfer's interconnect share is at most 1",
    "3-noc-exec": "an execution's communication fits in the interconnect share loads leave",
    "3-noc-load": "a transfer's interconnect work fits in what the executions it overlaps leave (fluid loads)",
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
    #: operators whose output is stored, in channel order, with their store intervals and interconnect shares
    store_ops: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    store_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    store_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    store_share: np.ndarray = field(default_factory=lambda: np.zeros(0))


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
    hbm_bytes: int  # read from HBM (loads)
    timeline: Timeline = field(repr=False)
    hbm_write_bytes: int = 0  # written to HBM (stores, docs/design.md §5.2)
    store_ms: float = 0.0  # sum of store intervals
    #: the HBM channel's busy fraction at full bandwidth, reads and writes (they add up to hbm_utilisation)
    hbm_read_utilisation: float = 0.0
    hbm_write_utilisation: float = 0.0

    @property
    def first_violation(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    def summary(self) -> dict:
        return {"design": self.design, "valid": self.valid, "relaxation": self.relaxation.describe(),
                "latency_ms": self.latency_ms, "breakdown_ms": dict(self.breakdown_ms),
                "hbm_utilisation": self.hbm_utilisation, "noc_utilisation": self.noc_utilisation,
                "achieved_tflops": self.achieved_tflops, "peak_sram_bytes": self.peak_sram_bytes,
                "execute_ms": self.execute_ms, "load_ms": self.load_ms, "hbm_bytes": self.hbm_bytes,
                **({"hbm_write_bytes": self.hbm_write_bytes, "store_ms": self.store_ms,
                    "hbm_read_utilisation": self.hbm_read_utilisation,
                    "hbm_write_utilisation": self.hbm_write_utilisation} if self.hbm_write_bytes else {}),
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
    w, x = schedule.store_start, schedule.store_end
    relax = schedule.relaxation
    chosen = workload.chosen(schedule.entry)
    plan_time, comm = chosen["time"], chosen["comm"]
    hot = workload.min_hot if relax.sram_uses_min_hot else chosen["hot"]
    cold = workload.min_cold if relax.cold_uses_min else chosen["cold"]
    noc_work = (workload.load_bytes / workload.noc_load_bytes_per_cycle) if relax.cold_uses_min \
        else chosen["noc"]
    loads = np.flatnonzero(workload.has_load)
    stores = np.flatnonzero(workload.has_store)
    # transfers: the loads, then the stores (docs/design.md §5.2); one channel, one interconnect for both
    t_op = np.concatenate([loads, stores])
    t_store = np.concatenate([np.zeros(len(loads), bool), np.ones(len(stores), bool)])
    t_a = np.concatenate([a[loads], w[stores]])
    t_b = np.concatenate([b[loads], x[stores]])
    t_work = np.concatenate([noc_work[loads], workload.store_noc_cycles[stores]])
    t_hbm = np.concatenate([workload.hbm_cycles[loads], workload.store_hbm_cycles[stores]])
    # rule 3's exact checks compare accumulated work over the transfers' span: one tolerance from their times
    tol = float(_tolerance(max(np.abs(t_a).max(), np.abs(t_b).max()) if len(t_op) else 0.0))

    def flag(rule: str, ops: np.ndarray, times: np.ndarray, detail) -> None:
        for op, t in zip(ops[:max_violations], times[:max_violations]):
            violations.append(Violation(rule, int(op), names[op] if op >= 0 else "", float(t), detail(int(op))))

    def what(i: int) -> str:
        return "store" if i in stored else "load"

    stored = set(stores.tolist())

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
    bad = stores[w[stores] < e[stores] - _pair_tol(w[stores], e[stores])]
    flag("2-store-start", bad, w[bad], lambda i: f"store starts at cycle {w[i]:.1f} before its operator ends at "
                                                 f"{e[i]:.1f}")
    bad = stores[x[stores] - w[stores] < workload.store_hbm_cycles[stores] - _pair_tol(w[stores], x[stores])]
    flag("2-store-bandwidth", bad, w[bad],
         lambda i: f"store of {workload.store_bytes[i]} B takes {x[i] - w[i]:.1f} cycles, HBM needs "
                   f"{workload.store_hbm_cycles[i]:.1f}")
    rt_store, rt_load = workload.round_trips
    late = x[rt_store] > a[rt_load] + _pair_tol(x[rt_store], a[rt_load])
    flag("2-round-trip", rt_load[late], a[rt_load[late]],
         lambda j: f"load starts at cycle {a[j]:.1f} before the store of an output it reads ends")
    order = np.argsort(t_a, kind="stable")
    to, ta_s, tb_s, t_store = t_op[order], t_a[order], t_b[order], t_store[order]
    bad = np.flatnonzero(tb_s[:-1] > ta_s[1:] + _pair_tol(tb_s[:-1], ta_s[1:]))
    flag("2-channel", to[bad + 1], ta_s[bad + 1],
         lambda i: f"{what(i)} starts while another transfer is still running")

    # rule 3 ---------------------------------------------------------------
    lw = t_work[order]
    ld = np.maximum(tb_s - ta_s, 0.0)
    share = np.where(ld > 0, lw / np.where(ld > 0, ld, 1.0), np.where(lw > 0, np.inf, 0.0))
    # in cycles, not as a ratio: a 1-cycle load placed 2e7 cycles from zero carries ~4e-9 cycles of float
    # error in its duration, which a relative test on the share would flag
    bad_mask = lw > ld + _pair_tol(ta_s, tb_s)
    flag("3-noc-share", to[bad_mask], ta_s[bad_mask],
         lambda i: f"{what(i)} needs more interconnect cycles than its interval holds")
    # the exact checks assume what rules 1 and 2 say: executions in order, transfers one at a time
    ordered = not any(v.rule in ("1-order", "2-channel") for v in violations)
    fluid = workload.chip.load_model is LoadModel.FLUID
    checker = check_fluid if fluid and relax.noc_contention else check_rigid
    hbm_sorted = t_hbm[order]
    verdict = checker(s, e, comm if relax.noc_contention else np.zeros(len(s)), ta_s, tb_s, lw, hbm_sorted,
                      tol) if ordered else None
    if verdict is not None and relax.noc_contention:
        free = dict(zip(verdict.bad_execs.tolist(), verdict.bad_exec_free.tolist()))
        flag("3-noc-exec", verdict.bad_execs, s[verdict.bad_execs],
             lambda i: f"communication needs {comm[i]:.1f} cycles but transfers leave {free[i]:.1f} free "
                       f"in its {dur[i]:.1f}-cycle run")
        done = dict(zip(verdict.bad_loads.tolist(), verdict.bad_load_done.tolist()))
        # a transfer too short for its work at full rate is already named by rule 2 or 3-noc-share
        own = verdict.bad_loads[~bad_mask[verdict.bad_loads] & (ld[verdict.bad_loads] >= hbm_sorted[verdict.bad_loads] - tol)]
        # only the first is reported: a later transfer may fail only because this one took its room
        own = own[:1]
        for k in own:
            violations.append(Violation(
                "3-noc-load", int(to[k]), names[to[k]], float(ta_s[k]),
                f"{'store' if t_store[k] else 'load'} must move {lw[k]:.1f} interconnect cycles in "
                f"[{ta_s[k]:.1f}, {tb_s[k]:.1f}) but the executions it overlaps leave room for {done[int(k)]:.1f}"))
    profile = None
    if verdict is not None:
        pr = verdict.profile
        active = pr.load_op >= 0
        pos = np.maximum(pr.load_op, 0)
        profile = NocProfile(time=pr.time, load_op=np.where(active, to[pos], -1),
                             load_rate=pr.load_rate, load_share=pr.load_share, exec_share=pr.exec_share,
                             is_store=active & t_store[pos])

    # rule 4 ---------------------------------------------------------------
    hold_from = np.concatenate([a[loads], e[stores]])
    hold_to = np.concatenate([np.maximum(s[loads], a[loads]), np.maximum(x[stores], e[stores])])
    hold = np.concatenate([cold[loads], workload.store_cold[stores]])
    sram_t, sram_v = sram_profile(s, e, hot, hold_from, hold_to, hold)
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
    return _metrics(workload, schedule, violations=violations, plan_time=plan_time, comm=comm, lo=to, la=ta_s,
                    lb=tb_s, t_store=t_store, t_work=lw, t_hbm=hbm_sorted, share=share, sram_t=sram_t,
                    sram_v=sram_v, peak=peak, profile=profile)


def sram_profile(s, e, hot, hold_from, hold_to, hold) -> tuple[np.ndarray, np.ndarray]:
    """Step function of per-core SRAM in use: the running operator's hot bytes, plus ``hold`` bytes over each
    ``[hold_from, hold_to)`` (waiting loads, pending stores); releases before acquisitions at equal times."""
    times = np.concatenate([s, e, hold_from, hold_to])
    delta = np.concatenate([hot, -hot, hold, -hold]).astype(np.float64)
    order = np.lexsort((delta, times))
    times, delta = times[order], delta[order]
    level = np.cumsum(delta)
    return times, level


def _check_structure(workload: Workload, schedule: Schedule) -> str:
    n = len(workload)
    for name in ("entry", "exec_start", "exec_end", "load_start", "load_end", "store_start", "store_end"):
        if len(getattr(schedule, name)) != n:
            return f"{name} has {len(getattr(schedule, name))} values for {n} operators"
    sizes = np.array([len(t) for t in workload.tables])
    bad = np.flatnonzero((schedule.entry < 0) | (schedule.entry >= sizes))
    if len(bad):
        return f"operator {bad[0]} chooses plan row {schedule.entry[bad[0]]} of a {sizes[bad[0]]}-row table"
    times = [schedule.exec_start, schedule.exec_end,
             schedule.load_start[workload.has_load], schedule.load_end[workload.has_load],
             schedule.store_start[workload.has_store], schedule.store_end[workload.has_store]]
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
                comm: np.ndarray, lo: np.ndarray, la: np.ndarray, lb: np.ndarray, t_store: np.ndarray,
                t_work: np.ndarray, t_hbm: np.ndarray, share: np.ndarray, sram_t: np.ndarray,
                sram_v: np.ndarray, peak: int, profile: NocProfile | None) -> SimResult:
    """Latency, breakdown and utilisations from what the checks computed: per-operator plan time and
    communication; the transfers in channel order (``lo`` their operators, ``la``/``lb`` start and end,
    ``t_store`` which are stores, ``t_work``/``t_hbm`` interconnect and HBM cycles, ``share`` interconnect
    share); the SRAM step function and its peak; the interconnect rate profile."""
    chip = workload.chip
    s, e = schedule.exec_start, schedule.exec_end
    begin = min(float(s.min()), float(la.min()) if len(la) else np.inf)
    end = max(float(e.max()), float(lb[t_store].max()) if t_store.any() else -np.inf)
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
        u_hbm = np.where((j >= 0) & (mid < lb[jj]), t_hbm[jj] / ldur[jj], 0.0)
    to_ms = 1e3 / chip.clock_hz
    overlapped = float((u_hbm * u_exec * width).sum())
    preload = float((u_hbm * (1 - u_exec) * width).sum())
    execute = float((u_exec * (1 - u_hbm) * width).sum())
    breakdown = {"overlapped": overlapped * to_ms, "preload_only": preload * to_ms,
                 "execute_only": execute * to_ms,
                 "stall": max(0.0, latency - overlapped - preload - execute) * to_ms}
    seconds = latency / chip.clock_hz
    read_cycles = float(t_hbm[~t_store].sum())
    write_cycles = float(t_hbm[t_store].sum())
    noc_cycles = float(t_work.sum() + (comm.sum() if schedule.relaxation.noc_contention else 0.0))
    shifted = None if profile is None else NocProfile(
        time=profile.time - begin, load_op=profile.load_op, load_rate=profile.load_rate,
        load_share=profile.load_share, exec_share=profile.exec_share, is_store=profile.is_store)
    loads, stores = ~t_store, t_store
    timeline = Timeline(exec_start=s - begin, exec_end=e - begin, load_ops=lo[loads], load_start=la[loads] - begin,
                        load_end=lb[loads] - begin, load_share=share[loads], sram_time=sram_t - begin,
                        sram_bytes=sram_v, busy=busy, noc=shifted, store_ops=lo[stores],
                        store_start=la[stores] - begin, store_end=lb[stores] - begin, store_share=share[stores])
    util = (lambda c: c / latency if latency > 0 else 0.0)
    return SimResult(
        design=schedule.design, valid=not violations, violations=violations,
        relaxation=schedule.relaxation, latency_cycles=latency, latency_ms=latency * to_ms,
        breakdown_ms=breakdown, hbm_utilisation=util(read_cycles + write_cycles),
        noc_utilisation=util(noc_cycles),
        achieved_tflops=float(workload.flops.sum()) / seconds / 1e12 if seconds > 0 else 0.0,
        peak_sram_bytes=peak, execute_ms=float(dur.sum()) * to_ms,
        load_ms=float((lb[loads] - la[loads]).sum()) * to_ms,
        hbm_bytes=int(workload.load_bytes.sum()), timeline=timeline,
        hbm_write_bytes=int(workload.store_bytes.sum()), store_ms=float((lb[stores] - la[stores]).sum()) * to_ms,
        hbm_read_utilisation=util(read_cycles), hbm_write_utilisation=util(write_cycles))
