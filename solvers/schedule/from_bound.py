"""A schedule read off the plan-choice relaxation: how far the bound is from what can actually be run.

:mod:`formulations.schedule.bound_lp` relaxes timing to prefix constraints on
the HBM work ``G`` done by each execution boundary. Where that relaxation is
nearly exact (fluid loads, SRAM not binding), its optimum is nearly a schedule:
this module turns it into one and lets the simulator judge it.

* Plan choices: the MILP with binary choices, restricted to rows whose cold
  layout replicates data at most ``ratio_cap`` times (where an operator has
  none, its least replicating rows), and with every load's interconnect work
  charged at ``rho_min * ratio_cap`` per cycle of HBM work. Then any load the
  schedule runs where the relaxation let ``G`` rise fits in the interconnect
  the executions leave.
* Executions start at the relaxation's start times (pushed later only where a
  chosen plan's time needs it), last the relaxation's durations.
* Loads run in program order, back to back: load j ends when ``G``
  (interpolated linearly between the execution boundaries) reaches the HBM
  work of the loads of operators ``<= j``, and no earlier than its HBM time
  allows, nor later than its operator's start.

Nothing here is a bound, and nothing is assumed valid: the simulator decides
(the SRAM rows of the relaxation charge begun loads fractionally, and rigid
loads cannot follow ``G``'s rate, so the result can be invalid; callers keep
it only if the simulator accepts it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from elk.errors import SolverConfigError
from elk.schedule import Schedule
from elk.workload import Workload
from formulations.schedule.bound_lp import BoundData, build_bound_lp
from solvers.exact_backends import run_highs
from solvers.schedule.fallback import keep_faster
from solvers.solver_options import ExactOptions, check_positive


def capped_rows(workload: Workload, ratio_cap: float) -> tuple[BoundData, list[np.ndarray]]:
    """The relaxation's data restricted to rows replicating at most ``ratio_cap`` times, loads charged at the cap,
    and for each operator the plan-table rows its remaining candidates are."""
    from solvers.schedule.bounds import bound_data, undominated
    data = bound_data(workload)
    keep_rows, time_, comm, hot, ratio = [], [], [], [], []
    for t, r, tm, cm, ht in zip(workload.tables, data.ratios(), data.time, data.comm, data.hot):
        rows = undominated(np.stack([t.time, t.comm, t.hot.astype(float), t.cold.astype(float)], axis=1))
        ok = r <= ratio_cap
        if not ok.any():
            ok = r == r.min()
        keep_rows.append(rows[ok])
        time_.append(tm[ok])
        comm.append(cm[ok])
        hot.append(ht[ok])
        ratio.append(r[ok])
    capped = dataclasses.replace(data, time=time_, comm=comm, hot=hot, ratio=ratio,
                                 rho_min=data.rho_min * max(1.0, float(ratio_cap)))
    return capped, keep_rows


def bound_guided(workload: Workload, *, ratio_cap: float = 1.1, time_limit: float = 60.0,
                 threads: int = 1) -> Schedule:
    """The schedule read off the relaxation's optimum (see the module docstring); judge it with the simulator."""
    data, rows = capped_rows(workload, ratio_cap)
    lp = build_bound_lp(data, integer=True)
    h = lp.highs
    run_highs(h, threads=threads, time_limit=time_limit)
    x = np.asarray(h.getSolution().col_value)
    n = lp.n
    if len(x) < 4 * n:
        raise RuntimeError(f"the relaxation of {workload.program.name} found no plan choice in {time_limit:g} s")
    start, dur, g_start, g_end = (x[k * n:(k + 1) * n] for k in range(4))
    entry = np.array([rows[i][int(np.argmax(x[c]))] for i, c in enumerate(lp.choice)], dtype=np.int64)
    plan_time = workload.chosen(entry)["time"]
    dur = np.maximum(dur, plan_time)
    exec_start = np.empty(n)
    exec_start[0] = max(start[0], 0.0)
    for i in range(1, n):
        exec_start[i] = max(start[i], exec_start[i - 1] + dur[i - 1])
    exec_end = exec_start + dur
    # G through the execution boundaries (at the relaxation's times), never falling
    t_pts = np.concatenate([[0.0], np.column_stack([start, start + x[n:2 * n]]).ravel()])
    g_pts = np.maximum.accumulate(np.concatenate([[0.0], np.column_stack([g_start, g_end]).ravel()]))
    t_pts = np.maximum.accumulate(t_pts)
    need = np.cumsum(data.hbm)
    load_start = np.zeros(n)
    load_end = np.zeros(n)
    prev = 0.0
    for j in np.flatnonzero(workload.has_load):
        end = float(np.interp(need[j], g_pts, t_pts))
        end = min(max(end, prev + float(workload.hbm_cycles[j])), exec_start[j])
        load_start[j], load_end[j] = prev, end
        prev = end
    return Schedule("bound-guided", entry, exec_start, exec_end, load_start, load_end)


@dataclass(frozen=True, kw_only=True)
class GuidedOptions(ExactOptions):
    """The ``lp-guided`` design: the schedule read off the plan-choice MILP, kept only where the simulator finds it
    valid and faster than the warm start. ``ratio_cap``: the largest broadcast ratio a plan row may have."""

    time_limit: float = 30.0
    workers: int = 1
    ratio_cap: float = 1.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.ratio_cap, "lp-guided ratio cap")
        if self.ratio_cap < 1:
            raise SolverConfigError(f"lp-guided ratio cap must be at least 1, got {self.ratio_cap!r}")


def lp_guided(workload: Workload, warm: Schedule, options: GuidedOptions = GuidedOptions()) -> Schedule:
    """The relaxation's schedule where it is valid and faster than ``warm``; ``warm`` (renamed) otherwise."""
    try:
        guided: Schedule | None = bound_guided(workload, ratio_cap=options.ratio_cap, time_limit=options.time_limit,
                                               threads=options.workers)
    except RuntimeError:
        guided = None
    kept, why = keep_faster(workload, guided, warm, tie="warm")
    out = kept.renamed("lp-guided")
    out.info.warm_start = warm.design
    out.info.kept_warm_start = why
    return out
