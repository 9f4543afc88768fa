"""The cost model, plan enumeration and plan tables against worked numbers of the Elk artifact.

The reference operator is Llama2-13B's QKV matmul, C[m,n] = A[m,k] B[k,n] with
m=32, n=15360, k=5120 and the weight B in HBM, on the 5,888 cores of an IPU-POD4.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from elk import costmodel, plans, plantable
from elk.chip import preset
from elk.costmodel import (binary_cycles, ladder, matmul_cycles, plan_costs, reduce_cycles, shift_rounds,
                           warmup_cycles)
from elk.errors import OperatorDoesNotFitError
from elk.ir import OpKind, Program, einsum_op
from elk.topology import load_noc_bytes_per_cycle

POD4 = preset("ipu-pod4")
MK2 = preset("ipu-mk2")


def qkv_signature(m=32, n=15360, k=5120):
    ops = [einsum_op("norm", "unary", "mk->mk", dict(m=m, k=k), ["h"], "x"),
           einsum_op("qkv", "matmul", "mk,kn->mn", dict(m=m, n=n, k=k), ["x", "w"], "y")]
    program = Program.from_ops("qkv", ops)
    op = program.ops[1]
    assert [o.offchip for o in op.inputs] == [False, True]  # x comes from the op before, w from HBM
    return op.signature


SIG = qkv_signature()
SPATIAL = np.array([[2, 128, 23]])
ALL_ONE = np.ones((1, 3, 3), dtype=np.int64)


# ---------------------------------------------------------------------------
# the worked plan
# ---------------------------------------------------------------------------
def test_signature_orders_indices_output_first():
    # canonical order: the output's indices (m, n), then new ones from the inputs (k)
    assert SIG.lengths == (32, 15360, 5120)
    assert SIG.variables == (((0,), (1,)), ((0,), (2,)), ((2,), (1,)))
    assert SIG.offchip == (False, False, True)


def test_worked_plan_2_128_23_on_pod4():
    c = plan_costs(SIG, POD4, SPATIAL, ALL_ONE)
    assert c["comp"][0] == pytest.approx(14202.0, abs=1e-9)
    assert c["comm"][0] == pytest.approx(7874.25, abs=1e-9)
    assert c["comp"][0] + c["comm"][0] == pytest.approx(22076.25, abs=1e-9)
    assert int(c["hot"][0]) == 64496
    # per-core pieces: C 16x120, A 16x223, B 223x120 (5120/23 rounds up to 223)
    assert c["var_elems"][0].tolist() == [16 * 120, 16 * 223, 223 * 120]
    assert int(c["cold"][0]) == 2 * 223 * 120  # only B is off chip
    np.testing.assert_array_equal(c["var_comm_factor"], np.ones((1, 3)))


def test_worked_plan_compute_by_hand():
    # matmul_cycles on the per-core shape m=16, n=120, k=223: the larger free side (120) is "m"
    m6, k16, n16 = math.ceil(120 / 6), math.ceil(223 / 16), math.ceil(16 / 16)
    by_hand = 2 * 12 * m6 * k16 * n16 + 514 * k16 * n16 + 113 * n16 + 173
    assert by_hand == 14202
    assert float(matmul_cycles(np.array([16.0]), np.array([120.0]), np.array([223.0]), np.array([1.0]), 2)[0]) \
        == by_hand


def test_worked_plan_communication_by_hand():
    # the output shuffle: 23 copies of C (k is split 23 ways) are gathered and reduced
    byte_cycles, sync, out = 0.28 * 2, 118.0, 16 * 120
    gather = 23 * sync + out * byte_cycles
    reduce = 0.25 * (96 * 23) + 175  # ladder(1920 / 23 = 83.5) = 96 lanes, 23 partial sums
    shuffle = out * byte_cycles + 6 * sync + gather + reduce
    assert shuffle * 1.25 == pytest.approx(7874.25, abs=1e-9)
    single_chip = plan_costs(SIG, MK2, SPATIAL, ALL_ONE)["comm"][0]
    assert single_chip == pytest.approx(shuffle, abs=1e-9)


def test_single_chip_has_no_multi_chip_factor():
    assert POD4.multi_chip and not MK2.multi_chip
    spatial = np.array([[2, 128, 23], [1, 121, 48], [4, 64, 16], [32, 46, 1]])
    temporal = np.ones((len(spatial), 3, 3), dtype=np.int64)
    temporal[1, 2, 1] = 2
    temporal[1, 2, 2] = 4
    temporal[2, 1, 0] = 3
    temporal[2, 1, 2] = 3
    pod = plan_costs(SIG, POD4, spatial, temporal)
    mk2 = plan_costs(SIG, MK2, spatial, temporal)
    np.testing.assert_allclose(mk2["comm"], pod["comm"] / 1.25, rtol=1e-12)
    np.testing.assert_allclose(mk2["comp"], pod["comp"], rtol=1e-12)
    np.testing.assert_array_equal(mk2["hot"], pod["hot"])


# ---------------------------------------------------------------------------
# enumeration and the plan table
# ---------------------------------------------------------------------------
def test_enumeration_counts_for_qkv():
    ps = plans.enumerate_plans(SIG, POD4)
    assert len(ps) == 1_129_147
    assert np.all(np.diff(ps.spatial_id) >= 0)
    assert np.all(np.prod(ps.spatial, axis=1) <= POD4.cores)
    row = np.flatnonzero((ps.spatial == [1, 121, 48]).all(axis=1))
    assert len(row) == 1
    assert int((ps.spatial_id == row[0]).sum()) == 80
    # t[d][v] > 1 only where variable v is indexed by d: A (m,k) is never split along n, ...
    assert not (ps.temporal[:, 1, 1] > 1).any()
    assert not (ps.temporal[:, 0, 2] > 1).any()
    assert not (ps.temporal[:, 2, 0] > 1).any()
    # the worked plan is among them with its costs
    worked = np.flatnonzero((ps.spatial == [2, 128, 23]).all(axis=1))[0]
    mine = np.flatnonzero((ps.spatial_id == worked) & (ps.temporal.reshape(len(ps), -1) == 1).all(axis=1))
    assert len(mine) == 1
    assert ps.time[mine[0]] == pytest.approx(22076.25)
    assert int(ps.hot[mine[0]]) == 64496


def test_plan_table_of_qkv():
    table = plantable.plan_table(SIG, POD4)
    assert table.n_plans == 1_129_147
    assert table.min_cold == 26_720
    fastest = table.fastest
    assert table.time[fastest] == pytest.approx(22076.25)
    assert int(table.hot[fastest]) == 64496
    assert table.spatial[fastest].tolist() == [2, 128, 23]
    # rows sorted by (cold, hot); every row fits SRAM; time = comp + comm (warm-up is inside comm)
    assert np.all(np.diff(table.cold) >= 0)
    assert np.all(table.footprint() <= POD4.sram_per_core)
    np.testing.assert_allclose(table.time, table.comp + table.comm)
    # the cold layout's temporal split is a multiple of the hot one
    assert np.all(table.cold_temporal % table.hot_temporal == 0)
    # the frontier is strictly decreasing in time as hot bytes grow
    assert np.all(np.diff(table.frontier_hot) > 0)
    assert np.all(np.diff(table.frontier_time) < 0)
    assert table.frontier_time.min() == pytest.approx(22076.25)


def test_operator_that_cannot_fit_raises():
    chip = MK2.with_overrides(sram_per_core=1024)
    with pytest.raises(OperatorDoesNotFitError, match="SRAM") as info:
        plantable.build_plan_table(qkv_signature(), chip)
    assert "1024" in str(info.value)


# ---------------------------------------------------------------------------
# formula pieces
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("x, expected", [(1, 1), (2, 2), (2.5, 4), (3, 4), (5, 8), (9, 12), (13, 16),
                                         (17, 24), (25, 48), (50, 96), (96, 96), (97, 144)])
def test_ladder(x, expected):
    assert float(ladder(np.array([x]))[0]) == expected


def test_binary_cycles_breakpoint_and_cap():
    assert float(binary_cycles(np.array(16432.0))) == 8517.0  # min(16434/2 + 300, 0.75 x + 290)
    assert float(binary_cycles(np.array(16433.0))) == pytest.approx(0.5 * 16433 + 300)  # 8516.5
    assert float(binary_cycles(np.array(100.0))) == pytest.approx(0.75 * 100 + 290)
    assert float(binary_cycles(np.array(12000.0))) == 8517.0  # capped below the breakpoint


def test_reduce_cycles_breakpoint_and_cap():
    assert float(reduce_cycles(np.array(480.0), np.array(1.0))) == 295.25  # 1.5*480+175 capped
    assert float(reduce_cycles(np.array(481.0), np.array(1.0))) == pytest.approx(0.25 * 481 + 175)
    assert float(reduce_cycles(np.array(40.0), np.array(2.0))) == pytest.approx(1.5 * 80 + 175)  # 295
    assert float(reduce_cycles(np.array(100.0), np.array(1.0))) == 295.25
    assert float(reduce_cycles(np.array(100.0), np.array(10.0))) == pytest.approx(0.25 * 1000 + 175)


def test_matmul_orientation_rule():
    k, b = np.array([64.0]), np.array([1.0])

    def mm(m, n, bpe=2):
        return float(matmul_cycles(np.array([float(m)]), np.array([float(n)]), k, b, bpe)[0])

    # 100 > 16: the larger side is "m": ceil(100/6)=17, ceil(64/16)=4, ceil(10/16)=1
    expected = 2 * 12 * 17 * 4 * 1 + 514 * 4 * 1 + 113 * 1 + 173
    assert expected == 3974
    assert mm(100, 10) == expected
    assert mm(10, 100) == expected
    # both sides <= 16: the smaller one is "m": ceil(5/6)=1 rather than ceil(14/6)=3
    small = 2 * 12 * 1 * 4 * 1 + 514 * 4 + 113 + 173
    assert mm(5, 14) == small == mm(14, 5) == 2438
    # 4-byte elements: k is counted in 8s
    assert mm(100, 10, bpe=4) == 4 * 12 * 17 * 8 + 514 * 8 + 113 + 173
    # the batch multiplies everything
    assert float(matmul_cycles(np.array([100.0]), np.array([10.0]), k, np.array([3.0]), 2)[0]) == 3 * expected


# ---------------------------------------------------------------------------
# rotation rounds
# ---------------------------------------------------------------------------
def test_shift_rounds_chain_1_2_6():
    # one index shared by three variables with temporal values 1, 2, 6
    temporal = np.array([[[1, 2, 6]]])
    elems = np.array([[100, 10, 7]])
    factor = np.ones((1, 3))
    e, k = shift_rounds(temporal, elems, factor, [[0, 1, 2]])
    # round A: gcd step 1 -> 2 is 1 shift moving v1 and v2 (payload 17);
    # round B: 2 -> 6 is 2 shifts moving v2 (payload 7), nested inside A, so it runs 2 times
    assert e[0] == pytest.approx(1 * (10 + 7) + 2 * 2 * 7)  # 45
    assert k[0] == pytest.approx(1 * 2 + 2 * 2 * 1)  # 6 shift events


def test_shift_rounds_nesting_largest_payload_outermost():
    # two indices: d0 has one round (v0 split 3: 2 shifts, payload 50),
    # d1 has rounds A (v1,v2 split >= 2: 1 shift, payload 17) and B (v2 split 6: 2 shifts, payload 7)
    temporal = np.array([[[3, 1, 1], [1, 2, 6]]])
    elems = np.array([[50, 10, 7]])
    index_vars = [[0], [1, 2]]
    e, k = shift_rounds(temporal, elems, np.ones((1, 3)), index_vars)
    # nesting outer -> inner: d0 (50), A (17), B (7)
    d0 = 2 * 50
    a = 3 * 1 * 17  # repeats once per step of d0
    b = 3 * 2 * 2 * 7  # repeats per step of d0 and of A
    assert e[0] == pytest.approx(d0 + a + b)
    assert k[0] == pytest.approx(2 * 1 + 3 * 1 * 2 + 3 * 2 * 2 * 1)
    # make d0's payload the smallest: it becomes the innermost round
    e2, k2 = shift_rounds(temporal, np.array([[5, 10, 7]]), np.ones((1, 3)), index_vars)
    assert e2[0] == pytest.approx(1 * 17 + 2 * 2 * 7 + 2 * 3 * 2 * 5)
    assert k2[0] == pytest.approx(1 * 2 + 2 * 2 * 1 + 2 * 3 * 2 * 1)


def test_shift_rounds_ties_keep_index_order_and_weight_by_factor():
    # equal payloads on two indices: the first index stays outside
    temporal = np.array([[[2, 1], [1, 3]]])
    elems = np.array([[8, 8]])
    e, k = shift_rounds(temporal, elems, np.ones((1, 2)), [[0], [1]])
    # d0: 1 shift outside, d1: 2 shifts repeated twice
    assert k[0] == pytest.approx(1 + 2 * 2)
    assert e[0] == pytest.approx(1 * 8 + 2 * 2 * 8)
    # a topology factor weights the elements (largest factor among variables moving), not the events
    e3, k3 = shift_rounds(temporal, elems, np.array([[1.5, 4.0]]), [[0], [1]])
    assert e3[0] == pytest.approx(1 * 8 * 1.5 + 2 * 2 * 8 * 4.0)
    assert k3[0] == k[0]


def test_shift_rounds_all_ones_is_free():
    e, k = shift_rounds(np.ones((2, 3, 3), dtype=np.int64), np.full((2, 3), 9), np.ones((2, 3)),
                        costmodel.index_vars(SIG))
    assert e.tolist() == [0.0, 0.0] and k.tolist() == [0.0, 0.0]


def test_rotation_costs_enter_plan_communication():
    temporal = np.ones((2, 3, 3), dtype=np.int64)
    temporal[1, 2, 1] = 2  # A and B rotate along k
    temporal[1, 2, 2] = 2
    c = plan_costs(SIG, MK2, np.array([[2, 128, 5], [2, 128, 5]]), temporal)
    elems = c["var_elems"][1]
    e, k = shift_rounds(temporal[1:], c["var_elems"][1:], np.ones((1, 3)), costmodel.index_vars(SIG))
    assert k[0] == 2 and e[0] == elems[1] + elems[2]
    extra = 2 * 118 * k[0] + e[0] * 0.28 * 2
    # the output piece is the same in both plans, so only the rotation differs in communication
    assert c["var_elems"][0][0] == c["var_elems"][1][0]
    assert c["comm"][1] - c["comm"][0] == pytest.approx(extra)
    # rotating variables need double buffers
    assert int(c["hot"][1]) == 2 * (elems[0] + 2 * elems[1] + 2 * elems[2])


# ---------------------------------------------------------------------------
# warm-up and chip knobs
# ---------------------------------------------------------------------------
def test_warmup_of_a_4x_colder_split():
    hot_t = np.ones((1, 3, 3), dtype=np.int64)
    cold_t = hot_t.copy()
    cold_t[0, 2, 2] = 4  # B is 4x more split (along k) while it waits
    cold_elems = np.array([[1920, 3568, 6690]])
    w = warmup_cycles(SIG, POD4, cold_t, hot_t, cold_elems, np.ones((1, 3)))
    assert w[0] == pytest.approx(4 * 6690 * 2 * 0.28 + 118 * 4)
    # no multi-chip factor, but the NoC knob divides it
    assert warmup_cycles(SIG, POD4.with_overrides(noc_scale=2), cold_t, hot_t, cold_elems,
                         np.ones((1, 3)))[0] == pytest.approx(w[0] / 2)
    # a topology factor scales the moved bytes only
    w_mesh = warmup_cycles(SIG, POD4, cold_t, hot_t, cold_elems, np.array([[1.0, 1.0, 3.0]]))
    assert w_mesh[0] == pytest.approx(3 * 4 * 6690 * 2 * 0.28 + 118 * 4)
    # identical layouts need no warm-up
    assert warmup_cycles(SIG, POD4, hot_t, hot_t, cold_elems, np.ones((1, 3)))[0] == 0.0


def test_plan_table_warmup_column_matches_formula():
    sig = qkv_signature(m=8, n=1024, k=512)
    table = plantable.plan_table(sig, MK2)
    warm = np.flatnonzero(table.warmup > 0)
    assert len(warm) > 0
    for r in warm[:5]:
        cold_pc = -(-np.array(sig.lengths) // table.spatial[r])
        elems = costmodel.var_sizes(sig, cold_pc[None, :], table.cold_temporal[r][None])
        expected = warmup_cycles(sig, MK2, table.cold_temporal[r][None], table.hot_temporal[r][None], elems,
                                 np.ones((1, 3)))[0]
        assert table.warmup[r] == pytest.approx(expected)


def test_noc_and_compute_scale():
    spatial = np.array([[2, 128, 23], [1, 121, 48]])
    temporal = np.ones((2, 3, 3), dtype=np.int64)
    temporal[1, 2, 2] = 2
    base = plan_costs(SIG, POD4, spatial, temporal)
    fast_noc = plan_costs(SIG, POD4.with_overrides(noc_scale=2), spatial, temporal)
    fast_core = plan_costs(SIG, POD4.with_overrides(compute_scale=2), spatial, temporal)
    np.testing.assert_allclose(fast_noc["comm"], base["comm"] / 2)
    np.testing.assert_allclose(fast_noc["comp"], base["comp"])
    np.testing.assert_allclose(fast_core["comp"], base["comp"] / 2)
    np.testing.assert_allclose(fast_core["comm"], base["comm"])


def test_mesh_never_cheaper_than_all_to_all():
    sig = qkv_signature(m=8, n=1024, k=512)
    mesh = POD4.with_overrides(topology_kind="mesh")
    assert (mesh.topology.rows, mesh.topology.cols) == (64, 92)
    ps = plans.enumerate_plans(sig, POD4)
    assert len(ps) > 1000
    spatial = ps.spatial[ps.spatial_id]
    a2a = plan_costs(sig, POD4, spatial, ps.temporal)
    on_mesh = plan_costs(sig, mesh, spatial, ps.temporal)
    assert np.all(on_mesh["comm"] >= a2a["comm"] - 1e-9)
    assert np.any(on_mesh["comm"] > a2a["comm"] + 1e-6)  # the mesh really costs something
    np.testing.assert_allclose(on_mesh["comp"], a2a["comp"])
    assert np.all(on_mesh["var_comm_factor"] >= 1.0)
    # the worked plan too
    assert plan_costs(SIG, mesh, SPATIAL, ALL_ONE)["comm"][0] >= 7874.25
    assert load_noc_bytes_per_cycle(mesh) <= load_noc_bytes_per_cycle(POD4)
    assert load_noc_bytes_per_cycle(POD4) == pytest.approx(5888 * 5.5e9 / 1.325e9)
    small_mesh = MK2.with_overrides(topology_kind="mesh", rows=8, cols=184, link_bytes_per_cycle=1.0)
    assert load_noc_bytes_per_cycle(small_mesh) < load_noc_bytes_per_cycle(MK2)


def test_unary_and_binary_plans_on_one_core():
    sig_u = einsum_op("u", "unary", "ab->ab", dict(a=4, b=8), ["x"], "y").signature
    c = plan_costs(sig_u, MK2, np.array([[1, 1]]), np.ones((1, 2, 2), dtype=np.int64))
    assert c["comp"][0] == pytest.approx(0.5 * 32 + 200)
    assert c["comm"][0] == pytest.approx(118.0)  # one sync, no shuffle
    assert c["cold"][0] == 0  # nothing off chip in a bare signature
    sig_b = einsum_op("b", OpKind.BINARY, "ab,ab->ab", dict(a=4, b=8), ["x", "z"], "y").signature
    cb = plan_costs(sig_b, MK2, np.array([[1, 1]]), np.ones((1, 2, 3), dtype=np.int64))
    assert cb["comp"][0] == pytest.approx(0.75 * 32 + 290)
    assert int(cb["hot"][0]) == 2 * 3 * 32
