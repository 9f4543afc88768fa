"""The simulator on hand-built schedules: one valid timing computed by hand, one violation per rule."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from elk.chip import preset
from elk.ir import Program, einsum_op
from elk.schedule import IDEAL_RELAXATION, STRICT, Schedule
from elk.simulator import RULES, simulate
from elk.workload import Workload

MK2 = preset("ipu-mk2").with_overrides(load_model="rigid")  # the rule-by-rule cases below are rigid's
MK2_FLUID = preset("ipu-mk2")
CLOCK = MK2.clock_hz


def toy_program() -> Program:
    # unary (its input x from HBM) -> matmul (weight w from HBM) -> unary -> matmul (weight w2 from HBM)
    return Program.from_ops("toy", [
        einsum_op("n0", "unary", "te->te", dict(t=8, e=512), ["x"], "a"),
        einsum_op("mm", "matmul", "te,ef->tf", dict(t=8, e=512, f=1024), ["a", "w"], "b"),
        einsum_op("act", "unary", "tf->tf", dict(t=8, f=1024), ["b"], "c"),
        einsum_op("mm2", "matmul", "tf,fe->te", dict(t=8, e=512, f=1024), ["c", "w2"], "d")])


@pytest.fixture(scope="module")
def w() -> Workload:
    workload = Workload.build(toy_program(), MK2)
    assert workload.has_load.tolist() == [True, True, False, True]
    return workload


@pytest.fixture(scope="module")
def wf() -> Workload:
    """The same program on the same chip with fluid loads (the default load model)."""
    workload = Workload.build(toy_program(), MK2_FLUID)
    assert workload.chip.load_model.value == "fluid"
    return workload


def fastest(w: Workload) -> np.ndarray:
    return np.array([t.fastest for t in w.tables])


def load_duration(w: Workload, i: int, entry: np.ndarray) -> float:
    """Shortest legal load: HBM bandwidth and the interconnect must both keep up."""
    return max(float(w.hbm_cycles[i]), w.load_noc_cycles(i, float(w.tables[i].cold[entry[i]])))


def sequential(w: Workload, entry: np.ndarray | None = None, gap: float = 0.0, design: str = "hand") -> Schedule:
    """Each load right before its operator, each operator for its plan time; nothing overlaps."""
    entry = fastest(w) if entry is None else np.asarray(entry)
    n = len(w)
    s, e, a, b = (np.zeros(n) for _ in range(4))
    t = 0.0
    for i in range(n):
        if w.has_load[i]:
            a[i] = t
            t += load_duration(w, i, entry)
            b[i] = t
        else:
            a[i] = b[i] = t
        t += gap
        s[i] = t
        t += float(w.tables[i].time[entry[i]])
        e[i] = t
        t += gap
    return Schedule(design, entry, s, e, a, b)


def preload_op3_with_op1(base: Schedule):
    """Times of ``base`` with op 3's load moved right after op 1's, so both wait before op 1 runs."""
    a, b = base.load_start.copy(), base.load_end.copy()
    a[3], b[3] = b[1], b[1] + (b[3] - a[3])
    s, e = base.exec_start.copy(), base.exec_end.copy()
    shift = b[3] - s[1]
    s[1:] += shift
    e[1:] += shift
    a[2] = b[2] = s[2]
    return s, e, a, b


def with_times(sched: Schedule, **arrays) -> Schedule:
    fields = dict(exec_start=sched.exec_start.copy(), exec_end=sched.exec_end.copy(),
                  load_start=sched.load_start.copy(), load_end=sched.load_end.copy())
    fields.update(arrays)
    return Schedule(sched.design, sched.entry.copy(), relaxation=sched.relaxation, **fields)


def assert_flags(result, rule: str, op: int, time: float, first: bool = True):
    assert not result.valid
    hits = [v for v in result.violations if v.rule == rule]
    assert hits, f"no {rule} violation in {[v.rule for v in result.violations]}"
    assert any(v.op == op and v.time_cycles == pytest.approx(time, abs=1e-6) for v in hits), hits
    if first:
        v0 = result.violations[0]
        assert (v0.rule, v0.op) == (rule, op)
        assert v0.time_cycles == pytest.approx(time, abs=1e-6)
        msg = v0.message(CLOCK)
        assert rule in msg and RULES[rule] in msg
        if op >= 0:
            assert f"operator {op} (" in msg


# ---------------------------------------------------------------------------
# the workload's facts
# ---------------------------------------------------------------------------
def test_workload_facts(w):
    assert w.load_bytes.tolist() == [t.min_cold * MK2.cores for t in w.tables]
    np.testing.assert_allclose(w.hbm_cycles, w.load_bytes / (16e12 / 1.325e9))
    assert w.noc_load_bytes_per_cycle == pytest.approx(1472 * 5.5e9 / 1.325e9)
    t1 = w.tables[1]
    # broadcast ratio: a replicated cold layout needs proportionally more interconnect
    big = float(t1.cold.max())
    assert big > t1.min_cold
    assert w.load_noc_cycles(1, big) == pytest.approx(w.load_noc_cycles(1, t1.min_cold) * big / t1.min_cold)
    assert w.load_noc_cycles(2, 123.0) == 0.0
    chosen = w.chosen(fastest(w))
    for i, t in enumerate(w.tables):
        assert chosen["time"][i] == t.time[t.fastest]
        assert chosen["cold"][i] == t.cold[t.fastest]
    assert chosen["noc"][1] == pytest.approx(w.load_noc_cycles(1, float(chosen["cold"][1])))
    assert chosen["noc"][2] == 0.0


# ---------------------------------------------------------------------------
# a valid schedule, timed by hand
# ---------------------------------------------------------------------------
def test_valid_sequential_schedule(w):
    entry = fastest(w)
    sched = sequential(w, entry)
    r = simulate(w, sched)
    assert r.valid, r.violations[:3]
    assert r.relaxation.strict and r.summary()["relaxation"] == "strict"
    plan = [float(t.time[k]) for t, k in zip(w.tables, entry)]
    loads = [load_duration(w, i, entry) for i in range(len(w)) if w.has_load[i]]
    latency = sum(plan) + sum(loads)
    assert r.latency_cycles == pytest.approx(latency, rel=1e-12)
    assert r.latency_ms == pytest.approx(latency / CLOCK * 1e3, rel=1e-12)
    # nothing overlaps: no overlapped time, loads busy the HBM for hbm_cycles of their span
    hbm = float(w.hbm_cycles[w.has_load].sum())
    bd = r.breakdown_ms
    assert set(bd) == {"overlapped", "preload_only", "execute_only", "stall"}
    assert sum(bd.values()) == pytest.approx(r.latency_ms, rel=1e-9)
    assert bd["overlapped"] == pytest.approx(0.0, abs=1e-12)
    assert bd["execute_only"] == pytest.approx(sum(plan) / CLOCK * 1e3, rel=1e-9)
    assert bd["preload_only"] == pytest.approx(hbm / CLOCK * 1e3, rel=1e-9)
    assert bd["stall"] == pytest.approx((sum(loads) - hbm) / CLOCK * 1e3, rel=1e-9)
    assert r.hbm_utilisation == pytest.approx(hbm / latency, rel=1e-12)
    flops = sum(op.flops for op in w.program.ops)
    assert flops == 2 * (8 * 512 + 8 * 512 * 1024 + 8 * 1024 + 8 * 512 * 1024)
    assert r.achieved_tflops == pytest.approx(flops / (latency / CLOCK) / 1e12, rel=1e-12)
    assert r.hbm_bytes == int(w.load_bytes.sum())
    assert r.execute_ms == pytest.approx(sum(plan) / CLOCK * 1e3)
    assert r.load_ms == pytest.approx(sum(loads) / CLOCK * 1e3)
    # SRAM peak: the largest of (hot of a running op) and (cold of a waiting load)
    chosen = w.chosen(entry)
    assert r.peak_sram_bytes == int(max(chosen["hot"].max(), chosen["cold"][w.has_load].max()))
    assert r.peak_sram_bytes <= MK2.sram_per_core
    # timeline is relative to the first event
    assert r.timeline.exec_start[0] == pytest.approx(sched.exec_start[0] - sched.load_start[0])
    assert r.timeline.load_ops.tolist() == [0, 1, 3]


def test_latency_is_shift_invariant_and_counts_from_first_event(w):
    sched = sequential(w, gap=10.0)
    r0 = simulate(w, sched)
    r1 = simulate(w, sched.shifted(12345.5))
    assert r0.valid and r1.valid
    assert r1.latency_cycles == pytest.approx(r0.latency_cycles)
    # the first event is load 0 at time 0; the last is the end of op 3
    assert r0.latency_cycles == pytest.approx(sched.exec_end[-1] - sched.load_start[0])
    assert r0.breakdown_ms["stall"] > 0  # the gaps are idle time


def test_min_cold_plans_are_valid_too(w):
    entry = np.array([int(np.argmin(t.cold)) for t in w.tables])
    r = simulate(w, sequential(w, entry))
    assert r.valid, r.violations[:3]


def test_simulator_does_not_mutate_the_schedule(w):
    sched = with_times(sequential(w, gap=5.0))
    sched.exec_start[2] -= 20  # invalid on purpose: the judge must still leave it alone
    before = copy.deepcopy(sched)
    simulate(w, sched)
    simulate(w, with_times(sched))
    for name in ("entry", "exec_start", "exec_end", "load_start", "load_end"):
        np.testing.assert_array_equal(getattr(sched, name), getattr(before, name))
    assert sched.info == before.info and sched.relaxation == before.relaxation


# ---------------------------------------------------------------------------
# one violation per rule
# ---------------------------------------------------------------------------
def test_rule_1_order(w):
    base = sequential(w, gap=0.0)
    s, e = base.exec_start.copy(), base.exec_end.copy()
    s[2] -= 10.0  # op 2 starts 10 cycles before op 1 ends, and keeps its full plan time
    e[2] -= 10.0
    r = simulate(w, with_times(base, exec_start=s, exec_end=e))
    assert_flags(r, "1-order", 2, s[2])
    assert [v.rule for v in r.violations] == ["1-order"]


def test_rule_1_duration(w):
    base = sequential(w)
    e = base.exec_end.copy()
    e[3] -= 5.0
    r = simulate(w, with_times(base, exec_end=e))
    assert_flags(r, "1-duration", 3, base.exec_start[3])
    assert [v.rule for v in r.violations] == ["1-duration"]


def test_rule_2_deadline(w):
    base = sequential(w, gap=50.0)
    a, b = base.load_start.copy(), base.load_end.copy()
    a[3] += 60.0  # now ends 10 cycles into op 3's execution
    b[3] += 60.0
    r = simulate(w, with_times(base, load_start=a, load_end=b))
    assert_flags(r, "2-deadline", 3, base.exec_start[3])


def test_rule_2_bandwidth(w):
    base = sequential(w, gap=0.0)
    a = base.load_start.copy()
    a[3] = base.load_end[3] - 0.5 * w.hbm_cycles[3]
    r = simulate(w, with_times(base, load_start=a))
    assert_flags(r, "2-bandwidth", 3, a[3])


def test_rule_2_channel(w):
    base = sequential(w, gap=0.0)
    a, b = base.load_start.copy(), base.load_end.copy()
    # load 3 starts 1 cycle after load 1 and keeps its length: the two overlap on the one HBM channel
    a[3] = a[1] + 1.0
    b[3] = a[3] + (base.load_end[3] - base.load_start[3])
    r = simulate(w, with_times(base, load_start=a, load_end=b))
    assert_flags(r, "2-channel", 3, a[3])


def test_rule_3_noc_share_at_min_cold(w):
    # at the minimum cold layout the interconnect needs more time than the HBM: a load at HBM speed is too short
    entry = np.array([int(np.argmin(t.cold)) for t in w.tables])
    assert w.load_noc_cycles(3, w.tables[3].min_cold) > w.hbm_cycles[3]
    base = sequential(w, entry)
    a = base.load_start.copy()
    a[3] = base.load_end[3] - w.hbm_cycles[3]
    r = simulate(w, with_times(base, load_start=a))
    assert_flags(r, "3-noc-share", 3, a[3])
    assert "2-bandwidth" not in {v.rule for v in r.violations}


def test_a_load_exactly_at_interconnect_speed_far_from_zero_is_valid(w):
    """Found in the paper evaluation: a load lasting exactly its interconnect cycles, ~2e7 cycles before 0,
    carries float error in its duration larger than a relative 1e-9 on its share; that is not a violation."""
    entry = np.array([int(np.argmin(t.cold)) for t in w.tables])
    base = sequential(w, entry).shifted(-2.3e7 + 0.1)
    a, b = base.load_start.copy(), base.load_end.copy()
    noc = w.load_noc_cycles(3, w.tables[3].min_cold)
    a[3] = b[3] - noc
    r = simulate(w, with_times(base, load_start=a))
    assert "3-noc-share" not in {v.rule for v in r.violations}
    a[3] = b[3] - noc * 0.99  # 1% too short is still caught
    assert_flags(simulate(w, with_times(base, load_start=a)), "3-noc-share", 3, a[3])


def test_rule_3_noc_share_of_a_broadcast_layout(w):
    # op 1's fastest entry lands in a replicated layout; a load timed for the minimum layout is too short
    entry = fastest(w)
    cold = float(w.tables[1].cold[entry[1]])
    ratio = cold / w.tables[1].min_cold
    assert ratio > 1
    base = sequential(w, entry)
    a = base.load_start.copy()
    a[1] = base.load_end[1] - w.load_noc_cycles(1, w.tables[1].min_cold)
    r = simulate(w, with_times(base, load_start=a))
    assert_flags(r, "3-noc-share", 1, a[1])
    assert "2-bandwidth" not in {v.rule for v in r.violations}
    assert r.timeline.load_share[1] == pytest.approx(ratio)


def noc_exec_case(w):
    """Load 1 (a broadcast layout, interconnect share exactly 1) covers all of op 0's execution."""
    entry = fastest(w)
    work = w.load_noc_cycles(1, float(w.tables[1].cold[entry[1]]))
    t0 = float(w.tables[0].time[entry[0]])
    assert work > t0 > float(w.tables[0].comm[entry[0]]) > 0
    base = sequential(w, entry)
    a, b, s, e = (x.copy() for x in (base.load_start, base.load_end, base.exec_start, base.exec_end))
    s[0] = b[0] + 50.0
    e[0] = s[0] + t0
    b[1] = e[0]
    a[1] = b[1] - work
    assert a[1] >= b[0]
    shift = e[0] - base.exec_end[0]
    s[1:] += shift
    e[1:] += shift
    a[2:] += shift
    b[2:] += shift
    return with_times(base, load_start=a, load_end=b, exec_start=s, exec_end=e)


def test_rule_3_noc_exec(w):
    sched = noc_exec_case(w)
    r = simulate(w, sched)
    assert_flags(r, "3-noc-exec", 0, sched.exec_start[0])
    assert [v.rule for v in r.violations] == ["3-noc-exec"]
    assert r.timeline.load_share[1] == pytest.approx(1.0)


def test_stretching_the_execution_fixes_noc_exec(w):
    # op 0 starts early enough that its communication runs before load 1 takes the whole interconnect
    sched = noc_exec_case(w)
    comm0 = float(w.tables[0].comm[sched.entry[0]])
    s, a, b = sched.exec_start.copy(), sched.load_start.copy(), sched.load_end.copy()
    s[0] = a[1] - comm0
    d0 = b[0] - a[0]
    b[0] = s[0]
    a[0] = b[0] - d0
    r = simulate(w, with_times(sched, exec_start=s, load_start=a, load_end=b))
    assert r.valid, r.violations[:3]
    # one cycle less and the communication no longer fits
    s[0] += 1.0
    r = simulate(w, with_times(sched, exec_start=s, load_start=a, load_end=b))
    assert [v.rule for v in r.violations] == ["3-noc-exec"]


def test_ideal_relaxation_ignores_noc_contention(w):
    sched = noc_exec_case(w)
    assert "3-noc-exec" in {v.rule for v in simulate(w, sched).violations}
    relaxed = Schedule(sched.design, sched.entry, sched.exec_start, sched.exec_end, sched.load_start,
                       sched.load_end, IDEAL_RELAXATION)
    r = simulate(w, relaxed)
    assert "3-noc-exec" not in {v.rule for v in r.violations}
    assert r.valid
    assert not r.relaxation.strict and "no NoC contention" in r.relaxation.describe()
    assert STRICT.strict and not IDEAL_RELAXATION.strict


def test_rule_4_sram_while_an_operator_runs():
    chip = MK2.with_overrides(sram_per_core=2048)
    w = Workload.build(toy_program(), chip)
    entry = fastest(w)
    t1, t3 = w.tables[1], w.tables[3]
    entry[1] = int(np.lexsort((t1.cold, -t1.hot))[0])  # the largest hot plan, at its smallest cold layout
    entry[3] = int(np.argmin(t3.cold))
    hot1, cold1, cold3 = int(t1.hot[entry[1]]), int(t1.cold[entry[1]]), int(t3.cold[entry[3]])
    assert cold1 + cold3 <= 2048 < hot1 + cold3  # waiting together fits, running next to a preload does not
    base = sequential(w, entry)
    s, e, a, b = preload_op3_with_op1(base)
    r = simulate(w, with_times(base, load_start=a, load_end=b, exec_start=s, exec_end=e))
    assert_flags(r, "4-sram", 1, s[1])
    assert r.peak_sram_bytes == hot1 + cold3
    assert "2048" in r.violations[0].message(chip.clock_hz)


def test_rule_4_sram_between_operators():
    chip = MK2.with_overrides(sram_per_core=1024)
    w = Workload.build(toy_program(), chip)
    entry = np.array([int(np.argmax(t.cold)) for t in w.tables])
    colds = [int(w.tables[i].cold[entry[i]]) for i in (1, 3)]
    assert max(colds) <= 1024 < sum(colds)
    base = sequential(w, entry)
    s, e, a, b = preload_op3_with_op1(base)
    r = simulate(w, with_times(base, load_start=a, load_end=b, exec_start=s, exec_end=e))
    hits = [v for v in r.violations if v.rule == "4-sram"]
    assert not r.valid and hits
    assert (hits[0].op, hits[0].time_cycles) == (-1, pytest.approx(a[3]))
    assert "between operators" in hits[0].message(chip.clock_hz)


# ---------------------------------------------------------------------------
# malformed schedules
# ---------------------------------------------------------------------------
def test_structure_wrong_length(w):
    base = sequential(w)
    short = Schedule("hand", base.entry[:3], base.exec_start[:3], base.exec_end[:3], base.load_start[:3],
                     base.load_end[:3])
    r = simulate(w, short)
    assert not r.valid
    assert [v.rule for v in r.violations] == ["0-structure"]
    assert "3 values for 4 operators" in r.violations[0].detail
    assert "between operators" in r.violations[0].message(CLOCK)
    longer = with_times(base, load_end=np.append(base.load_end, 1.0))
    assert simulate(w, longer).violations[0].rule == "0-structure"


@pytest.mark.parametrize("row", [-1, "len"])
def test_structure_plan_row_out_of_range(w, row):
    base = sequential(w)
    entry = base.entry.copy()
    entry[1] = len(w.tables[1]) if row == "len" else row
    r = simulate(w, Schedule("hand", entry, base.exec_start, base.exec_end, base.load_start, base.load_end))
    assert not r.valid and r.violations[0].rule == "0-structure"
    assert "operator 1" in r.violations[0].detail
    assert np.isnan(r.latency_cycles)


@pytest.mark.parametrize("field", ["exec_start", "exec_end", "load_start", "load_end"])
def test_structure_nan_times(w, field):
    base = sequential(w)
    arr = getattr(base, field).copy()
    arr[1] = np.nan
    r = simulate(w, with_times(base, **{field: arr}))
    assert not r.valid and [v.rule for v in r.violations] == ["0-structure"]
    assert "finite" in r.violations[0].detail


def test_load_times_of_operators_without_a_load_are_ignored(w):
    base = sequential(w)
    a, b = base.load_start.copy(), base.load_end.copy()
    a[2], b[2] = np.nan, -1e9  # op 2 loads nothing
    r = simulate(w, with_times(base, load_start=a, load_end=b))
    assert r.valid, r.violations[:3]
    assert r.latency_cycles == pytest.approx(simulate(w, base).latency_cycles)


# ---------------------------------------------------------------------------
# fluid loads: a load may pause while the running operator exchanges data
# ---------------------------------------------------------------------------
def test_fluid_names_the_load_that_cannot_yield(wf):
    """Load 1 needs the whole interconnect for its whole interval: under fluid it is the load that cannot finish."""
    sched = noc_exec_case(wf)
    r = simulate(wf, sched)
    assert_flags(r, "3-noc-load", 1, sched.load_start[1])
    assert [v.rule for v in r.violations] == ["3-noc-load"]
    comm0 = float(wf.tables[0].comm[sched.entry[0]])
    work = wf.load_noc_cycles(1, float(wf.tables[1].cold[sched.entry[1]]))
    # it could move all but op 0's communication
    assert f"room for {work - comm0:.1f}" in r.violations[0].detail


def pausing_case(workload, extra: float = 0.0):
    """Load 1 starts ``comm0 + extra`` cycles earlier than in noc_exec_case: room to pause for op 0's exchange."""
    sched = noc_exec_case(workload)
    comm0 = float(workload.tables[0].comm[sched.entry[0]])
    a, b = sched.load_start.copy(), sched.load_end.copy()
    a[1] -= comm0 + extra
    s, e = sched.exec_start.copy(), sched.exec_end.copy()
    assert a[1] >= b[0] - 1e-9 or True
    shift = max(0.0, b[0] - a[1])  # keep load 0 before load 1
    a[0] -= shift
    b[0] -= shift
    return with_times(sched, load_start=a, load_end=b, exec_start=s, exec_end=e), comm0


def test_fluid_accepts_a_load_that_pauses_where_rigid_stretches_nothing(w, wf):
    sched, comm0 = pausing_case(w)
    rigid = simulate(w, sched)
    assert "3-noc-exec" in {v.rule for v in rigid.violations}  # a constant share leaves op 0 too little
    fluid = simulate(wf, sched)
    assert fluid.valid, fluid.violations[:3]
    # one cycle less room and the load cannot finish any more
    tight, _ = pausing_case(w, extra=-1.0)
    assert [v.rule for v in simulate(wf, tight).violations] == ["3-noc-load"]


def test_fluid_rate_profile_is_a_valid_split(wf):
    sched, comm0 = pausing_case(wf)
    r = simulate(wf, sched)
    prof = r.timeline.noc
    seg = np.diff(prof.time)
    assert (prof.load_share + prof.exec_share <= 1 + 1e-9).all()
    assert (prof.load_rate <= 1 + 1e-9).all() and (prof.load_rate >= -1e-12).all()
    # every load moves its work, every operator gets its communication
    chosen = wf.chosen(sched.entry)
    for op in r.timeline.load_ops:
        moved = float((prof.load_share * seg)[prof.load_op == op].sum())
        assert moved == pytest.approx(float(chosen["noc"][op]), rel=1e-9)
        hbm = float((prof.load_rate * seg)[prof.load_op == op].sum())
        assert hbm == pytest.approx(float(wf.hbm_cycles[op]), rel=1e-9)
    mid = prof.time[:-1] + seg / 2
    for i in range(len(wf)):
        inside = (mid >= r.timeline.exec_start[i]) & (mid < r.timeline.exec_end[i])
        assert float((prof.exec_share * seg)[inside].sum()) == pytest.approx(float(chosen["comm"][i]), rel=1e-9)


def test_every_rigid_valid_schedule_here_is_fluid_valid(w, wf):
    for sched in (sequential(w), sequential(w, gap=7.0), noc_exec_case(w)):
        if simulate(w, sched).valid:
            assert simulate(wf, sched).valid
