"""Chrome trace export and timeline PNG on a small real schedule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from elk.chip import preset
from elk.ir import Program, einsum_op
from elk.schedule import Schedule
from elk.simulator import simulate
from elk.driver.timeline_plot import plot_timeline
from elk.driver.trace import chrome_trace, collapse_steps, write_chrome_trace
from elk.workload import Workload

from solvers.schedule.designs import elk_dyn


def _toy_ops() -> list:
    return [einsum_op("n0", "unary", "te->te", dict(t=8, e=512), ["x"], "a"),
            einsum_op("mm", "matmul", "te,ef->tf", dict(t=8, e=512, f=1024), ["a", "w"], "b"),
            einsum_op("act", "unary", "tf->tf", dict(t=8, f=1024), ["b"], "c"),
            einsum_op("mm2", "matmul", "tf,fe->te", dict(t=8, e=512, f=1024), ["c", "w2"], "d")]


@pytest.fixture(scope="module")
def case():
    workload = Workload.build(Program.from_ops("toy", _toy_ops()), preset("ipu-mk2"))
    schedule = elk_dyn(workload)
    return workload, schedule, simulate(workload, schedule)


@pytest.fixture(scope="module")
def trace(case):
    return chrome_trace(*case)


def _events(trace: dict, ph: str, **match) -> list[dict]:
    return [ev for ev in trace["traceEvents"]
            if ev["ph"] == ph and all(ev.get(k) == v for k, v in match.items())]


def _thread_id(trace: dict, name: str) -> int:
    (meta,) = [ev for ev in _events(trace, "M", name="thread_name") if ev["args"]["name"] == name]
    return meta["tid"]


def test_trace_is_strict_json_and_reloads(trace):
    text = json.dumps(trace, allow_nan=False)
    assert json.loads(text) == trace
    assert trace["displayTimeUnit"] == "ns"


def test_one_slice_per_operator_and_per_load(case, trace):
    workload, _, result = case
    execs = _events(trace, "X", tid=_thread_id(trace, "execution"))
    loads = _events(trace, "X", tid=_thread_id(trace, "HBM loads"))
    assert [ev["name"] for ev in execs] == [op.name for op in workload.program.ops]
    assert len(loads) == len(result.timeline.load_ops) == int(workload.has_load.sum())
    assert all(ev["name"].startswith("load ") for ev in loads)
    assert {"kind", "plan_time_cycles", "comm_cycles", "cold_bytes", "hot_bytes", "busy"} <= set(execs[0]["args"])
    assert {"bytes", "interconnect_share"} <= set(loads[0]["args"])


def test_times_are_non_negative_microseconds(case, trace):
    workload, _, result = case
    timed = [ev for ev in trace["traceEvents"] if "ts" in ev]
    assert timed and all(ev["ts"] >= 0 for ev in timed)
    assert all(ev["dur"] >= 0 for ev in timed if ev["ph"] == "X")
    end_us = max(ev["ts"] + ev["dur"] for ev in _events(trace, "X"))
    assert end_us == pytest.approx(result.latency_ms * 1e3, rel=1e-6)


def test_sram_counter_collapses_and_peaks_at_simulated_peak(case, trace):
    _, _, result = case
    sram = _events(trace, "C", name="SRAM bytes/core")
    times = [ev["ts"] for ev in sram]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert max(ev["args"]["bytes"] for ev in sram) == result.peak_sram_bytes


def test_interconnect_counter_has_both_series_within_capacity(trace):
    noc = _events(trace, "C", name="interconnect share")
    assert noc
    for ev in noc:
        assert set(ev["args"]) == {"loads", "execution"}
        assert 0.0 <= ev["args"]["loads"] <= 1.0 and 0.0 <= ev["args"]["execution"] <= 1.0 + 1e-9
    assert any(ev["args"]["loads"] > 0 for ev in noc)


def test_metadata_and_other_data(case, trace):
    workload, schedule, result = case
    process = _events(trace, "M", name="process_name")
    assert process[0]["args"]["name"] == f"elk {schedule.design}"
    assert {ev["args"]["name"] for ev in _events(trace, "M", name="thread_name")} == {"execution", "HBM loads"}
    other = trace["otherData"]
    assert other["model"] == "toy" and other["design"] == schedule.design
    assert other["chip"] == workload.chip.describe()
    assert other["latency_ms"] == pytest.approx(result.latency_ms)
    assert other["valid"] is True and other["relaxation"] == "strict"


def test_write_chrome_trace_round_trips(case, tmp_path):
    path = write_chrome_trace(tmp_path / "sub" / "toy.json", *case)
    assert json.loads(path.read_text()) == chrome_trace(*case)


def test_rejected_schedule_still_exports(case, tmp_path):
    workload, schedule, _ = case
    bad = Schedule("broken", np.full(len(workload), 10**6), schedule.exec_start, schedule.exec_end,
                   schedule.load_start, schedule.load_end)
    result = simulate(workload, bad)
    assert not result.valid
    doc = json.loads(write_chrome_trace(tmp_path / "bad.json", workload, bad, result).read_text())
    assert not _events(doc, "X") and doc["otherData"]["latency_ms"] is None
    assert doc["otherData"]["violations"]
    assert plot_timeline(tmp_path / "bad.png", workload, bad, result).stat().st_size > 0


def test_collapse_steps_keeps_last_value_at_each_time():
    t, v = collapse_steps(np.array([0.0, 1.0, 1.0, 1.0, 2.0]), np.array([5, 0, 9, 7, 0]))
    assert t.tolist() == [0.0, 1.0, 2.0] and v.tolist() == [5, 7, 0]


@pytest.mark.parametrize("max_ops", [None, 2])
def test_plot_timeline_writes_png(case, tmp_path, max_ops):
    path = plot_timeline(tmp_path / "toy.png", *case, max_ops=max_ops)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
