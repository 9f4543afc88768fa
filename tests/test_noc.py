"""Rule 3 under both load models, cross-checked against a linear program over the elementary time segments.

The fluid check (elk.noc.check_fluid) is a closed form over sorted arrays; the
LP below states the same question directly: split each load's interconnect work
over the segments of its interval, each piece at most the load's rate cap times
the segment, so that the pieces inside each execution leave it its
communication. Hundreds of random schedules, feasible and infeasible, must get
the same verdict from both; every schedule the rigid rule accepts must pass
the fluid one.
"""
from __future__ import annotations

import numpy as np
import pulp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk.noc import check_fluid, check_rigid

TOL = 1e-6


def lp_max_work(exec_s, exec_e, comm, load_a, load_b, work, hbm) -> float:
    """Most interconnect work the loads can move in their intervals (the LP); feasible iff it is sum(work)."""
    cap = np.minimum(1.0, work / hbm)
    pts = np.unique(np.concatenate([exec_s, exec_e, load_a, load_b]))
    prob = pulp.LpProblem("fluid", pulp.LpMaximize)
    pieces = []  # (var, load, exec or -1)
    for k in range(len(pts) - 1):
        lo, hi = pts[k], pts[k + 1]
        mid = (lo + hi) / 2
        j = [q for q in range(len(load_a)) if load_a[q] <= mid < load_b[q]]
        if not j:
            continue
        i = [q for q in range(len(exec_s)) if exec_s[q] <= mid < exec_e[q]]
        v = prob.add_variable(f"u{k}", 0, cap[j[0]] * (hi - lo))
        pieces.append((v, j[0], i[0] if i else -1))
    if not pieces:
        return 0.0
    prob += pulp.lpSum(v for v, _, _ in pieces)
    for q in range(len(load_a)):
        prob += pulp.lpSum(v for v, j, _ in pieces if j == q) <= work[q]
    for q in range(len(exec_s)):
        inside = [v for v, _, i in pieces if i == q]
        if inside:
            prob += pulp.lpSum(inside) <= max(0.0, exec_e[q] - exec_s[q] - comm[q])
    prob.solve(pulp.HiGHS(msg=False))
    assert pulp.LpStatus[prob.status] == "Optimal"
    return float(pulp.value(prob.objective) or 0.0)


def random_case(rng: np.random.Generator, tight: float):
    """Executions back to back with gaps, loads back to back with gaps; work near what fits (``tight``)."""
    n_exec, n_load = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    exec_len = rng.uniform(1, 20, n_exec)
    gaps = np.where(rng.random(n_exec) < 0.3, rng.uniform(0, 5, n_exec), 0.0)
    exec_s = np.cumsum(np.concatenate([[0.0], exec_len[:-1] + gaps[:-1]]))
    exec_e = exec_s + exec_len
    comm = exec_len * rng.uniform(0, 1, n_exec)
    span = float(exec_e[-1])
    load_len = rng.uniform(1, 25, n_load)
    lgaps = np.where(rng.random(n_load) < 0.4, rng.uniform(0, 6, n_load), 0.0)
    load_a = np.cumsum(np.concatenate([[rng.uniform(-10, 5)], load_len[:-1] + lgaps[:-1]]))
    load_b = load_a + load_len
    scale = span / max(float(load_b[-1] - load_a[0]), 1.0)
    load_a, load_b = load_a * scale, load_b * scale
    rho = rng.choice([0.3, 0.6, 1.0, 1.5, 3.0], n_load)
    cap = np.minimum(1.0, rho)
    work = (load_b - load_a) * cap * rng.uniform(tight, 1.0, n_load)
    hbm = work / rho
    # snap times to a grid half the time, so boundaries coincide (load ends on execution ends, ...)
    if rng.random() < 0.5:
        exec_s, exec_e, load_a, load_b = (np.round(x) for x in (exec_s, exec_e, load_a, load_b))
        keep = exec_e > exec_s
        exec_s, exec_e, comm = exec_s[keep], exec_e[keep], np.minimum(comm[keep], exec_e[keep] - exec_s[keep])
        ok = load_b > load_a
        load_a, load_b, work, hbm = load_a[ok], load_b[ok], work[ok], hbm[ok]
        work = np.minimum(work, (load_b - load_a) * np.minimum(1.0, work / hbm))
    return exec_s, exec_e, comm, load_a, load_b, work, hbm


def verdicts(case):
    exec_s, exec_e, comm, load_a, load_b, work, hbm = case
    fluid = check_fluid(*case, TOL)
    ok = len(fluid.bad_execs) == 0 and len(fluid.bad_loads) == 0
    best = lp_max_work(*case)
    return ok, best, float(work.sum()), fluid


@pytest.mark.parametrize("seed", range(6))
def test_fluid_check_agrees_with_the_lp(seed):
    rng = np.random.default_rng(seed)
    feasible = infeasible = 0
    for _ in range(60):
        case = random_case(rng, tight=float(rng.choice([0.2, 0.6, 0.9, 1.0])))
        if len(case[0]) == 0 or len(case[3]) == 0:
            continue
        ok, best, total, fluid = verdicts(case)
        if abs(best - total) < 1e-5 * max(1.0, total):
            assert ok, (case, best, total, fluid.bad_loads)
            feasible += 1
        else:
            assert best < total
            assert not ok, (case, best, total)
            infeasible += 1
            # the first load reported is the first whose work cannot be done by its end
            first = int(fluid.bad_loads[0])
            prefix = tuple(x[: first + 1] if k >= 3 else x for k, x in enumerate(case))
            assert lp_max_work(*prefix) < float(prefix[5].sum()) - 1e-6
    assert feasible >= 5 and infeasible >= 5, (feasible, infeasible)


def test_rigid_valid_is_fluid_valid_on_random_schedules():
    rng = np.random.default_rng(99)
    rigid_ok = 0
    for _ in range(300):
        case = random_case(rng, tight=0.1)
        rigid = check_rigid(*case, TOL)
        if len(rigid.bad_execs) == 0:
            rigid_ok += 1
            fluid = check_fluid(*case, TOL)
            assert len(fluid.bad_execs) == 0 and len(fluid.bad_loads) == 0, case
    assert rigid_ok >= 30


def test_fluid_profile_is_a_valid_split_on_random_schedules():
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(200):
        case = random_case(rng, tight=0.3)
        exec_s, exec_e, comm, load_a, load_b, work, hbm = case
        fluid = check_fluid(*case, TOL)
        if len(fluid.bad_execs) or len(fluid.bad_loads):
            continue
        p = fluid.profile
        seg = np.diff(p.time)
        assert (p.load_share + p.exec_share <= 1 + 1e-9).all()
        for j in range(len(load_a)):
            assert float((p.load_share * seg)[p.load_op == j].sum()) == pytest.approx(work[j], rel=1e-7, abs=1e-7)
        mid = p.time[:-1] + seg / 2
        for i in range(len(exec_s)):
            inside = (mid >= exec_s[i]) & (mid < exec_e[i])
            assert float((p.exec_share * seg)[inside].sum()) == pytest.approx(comm[i], rel=1e-7, abs=1e-7)
        checked += 1
    assert checked >= 50


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.5, 0.95]))
def test_fluid_check_agrees_with_the_lp_hypothesis(seed, tight):
    case = random_case(np.random.default_rng(seed), tight=tight)
    if len(case[0]) == 0 or len(case[3]) == 0:
        return
    ok, best, total, _ = verdicts(case)
    if abs(best - total) > 1e-5 * max(1.0, total):
        assert not ok
    else:
        assert ok
