"""The which-side report: each open configuration's verdict from the ground truth's pieces of its model and chip."""
import pandas as pd
import pytest

from experiments.ground_truth import parse_chips
from experiments.which_side import evidence, load_ground_truth, main, open_evidence


def best_row(model="m", topology="mesh", hbm=16.0, sram=192.0, load_model="fluid", gap=8.0):
    return {"model": model, "topology": topology, "hbm_tbps": hbm, "sram_kib": sram, "sram_requested_kib": sram,
            "load_model": load_model, "design": "best", "latency_ms": 1.0 + gap / 100, "certified_gap_pct": gap,
            "bound_name": "lp"}


def piece(name, lower, upper, heuristic, bound, *, model="m", topology="mesh", hbm=16.0, sram=192,
          load_model="fluid", solved=None):
    key = f"{model}/{name}/{topology}/{sram}/{hbm:g}" + ("/rigid" if load_model == "rigid" else "")
    return {"key": key, "model": model, "piece": name, "topology": topology, "sram_kib": sram, "hbm_tbps": hbm,
            "load_model": load_model, "optimum_lower_ms": lower, "optimum_upper_ms": upper,
            "best_heuristic_ms": heuristic, "bound_ms": bound,
            "solved": (upper / lower - 1 <= 1e-3) if solved is None else solved}


def test_verdicts_follow_the_larger_proven_loss():
    truth = pd.DataFrame([piece("a", 1.0, 1.0, 1.05, 0.999), piece("b", 2.0, 2.0, 2.002, 1.99)])
    e = evidence(truth, best_row())
    assert (e.verdict, e.schedule_piece, e.pinned, e.solved) == ("schedule", "a", 2, 2)
    assert e.schedule_pct == pytest.approx(5.0)
    truth = pd.DataFrame([piece("a", 1.0, 1.0, 1.001, 0.9), piece("b", 2.0, 2.0, 2.04, 1.99)])
    e = evidence(truth, best_row())
    assert (e.verdict, e.bound_piece) == ("bound", "a")
    assert e.bound_pct == pytest.approx(100 / 0.9 - 100)
    truth = pd.DataFrame([piece("a", 1.0, 1.0, 1.001, 0.999)])
    assert evidence(truth, best_row()).verdict == "between pieces"


def test_an_unsolved_piece_counts_only_its_proven_part():
    # optimum in [1.0, 1.1]: the heuristic at 1.155 is proven >= 5% above it, the bound at 0.98 >= 2.04% below
    truth = pd.DataFrame([piece("a", 1.0, 1.1, 1.155, 0.98)])
    e = evidence(truth, best_row())
    assert (e.pinned, e.solved) == (1, 0)
    assert e.schedule_pct == pytest.approx(5.0)
    assert e.bound_pct == pytest.approx(100 / 0.98 - 100)
    assert e.verdict == "schedule"


def test_other_chips_and_models_do_not_count_and_rigid_falls_back_to_fluid():
    truth = pd.DataFrame([piece("a", 1.0, 1.0, 1.2, 0.5, hbm=8.0), piece("b", 1.0, 1.0, 1.2, 0.5, model="x"),
                          piece("c", 1.0, 1.0, 1.0, 0.97)])
    e = evidence(truth, best_row(load_model="rigid"))
    assert (e.pinned, e.pieces_load_model, e.verdict) == (1, "fluid", "bound")
    truth = pd.concat([truth, pd.DataFrame([piece("c", 1.0, 1.0, 1.03, 1.0, load_model="rigid")])])
    e = evidence(truth, best_row(load_model="rigid"))
    assert (e.pieces_load_model, e.verdict) == ("rigid", "schedule")
    assert evidence(truth, best_row(topology="all-to-all")).verdict == "no ground truth"


def test_only_open_configurations_largest_first(tmp_path):
    gaps = pd.DataFrame([best_row(gap=2.0), best_row(hbm=8.0, gap=4.0), best_row(sram=624.0, gap=9.0)])
    items = open_evidence(gaps, pd.DataFrame([piece("a", 1.0, 1.0, 1.0, 1.0)]))
    assert [round(e.gap_pct) for e in items] == [9, 4]
    path = tmp_path / "gaps.csv"
    gaps.to_csv(path, index=False)
    truth = tmp_path / "gt.csv"
    pd.DataFrame([piece("a", 1.0, 1.0, 1.08, 1.0, hbm=8.0)]).to_csv(truth, index=False)
    out = tmp_path / "which_side.md"
    assert main(["--gaps", str(path), "--ground-truth", f"{truth},{tmp_path / 'missing.csv'}",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| m mesh 8 TB/s 192 KiB fluid | 4.00 | lp | 1 (1) of 1, fluid | >= 8.00 (a) |" in text
    assert "Verdicts: " in text and "schedule 1" in text and "no ground truth 1" in text
    assert len(load_ground_truth([truth, truth])) == 1  # one instance once


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["--gaps", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.md")]) == 2
    assert capsys.readouterr().err.startswith("elk: error: no gap study")
    with pytest.raises(ValueError, match="TOPOLOGY:SRAM_KIB:HBM_TBPS"):
        parse_chips("torus:192:8")
    assert parse_chips("all-to-all:192:8,mesh:624:16") == (("all-to-all", 192, 8.0), ("mesh", 624, 16.0))


@pytest.mark.parametrize("path", ["experiments/results/ground_truth/ground_truth.csv",
                                  "experiments/results/ground_truth_open/ground_truth.csv"])
def test_the_committed_ground_truth_is_consistent(path):
    """Every committed instance: no elk bound above its best valid schedule, its optimum's interval ordered,
    and every MILP check of a CP-SAT optimum agreeing (a disagreement or a bound above a schedule is a bug)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    frame = load_ground_truth([root / path])
    assert len(frame) > 0
    pinned_rows = frame[frame["optimum_upper_ms"].notna() & frame["optimum_lower_ms"].notna()]
    assert (pinned_rows["optimum_lower_ms"] <= pinned_rows["optimum_upper_ms"] * (1 + 1e-9)).all()
    assert (pinned_rows["bound_ms"] <= pinned_rows["optimum_upper_ms"] * (1 + 1e-9)).all()
    assert not frame["bound_above_schedule"].fillna(False).astype(bool).any()
    checked = frame[frame["milp_status"].notna()] if "milp_status" in frame else frame.iloc[0:0]
    assert checked[checked["milp_status"] == "OPTIMAL"]["milp_agrees"].astype(bool).all()
