"""The ``elk`` command line, run in-process (and once as the installed console script)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import user_error as assert_user_error
from elk.cli.main import main

DESIGNS = ("basic", "static", "elk-dyn", "elk-full", "ideal", "periodic")  # the default set
TINY = ["tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2"]


def design_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in DESIGNS and len(parts) >= 13:
            rows[parts[0]] = parts
    return rows


def test_compile_tiny_with_json(tmp_path, capsys):
    out_json = tmp_path / "report.json"
    code = main(["compile", *TINY, "--json", str(out_json)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    rows = design_rows(captured.out)
    assert list(rows) == list(DESIGNS)
    assert all(parts[-1] == "yes" for parts in rows.values())
    assert "tiny decode" in captured.out and "ipu-mk2" in captured.out
    assert f"wrote {out_json}" in captured.out
    report = json.loads(out_json.read_text())
    assert {"model", "chip", "designs"} <= set(report)
    assert report["model"] == "tiny"
    assert report["chip"]["cores"] == 1472
    assert list(report["designs"]) == list(DESIGNS)
    for name, d in report["designs"].items():
        assert d["valid"] is True, name
        assert d["latency_ms"] > 0
        assert d["violations"] == []
    bound = report["bound"]["ms"]  # proven: no valid schedule is faster (Ideal is a relaxed schedule, not a bound)
    assert all(d["latency_ms"] >= bound * (1 - 1e-9) for d in report["designs"].values())
    assert report["designs"]["periodic"]["latency_ms"] <= report["designs"]["elk-full"]["latency_ms"] * (1 + 1e-12)


def test_compile_writes_trace_and_timeline(tmp_path, capsys):
    trace, png = tmp_path / "t.json", tmp_path / "t.png"
    code = main(["compile", *TINY, "--designs", "elk-dyn,ideal", "--trace", str(trace), "--timeline", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    assert list(design_rows(out)) == ["elk-dyn", "ideal"]
    events = json.loads(trace.read_text())["traceEvents"]
    assert len(events) > 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {trace} (elk-dyn" in out and f"wrote {png} (elk-dyn)" in out


def test_plans_one_operator(capsys):
    assert main(["plans", "tiny", "--batch", "4", "--seq", "128", "--op", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1:")
    assert "on 5888 cores" in out  # the default chip
    assert "execution Pareto frontier" in out and "cold -> hot table" in out
    assert "cold B/core" in out and "hot B/core" in out


def test_plans_operator_by_name(capsys):
    assert main(["plans", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2", "--op", "l0.qkv",
                 "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6:l0.qkv: matmul") and "on 1472 cores" in out


def test_plans_lists_operators(capsys):
    assert main(["plans", "tiny", "--batch", "4", "--seq", "128"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:3] == ["first", "op", "name"]
    assert "l0.qkv" in out and "matmul" in out
    assert "elk plans MODEL --op" in out


def test_models_and_chips(capsys):
    assert main(["models", "--batch", "2", "--seq", "64"]) == 0
    out = capsys.readouterr().out
    assert "batch 2, KV/sequence 64" in out
    for name in ("tiny", "llama2-13b", "opt-30b", "dit-xl-2"):
        assert name in out
    assert "layers = repeated blocks x operators per block" in out  # what "40x42" means
    tiny = next(line.split() for line in out.splitlines() if line.startswith("tiny"))
    assert float(tiny[-1]) > 0 and tiny[-1] != "0.000"  # a sensible precision, not 0.000 TFLOP
    assert main(["chips"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith("ipu-mk2: 1472 cores") and out[1].startswith("ipu-pod4: 5888 cores")


# ---------------------------------------------------------------------------
# user mistakes: one line on stderr, exit code 2
# ---------------------------------------------------------------------------
def test_unknown_model(capsys):
    assert_user_error(capsys, ["compile", "no-such-model", "--batch", "4", "--seq", "128"], "unknown model")


def test_unknown_preset(capsys):
    assert_user_error(capsys, ["compile", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk9"],
                      "unknown chip preset 'ipu-mk9'")


def test_malformed_toml_chip_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("cores = [\n")
    assert_user_error(capsys, ["compile", "tiny", "--batch", "4", "--seq", "128", "--chip", str(bad)],
                      "malformed chip config")


def test_missing_chip_file(tmp_path, capsys):
    assert_user_error(capsys, ["compile", "tiny", "--chip", str(tmp_path / "gone.toml")], "not found")


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5"])
def test_bad_batch_is_one_line(capsys, value):
    assert_user_error(capsys, ["compile", "tiny", "--batch", value], "--batch", "positive integer")


def test_bad_mesh_shape_text_is_one_line(capsys):
    assert_user_error(capsys, ["compile", "tiny", "--mesh", "10by10"], "ROWSxCOLS")


@pytest.mark.parametrize("argv, needle", [
    (["compile", "tiny", "--batch", "-4"], "--batch"),
    (["compile", "tiny", "--seq", "0"], "--seq"),
    (["compile", "tiny", "--hbm-tbps", "0"], "--hbm-tbps"),
    (["compile", "tiny", "--noc-scale", "0"], "--noc-scale"),
    (["compile", "tiny", "--mesh", "3x"], "--mesh"),
    (["compile", "tiny", "--no-such-option"], "unrecognized arguments"),
    (["compile"], "required: model"),
    (["plans", "tiny", "--sram-kib", "-1"], "--sram-kib"),
    (["models", "--batch", "0"], "--batch"),
    (["alloc", "x.csv", "--capacity", "lots"], "--capacity"),
    (["alloc", "x.csv", "--solver", "magic"], "--solver"),
    (["sweep", "--model", "tiny", "--workers", "two"], "--workers"),
    (["sweep"], "required: --model"),
    (["frobnicate"], "invalid choice"),
    ([], "required: command"),
])
def test_usage_mistakes_are_one_line_for_every_subcommand(capsys, argv, needle):
    """argparse's 14-line usage block is not printed: one line naming the option, exit status 2."""
    line = assert_user_error(capsys, argv, needle)
    assert "usage:" not in line


# ---------------------------------------------------------------------------
# checked before any work: output paths, the design to trace
# ---------------------------------------------------------------------------
def unwritable_paths(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    paths = [blocker / "out" / "x", tmp_path]  # a "folder" that is a file; an existing folder as the file
    if Path("/proc/self").is_dir():
        paths.append(Path("/proc/x"))  # a folder no file can be created in
    return paths


@pytest.mark.parametrize("option, extra", [("--json", []), ("--trace", []), ("--timeline", []),
                                           ("--records", ["--designs", "elk-dyn,cpsat"])])
def test_unwritable_compile_outputs_fail_before_compiling(tmp_path, capsys, no_compile, option, extra):
    for path in unwritable_paths(tmp_path):
        argv = ["compile", *TINY, "--designs", "elk-dyn", *extra, option, str(path)]
        assert_user_error(capsys, argv, "cannot write", option, str(path))


def test_records_without_a_window_design_is_an_error(tmp_path, capsys, no_compile):
    assert_user_error(capsys, ["compile", *TINY, "--designs", "elk-dyn,periodic", "--records", str(tmp_path / "w.csv")],
                      "--records", "cpsat or milp")


def test_trace_design_that_is_not_compiled_fails_before_compiling(tmp_path, capsys, no_compile):
    assert_user_error(capsys, ["compile", *TINY, "--designs", "elk-dyn", "--trace-design", "static",
                               "--trace", str(tmp_path / "t.json")], "--trace-design 'static'", "elk-dyn")
    assert_user_error(capsys, ["compile", *TINY, "--designs", "elk-dyn", "--trace-design", "warp"], "warp")
    assert not (tmp_path / "t.json").exists()


def test_mesh_that_does_not_match_the_cores(capsys):
    assert_user_error(capsys, ["compile", "tiny", "--batch", "4", "--seq", "128", "--mesh", "10x10"],
                      "mesh 10x10", "5888")


def test_mesh_and_cores_together(capsys):
    # --cores with --topology mesh re-derives the shape for the new core count
    code = main(["plans", "tiny", "--batch", "4", "--seq", "128", "--cores", "100", "--topology", "mesh",
                 "--op", "6", "--limit", "2"])
    assert code == 0
    assert "on 100 cores" in capsys.readouterr().out


def test_operator_that_does_not_fit(capsys):
    line = assert_user_error(capsys, ["compile", "tiny", "--batch", "64", "--seq", "2048", "--chip", "ipu-mk2",
                                      "--sram-kib", "1", "--designs", "elk-dyn"], "SRAM")
    assert "1024 bytes" in line


def test_unknown_design(capsys):
    assert_user_error(capsys, ["compile", *TINY, "--designs", "elk-dyn,warp"], "unknown design 'warp'")


def test_malformed_model_config(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"model_type": "llama", "hidden_size": ')
    assert_user_error(capsys, ["compile", str(cfg), "--batch", "4", "--seq", "128"], str(cfg))


def test_model_config_missing_keys(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    assert_user_error(capsys, ["compile", str(cfg), "--batch", "4", "--seq", "128"])


def test_plans_bad_operator(capsys):
    assert_user_error(capsys, ["plans", "tiny", "--batch", "4", "--seq", "128", "--op", "9999"], "out of range")
    assert_user_error(capsys, ["plans", "tiny", "--batch", "4", "--seq", "128", "--op", "l0.nope"],
                      "no operator named")


def test_chip_json_that_is_a_list(tmp_path, capsys):
    path = tmp_path / "chip.json"
    path.write_text("[1, 2]")
    assert_user_error(capsys, ["compile", *TINY[:5], "--chip", str(path)], "chip")


# ---------------------------------------------------------------------------
# the installed console script
# ---------------------------------------------------------------------------
def test_console_script(tmp_path):
    script = Path(sys.executable).with_name("elk")
    if script.is_file():
        cmd = [str(script)]
    elif shutil.which("elk"):
        cmd = [shutil.which("elk")]
    else:
        cmd = [sys.executable, "-m", "elk.cli.main"]
    env = dict(os.environ)
    env.setdefault("ELK_CACHE_DIR", str(tmp_path))
    proc = subprocess.run([*cmd, "compile", "tiny", "--batch", "2", "--seq", "64", "--chip", "ipu-mk2",
                           "--designs", "elk-dyn"], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = design_rows(proc.stdout)
    assert list(rows) == ["elk-dyn"] and rows["elk-dyn"][-1] == "yes"
    bad = subprocess.run([*cmd, "compile", "nope-model"], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("elk: error:") and "Traceback" not in bad.stderr


def test_json_report_into_a_missing_folder(tmp_path, capsys):
    target = tmp_path / "reports" / "r.json"
    code = main(["compile", *TINY, "--designs", "elk-dyn", "--json", str(target)])
    assert code == 0 and json.loads(target.read_text())["designs"]["elk-dyn"]["valid"] is True
