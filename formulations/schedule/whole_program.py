"""The whole program as one exact scheduling problem: ground truth for small programs.

A window of every operator, with nothing fixed before it and nothing after it,
is the scheduling problem itself: each operator's plan row, its execution
interval, and the interval of its HBM load, under the simulator's four rules.
It is posed in the window models' integer units (``formulations.schedule.window``):
durations, communication, load lengths and interconnect work rounded up to whole
cycles, fluid rate caps rounded down, so every solution is valid in the
simulator and the model's optimum is at most a few cycles per operator above
the continuous one.

Options are the rows of each operator's plan table that no other row dominates
in (cold, hot, time, communication). Dropping a dominated row loses no optimum:
the dominating row holds no more SRAM, runs no longer, asks the interconnect for
no more time while it runs, and its load moves the same bytes at the same HBM
rate with no more interconnect work per byte (a load's work and its top rate
both grow with the broadcast ratio, so their quotient, the load's shortest
length, is the HBM time for every row).

Rigid loads (:func:`add_rigid_rows`) are the fluid problem plus one product row per
(execution, load) pair: a rigid load runs at one constant rate, so its work inside
an execution is its work x overlap / its length, two decisions multiplied. (The
window model's own rigid loads have one length per option, the shortest: a
restriction of the rigid problem, not the problem.)

:func:`add_prefix_cuts` adds rows that every schedule satisfies (implied, not
new restrictions), to give CP-SAT's linear relaxation what the two-machine flow
shop and the interconnect prefix bounds know.
"""
from __future__ import annotations

import math

import numpy as np

from elk.workload import Workload
from formulations.schedule.window import SHARE_SCALE, Option, WindowOp, WindowProblem


def undominated(cold: np.ndarray, hot: np.ndarray, time: np.ndarray, comm: np.ndarray) -> np.ndarray:
    """Indices of rows no other row dominates in all four columns (ties: the first of equal rows stays)."""
    keys = np.stack([cold, hot, time, comm], axis=1).astype(np.float64)
    _, first = np.unique(keys, axis=0, return_index=True)
    rows = np.sort(first)
    k = keys[rows]
    le = (k[:, None, :] <= k[None, :, :]).all(axis=2)  # le[a, b]: row a is no worse than row b everywhere
    np.fill_diagonal(le, False)
    return rows[~le.any(axis=0)]


def fluid_option(workload: Workload, op: int, row: int, ticks: int = 1) -> Option:
    """Operator ``op``'s plan row ``row`` in integer units of ``1 / ticks`` cycle, rounded to the safe side."""
    t = workload.tables[op]
    cold = int(t.cold[row])
    load_time = work = 0
    cap = SHARE_SCALE
    if workload.load_bytes[op] > 0:
        noc = workload.load_noc_cycles(op, cold) * ticks
        hbm = float(workload.hbm_cycles[op]) * ticks
        cap = max(1, math.floor(SHARE_SCALE * min(1.0, noc / hbm if hbm > 0 else 1.0) + 1e-9))
        work = math.ceil(SHARE_SCALE * noc - 1e-9)
        load_time = max(math.ceil(hbm - 1e-9), math.ceil(work / cap))
    share = math.ceil(work / load_time - 1e-9) if load_time > 0 else 0
    return Option(row=int(row), cold=cold, hot=int(t.hot[row]), time=math.ceil(float(t.time[row]) * ticks - 1e-9),
                  comm=math.ceil(float(t.comm[row]) * ticks - 1e-9), load_time=load_time, load_share=share,
                  load_work=work, load_cap=cap)


def whole_program_problem(workload: Workload, horizon: int, must_include: np.ndarray | None = None,
                          ticks: int = 1) -> WindowProblem:
    """Every operator of ``workload`` as one fluid window from time 0 to ``horizon`` (in units of 1/``ticks``
    cycle: a finer unit shrinks what rounding costs, at the price of larger numbers in the model).

    ``must_include`` (one row per operator, e.g. a warm start's) keeps those rows among the options even if
    dominated, so the warm start stays expressible.
    """
    ops = []
    for i, table in enumerate(workload.tables):
        rows = set(undominated(table.cold, table.hot, table.time, table.comm).tolist())
        if must_include is not None:
            rows.add(int(must_include[i]))
        options = tuple(fluid_option(workload, i, r, ticks) for r in sorted(rows))
        ops.append(WindowOp(op=i, options=options, load="free" if workload.load_bytes[i] > 0 else "none"))
    return WindowProblem(ops=tuple(ops), fixed=(), future=(), sram=workload.chip.sram_per_core, release=0,
                         horizon=int(horizon), fluid=True)


def add_prefix_cuts(built) -> int:
    """Implied rows for a whole-program CP-SAT model (``build_cpsat`` of :func:`whole_program_problem`).

    With nothing before time 0: the loads of operators 0..k all lie on the one channel before operator k
    starts (``start_k >= sum of their lengths``); and their interconnect work plus the communication of the
    executions before k all fit in [0, start_k), where the interconnect has capacity 1 at every instant
    (``SHARE_SCALE x start_k >= work + SHARE_SCALE x comm``). Both hold in every schedule of the problem.
    Returns the number of rows added.
    """
    problem, m = built.problem, built.model
    if problem.fixed or problem.future or problem.release != 0:
        raise ValueError("prefix cuts hold only for a whole-program problem (nothing fixed, release 0)")
    added = 0
    lengths, works, comms = [], [], []
    for k, w in enumerate(problem.ops):
        bools = built.choice[k]
        if w.load == "free":
            lengths.append(built.load_end[w.op] - built.load_start[w.op])
            works.append(sum(o.load_work * b for o, b in zip(w.options, bools)))
        if lengths:
            m.add(built.start[k] >= sum(lengths))
            m.add(SHARE_SCALE * built.start[k] >= sum(works) + SHARE_SCALE * sum(comms))
            added += 2
        comms.append(sum(o.comm * b for o, b in zip(w.options, bools)))
    return added


def add_rigid_rows(built, slack: int = 0) -> int:
    """Rigid loads on a whole-program (fluid) CP-SAT model: one constant rate per load.

    For every fluid pair of load j (its work ``u`` inside one execution, its overlap ``ov`` with it, its length
    ``len`` and its chosen work ``W``) the row ``u x len + slack x len >= W x ov``. A rigid load's work inside an
    execution is exactly ``W x ov / len``; the fluid rows then say the executions' loads and communication fit
    (rule 3 under rigid loads, ``elk/noc.py``), and the fluid progress row holds because a constant rate at most
    the top rate covers the work.

    * ``slack = 0`` (the **rigid model**): ``u`` is at least the exact work, and the work is rounded up, so every
      solution is rigid-valid in the simulator: a restriction of the rigid problem by integer rounding only.
    * ``slack = rigid_relaxation_slack(event_count)`` (the **relaxation**; ``event_count`` of the problem, as in
      ``solvers.schedule.optimal``): the map of
      ``solvers.schedule.optimal.stretched_hint`` turns any rigid-valid schedule into integer times whose overlap
      over length exceeds the original's by at most (1 + 2 x events inside the overlap) / length, and a load's
      share is at most ``SHARE_SCALE``; so ``u`` = the mapped schedule's rigid work, rounded down, satisfies the
      row with that slack. CP-SAT's bound on the relaxation, less the same allowance as the fluid model's, is a
      lower bound on every rigid-valid schedule.

    Returns the number of product rows added (two products each: CP-SAT multiplies integer variables).
    """
    problem, m = built.problem, built.model
    hi = problem.horizon
    added = 0
    for k, w in enumerate(problem.ops):
        if w.load != "free" or w.op not in built.pairs:
            continue
        works = [o.load_work for o in w.options]
        if max(works) == 0:
            continue
        work = m.new_int_var(min(works), max(works), f"rigid_work{k}")
        m.add(work == sum(o.load_work * x for o, x in zip(w.options, built.choice[k])))
        built.aux.append((work, lambda h, k=k, works=works: works[h.choice[k]]))
        length = built.lengths[w.op]
        for q, (u, ov) in enumerate(built.pairs[w.op]):
            u_len = m.new_int_var(0, max(o.load_cap for o in w.options) * (hi + 1) * (hi + 1), f"u_len{k}_{q}")
            m.add_multiplication_equality(u_len, [u, length])
            work_ov = m.new_int_var(0, max(works) * (hi + 1), f"work_ov{k}_{q}")
            m.add_multiplication_equality(work_ov, [work, ov])
            m.add(u_len + slack * length >= work_ov)
            added += 1
    return added


def rigid_relaxation_slack(event_count: int) -> int:
    """The relaxation's slack per unit of length (see :func:`add_rigid_rows`): a full share over one unit plus
    two units per event that may fall inside an overlap, plus one for rounding down."""
    return SHARE_SCALE * (2 * event_count + 1) + 1


__all__ = ["undominated", "fluid_option", "whole_program_problem", "add_prefix_cuts", "add_rigid_rows",
           "rigid_relaxation_slack"]
