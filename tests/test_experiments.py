"""The solver studies (experiments/gap_study.py, experiments/tune_solver.py) end to end on the tiny model.

They run in-process with one-second limits: what matters here is that the CSVs
have their columns and one row per run, that figures are real PNGs, and that a
rerun (or a run after an interruption) does not redo or duplicate finished work.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

pytestmark = pytest.mark.solver

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str) -> ModuleType:
    """Import a script from experiments/ (a folder of scripts, not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


# -- gap study ---------------------------------------------------------------------------------------------------

GAP_ARGS = ["--models", "tiny", "--warm", "elk-dyn", "--time-limit", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def gap_run(tmp_path_factory):
    """One gap study on the tiny model, shared by the checks below (and its printed output)."""
    gap = load("gap_study")
    out = tmp_path_factory.mktemp("gap")
    return gap, out, run_main(gap, [*GAP_ARGS, "--out", str(out)])


def run_main(module: ModuleType, argv: list[str]) -> str:
    """Run a script's main and return what it printed (captured without pytest's capsys, for module fixtures)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert module.main(argv) == 0
    return buffer.getvalue()


def test_gap_study_tables(gap_run):
    gap, out, printed = gap_run
    models, windows = read_rows(out / "models.csv"), read_rows(out / "windows.csv")
    assert len(models) == 1
    row = models[0]
    assert list(row) == list(gap.RUN_KEY) + list(gap.MODEL_METRICS)
    assert (row["model"], row["warm"], row["solver"]) == ("tiny", "elk-dyn", "cpsat")
    assert len(windows) == int(row["windows"]) > 0
    assert {"heuristic_cycles", "exact_cycles", "bound_cycles", "gap", "status", "seconds", "accepted",
            "first_improvement_s", "anytime", "program", "solver_name"} <= set(windows[0])
    assert all(isinstance(json.loads(w["anytime"]), list) for w in windows)
    assert any(json.loads(w["anytime"]) for w in windows), "anytime traces were requested"
    assert row["valid"] == "True"
    assert float(row["exact_ms"]) <= float(row["warm_ms"]) + 1e-12
    assert 0.0 <= float(row["pct_optimal"]) <= 100.0
    assert "per (model, warm start, solver)" in printed and "tiny" in printed


def test_gap_study_figures(gap_run):
    _, out, _ = gap_run
    for name in ("gap_distribution.png", "anytime.png", "improvement.png"):
        assert_png(out / name)


def test_gap_study_rerun_skips_finished_runs(gap_run):
    gap, out, _ = gap_run
    before = [len(read_rows(out / f)) for f in ("models.csv", "windows.csv")]
    printed = run_main(gap, [*GAP_ARGS, "--out", str(out)])
    assert "skip tiny / elk-dyn / cpsat" in printed and "skipped 1 finished run(s), 0 to go" in printed
    assert [len(read_rows(out / f)) for f in ("models.csv", "windows.csv")] == before


def test_gap_study_redoes_an_interrupted_run(tmp_path):
    """Window rows without their model row (a crash between the two) are dropped and the run redone."""
    gap = load("gap_study")
    run_main(gap, [*GAP_ARGS, "--out", str(tmp_path)])
    windows = len(read_rows(tmp_path / "windows.csv"))
    (tmp_path / "models.csv").unlink()
    printed = run_main(gap, [*GAP_ARGS, "--out", str(tmp_path)])
    assert f"dropped {windows} window rows" in printed
    assert len(read_rows(tmp_path / "windows.csv")) == windows
    assert len(read_rows(tmp_path / "models.csv")) == 1


def test_csv_log_refuses_another_layout(tmp_path):
    gap = load("gap_study")
    log = gap.CsvLog(tmp_path / "t.csv", ["a", "b"])
    log.append([{"a": 1, "b": 2}])
    log.append([{"a": 3, "b": 4}])
    assert [r["a"] for r in log.read()] == ["1", "3"]
    with pytest.raises(SystemExit):
        gap.CsvLog(tmp_path / "t.csv", ["a", "c"])


# -- solver tuning -----------------------------------------------------------------------------------------------

TUNE_ARGS = ["--model", "tiny", "--windows", "2", "--time-limit", "1", "--quick"]


def test_tune_quick_writes_ranks_and_resumes(tmp_path):
    tune = load("tune_solver")
    printed = run_main(tune, [*TUNE_ARGS, "--out", str(tmp_path)])
    rows = read_rows(tmp_path / "tune.csv")
    assert len(rows) == len(tune.QUICK) * 2
    assert list(rows[0]) == tune.FIELDS
    assert {r["setting"] for r in rows} == set(tune.QUICK)
    for r in rows:
        assert json.loads(r["params"]) is not None
        optimal = r["status"] == "OPTIMAL"
        assert math.isnan(float(r["time_to_optimal"])) != optimal
        if optimal:
            assert float(r["time_to_optimal"]) == pytest.approx(float(r["seconds"]))
    assert "settings ranked" in printed
    assert_png(tmp_path / "tune.png")

    again = run_main(tune, [*TUNE_ARGS, "--out", str(tmp_path)])
    assert f"skipped {len(rows)} (setting, window) runs" in again
    assert len(read_rows(tmp_path / "tune.csv")) == len(rows)


def test_tune_grid_settings_are_distinct_and_valid():
    tune = load("tune_solver")
    for family in tune.FAMILIES:
        sweep = tune.one_factor_at_a_time(family)
        ids = [s.ident for s in sweep]
        assert ids[0] == f"{family} w2 default"
        assert len(set(ids)) == len(ids)
        for setting in sweep:  # every parameter name and value passes the installed solvers' validation
            setting.solver_settings(time_limit=1.0, seed=0)
    cpsat = {s.ident for s in tune.one_factor_at_a_time("cpsat")}
    assert {"cpsat w1 default", "cpsat w2 search_branching=FIXED_SEARCH", "cpsat w2 repair_hint=True"} <= cpsat
    # hint_conflict_limit=10 and fix_variables_to_their_hinted_value=False are CP-SAT's defaults
    assert not any("hint_conflict_limit" in i or "fix_variables" in i for i in cpsat)
    assert len(tune.full_grid("cbc")) == 4
    assert len(tune.full_grid("cpsat")) > len(tune.one_factor_at_a_time("cpsat"))


def test_pick_windows_prefers_large_distinct_problems():
    tune = load("tune_solver")

    def fake(index: int, size: int, signature: str):
        return SimpleNamespace(index=index, size=size, problem=SimpleNamespace(signature=lambda: signature))

    candidates = [fake(0, 10, "a"), fake(1, 50, "b"), fake(2, 50, "b"), fake(3, 30, "c"), fake(4, 40, "d")]
    assert [w.index for w in tune.pick_windows(candidates, 2, None)] == [1, 4]
    assert [w.index for w in tune.pick_windows(candidates, 9, None)] == [0, 1, 3, 4]
    assert [w.index for w in tune.pick_windows(candidates, 2, [3, 0])] == [3, 0]
    with pytest.raises(SystemExit):
        tune.pick_windows(candidates, 2, [7])
