"""The artifact-compatible mode: the artifact's plan enumeration, its units and load rule, its refusals.

The enumeration numbers are ELK_ARTIFACT_NOTES.md's counts for the Llama2-13B
QKV matmul (§3.8, §9.1) and the max-cold plan time the artifact's tables give
Basic and Static; the reproduction test compares the compatible mode with the
artifact's own latencies at the reference point (``-m slow``, needs the
artifact's graph files next to the repository).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from elk import tablecache
from elk.chip import ARTIFACT_GBPS, LoadModel, PlanEnumeration, preset
from elk.cli.main import main
from elk.compat import ARTIFACT, ELK, STEPS, Compat, check_request, compat_chip, design_chip, resolve
from elk.costmodel import index_vars
from elk.errors import ChipConfigError
from elk.ir import OpKind, OpSignature
from elk.plans import enumerate_plans, spatial_plans, temporal_plans, thresholds

GRAPHS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "elk-artifact-graphs"

#: Llama2-13B's fused QKV matmul, C[m,n] = sum_k A[m,k] B[k,n], the weight B from HBM
QKV = OpSignature(kind=OpKind.MATMUL, lengths=(32, 15360, 5120),
                  variables=(((0,), (1,)), ((0,), (2,)), ((2,), (1,))), offchip=(False, False, True),
                  bytes_per_element=2)
POD4 = preset("ipu-pod4")


def malformed(sig: OpSignature, temporal: np.ndarray) -> np.ndarray:
    """Per plan: does it split some variable along an index the variable does not have?"""
    contains = index_vars(sig)
    bad = np.zeros(len(temporal), dtype=bool)
    for d, vars_d in enumerate(contains):
        for v in range(temporal.shape[2]):
            if v not in vars_d:
                bad |= temporal[:, d, v] > 1
    return bad


def test_artifact_enumeration_of_one_spatial_plan_is_the_artifacts():
    th = thresholds(QKV, POD4.cores)
    spatial = np.array([[1, 121, 48]])
    _, elk_t = temporal_plans(QKV, spatial, th)
    _, art_t = temporal_plans(QKV, spatial, th, PlanEnumeration.ARTIFACT)
    assert len(elk_t) == 80 and not malformed(QKV, elk_t).any()
    assert len(art_t) == 78 and int(malformed(QKV, art_t).sum()) == 66


@pytest.mark.slow
def test_artifact_enumeration_of_the_whole_operator_counts_the_artifacts_plans():
    th = thresholds(QKV, POD4.cores)
    spatial = spatial_plans(QKV.lengths, POD4.cores, th)
    counts = {e: sum(len(temporal_plans(QKV, spatial[lo:lo + 1500], th, e)[0]) for lo in range(0, len(spatial), 1500))
              for e in PlanEnumeration}
    assert counts == {PlanEnumeration.ELK: 1_129_147, PlanEnumeration.ARTIFACT: 618_935}


def test_artifact_enumeration_rows_stay_grouped_by_spatial_plan():
    chip = POD4.with_overrides(plan_enumeration="artifact")
    th = thresholds(QKV, chip.cores)
    spatial = spatial_plans(QKV.lengths, chip.cores, th)[:300]
    plans = enumerate_plans(QKV, chip, spatial)
    assert np.all(np.diff(plans.spatial_id) >= 0)
    assert malformed(QKV, plans.temporal).any()
    # a split along an absent index rotates the variable (shift rounds) without shrinking it
    elk_plans = enumerate_plans(QKV, POD4, spatial)
    assert plans.comm.min() > 0 and len(plans) != len(elk_plans)


def test_max_cold_plan_of_qkv_is_the_artifacts_slow_one():
    """The artifact's tables give the max-cold rule a 25,821-cycle QKV plan where elk's give 22,421."""
    from elk.plantable import build_plan_table
    times = {}
    for enumeration in PlanEnumeration:
        table = build_plan_table(QKV, POD4.with_overrides(plan_enumeration=enumeration))
        top = int(np.argmax(table.cold))
        times[enumeration] = round(float(table.time[top]), 2)
        assert table.min_cold == 26720  # the load is the same: the weight over every core
    assert times == {PlanEnumeration.ELK: 22420.65, PlanEnumeration.ARTIFACT: 25821.25}


def test_default_table_keys_are_unchanged_and_artifact_tables_keyed_apart():
    artifact = POD4.with_overrides(plan_enumeration="artifact")
    assert all("enumeration" not in repr(part) for part in POD4.plan_key())
    assert len(artifact.plan_key()) == len(POD4.plan_key()) + 1
    assert artifact.enumeration_key() != POD4.enumeration_key()
    assert tablecache.table_key(QKV, artifact) != tablecache.table_key(QKV, POD4)
    with pytest.raises(ChipConfigError, match="plan enumeration"):
        POD4.with_overrides(plan_enumeration="sorted")


def test_compat_chip_units_and_load_model_per_design():
    assert compat_chip(POD4, ELK) is POD4 and design_chip(POD4, ELK, "basic") is POD4
    full = design_chip(POD4, ARTIFACT, "elk-full")
    assert full.load_model == LoadModel.RIGID and full.plan_enumeration == PlanEnumeration.ARTIFACT
    assert full.hbm_bytes_per_s == pytest.approx(16_000 * ARTIFACT_GBPS)
    assert full.noc_load_bytes_per_s_per_core == pytest.approx(5.5 * ARTIFACT_GBPS)
    for design in ("basic", "static", "elk-dyn"):
        assert design_chip(POD4, ARTIFACT, design).noc_load_bytes_per_s_per_core == pytest.approx(5 * ARTIFACT_GBPS)
    assert design_chip(POD4, ARTIFACT, "ideal").noc_load_bytes_per_s_per_core == full.noc_load_bytes_per_s_per_core
    # plan tables do not depend on the load rate: every design shares them
    assert design_chip(POD4, ARTIFACT, "basic").plan_key() == full.plan_key()
    units_only = design_chip(POD4, Compat(units=True), "basic")
    assert units_only.load_model == LoadModel.FLUID and units_only.plan_enumeration == PlanEnumeration.ELK


def test_steps_go_from_elk_to_the_artifact_one_switch_at_a_time():
    modes = [c for _, c in STEPS]
    assert modes[0] == ELK and modes[-1] == ARTIFACT
    switched = [sum(a != b for a, b in zip(x.__dict__.values(), y.__dict__.values())) for x, y in zip(modes, modes[1:])]
    assert switched == [1] * (len(modes) - 1)
    assert resolve(None) == ELK and resolve("artifact") == ARTIFACT
    with pytest.raises(ChipConfigError):
        resolve("paper")


def test_compat_refuses_what_it_cannot_honour():
    with pytest.raises(ChipConfigError, match="mesh"):
        check_request(ARTIFACT, mesh="64x92")
    with pytest.raises(ChipConfigError, match="mesh"):
        compat_chip(POD4.with_overrides(topology_kind="mesh"), ARTIFACT)
    with pytest.raises(ChipConfigError, match="rigid"):
        check_request(ARTIFACT, load_model="fluid")
    check_request(ARTIFACT, load_model="rigid")
    check_request(ELK, mesh="64x92", load_model="fluid")  # elk itself honours both


@pytest.mark.parametrize("extra, words", [
    (["--mesh", "64x92"], "mesh 64x92"),
    (["--topology", "mesh"], "mesh"),
    (["--load-model", "fluid"], "load model 'fluid'"),
    (["--designs", "basic,periodic"], "periodic"),
    (["--trace", "t.json"], "--trace"),
])
def test_cli_bad_input_is_one_line_before_any_work(extra, words, capsys, monkeypatch):
    import elk.workload

    def no_work(*_args, **_kwargs):
        raise AssertionError("a plan table was asked for")
    monkeypatch.setattr(elk.workload.Workload, "build", no_work)
    code = main(["compile", "llama2-13b", "--compat", "artifact", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("elk: error: ") and err.count("\n") == 1 and words in err


def test_cli_compat_runs_the_paper_designs_on_their_chips(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["compile", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2", "--compat", "artifact",
                 "--designs", "basic,elk-full", "--json", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "bugs included" in stdout and "rigid loads" in stdout and "artifact plan enumeration" in stdout
    doc = json.loads(out.read_text())
    assert list(doc["designs"]) == ["basic", "elk-full"]
    rates = {n: d["chip"]["noc_load_bytes_per_s_per_core"] for n, d in doc["designs"].items()}
    assert rates["basic"] == pytest.approx(5 * ARTIFACT_GBPS) and rates["elk-full"] == pytest.approx(5.5 * ARTIFACT_GBPS)
    assert all(d["valid"] for d in doc["designs"].values())


#: the artifact's latencies (ms) at the reference point, re-run on a 2-core machine
ARTIFACT_MS = {"basic": 12.4978, "static": 9.2096, "elk-dyn": 8.2665, "ideal": 6.6993}


@pytest.mark.slow
@pytest.mark.skipif(not (GRAPHS / "llama2-13.json").is_file(), reason="the artifact's graph files are not present")
def test_compatible_mode_reproduces_the_artifact_within_one_percent():
    from elk.driver.compat import compile_compat
    result = compile_compat(GRAPHS / "llama2-13.json", ARTIFACT, designs=tuple(ARTIFACT_MS))
    for name, want in ARTIFACT_MS.items():
        d = result.designs[name]
        assert d.sim.valid, name
        assert abs(d.latency_ms / want - 1) < 0.01, (name, d.latency_ms, want)


def _script(path: Path):
    """Import a script of experiments/ (a folder of scripts, not a package)."""
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_reproduction_table_shows_each_corrections_worth():
    repro = _script(EXPERIMENTS / "reproduce_artifact.py")
    designs = ("basic", "static")
    rows = [{"step": label, "compat": c.__dict__, "latency_ms": {"basic": 11.0 + k, "static": 8.0 + k / 10}}
            for k, (label, c) in enumerate(STEPS)]
    text = repro.table(rows, designs)
    lines = text.splitlines()
    assert lines[2].startswith("| artifact (re-run) | 12.4978 | 9.2096 |")
    assert "| + artifact plan enumeration | 12.0000 (+1.00) | 8.1000 (+0.10) |" in lines
    # the last step is the compatible mode, compared with the artifact in %
    assert lines[-1] == f"| compatible mode vs artifact | {100 * (15 / 12.4978 - 1):+.2f}% | {100 * (8.4 / 9.2096 - 1):+.2f}% |"
    assert repro.model_for(ARTIFACT, Path("g")) == str(Path("g") / "llama2-13.json")
    assert repro.model_for(ELK, Path("g")) == "llama2-13b"


def test_fig17_compat_smoke_runs_both_modes_and_resumes(tmp_path, capsys):
    fig = _script(EXPERIMENTS / "paper" / "fig17_compat.py")
    assert fig.main(["--out", str(tmp_path), "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "| paper (text) | 24 |" in out and "| artifact | 2 |" in out and "| elk | 2 |" in out
    stored = sorted(p.name for p in (tmp_path / "fig17_compat").iterdir())
    assert stored == ["artifact-tiny-b4-s256.json", "artifact-tiny-b8-s256.json", "elk-tiny-b4-s256.json",
                      "elk-tiny-b8-s256.json"]
    rows = (tmp_path / "fig17_compat.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("mode,model,source,batch,seq,basic_ms")
    # a rerun reads the stored points instead of compiling again
    import elk.driver.compat as driver

    def no_compile(*_a, **_k):
        raise AssertionError("compiled again")
    fig.compile_compat = no_compile
    assert fig.main(["--out", str(tmp_path), "--smoke"]) == 0
    assert driver.compile_compat is not no_compile


def test_fig17_speedup_statistics():
    fig = _script(EXPERIMENTS / "paper" / "fig17_compat.py")
    rows = [{"model": "a", "basic_ms": 2.0, "elk-full_ms": 1.0}, {"model": "a", "basic_ms": 8.0, "elk-full_ms": 1.0},
            {"model": "b", "basic_ms": 3.0, "elk-full_ms": 1.0}]
    s = fig.speedups(rows, "basic")
    assert s["geomean"] == pytest.approx((2 * 8 * 3) ** (1 / 3))
    assert s["mean"] == pytest.approx(13 / 3)
    assert s["paper_stat"] == pytest.approx(5.0)  # the largest per-model mean: model a's (2 + 8) / 2


def test_fig17_clipping_is_the_papers_min_append():
    fig = _script(EXPERIMENTS / "paper" / "fig17_compat.py")
    rows = [{"mode": "artifact", "model": "m", "seq": 2048, "batch": b, "basic_ms": ms, "static_ms": ms / 2,
             "elk-full_ms": 1.0} for b, ms in ((16, 20.0), (32, 10.0), (64, 12.0))]
    out = {r["batch"]: r for r in fig.clipped(rows)}
    assert [out[b]["basic_ms"] for b in (16, 32, 64)] == [10.0, 10.0, 12.0]
    assert [out[b]["static_ms"] for b in (16, 32, 64)] == [5.0, 5.0, 6.0]
    assert rows[0]["basic_ms"] == 20.0  # the raw rows are not changed


def test_fig17_report_lists_points_that_did_not_compile():
    fig = _script(EXPERIMENTS / "paper" / "fig17_compat.py")
    ok = {"mode": "elk", "model": "m", "seq": 2048, "batch": 32, "basic_ms": 2.0, "static_ms": 1.5, "elk-full_ms": 1.0}
    bad = {"mode": "elk", "model": "m", "seq": 4096, "batch": 64, "basic_ms": None, "static_ms": None,
           "elk-full_ms": None, "error": "operator x needs 9 bytes per core"}
    text = fig.report([ok, bad])
    assert "| elk | 1 | 2.00x / 2.00x / 2.00x | 1.50x / 1.50x / 1.50x |" in text
    assert "not compiled: elk m B64 S4096: operator x needs 9 bytes per core" in text
