"""HBM stores (docs/design.md §5.2): the simulator's rules for them, the reference checker's agreement, the
store-placement pass every design ends in, and the bounds that count them.

The program is a small forward-then-backward chain: two forward activations are stored and read back by
backward operators (round trips), and a weight update writes its result to HBM.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk.chip import preset
from elk.ir import Program, einsum_op
from elk.schedule_file import read_schedule, write_schedule
from elk.simulator import simulate
from elk.workload import Workload
from reference_checker import check
from solvers.registry import run_design, run_exact
from solvers.schedule.bounds import compute_bounds, shortest_stores
from solvers.schedule.stores import StorePlacementError, place_stores
from solvers.solver_options import CpsatOptions, MilpOptions

HEURISTICS = ("basic", "static", "elk-dyn", "elk-full")
SMALL = preset("ipu-mk2").with_overrides(cores=64, sram_per_core=96 * 1024)
CHIPS = {
    "default": SMALL,
    # a 10x slower load interconnect: transfers are long, the channel is busy, stores wait or pause
    "busy-channel": SMALL.with_overrides(noc_load_bytes_per_s_per_core=5.5e8),
    # HBM slower than that interconnect: transfers bound by HBM, rate caps below 1
    "hbm-bound": SMALL.with_overrides(noc_load_bytes_per_s_per_core=5.5e8, hbm_bytes_per_s=64 * 5.5e8 / 1.5),
    # little SRAM: pending outputs compete with preloads
    "tight-sram": SMALL.with_overrides(noc_load_bytes_per_s_per_core=1.1e9, sram_per_core=16 * 1024),
}


def store_program(t: int = 64, e: int = 256, f: int = 512) -> Program:
    """Forward mm1 -> act -> mm2 -> mm3, backward bw1..bw3 reading h1 and h3 back, and an update of w3."""
    sz = dict(t=t, e=e, f=f)
    ops = [
        einsum_op("mm1", "matmul", "te,ef->tf", sz, ["x", "w1"], "h1"),
        einsum_op("act", "unary", "tf->tf", sz, ["h1"], "h2"),
        einsum_op("mm2", "matmul", "tf,fe->te", sz, ["h2", "w2"], "h3"),
        einsum_op("mm3", "matmul", "te,ef->tf", sz, ["h3", "w3"], "h4"),
        einsum_op("bw1", "binary", "tf,tf->tf", sz, ["h4", "h1"], "g1"),
        einsum_op("bw2", "matmul", "tf,fe->te", sz, ["g1", "w2"], "g2"),
        einsum_op("bw3", "matmul", "te,tf->ef", sz, ["h3", "g1"], "dw"),
        einsum_op("upd", "binary", "ef,ef->ef", sz, ["dw", "w3"], "w3new"),
    ]
    first = Program.from_ops("stores", ops)
    produced = {op.output.tensor for op in first.ops}
    stored = {o.tensor for op in first.ops for o in op.inputs if o.offchip and o.tensor in produced} | {"w3new"}
    return Program.from_ops("stores", [replace(op, store=op.output.tensor in stored) for op in ops],
                            weights=("w1", "w2", "w3"))


_WORKLOADS: dict[tuple[str, str], Workload] = {}


def workload(chip: str = "default", load_model: str = "fluid") -> Workload:
    key = (chip, load_model)
    if key not in _WORKLOADS:
        _WORKLOADS[key] = Workload.build(store_program(), CHIPS[chip].with_overrides(load_model=load_model),
                                         workers=1)
    return _WORKLOADS[key]


def placed(w: Workload, design: str = "elk-dyn"):
    return run_design(design, w, {})


def test_program_records_its_round_trips_and_write_bytes():
    p = store_program()
    p.check_round_trips()
    names = [op.name for op in p.ops]
    assert [(names[a], names[b]) for a, b in p.round_trips] == [("mm1", "bw1"), ("mm2", "bw3")]
    assert p.hbm_write_bytes == sum(op.store_bytes() for op in p.ops) > 0
    broken = Program.from_ops("broken", [replace(op, store=False) if op.name == "mm1" else op for op in p.ops])
    with pytest.raises(Exception, match="does not store"):
        broken.check_round_trips()


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("load_model", ("fluid", "rigid"))
def test_every_design_is_valid_with_its_stores_and_the_reference_agrees(chip, load_model):
    w = workload(chip, load_model)
    done = {}
    for name in HEURISTICS:
        s = run_design(name, w, done)
        done[name] = s
        sim = simulate(w, s)
        assert sim.valid, (name, sim.violations[:2])
        ref = check(w, s)
        assert ref.valid and ref.latency == pytest.approx(sim.latency_cycles, rel=1e-9)
        assert sim.hbm_write_bytes == int(w.store_bytes.sum()) > 0
        # every store was placed after its operator, for at least its HBM time
        st = np.flatnonzero(w.has_store)
        assert (s.store_start[st] >= s.exec_end[st] - 1e-6).all()
        assert (s.store_end[st] - s.store_start[st] >= w.store_hbm_cycles[st] - 1e-6).all()
    warm = min(done.values(), key=lambda s: simulate(w, s).latency_cycles)
    for name, opts in (("cpsat", CpsatOptions(time_limit=10, workers=1, deterministic_time=2.0)),
                       ("milp", MilpOptions(time_limit=10, workers=1))):
        s = run_exact(name, w, warm, opts)
        sim = simulate(w, s)
        assert sim.valid and check(w, s).valid
        assert sim.latency_cycles <= simulate(w, warm).latency_cycles + 1e-6


@pytest.mark.parametrize("load_model", ("fluid", "rigid"))
def test_bounds_count_the_stores_and_stay_below_every_schedule(load_model):
    w = workload("busy-channel", load_model)
    report = compute_bounds(w, "lp")
    names = {b.name for b in report.bounds}
    assert "store-flow-shop" in names
    hbm = report.by_name()["hbm"].cycles
    assert hbm >= float(shortest_stores(w).sum()) + float(np.maximum(w.hbm_cycles, 0).sum()) - 1e-6
    for name in HEURISTICS:
        sim = simulate(w, placed(w, name))
        assert sim.valid
        assert report.best.cycles <= sim.latency_cycles + 1e-6


def test_a_busy_channel_pauses_for_stores_and_stays_valid():
    w = workload("hbm-bound", "rigid")
    s = placed(w, "basic")
    assert simulate(w, s).valid
    # the pass records how many stores needed a pause; the program's stores always end up placed
    assert s.info.search["store_pauses"] >= 0
    assert (s.store_end[w.has_store] > s.store_start[w.has_store]).all()


def test_each_store_rule_is_enforced():
    w = workload()
    good = placed(w)
    assert simulate(w, good).valid
    st = np.flatnonzero(w.has_store)
    p = int(st[0])
    names = [op.name for op in w.program.ops]

    def rules(schedule):
        return {v.rule for v in simulate(w, schedule).violations}

    early = good.with_stores(good.store_start.copy(), good.store_end.copy())
    early.store_start[p] = good.exec_end[p] - 50.0
    early.store_end[p] = early.store_start[p] + (good.store_end[p] - good.store_start[p])
    assert "2-store-start" in rules(early)

    short = good.with_stores(good.store_start.copy(), good.store_end.copy())
    short.store_end[p] = short.store_start[p] + w.store_hbm_cycles[p] / 2
    assert "2-store-bandwidth" in rules(short)

    # the load of bw1 reads mm1's output: starting it before that store ends breaks the round trip
    reader = names.index("bw1")
    late = good.with_stores(good.store_start.copy(), good.store_end.copy())
    late.store_start[p] = good.load_start[reader] - 1.0
    late.store_end[p] = late.store_start[p] + w.store_hbm_cycles[p] + 10.0
    assert {"2-round-trip", "2-channel"} & rules(late)
    ref = check(w, late)
    assert not ref.valid and "2-round-trip" in ref.rules

    # a store overlapping a load on the channel
    loads = np.flatnonzero(w.has_load & (np.arange(len(w)) > p))
    j = int(loads[0])
    clash = good.with_stores(good.store_start.copy(), good.store_end.copy())
    clash.store_start[p] = max(good.exec_end[p], good.load_start[j] - 1.0)
    clash.store_end[p] = max(clash.store_start[p] + w.store_hbm_cycles[p], good.load_start[j] + 2.0)
    assert "2-channel" in rules(clash)


def test_a_pending_store_holds_sram():
    w = workload()
    s = placed(w)
    with_stores = simulate(w, s)
    st = np.flatnonzero(w.has_store)
    # hold every output far longer: the peak grows by at least the pending outputs that now overlap
    held = s.with_stores(s.store_start + 0.0, s.store_end.copy())
    end = float(s.exec_end.max())
    held.store_start[st] = end + 10.0 + 1e4 * np.arange(len(st))
    held.store_end[st] = held.store_start[st] + w.store_hbm_cycles[st] + 1.0
    longer = simulate(w, held)
    assert longer.peak_sram_bytes >= with_stores.peak_sram_bytes
    assert longer.peak_sram_bytes >= int(w.store_cold[st].sum())
    assert longer.latency_cycles > with_stores.latency_cycles  # the last store now ends the schedule


def test_a_load_before_its_writer_cannot_be_placed():
    w = workload()
    s = placed(w)
    names = [op.name for op in w.program.ops]
    reader, writer = names.index("bw1"), names.index("mm1")
    bad = s.with_stores(s.store_start, s.store_end)
    bad.load_start[reader] = s.exec_end[writer] - 100.0
    with pytest.raises(StorePlacementError, match="before that operator has run"):
        place_stores(w, bad)


def test_schedule_files_keep_the_stores(tmp_path):
    w = workload()
    s = placed(w)
    path = write_schedule(tmp_path / "s.json", w, s)
    back = read_schedule(path, w)
    assert np.allclose(back.store_start, s.store_start) and np.allclose(back.store_end, s.store_end)
    assert simulate(w, back).latency_cycles == pytest.approx(simulate(w, s).latency_cycles)


def test_a_program_without_stores_is_unchanged_by_the_pass():
    w = Workload.build(Program.from_ops("plain", [replace(op, store=False) for op in store_program().ops]), SMALL,
                       workers=1)
    s = run_design("elk-dyn", w, {})
    assert place_stores(w, s) is s


PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(key=st.sampled_from([(c, m) for c in CHIPS for m in ("fluid", "rigid")]),
       which=st.integers(0, 2), move=st.floats(-3000.0, 3000.0), stretch=st.floats(0.3, 3.0))
def test_simulator_and_reference_agree_on_moved_stores(key, which, move, stretch):
    w = workload(*key)
    s = placed(w, "static")
    st_ops = np.flatnonzero(w.has_store)
    p = int(st_ops[which % len(st_ops)])
    moved = s.with_stores(s.store_start.copy(), s.store_end.copy())
    length = (s.store_end[p] - s.store_start[p]) * stretch
    moved.store_start[p] = s.store_start[p] + move
    moved.store_end[p] = moved.store_start[p] + length
    sim = simulate(w, moved)
    ref = check(w, moved)
    if ref.near_boundary():
        return
    assert sim.valid == ref.valid, (sim.violations[:2], ref.findings[:2])
    if sim.valid:
        assert sim.latency_cycles == pytest.approx(ref.latency, rel=1e-9)
    else:
        assert {v.rule.split("-")[0] for v in sim.violations} & ref.families


def test_the_kv_append_stores_each_layers_new_key_and_value():
    from elk.driver.api import compile as compile_model
    from elk.graphs.zoo import build_program, resolve_model
    cfg = resolve_model("tiny")
    plain = build_program("tiny", batch=4, seq=256)
    append = build_program("tiny", batch=4, seq=256, kv_append=True)
    assert plain.hbm_write_bytes == 0 and not plain.round_trips
    # one key and one value per layer and sequence: kv heads x head dim each, 2 bytes
    assert append.hbm_write_bytes == cfg.layers * 2 * 4 * cfg.kv_heads * cfg.head_dim * 2
    assert [op.name for op in append.ops] == [op.name for op in plain.ops]
    chip = SMALL.with_overrides(cores=256)
    before = compile_model(plain, chip=chip, designs="elk-full", placement=None, bound="closed", workers=1)
    after = compile_model(append, chip=chip, designs="elk-full", placement=None, bound="closed", workers=1)
    b, a = before.designs["elk-full"].sim, after.designs["elk-full"].sim
    assert a.valid and b.valid and a.hbm_write_bytes == append.hbm_write_bytes
    assert a.latency_cycles >= b.latency_cycles - 1e-6  # writing more never makes the step faster
    assert after.bound_ms <= a.latency_ms + 1e-12


def test_the_kv_append_is_for_decode_and_elks_builders(capsys, no_compile):
    from conftest import user_error
    user_error(capsys, ["compile", "tiny", "--kv-append", "--mode", "forward"], "KV-cache append", "decode")
    user_error(capsys, ["compile", "dit-xl-2", "--kv-append"], "no KV cache")


@pytest.mark.parametrize("load_model", ("fluid", "rigid"))
def test_a_training_step_compiles_valid_with_every_default_design(load_model):
    """The tiny model's training step (forward, backward, Adam): every default design's schedule, stores placed,
    passes the simulator and the reference checker, and no bound lies above any of them."""
    from elk.driver.api import compile as compile_model
    chip = SMALL.with_overrides(cores=256, load_model=load_model)
    result = compile_model("tiny", chip=chip, batch=1, seq=64, mode="train", designs="default", workers=1)
    program = result.program
    assert program.meta["step"] == "train" and program.hbm_write_bytes > 0 and program.round_trips
    for name, d in result.designs.items():
        assert d.sim.valid, (name, d.sim.violations[:1])
        assert d.sim.hbm_write_bytes == program.hbm_write_bytes
        if d.schedule.relaxation.strict:
            assert result.bound_ms <= d.sim.latency_ms * (1 + 1e-9)
    best = min(result.designs["elk-full"], result.designs["periodic"], key=lambda d: d.sim.latency_ms)
    assert check(result.workload, best.schedule).valid


def test_the_optimal_design_refuses_a_program_that_stores(capsys, monkeypatch):
    """One line, exit 2, before any plan table is built."""
    import elk.plantable
    from conftest import user_error

    def no_tables(*args, **kwargs):
        raise AssertionError("plan tables were built before the refusal")
    monkeypatch.setattr(elk.plantable, "tables_for", no_tables)
    monkeypatch.setattr("elk.workload.tables_for", no_tables)
    user_error(capsys, ["compile", "tiny", "--mode", "train", "--designs", "optimal"], "no HBM stores")
