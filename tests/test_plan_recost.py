"""Plan tables re-costed across compute and NoC scales are bit-identical to tables built afresh.

The reference below is the table builder as it was before one enumeration
served several scales: every plan's hot bytes and time held at once, one
Pareto front over them, the touched spatial plans re-enumerated. The new
builder streams the plans once for several chips and keeps only each chunk's
front. Every array must be equal (``np.array_equal``), not close.
"""
from __future__ import annotations

import numpy as np
import pytest

from elk import plans as plans_mod
from elk import plantable
from elk.chip import preset
from elk.costmodel import plan_costs
from elk.graphs.zoo import build_program
from elk.ir import OpSignature
from elk.plans import SPATIAL_CHUNK, enumerate_plans, spatial_plans, temporal_plans, thresholds

ARRAYS = ("cold", "hot", "time", "comp", "comm", "warmup", "spatial", "hot_temporal", "cold_temporal",
          "frontier_hot", "frontier_time")
#: (compute_scale, noc_scale) pairs, as the paper's Fig. 22 and Fig. 24 sweep them
SCALES = [(1.0, 1.0), (0.75, 1.5), (1.5, 1.25), (1.25, 0.75)]


def reference_pareto_front(hot: np.ndarray, time: np.ndarray) -> np.ndarray:
    """The front as it was computed before (one sort per call)."""
    if len(hot) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(hot, kind="stable")
    h, t = hot[order], time[order]
    starts = np.concatenate([[0], np.flatnonzero(h[1:] != h[:-1]) + 1])
    fastest = np.minimum.reduceat(t, starts)
    sizes = np.diff(np.concatenate([starts, [len(h)]]))
    at_min = np.flatnonzero(t == np.repeat(fastest, sizes))
    group = np.searchsorted(starts, at_min, side="right") - 1
    first = at_min[np.unique(group, return_index=True)[1]]
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(fastest)[:-1]])
    return order[first[fastest < best_before]]


def reference_table(sig: OpSignature, chip) -> dict:
    """The old builder: all plans summarised at once on this chip, then its front and pass 2."""
    th = thresholds(sig, chip.cores)
    spatial = spatial_plans(sig.lengths, chip.cores, th)
    sids, hots, times = [], [], []
    for lo in range(0, max(len(spatial), 1), SPATIAL_CHUNK):
        chunk = spatial[lo: lo + SPATIAL_CHUNK]
        sid, temporal = temporal_plans(sig, chunk, th)
        costs = plan_costs(sig, chip, chunk[sid], temporal)
        sids.append((sid + lo).astype(np.int32))
        hots.append(costs["hot"])
        times.append(costs["comp"] + costs["comm"])
    spatial_id, hot, time = np.concatenate(sids), np.concatenate(hots), np.concatenate(times)
    fits = np.flatnonzero(hot <= chip.sram_per_core)
    front = fits[reference_pareto_front(hot[fits], time[fits])]
    touched, local = np.unique(spatial_id[front], return_inverse=True)
    plans = enumerate_plans(sig, chip, spatial[touched])
    rank = front - np.searchsorted(spatial_id, spatial_id[front], side="left")
    rows = plantable.build_table(plans, np.searchsorted(plans.spatial_id, local, side="left") + rank, chip)
    hp, cp = rows["hot_plan"], rows["cold_plan"]
    order = np.argsort(hot[front], kind="stable")
    return {"cold": rows["cold"], "hot": rows["hot"], "time": rows["time"], "comp": rows["comp"],
            "comm": rows["comm"], "warmup": rows["warmup"], "spatial": plans.spatial[plans.spatial_id[hp]],
            "hot_temporal": plans.temporal[hp], "cold_temporal": plans.temporal[cp],
            "frontier_hot": hot[front][order], "frontier_time": time[front][order],
            "n_plans": len(spatial_id), "n_spatial": len(spatial)}


def assert_identical(table: plantable.PlanTable, ref: dict, what: str) -> None:
    for name in ARRAYS:
        got, want = getattr(table, name), ref[name]
        assert got.dtype == want.dtype, f"{what}: {name} dtype {got.dtype} != {want.dtype}"
        assert np.array_equal(got, want), f"{what}: {name} differs"
    assert (table.n_plans, table.n_spatial) == (ref["n_plans"], ref["n_spatial"]), what


def signature(model: str, mode: str, batch: int, seq: int, describe: str) -> OpSignature:
    program = build_program(model, batch=batch, seq=seq, mode=mode)
    return next(s for s in dict.fromkeys(op.signature for op in program.ops) if s.describe().startswith(describe))


CASES = {
    # Llama2-13B training (B2 S2048): an FFN-sized matmul (918,171 plans on one IPU) and a reduction
    "train-matmul-mk2": (("llama2-13b", "forward", 2, 2048, "matmul ac,cb*->ab [4096x5120x5120]"), "ipu-mk2", {}),
    "train-reduce-pod4-mesh": (("llama2-13b", "forward", 2, 2048, "reduce abcd->abc"), "ipu-pod4",
                               {"topology_kind": "mesh"}),
    # decode QKV (1,129,147 plans) on a mesh: ring-step factors enter the unscaled costs
    "decode-qkv-pod4-mesh": (("llama2-13b", "decode", 32, 2048, "matmul ac,cb*->ab [32x15360x5120]"), "ipu-pod4",
                             {"topology_kind": "mesh"}),
    "decode-attention-mk2": (("llama2-13b", "decode", 32, 2048, "matmul ac*,abc*->ab"), "ipu-mk2", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recosted_tables_equal_tables_built_afresh(case):
    (model, mode, batch, seq, describe), base, overrides = CASES[case]
    sig = signature(model, mode, batch, seq, describe)
    chip = preset(base).with_overrides(**overrides) if overrides else preset(base)
    chips = [chip.with_overrides(compute_scale=c, noc_scale=n) for c, n in SCALES]
    tables = plantable.build_plan_tables(sig, chips)
    assert len(tables) == len(chips)
    for (c, n), one, table in zip(SCALES, chips, tables):
        assert_identical(table, reference_table(sig, one), f"{case} at compute x{c}, NoC x{n}")
    # the fronts differ between scales (or the test would not test re-costing)
    assert len({t.frontier_time.tobytes() for t in tables}) == len(SCALES)


def test_single_chip_builder_is_the_reference():
    sig = signature("llama2-13b", "decode", 32, 2048, "matmul ac,cb*->ab [32x5120x13824]")
    chip = preset("ipu-pod4").with_overrides(noc_scale=1.5)
    assert_identical(plantable.build_plan_table(sig, chip), reference_table(sig, chip), "single chip")


def test_chips_of_different_enumerations_are_refused():
    sig = signature("tiny", "decode", 8, 256, "matmul")
    with pytest.raises(ValueError, match="enumeration_key"):
        plantable.build_plan_tables(sig, [preset("ipu-mk2"), preset("ipu-pod4")])


def test_tables_for_chips_enumerates_each_operator_once_per_family(monkeypatch, tmp_path):
    """A compute x NoC sweep on two topologies streams each operator twice (once per topology), not 4 times."""
    monkeypatch.setenv("ELK_CACHE_DIR", str(tmp_path))
    plantable.clear_memory()
    streamed: list = []
    real = plans_mod.stream_plans

    def counting(sig, chip):
        streamed.append((sig, chip.enumeration_key()))
        return real(sig, chip)

    monkeypatch.setattr(plantable, "stream_plans", counting)
    program = build_program("tiny", batch=2, seq=64, mode="forward")
    mk2 = preset("ipu-mk2")
    chips = [mk2.with_overrides(compute_scale=c, noc_scale=n, topology_kind=t)
             for t in ("all-to-all", "mesh") for c, n in ((0.75, 1.0), (1.5, 1.25))]
    per_chip = plantable.tables_for_chips(program, chips, workers=1)
    sigs = program.unique_signatures()
    assert len(streamed) == 2 * len(sigs)
    assert len(set(streamed)) == len(streamed)
    for chip, tables in zip(chips, per_chip):
        assert [t.sig for t in tables] == [op.signature for op in program.ops]
        for sig in sigs:
            assert_identical(plantable.plan_table(sig, chip), reference_table(sig, chip), f"{sig.describe()}")
    # the same chips again: everything from memory, nothing streamed
    streamed.clear()
    plantable.tables_for_chips(program, chips, workers=1)
    assert streamed == []
    plantable.clear_memory()
