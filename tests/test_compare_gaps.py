"""experiments.compare_gaps: two gap-study runs' headlines and the configurations that moved between them."""
from __future__ import annotations

import pandas as pd
import pytest

from experiments import compare_gaps as cg


def frame(latencies: dict[str, float], bounds: dict[str, float]) -> pd.DataFrame:
    rows = []
    for model, ms in latencies.items():
        base = {"model": model, "topology": "mesh", "hbm_tbps": 16.0, "sram_kib": 624.0, "sram_requested_kib": 624.0,
                "load_model": "fluid", "bound_ms": bounds[model], "valid": True}
        rows.append({**base, "design": "elk-full", "latency_ms": ms + 1, "certified_gap_pct": 0.0,
                     "best_design": ""})
        rows.append({**base, "design": "best", "latency_ms": ms, "best_design": "milp",
                     "certified_gap_pct": (ms / bounds[model] - 1) * 100})
    return pd.DataFrame(rows)


def test_headline_and_moved_configurations(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    frame({"x": 10.2, "y": 10.9, "z": 12.0}, {"x": 10.0, "y": 10.0, "z": 12.0}).to_csv(a, index=False)
    frame({"x": 10.2, "y": 10.5, "z": 12.0}, {"x": 10.0, "y": 10.0, "z": 11.0}).to_csv(b, index=False)
    assert cg.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    # A: gaps 2%, 9%, 0%; B: 2%, 5%, 9.09%
    assert out[0].endswith("<= 3% at 2 of 3, <= 10% at 3 of 3, mean 3.67%, max 9.00%")
    assert out[1].endswith("<= 3% at 1 of 3, <= 10% at 3 of 3, mean 5.36%, max 9.09%")
    assert "2 moved by more than 0.01%" in out[2]
    table = [line for line in out if line.startswith("| ") and "configuration" not in line]
    assert len(table) == 2  # x did not move
    assert table[0].startswith("| y mesh 16 TB/s 624 KiB fluid | 10.900 (milp) | 10.500 (milp) | -3.67 | +0.00")
    assert table[1].startswith("| z mesh 16 TB/s 624 KiB fluid | 12.000 (milp) | 12.000 (milp) | +0.00 | -8.33")


@pytest.mark.parametrize("content", ["not,a,study\n1,2,3\n", "\x00\x01garbage"])
def test_not_a_gap_study_is_one_line_and_exit_2(tmp_path, capsys, content):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert cg.main([str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compare_gaps: error: ") and err.count("\n") == 1
    assert cg.main([str(tmp_path / "missing.csv"), str(bad)]) == 2
    assert cg.main([str(bad), str(bad), "--tolerance", "-1"]) == 2
