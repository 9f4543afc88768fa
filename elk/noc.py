"""Rule 3: how HBM loads and executing operators share the interconnect, under both load models.

Two load models (docs/design.md §5.1; ``Chip.load_model``, an :class:`elk.chip.LoadModel`):

* **rigid**: a load runs at one constant rate over its whole interval, so its
  interconnect share is its NoC work over its duration; an execution gets what
  those constant shares leave.
* **fluid** (default): a load's rate may vary inside its interval (at most the
  HBM bandwidth), so it may pause while the running operator exchanges data and
  speed up while it computes. A schedule is valid iff *some* choice of rates
  meets the rule at every instant.

Deciding fluid feasibility exactly
----------------------------------
Units: interconnect cycles. Load j must move ``w_j`` units of interconnect work
(its bytes times its broadcast ratio over the load-distribution capacity)
inside ``[a_j, b_j)``, at a rate of at most ``c_j = min(1, w_j / h_j)`` (``h_j`` its
HBM time: the rate cap is the HBM bandwidth, and no share exceeds the whole
interconnect). Execution i needs ``C_i`` of interconnect inside ``[s_i, e_i)`` at any
rate; at every instant load share + execution share <= 1. Executions are
disjoint and so are loads (one HBM channel), so at any instant at most one of
each is active. Given load rates, the execution's communication fits iff the
loads' work inside its interval is at most its *slack* ``sigma_i = (e_i - s_i) - C_i``
(it can use any free capacity in its interval). So the question is whether
the loads' work can be split into pieces ``u >= 0`` over the elementary time
segments with

    sum of load j's pieces = w_j,   piece <= c_j * segment length,
    sum of the pieces inside execution i <= sigma_i.

Write ``W(t)`` for the interconnect work all loads have done by ``t``. Loads are
serial, so ``W`` is pinned at every load boundary (``W(a_j) = N_{j-1}``,
``W(b_j) = N_j``, ``N`` the running total of ``w``), rises at most at ``c_j`` inside
load j, is flat between loads, and ``W(e_i) - W(s_i) <= sigma_i``. These are
difference constraints, so the feasible ``W`` are closed under pointwise max and
there is a largest one, ``W*`` (the loads working as early as possible); the
schedule is valid iff ``W*(b_j) = N_j`` for every load. ``W*`` is a shortest path
on the time line: from a pin, forward along the segments (cost ``c * length``),
or across a whole execution (cost ``sigma_i`` instead of the segments' cost).
With ``S`` the prefix sum of segment costs, ``delta_i = min(0, sigma_i - (S(e_i) - S(s_i)))``
the saving of crossing execution i, ``D(t)`` the savings of executions started
before ``t`` and ``beta`` the pin at each point, at every point that is not strictly
inside an execution

    W*(p) = S(p) + D(p) + min over points q <= p of (beta(q) - S(q) - D(q)),

a running minimum (``np.minimum.accumulate``). Inside an execution,
``W*(p) = min(W*(s_i) + min(sigma_i, S(p) - S(s_i)), beta(p), N_k + S(p) - S(b_k))``
with ``b_k`` the last load end inside the execution before ``p`` (exact for the
first violation, which is what is reported; later ones assume the earlier
loads finished). Everything is sorted arrays, searches and cumulative sums: no
Python loop over operators, loads or events. ``tests/test_noc.py`` checks this
against a linear program over the same segments on hundreds of random
schedules, feasible and infeasible.

The rates reported (:class:`NocProfile`) are ``W*``'s slopes averaged over each
elementary segment, a valid choice (same totals per execution, each below the
cap); the execution takes its communication from what the loads leave, in
proportion.

A rigid-valid schedule is fluid-valid: its constant rates are one choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(kw_only=True)
class NocProfile:
    """Interconnect use over time: a step function on ``time`` (cycles, the schedule's own clock).

    Segment k is ``[time[k], time[k+1])``; ``load_op[k]`` is the operator whose load
    is active there (-1: none) and ``load_rate[k]`` its HBM rate as a fraction of the
    bandwidth; ``load_share``/``exec_share`` the interconnect shares of the loads and
    of the running operator's communication.
    """

    time: np.ndarray
    load_op: np.ndarray
    load_rate: np.ndarray
    load_share: np.ndarray
    exec_share: np.ndarray
    #: per segment: whether the active transfer is a store (docs/design.md §5.2); None: the checks' own profile
    is_store: np.ndarray | None = None


@dataclass(kw_only=True)
class NocCheck:
    """Rule 3's verdict: executions whose communication cannot fit, loads that cannot finish, and a profile."""

    #: executions (program index) whose communication exceeds what the loads leave (or their own duration)
    bad_execs: np.ndarray
    bad_exec_free: np.ndarray  # interconnect cycles left for communication in each such run
    #: loads (position in the sorted load arrays) that cannot move their work in their interval (fluid)
    bad_loads: np.ndarray
    bad_load_done: np.ndarray  # work they can do there at most
    profile: NocProfile


def work_in_executions(exec_s, exec_e, load_a, load_b, work) -> np.ndarray:
    """Per execution: the interconnect work constant-rate transfers (sorted, disjoint) do inside its interval."""
    used = _cumulative(load_a, load_b, work)
    return used(exec_e) - used(exec_s)


def check_rigid(exec_s, exec_e, comm, load_a, load_b, work, hbm, tol: float) -> NocCheck:
    """Constant-rate loads: the share each leaves is fixed; an execution needs its communication in the rest."""
    share = np.where(load_b > load_a, work / np.where(load_b > load_a, load_b - load_a, 1.0), 0.0)
    load_in_exec = work_in_executions(exec_s, exec_e, load_a, load_b, work)
    dur = exec_e - exec_s
    slack = dur - comm - load_in_exec
    bad = np.flatnonzero(slack < -tol)
    rate = np.where(load_b > load_a, hbm / np.where(load_b > load_a, load_b - load_a, 1.0), 0.0)
    profile = _profile(exec_s, exec_e, comm, load_a, load_b, rate, share)
    return NocCheck(bad_execs=bad, bad_exec_free=(dur - load_in_exec)[bad], bad_loads=np.zeros(0, np.int64),
                    bad_load_done=np.zeros(0), profile=profile)


def check_fluid(exec_s, exec_e, comm, load_a, load_b, work, hbm, tol: float) -> NocCheck:
    """Variable-rate loads: exact feasibility of rule 3 (see the module docstring for the argument)."""
    cap = np.minimum(1.0, np.where(hbm > 0, work / np.where(hbm > 0, hbm, 1.0), 1.0))
    sigma = (exec_e - exec_s) - comm
    bad_exec = np.flatnonzero(sigma < -tol)
    pts = np.unique(np.concatenate([exec_s, exec_e, load_a, load_b]))
    seg = np.diff(pts)
    mid = pts[:-1] + seg / 2
    j = np.searchsorted(load_a, mid, side="right") - 1
    jj = np.maximum(j, 0)
    in_load = (j >= 0) & (mid < load_b[jj]) if len(load_a) else np.zeros(len(mid), bool)
    alpha = np.where(in_load, cap[jj] * seg, 0.0) if len(load_a) else np.zeros(len(mid))
    S = np.concatenate([[0.0], np.cumsum(alpha)])
    total = np.cumsum(work)
    # the pin at each point: work of the loads finished by then (at a load's start, of the loads before it)
    J = np.searchsorted(load_a, pts, side="right") - 1
    JJ = np.maximum(J, 0)
    if len(load_a):
        beta = np.where(J < 0, 0.0, np.where(load_a[JJ] == pts, total[JJ] - work[JJ], total[JJ]))
    else:
        beta = np.zeros(len(pts))
    si = np.searchsorted(pts, exec_s)
    ei = np.searchsorted(pts, exec_e)
    delta = np.minimum(0.0, np.maximum(sigma, 0.0) - (S[ei] - S[si]))
    d_cum = np.concatenate([[0.0], np.cumsum(delta)])
    D = d_cum[np.searchsorted(exec_s, pts, side="left")]  # savings of executions started before each point
    F = S + D + np.minimum.accumulate(beta - S - D)
    # points strictly inside an execution
    I = np.searchsorted(exec_s, pts, side="right") - 1
    II = np.maximum(I, 0)
    inside = (I >= 0) & (pts > exec_s[II]) & (pts < exec_e[II])
    if inside.any() and len(load_a):
        start_val = F[si[II]]
        f_in = np.minimum(start_val + np.minimum(np.maximum(sigma[II], 0.0), S - S[si[II]]), beta)
        L = np.searchsorted(load_b, pts, side="left") - 1  # last load ending strictly before each point
        LL = np.maximum(L, 0)
        after_pin = (L >= 0) & (load_b[LL] > exec_s[II])
        bi = np.searchsorted(pts, load_b[LL])
        f_in = np.where(after_pin, np.minimum(f_in, total[LL] + S - S[bi]), f_in)
        F = np.where(inside, f_in, F)
    bad_load = np.zeros(0, np.int64)
    done = np.zeros(0)
    if len(load_a):
        done_at_end = F[np.searchsorted(pts, load_b)]
        bad_load = np.flatnonzero(done_at_end < total - tol)
        done = done_at_end[bad_load] - (total - work)[bad_load]
    # rates: W*'s average slope on each segment (clipped to the segment's cap against rounding)
    slope = np.clip(np.diff(F), 0.0, None)
    share = np.where(seg > 0, np.minimum(slope, alpha) / np.where(seg > 0, seg, 1.0), 0.0)
    rate = np.where(in_load & (cap[jj] > 0), share * hbm[jj] / np.where(work[jj] > 0, work[jj], 1.0), 0.0) \
        if len(load_a) else np.zeros(len(mid))
    profile = _segment_profile(pts, exec_s, exec_e, comm, np.where(in_load, jj, -1), rate, share)
    return NocCheck(bad_execs=bad_exec, bad_exec_free=(exec_e - exec_s)[bad_exec], bad_loads=bad_load,
                    bad_load_done=done, profile=profile)


def _cumulative(starts: np.ndarray, ends: np.ndarray, work: np.ndarray):
    """G(t): interconnect work constant-rate loads have done by time t (loads sorted, disjoint)."""
    before = np.concatenate([[0.0], np.cumsum(work)])
    length = np.where(ends > starts, ends - starts, 1.0)

    def used(t: np.ndarray) -> np.ndarray:
        k = np.searchsorted(starts, t, side="right") - 1
        inside = k >= 0
        kk = np.maximum(k, 0)
        if not len(starts):
            return np.zeros(len(t))
        frac = np.clip((t - starts[kk]) / length[kk], 0.0, 1.0)
        return np.where(inside, before[kk] + work[kk] * frac, 0.0)

    return used


def _profile(exec_s, exec_e, comm, load_a, load_b, rate, share) -> NocProfile:
    """Constant per-load rates and shares on the elementary segments."""
    pts = np.unique(np.concatenate([exec_s, exec_e, load_a, load_b]))
    mid = pts[:-1] + np.diff(pts) / 2
    j = np.searchsorted(load_a, mid, side="right") - 1
    jj = np.maximum(j, 0)
    active = (j >= 0) & (mid < load_b[jj]) if len(load_a) else np.zeros(len(mid), bool)
    return _segment_profile(pts, exec_s, exec_e, comm, np.where(active, jj, -1),
                            np.where(active, rate[jj], 0.0) if len(load_a) else np.zeros(len(mid)),
                            np.where(active, share[jj], 0.0) if len(load_a) else np.zeros(len(mid)))


def _segment_profile(pts, exec_s, exec_e, comm, load_pos, rate, share) -> NocProfile:
    """Add the running operator's share: its communication spread over what the loads leave, in proportion."""
    seg = np.diff(pts)
    mid = pts[:-1] + seg / 2
    i = np.searchsorted(exec_s, mid, side="right") - 1
    ii = np.maximum(i, 0)
    running = (i >= 0) & (mid < exec_e[ii])
    free = np.where(running, np.clip(1.0 - share, 0.0, 1.0) * seg, 0.0)
    free_per_exec = np.bincount(ii[running], weights=free[running], minlength=len(exec_s))
    frac = np.where(free_per_exec > 0, comm / np.where(free_per_exec > 0, free_per_exec, 1.0), 0.0)
    exec_share = np.where(running, np.clip(1.0 - share, 0.0, 1.0) * np.minimum(frac[ii], 1.0), 0.0)
    return NocProfile(time=pts, load_op=load_pos.astype(np.int64), load_rate=rate, load_share=share,
                      exec_share=exec_share)
