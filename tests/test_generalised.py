"""The hardening rules, for every command and reader at once (issue 18's generalised tests).

* every long-running command stops on Ctrl-C with one line, exit status 130, no helper process left and
  nothing half-written;
* every output option's path and format are checked before any work starts;
* every reader (graph JSON, model config, chip TOML/JSON, schedule file, allocation CSV, and the ONNX
  reader when it is there) answers arbitrary bytes and well-formed but pathological structures (deep
  nesting, huge numbers, wrong types, dangling references) with a result or elk's own error.

No test depends on machine speed: the interrupt tests pick work that takes far longer than the moment
they wait before interrupting, and assert only what happened, never how long it took.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk.cli.main import build_parser, main
from elk.errors import ElkError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"


# ---------------------------------------------------------------- Ctrl-C
def _processes_marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _interrupt(tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``elk ARGV`` in a child, send it SIGINT once it is busy, and return what it did.

    Its helper processes inherit a unique environment mark, so any left behind can be found afterwards.
    """
    mark = uuid.uuid4().hex
    env = {**os.environ, "ELK_TEST_MARK": mark, "ELK_CACHE_DIR": str(tmp_path / "cache")}
    code = "import sys; print('ready', flush=True); from elk.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(2.0)  # into the work: each command below runs for far longer than this on any machine
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    deadline = time.monotonic() + 30  # helpers end on their own once their owner is gone
    while _processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_marked(mark) == [], "helper processes outlived the interrupted command"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _half_written(folder: Path) -> list[str]:
    """Temporary or probe files anywhere under ``folder`` (what an interrupted atomic write leaves)."""
    return [str(p) for p in folder.rglob("*") if p.name.startswith((".elk-probe-", ".tmp")) or p.suffix == ".tmp"]


LONG_COMMANDS = {
    "compile": lambda out: ["compile", "llama2-70b", "--json", str(out / "r.json"), "--timeline", str(out / "t.png")],
    "sweep": lambda out: ["sweep", "--model", "tiny", "--vary", "hbm_tbps=1:60:1", "--out", str(out / "sweep"),
                          "--workers", "2", "--quiet"],
    # a 28,526-buffer compiler trace, peak minimised: the search runs its whole limit (a MiniMalloc instance is
    # placed in about a second, so a signal after two seconds found it finished on a quiet machine)
    "alloc": lambda out: ["alloc", str(SHARED / "idealloc" / "iopddl" / "S_1.csv"), "--solver", "search",
                          "--minimize", "--time-limit", "600",
                          "--out", str(out / "o.csv"), "--png", str(out / "o.png")],
}


@pytest.mark.parametrize("command", sorted(LONG_COMMANDS))
def test_every_long_command_stops_on_ctrl_c_with_one_line(tmp_path, command):
    if command == "alloc" and not SHARED.is_dir():
        pytest.skip(f"benchmarks not here ({SHARED})")
    out = tmp_path / "out"
    done = _interrupt(tmp_path, LONG_COMMANDS[command](out))
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr == "elk: interrupted\n"
    assert not (out / "r.json").exists() and not (out / "o.csv").exists() and not (out / "t.png").exists()
    assert _half_written(tmp_path) == []


def test_every_long_command_is_covered():
    """compile, sweep and alloc run for minutes; plans, models and chips for seconds at most."""
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) - set(LONG_COMMANDS) == {"plans", "models", "chips"}


# ---------------------------------------------------------------- output options
#: Every output option: (command, option) -> its extra arguments and whether its format is restricted.
OUTPUTS = {
    ("compile", "--json"): ([], None), ("compile", "--trace"): ([], None), ("compile", "--timeline"): ([], ".png"),
    ("compile", "--records"): (["--designs", "elk-dyn,cpsat"], ".csv"),
    ("compile", "--save-schedule"): ([], None),
    ("alloc", "--out"): ([], None), ("alloc", "--png"): ([], ".png"), ("alloc", "--json"): ([], None),
    ("sweep", "--out"): ([], None),
}


def _writes_a_file(help_text: str) -> bool:
    return (help_text or "").lower().startswith(("write", "results folder"))


def test_every_output_option_is_listed():
    """A new option whose help says it writes something must be added to OUTPUTS (and so be tested below)."""
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    found = {(name, a.option_strings[-1]) for name, p in sub.choices.items() for a in p._actions
             if a.option_strings and a.option_strings[-1].startswith("--") and _writes_a_file(a.help)}
    assert found == set(OUTPUTS), found ^ set(OUTPUTS)


def _argv(command: str, option: str, extra: list[str], value: str, tmp_path: Path) -> list[str]:
    if command == "compile":
        return ["compile", "tiny", "--designs", "elk-dyn", *extra, option, value]
    if command == "alloc":
        csv = tmp_path / "p.csv"
        csv.write_text("id,lower,upper,size\nb0,0,2,8\n")
        return ["alloc", str(csv), "--minimize", *extra, option, value]
    return ["sweep", "--model", "tiny", "--quiet", *extra, option, value]


@pytest.mark.parametrize("command,option", sorted(OUTPUTS))
def test_every_output_path_and_format_is_checked_before_work(tmp_path, capsys, no_work, command, option):
    extra, suffix = OUTPUTS[(command, option)]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad_paths = [str(blocker / "under" / f"x{suffix or '.json'}")]  # a folder that is a file
    if suffix:
        bad_paths.append(str(tmp_path / "x.txt"))  # a format the option does not write
    for value in bad_paths:
        code = main(_argv(command, option, extra, value, tmp_path))
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("elk: error: ") and option in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) in (["a-file"], ["a-file", "p.csv"])


# ---------------------------------------------------------------- every reader, pathological input
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: Huge, tiny and odd numbers as JSON text (beyond float and int64 ranges, negative zero, exponents).
HUGE = st.sampled_from(["1e400", "-1e400", "1" + "0" * 400, "-0", "0.0", "1e-400", "9223372036854775808",
                        "-9223372036854775809", "NaN", "Infinity", "-Infinity", "1E+2", "0e0"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.text(max_size=6),
                    st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


def deep(depth: int, kind: str) -> str:
    """JSON text nested ``depth`` levels deep, of lists or objects."""
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def pathological_json() -> st.SearchStrategy[str]:
    """JSON text that parses (or nearly does) but is wrong: deep, huge numbers, wrong types."""
    return st.one_of(
        st.builds(deep, st.sampled_from([63, 64, 65, 200, 5_000, 50_000]), st.sampled_from(["list", "object"])),
        HUGE,
        st.builds(lambda v, n: json.dumps(v)[:-1] + ", " + n + "]" if isinstance(v, list) else json.dumps(v),
                  VALUES, HUGE),
        VALUES.map(json.dumps),
    )


def reads_or_elk_error(read, *args) -> None:
    try:
        read(*args)
    except ElkError as exc:
        assert "\n" not in str(exc), str(exc)
    except Exception as exc:  # noqa: BLE001 - the property under test
        pytest.fail(f"{getattr(read, '__name__', read)} raised {type(exc).__name__}: {str(exc)[:200]}")


def _graph_reader(path: Path):
    from elk.graphs.artifact import load_artifact_graph
    return load_artifact_graph(path, batch=2, seq=8)


def _model_reader(path: Path):
    from elk.graphs.zoo import build_program
    return build_program(str(path), batch=2, seq=8)


def _chip_reader(path: Path):
    from elk.chip import load_chip
    return load_chip(path)


def _alloc_reader(path: Path):
    from elk.allocation import read_csv
    return read_csv(path)


@pytest.fixture(scope="module")
def tiny_workload():
    from elk.chip import preset
    from elk.graphs.zoo import build_program
    from elk.workload import Workload
    return Workload.build(build_program("tiny", batch=2, seq=16), preset("ipu-mk2"))


def _readers(workload):
    from elk.schedule_file import read_schedule
    readers = {"graph.json": _graph_reader, "config.json": _model_reader, "chip.json": _chip_reader,
               "chip.toml": _chip_reader, "alloc.csv": _alloc_reader,
               "schedule.json": lambda path: read_schedule(path, workload)}
    from elk.graphs.onnx_import import load_onnx
    readers["model.onnx"] = lambda path: load_onnx(path)
    return readers


@PROPERTY
@given(data=st.binary(max_size=600), name=st.sampled_from(["graph.json", "config.json", "chip.json", "chip.toml",
                                                           "alloc.csv", "schedule.json", "model.onnx"]))
def test_every_reader_on_arbitrary_bytes(tmp_path, tiny_workload, data, name):
    readers = _readers(tiny_workload)
    if name not in readers:
        return
    path = tmp_path / name
    path.write_bytes(data)
    reads_or_elk_error(readers[name], path)


@PROPERTY
@given(text=pathological_json(), name=st.sampled_from(["graph.json", "config.json", "chip.json", "schedule.json"]))
def test_every_json_reader_on_pathological_structures(tmp_path, tiny_workload, text, name):
    path = tmp_path / name
    path.write_text(text)
    reads_or_elk_error(_readers(tiny_workload)[name], path)


@PROPERTY
@given(depth=st.sampled_from([65, 300, 5_000]), dotted=st.booleans())
def test_chip_toml_nested_too_deeply(tmp_path, depth, dotted):
    text = ("x." * depth + "y = 1") if dotted else ("x = " + "[" * depth + "]" * depth)
    path = tmp_path / "chip.toml"
    path.write_text(text)
    reads_or_elk_error(_chip_reader, path)


NODE = [10, ' - einstein_v2(" output0[N0, N1] = input0[N0, N1] * input1[N0, N1]; ", input_dict={ "input0" : '
            '{ "dtype" : "float16", "shape" : [99, 66]} ,  "input1" : { "dtype" : "float16", "shape" : [99, 66]} })  ',
        "Multiply", [[1, 0], [2, 0]]]


@PROPERTY
@given(refs=st.lists(st.tuples(st.one_of(st.integers(0, 20), st.integers(-3, 2**70)),
                               st.one_of(st.integers(0, 2), st.integers(-2, 2**70))), min_size=2, max_size=2),
       kind=st.sampled_from(["Multiply", "Result", "Parameter", "Reshape", "Nonsense"]),
       node_id=st.one_of(st.integers(0, 12), st.integers(-5, 2**70), st.just(True), st.just("10")),
       extra=st.lists(st.sampled_from(["dup", "result", "param", "self"]), max_size=3))
def test_artifact_graph_with_dangling_and_odd_references(tmp_path, refs, kind, node_id, extra):
    node = [node_id, NODE[1], kind, [list(r) for r in refs]]
    nodes = [node]
    for e in extra:
        if e == "dup":
            nodes.append(list(node))
        elif e == "result":
            nodes.append([11, "", "Result", [[node_id if isinstance(node_id, int) else 10, 0]]])
        elif e == "param":
            nodes.insert(0, [1, "", "Parameter", []])
        else:
            nodes.append([12, NODE[1], "Multiply", [[12, 0], [12, 0]]])
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(nodes))
    reads_or_elk_error(_graph_reader, path)
