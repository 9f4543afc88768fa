"""``elk compile``'s load-model, bound, warm-start and schedule-file options (tiny on ipu-mk2)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import user_error
from elk.cli.main import main
from elk.errors import ElkError

TINY = ["tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2"]
QUICK = ["--time-limit", "1", "--workers", "1", "--seed", "0", "--bound", "closed"]


class Captured(ElkError):
    pass


@pytest.fixture
def captured_compile(monkeypatch):
    """Record the arguments ``elk compile`` hands ``elk.compile`` (and stop there)."""
    import elk.driver.api
    seen: dict = {}

    def capture(model, **kwargs):
        seen.update(kwargs, model=model)
        raise Captured("captured")

    monkeypatch.setattr(elk.driver.api, "compile", capture)
    return seen


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A schedule file of tiny's ELK-Dyn, written by ``elk compile --save-schedule``, plus the run's JSON."""
    folder = tmp_path_factory.mktemp("saved")
    path, report = folder / "dyn.json", folder / "report.json"
    assert main(["compile", *TINY, "--designs", "elk-dyn,ideal", "--bound", "closed",
                 "--save-schedule", f"elk-dyn={path}", "--save-schedule", str(folder / "best.json"),
                 "--json", str(report)]) == 0
    return path, json.loads(report.read_text())


# ------------------------------------------------------------------ options reach the designs
def test_solver_options_reach_every_exact_design(captured_compile, capsys):
    main(["compile", *TINY, "--designs", "elk-dyn,periodic,cpsat,milp", "--time-limit", "3", "--workers", "1",
          "--seed", "5", "--window", "4", "--warm-start", "elk-dyn", "--bound", "none"])
    assert "captured" in capsys.readouterr().err
    from solvers.solver_options import CpsatOptions, PeriodicOptions
    plan = captured_compile["designs"]  # the typed run plan, built and checked by the command line
    assert plan.exact["periodic"] == PeriodicOptions(time_limit=3.0, workers=1, seed=5)  # --window is not its knob
    assert plan.exact["cpsat"] == CpsatOptions(time_limit=3.0, workers=1, seed=5, window=4)
    assert plan.exact["milp"].window == 4 and plan.exact["milp"].backend == "highs"
    assert plan.warm_starts == {"periodic": "elk-dyn", "cpsat": "elk-dyn", "milp": "elk-dyn"}
    assert not any(getattr(o, "records", None) for o in plan.exact.values())  # no records file unless asked
    assert captured_compile["bound"] is None


def test_bound_options(captured_compile, capsys):
    main(["compile", *TINY, "--designs", "elk-dyn", "--bound", "milp", "--bound-time-limit", "2.5"])
    assert captured_compile["bound"] == "milp" and captured_compile["bound_time_limit"] == 2.5
    main(["compile", *TINY, "--designs", "elk-dyn"])
    assert captured_compile["bound"] == "lp" and captured_compile["bound_time_limit"] == 30.0
    capsys.readouterr()


def test_an_exact_design_named_as_warm_start_reaches_only_the_later_ones(captured_compile, capsys):
    main(["compile", *TINY, "--designs", "elk-dyn,periodic,cpsat", "--warm-start", "periodic"])
    plan = captured_compile["designs"]
    assert plan.warm_starts == {"periodic": None, "cpsat": "periodic"}
    capsys.readouterr()


# ------------------------------------------------------------------ mistakes: one line, before any work
@pytest.mark.parametrize("argv, needles", [
    (["--designs", "elk-dyn", "--load-model", "soft"], ["--load-model", "soft"]),
    (["--designs", "elk-dyn", "--bound-time-limit", "0"], ["--bound-time-limit"]),
    (["--designs", "elk-dyn", "--bound-time-limit", "-5"], ["--bound-time-limit"]),
    (["--designs", "elk-dyn", "--bound-time-limit", "nan"], ["--bound-time-limit"]),
    (["--designs", "elk-dyn", "--bound-time-limit", "inf"], ["--bound-time-limit"]),
    (["--designs", "elk-dyn", "--bound", "best"], ["--bound"]),
    (["--designs", "elk-dyn", "--placement-work-limit", "0"], ["--placement-work-limit"]),
    (["--designs", "elk-dyn", "--placement-work-limit", "nan"], ["--placement-work-limit"]),
    (["--designs", "elk-full,cpsat", "--warm-start", "elk-dyn"],
     ["--warm-start elk-dyn", "not among the designs compiled"]),
    (["--designs", "elk-dyn,ideal,cpsat", "--warm-start", "ideal"], ["--warm-start ideal", "relaxed"]),
    (["--designs", "elk-dyn", "--warm-start", "elk-dyn"], ["--warm-start", "exact designs"]),
    (["--designs", "elk-dyn,cpsat,periodic", "--warm-start", "cpsat"], ["--warm-start cpsat", "after it"]),
    (["--designs", "elk-dyn,cpsat", "--warm-start", "fastest"], ["--warm-start fastest", "neither a design"]),
    (["--designs", "elk-dyn,cpsat", "--time-limit", "0"], ["--time-limit"]),
    (["--designs", "elk-dyn,cpsat", "--workers", "0"], ["--workers"]),
    (["--designs", "elk-dyn", "--save-schedule", "static=x.json"], ["--save-schedule", "static", "not among"]),
    (["--designs", "elk-dyn,ideal", "--save-schedule", "ideal=x.json"], ["--save-schedule", "relaxed"]),
    (["--designs", "ideal", "--save-schedule", "x.json"], ["--save-schedule", "best valid design"]),
    (["--designs", "elk-dyn", "--save-schedule", "elk-dinn=x.json"], ["unknown design 'elk-dinn'"]),
    (["--designs", "elk-dyn,static", "--save-schedule", "elk-dyn=x.json", "--save-schedule", "static=x.json"],
     ["two schedules into one file"]),
])
def test_bad_values_are_one_line_before_any_work(capsys, no_compile, argv, needles):
    user_error(capsys, ["compile", *TINY, *argv], *needles)


def test_unwritable_save_schedule_path(tmp_path, capsys, no_compile):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for path in (blocker / "x.json", tmp_path):
        user_error(capsys, ["compile", *TINY, "--designs", "elk-dyn", "--save-schedule", f"elk-dyn={path}"],
                   "cannot write --save-schedule", str(path))
        user_error(capsys, ["compile", *TINY, "--designs", "elk-dyn", "--save-schedule", str(path)],
                   "cannot write --save-schedule")


def test_chip_file_with_a_load_model(tmp_path, capsys):
    good, bad = tmp_path / "rigid.toml", tmp_path / "soft.toml"
    good.write_text('base = "ipu-mk2"\nload_model = "rigid"\n')
    bad.write_text('base = "ipu-mk2"\nload_model = "soft"\n')
    user_error(capsys, ["compile", "tiny", "--chip", str(bad), "--designs", "elk-dyn"], "unknown load model 'soft'")
    bad.write_text('base = "ipu-mk2"\nload_model = 3\n')
    user_error(capsys, ["compile", "tiny", "--chip", str(bad), "--designs", "elk-dyn"], "load model")
    from elk.chip import LoadModel, load_chip
    assert load_chip(good).load_model is LoadModel.RIGID


def test_load_model_rigid_reaches_the_report(tmp_path, capsys):
    report = tmp_path / "r.json"
    code = main(["compile", *TINY, "--designs", "elk-dyn", "--load-model", "rigid", "--bound", "closed",
                 "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rigid loads" in out
    doc = json.loads(report.read_text())
    assert doc["load_model"] == "rigid" and doc["chip"]["load_model"] == "rigid"
    assert doc["bound"]["ms"] > 0 and doc["designs"]["elk-dyn"]["gap_to_bound"] >= -1e-9
    assert "warm_start" not in doc["designs"]["elk-dyn"]  # only exact designs have one


# ------------------------------------------------------------------ schedule files on the command line
def test_save_schedule_writes_a_file_per_design_and_the_best(saved):
    path, report = saved
    doc = json.loads(path.read_text())
    assert doc["format"] == "elk-schedule" and doc["design"] == "elk-dyn" and doc["model"] == "tiny"
    assert doc["latency_ms"] == pytest.approx(report["designs"]["elk-dyn"]["latency_ms"])
    best = json.loads((path.parent / "best.json").read_text())
    assert best["design"] == "elk-dyn"  # ideal is relaxed: never the one saved
    assert not list(path.parent.glob(".*.tmp"))


def test_warm_start_from_a_file_round_trips(saved, tmp_path, capsys, monkeypatch):
    path, _ = saved
    monkeypatch.chdir(tmp_path)  # nothing may be written here unasked
    report = tmp_path / "out" / "r.json"
    code = main(["compile", *TINY, "--designs", "periodic,cpsat", *QUICK, "--warm-start", str(path),
                 "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(report.read_text())
    saved_ms = json.loads(path.read_text())["latency_ms"]
    for name in ("periodic", "cpsat"):
        d = doc["designs"][name]
        assert d["warm_start"] == f"file:{path}" and d["valid"]
        assert d["warm_start_ms"] == pytest.approx(saved_ms)
        assert d["latency_ms"] <= saved_ms * (1 + 1e-9)
    assert set(doc["designs"]) == {"periodic", "cpsat"}  # nothing else ran: the file is the warm start
    assert f"against its warm start file:{path}" in out and "end to end" in out
    periodic_note = next(line for line in out.splitlines() if line.startswith("note: periodic:"))
    assert "; layer model: " in periodic_note and "(1 worker, ortools " in periodic_note  # how its CP-SAT solve went
    assert "improved on the warm start" not in out
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no records file: --records was not given


def test_records_only_where_asked(tmp_path, capsys):
    records = tmp_path / "w.csv"
    code = main(["compile", *TINY, "--designs", "elk-dyn,cpsat", *QUICK, "--records", str(records)])
    out = capsys.readouterr().out
    assert code == 0
    assert records.is_file() and f"wrote {records}" in out
    assert "cpsat: 0." in out and "ms end to end" in out and "against its warm start elk-dyn" in out


@pytest.mark.parametrize("argv, needles", [
    (["--load-model", "rigid"], ["fluid loads", "rigid loads"]),
    (["--chip", "ipu-pod4"], ["another chip"]),
    (["--sram-kib", "512"], ["another chip"]),
    (["--batch", "8"], ["another build of 'tiny'"]),
])
def test_a_schedule_file_for_something_else_is_refused(saved, capsys, no_compile, argv, needles):
    path, _ = saved
    user_error(capsys, ["compile", *TINY, "--designs", "cpsat", "--warm-start", str(path), *argv], str(path),
               *needles)


def test_a_schedule_file_for_another_model_is_refused(saved, tmp_path, capsys, no_compile):
    path, _ = saved
    doc = json.loads(path.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "model": "llama2-13b"}))
    user_error(capsys, ["compile", *TINY, "--designs", "cpsat", "--warm-start", str(other)],
               "for model 'llama2-13b', not 'tiny'")


@pytest.mark.parametrize("damage, needle", [
    (lambda text: text[: len(text) // 2], "malformed or truncated"),
    (lambda text: "", "malformed or truncated"),
    (lambda text: b"\x89PNG\r\n\x1a\n\x00\xff" * 10, "not a text file"),
    (lambda text: '{"format": "csv"}', "not an elk schedule file"),
    (lambda text: text.replace('"version": 1', '"version": 2'), "version 2"),
])
def test_a_damaged_schedule_file_is_refused(saved, tmp_path, capsys, no_compile, damage, needle):
    path, _ = saved
    bad = tmp_path / "bad.json"
    content = damage(path.read_text())
    bad.write_bytes(content) if isinstance(content, bytes) else bad.write_text(content)
    user_error(capsys, ["compile", *TINY, "--designs", "cpsat", "--warm-start", str(bad)], str(bad), needle)


def test_a_schedule_the_simulator_rejects_is_refused_before_the_designs_run(saved, tmp_path, capsys, no_compile):
    path, _ = saved
    doc = json.loads(path.read_text())
    doc["exec_end"] = list(doc["exec_start"])  # every execution shorter than its plan time
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps(doc))
    line = user_error(capsys, ["compile", *TINY, "--designs", "cpsat", "--warm-start", str(bad)],
                      "fails the simulator", "rule 1")
    assert "shorter" in line or "plan time" in line or "rule 1" in line


def test_a_missing_schedule_file_is_refused(tmp_path, capsys, no_compile):
    user_error(capsys, ["compile", *TINY, "--designs", "cpsat", "--warm-start", str(tmp_path / "gone.json")],
               "not found")
    assert not Path(tmp_path / "gone.json").exists()
