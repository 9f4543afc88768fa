"""Schedule files (elk/schedule_file.py): round trips, and every file that does not belong here refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from elk import preset
from elk.errors import ElkError
from elk.graphs import build_program
from elk.schedule_file import (ScheduleFileError, program_key, read_document, read_schedule, write_schedule)
from elk.simulator import simulate
from elk.workload import Workload
from solvers.schedule.designs import elk_dyn, ideal


@pytest.fixture(scope="module")
def tiny():
    program = build_program("tiny", batch=4, seq=128)
    workload = Workload.build(program, preset("ipu-mk2"))
    return workload, elk_dyn(workload)


@pytest.fixture
def written(tiny, tmp_path):
    workload, schedule = tiny
    path = tmp_path / "s.json"
    write_schedule(path, workload, schedule)
    return path, json.loads(path.read_text())


def test_round_trip_is_exact(tiny, written):
    workload, schedule = tiny
    path, doc = written
    back = read_schedule(path, workload)
    assert back.design == f"file:{path}" and back.relaxation.strict
    np.testing.assert_array_equal(back.entry, schedule.entry)
    for name in ("exec_start", "exec_end"):
        np.testing.assert_array_equal(getattr(back, name), getattr(schedule, name))
    loads = workload.has_load
    for name in ("load_start", "load_end"):
        np.testing.assert_array_equal(getattr(back, name)[loads], getattr(schedule, name)[loads])
    before, after = simulate(workload, schedule), simulate(workload, back)
    assert after.valid and after.latency_cycles == before.latency_cycles
    assert doc["latency_ms"] == pytest.approx(before.latency_ms)
    assert doc["program_key"] == program_key(workload.program) and doc["load_model"] == "fluid"
    assert doc["plan_key"] == repr(workload.chip.plan_key()) and doc["chip"]["cores"] == 1472


def test_writes_are_atomic_and_overwrite(tiny, written):
    workload, schedule = tiny
    path, _ = written
    write_schedule(path, workload, schedule)  # again, over the old file
    assert [p.name for p in path.parent.iterdir()] == ["s.json"]  # no temporary file left behind
    read_document(path)
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not a temporary file's 0600


def test_relaxed_and_invalid_schedules_are_not_written(tiny, tmp_path):
    workload, schedule = tiny
    with pytest.raises(ScheduleFileError, match="relaxed"):
        write_schedule(tmp_path / "i.json", workload, ideal(workload))
    broken = schedule.shifted(0.0)
    broken.exec_end = broken.exec_start.copy()
    with pytest.raises(ScheduleFileError, match="not valid"):
        write_schedule(tmp_path / "b.json", workload, broken)
    assert not list(tmp_path.iterdir())


def _edit(doc, **changes):
    return {**doc, **changes}


def _set(doc, name, index, value):
    values = list(doc[name])
    values[index] = value
    return {**doc, name: values}


def _first_loading(workload) -> int:
    return int(np.flatnonzero(workload.has_load)[0])


REFUSALS = {
    "another format": (lambda d, w: _edit(d, format="elk-trace"), "not an elk schedule file"),
    "another version": (lambda d, w: _edit(d, version=2), "version 2"),
    "version true": (lambda d, w: _edit(d, version=True), "version True"),
    "no design": (lambda d, w: {k: v for k, v in d.items() if k != "design"}, "'design'"),
    "entry not a list": (lambda d, w: _edit(d, entry="0,1,2"), "'entry'"),
    "another model": (lambda d, w: _edit(d, model="llama2-13b"), "for model 'llama2-13b'"),
    "another program": (lambda d, w: _edit(d, program_key="0" * 24), "another build"),
    "another chip": (lambda d, w: _edit(d, plan_key=repr(preset("ipu-pod4").plan_key())), "another chip"),
    "another cost model": (lambda d, w: _edit(d, cost_model_version=-1), "cost model version"),
    "another load model": (lambda d, w: _edit(d, load_model="rigid"), "rigid loads"),
    "short entry": (lambda d, w: _edit(d, entry=d["entry"][:-1]), "'entry' has"),
    "long exec_end": (lambda d, w: _edit(d, exec_end=d["exec_end"] + [1.0]), "'exec_end' has"),
    "row too large": (lambda d, w: _set(d, "entry", 3, len(w.tables[3])), "out of range"),
    "negative row": (lambda d, w: _set(d, "entry", 0, -1), "out of range"),
    "fractional row": (lambda d, w: _set(d, "entry", 0, 0.5), "not a plan-table row"),
    "text time": (lambda d, w: _set(d, "exec_start", 2, "soon"), "not a finite time"),
    "boolean time": (lambda d, w: _set(d, "exec_start", 2, True), "not a finite time"),
    "load after its operator": (lambda d, w: _set(d, "load_end", _first_loading(w),
                                                  d["exec_start"][_first_loading(w)] + 1e6), "rule 2"),
    "executions overlap": (lambda d, w: _set(d, "exec_start", 5, d["exec_start"][4]), "rule 1"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_mismatch_is_refused(tiny, written, tmp_path, case):
    workload, _ = tiny
    path, doc = written
    damage, needle = REFUSALS[case]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(damage(doc, workload)))
    with pytest.raises(ScheduleFileError, match=None) as err:
        read_schedule(bad, workload)
    assert needle in str(err.value), str(err.value)
    assert isinstance(err.value, ElkError) and str(bad) in str(err.value)


@pytest.mark.parametrize("content, needle", [
    (b"", "malformed or truncated"),
    (b'{"format": "elk-schedule", "version": 1, "entry": [1, 2', "malformed or truncated"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe", "not a text file"),
    (b"\x00\x00\x00\x00", "not a text file"),
    (b"[1, 2, 3]", "not an elk schedule file"),
    (b'{"format": "elk-schedule", "version": 1, "x": NaN}', "NaN"),
    (b"[" * 100000, "malformed"),
])
def test_unreadable_files_are_refused(tiny, tmp_path, content, needle):
    workload, _ = tiny
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(ScheduleFileError) as err:
        read_schedule(bad, workload)
    assert needle in str(err.value), str(err.value)


def test_truncated_real_file_is_refused_at_every_length(tiny, written, tmp_path):
    workload, _ = tiny
    path, _ = written
    text = path.read_bytes()
    bad = tmp_path / "cut.json"
    for cut in range(0, len(text) - 1, max(1, len(text) // 37)):
        bad.write_bytes(text[:cut])
        with pytest.raises(ScheduleFileError):
            read_schedule(bad, workload)


def test_a_number_too_large_for_a_float_is_refused(tiny, written, tmp_path):
    workload, _ = tiny
    path, doc = written
    bad = tmp_path / "big.json"
    bad.write_text(json.dumps(_set(doc, "exec_end", 7, "BIG")).replace('"BIG"', "1e400"))  # parses as inf
    with pytest.raises(ScheduleFileError, match=r"exec_end\[7\] is inf, not a finite time"):
        read_schedule(bad, workload)


def test_another_build_of_the_model(tiny, written):
    path, _ = written
    other = Workload.build(build_program("tiny", batch=8, seq=128), preset("ipu-mk2"))
    with pytest.raises(ScheduleFileError, match="another build of 'tiny'"):
        read_schedule(path, other)


def test_a_folder_is_refused(tiny, tmp_path):
    workload, _ = tiny
    with pytest.raises(ScheduleFileError, match="not a file"):
        read_schedule(tmp_path, workload)


# ------------------------------------------------------------------ warm starts through elk.compile
def _compile(designs, options, **kw):
    import elk
    return elk.compile("tiny", chip="ipu-mk2", batch=4, seq=128, designs=designs, design_options=options,
                       placement=None, bound=None, **kw)


def test_compile_starts_exact_designs_from_a_schedule(tiny, written):
    workload, _ = tiny
    path, doc = written
    warm = read_schedule(path, workload)
    result = _compile("periodic", {"periodic": {"warm_start": warm, "time_limit": 1, "workers": 1}})
    assert list(result.designs) == ["periodic"]
    row = result.to_json()["designs"]["periodic"]
    assert row["warm_start"] == f"file:{path}" and row["warm_start_ms"] == pytest.approx(doc["latency_ms"])
    assert row["valid"] and row["latency_ms"] <= doc["latency_ms"] * (1 + 1e-9)


def test_compile_runs_a_named_warm_start_it_was_not_asked_for():
    result = _compile("periodic", {"periodic": {"warm_start": "static", "time_limit": 1, "workers": 1}})
    assert list(result.designs) == ["periodic"]
    d = result.designs["periodic"]
    assert d.schedule.info.warm_start == "static" and d.warm_start_ms > 0
    assert d.sim.latency_ms <= d.warm_start_ms * (1 + 1e-9)


@pytest.mark.parametrize("options, match", [
    ({"cpsat": {"warm_start": "milp"}}, "cpsat cannot warm-start from milp"),
    ({"cpsat": {"warm_start": "cpsat"}}, "from itself"),
    ({"cpsat": {"warm_start": "fastest"}}, "neither a design"),
])
def test_compile_refuses_impossible_warm_starts_before_any_work(monkeypatch, options, match):
    import elk.driver.api
    from elk.errors import SolverConfigError

    def no_tables(*args, **kwargs):
        raise AssertionError("plan tables were built before the mistake was found")

    monkeypatch.setattr(elk.driver.api.Workload, "build", no_tables)
    with pytest.raises(SolverConfigError, match=match):
        _compile("cpsat,milp", options)


def test_compile_refuses_an_invalid_warm_start_schedule(tiny):
    from elk.errors import ScheduleError
    workload, schedule = tiny
    broken = schedule.shifted(0.0)
    broken.exec_end = broken.exec_start.copy()
    with pytest.raises(ScheduleError, match="not valid on this program"):
        _compile("cpsat", {"cpsat": {"warm_start": broken}})


# ------------------------------------------------------------------ report wording
def test_float_noise_in_the_breakdown_prints_as_zero(tiny):
    from elk.driver.report import LEGEND, compile_report
    result = _compile("elk-dyn", {})
    d = result.designs["elk-dyn"]
    d.sim.breakdown_ms["stall"] = 4.8e-14
    assert result.rows()[0]["stall_ms"] == 0.0
    assert "e-14" not in compile_report(result) and "e-14" not in json.dumps(result.to_json())
    # every column of the table is defined in the legend
    header = next(line for line in compile_report(result).splitlines() if line.startswith("design "))
    columns = [c.strip() for c in header.split("  ") if c.strip()]
    assert len(columns) >= 16
    for column in columns:
        assert f"{column} =" in LEGEND or f"{column.removesuffix(' ms')} =" in LEGEND, column
