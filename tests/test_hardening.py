"""Hardening (issue 18): each input that used to give a traceback, a silent wrong model or late failure.

One test per case, run through the command line (``main([...])``) where the user meets it: one
``elk: error:`` line and exit status 2 before any work, nothing left behind.
"""
from __future__ import annotations


import pytest

from elk.cli.main import main

DEEP = 10_000


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``elk ARGV``; returns (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("elk: error: "), err[-2000:]
    return lines[0]


# ---------------------------------------------------------------- row 2: nested 10,000 deep
@pytest.mark.parametrize("name,text,where", [
    ("graph.json", "[" * DEEP + "]" * DEEP, "model"),
    ("config.json", '{"model_type": "llama", "x": ' + "[" * DEEP + "]" * DEEP + "}", "model"),
    ("chip.toml", "x = " + "[" * DEEP + "]" * DEEP, "chip"),
    ("chip.json", '{"x": ' + "[" * DEEP + "]" * DEEP + "}", "chip"),
    ("chip2.toml", "x." * 2000 + "y = 1", "chip"),  # dotted keys nest without brackets
])
def test_deeply_nested_inputs_are_one_line(tmp_path, capsys, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    argv = ["compile", str(path)] if where == "model" else ["compile", "tiny", "--chip", str(path)]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "nested" in one_error_line(err)


# ---------------------------------------------------------------- rows 3, 4: output formats before work
@pytest.mark.parametrize("name", ["t.txt", "timeline_noext", "t.png.bak"])
def test_timeline_format_is_checked_before_the_compile(tmp_path, capsys, no_work, name):
    code, out, err = run(capsys, "compile", "tiny", "--timeline", str(tmp_path / name))
    assert code == 2
    line = one_error_line(err)
    assert ".png" in line and ".pdf" in line and ".svg" in line
    assert not list(tmp_path.iterdir())


def test_packing_picture_format_is_checked_before_the_solve(tmp_path, capsys, no_work):
    problem = tmp_path / "p.csv"
    problem.write_text("id,lower,upper,size\nb0,0,2,8\n")
    code, out, err = run(capsys, "alloc", str(problem), "--minimize", "--png", str(tmp_path / "pack.txt"))
    assert code == 2
    assert ".png" in one_error_line(err)


def test_timeline_name_written_is_the_name_printed(tmp_path, capsys):
    path = tmp_path / "t.svg"
    code, out, err = run(capsys, "compile", "tiny", "--designs", "elk-dyn", "--bound", "none",
                         "--placement", "none", "--timeline", str(path))
    assert code == 0, err
    assert f"wrote {path} " in out and path.is_file() and path.read_bytes().lstrip().startswith(b"<")
    assert [p.name for p in tmp_path.iterdir()] == ["t.svg"]


# ---------------------------------------------------------------- row 9: a closed pipe
def test_output_into_a_closed_pipe_is_a_quiet_exit():
    import os
    import subprocess
    import sys
    read, write = os.pipe()
    os.close(read)  # the reader has already gone, as `head` has after its lines
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from elk.cli.main import main; "
                               "sys.exit(main(['chips']))"], stdout=write, stderr=subprocess.PIPE,
                              timeout=120, text=True)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141


# ---------------------------------------------------------------- rows 5, 6: the Dask address
@pytest.mark.parametrize("address", ["tcp//x", "tcp://h:99999", "foo://a:1", "tcp://h:port", " "])
def test_malformed_dask_address_is_one_line_before_the_folder(tmp_path, capsys, address):
    out_dir = tmp_path / "sweep"
    code, out, err = run(capsys, "sweep", "--model", "tiny", "--out", str(out_dir), "--address", address, "--quiet")
    assert code == 2
    assert "--address" in one_error_line(err)
    assert not out_dir.exists()


def test_malformed_dask_address_from_python_creates_nothing(tmp_path):
    from elk.study import grid, run_study
    from elk.study.point import StudyError
    with pytest.raises(StudyError):
        run_study(grid(model="tiny"), tmp_path / "s", address="tcp//nowhere")
    assert not (tmp_path / "s").exists()


def test_unreachable_scheduler_uses_the_connect_timeout_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")
    seen = {}

    def unreachable(address, timeout=None, **kwargs):
        seen.update(address=address, timeout=timeout)
        raise OSError(f"Timed out trying to connect to {address} after {timeout}")
    monkeypatch.setattr(distributed, "Client", unreachable)
    out_dir = tmp_path / "sweep"
    code, out, err = run(capsys, "sweep", "--model", "tiny", "--out", str(out_dir), "--quiet",
                         "--address", "tcp://127.0.0.1:1", "--connect-timeout", "2.5")
    assert code == 2
    assert "cannot reach the Dask scheduler" in one_error_line(err)
    assert seen == {"address": "tcp://127.0.0.1:1", "timeout": "2.5s"}
    assert not out_dir.exists()
    monkeypatch.setenv("ELK_DASK_CONNECT_TIMEOUT", "1")
    code, out, err = run(capsys, "sweep", "--model", "tiny", "--out", str(out_dir), "--quiet",
                         "--address", "tcp://127.0.0.1:1")
    assert code == 2 and seen["timeout"] == "1.0s" and not out_dir.exists()


# ---------------------------------------------------------------- row 8: a cache that cannot be written
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_unusable_cache_dir_is_one_warning(tmp_path, capsys, monkeypatch, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ELK_CACHE_DIR", str(blocker if where == "file" else blocker / "cache"))
    code, out, err = run(capsys, "plans", "tiny")
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("elk: warning: plan-table cache off"), err
    assert "ELK_CACHE_DIR" in lines[0]


def test_usable_or_disabled_cache_is_silent(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ELK_CACHE_DIR", str(tmp_path / "fresh" / "cache"))
    assert run(capsys, "plans", "tiny")[2] == ""
    monkeypatch.setenv("ELK_CACHE_DIR", str(tmp_path / "blocker"))
    (tmp_path / "blocker").write_text("x")
    monkeypatch.setenv("ELK_NO_CACHE", "1")
    assert run(capsys, "plans", "tiny")[2] == ""


# ---------------------------------------------------------------- row 7: sizes checked before any table
def test_impossible_size_is_refused_before_any_plan_table(tmp_path, capsys, monkeypatch):
    import elk.plantable
    import elk.tablecache
    cache = tmp_path / "cache"
    monkeypatch.setenv("ELK_CACHE_DIR", str(cache))

    def no_tables(*args, **kwargs):
        raise AssertionError("a plan table was built for a size the chip cannot hold")
    monkeypatch.setattr(elk.tablecache, "build_many", no_tables)
    code, out, err = run(capsys, "compile", "llama2-13b", "--batch", "1000000000")
    assert code == 2
    line = one_error_line(err)
    assert "needs at least" in line and "fully partitioned over 5,888 cores" in line
    assert not list(cache.rglob("*.npz"))


def test_one_core_is_singular(capsys):
    code, out, err = run(capsys, "compile", "tiny", "--cores", "1")
    assert code == 2 and "over 1 core," in one_error_line(err)


def test_size_bound_never_exceeds_the_smallest_plan(capsys):
    """The bound is sound: on every operator of a small model it is at most the smallest footprint found."""
    from elk.chip import preset
    from elk.graphs.zoo import build_program
    from elk.plantable import plan_table
    from elk.sizecheck import min_footprint_bound
    chip = preset("ipu-mk2")
    program = build_program("tiny", batch=8, seq=256)
    for sig in program.unique_signatures():
        op = next(o for o in program.ops if o.signature == sig)
        assert min_footprint_bound(op, chip.cores) <= int(plan_table(sig, chip).frontier_hot.min())


# ---------------------------------------------------------------- row 10: DiT says what runs
def test_dit_banner_says_forward_and_notes_the_ignored_seq(capsys):
    from elk.chip import preset
    from elk.driver.report import program_header
    from elk.graphs.zoo import build_program
    code, out, err = run(capsys, "plans", "dit-xl-2", "--seq", "4096")
    assert code == 0, err
    assert "note: --seq 4096 does not apply to dit-xl-2" in out
    banner = program_header(build_program("dit-xl-2", batch=32, seq=4096), preset("ipu-pod4")).splitlines()[0]
    assert "forward" in banner and "decode" not in banner and "sequence 256" in banner


def test_dit_without_shape_options_has_no_note(capsys):
    code, out, err = run(capsys, "plans", "dit-xl-2")
    assert code == 0 and "note:" not in out


# ---------------------------------------------------------------- row 11: the banner names base and overrides
@pytest.mark.parametrize("extra,expect", [
    (["--cores", "1471"], "on ipu-mk2 with cores=1471:"),
    ([], "on ipu-mk2:"),
    (["--file"], "on ipu-mk2 from empty.toml:"),
    (["--file", "--sram-kib", "512"], "on ipu-mk2 from empty.toml with sram_kib=512:"),
])
def test_banner_names_the_base_chip_and_the_overrides(tmp_path, capsys, extra, expect):
    chip = ["--chip", "ipu-mk2"]
    if extra[:1] == ["--file"]:
        (tmp_path / "empty.toml").write_text('base = "ipu-mk2"\n')
        chip, extra = ["--chip", str(tmp_path / "empty.toml")], extra[1:]
    code, out, err = run(capsys, "compile", "tiny", "--designs", "basic", "--bound", "none", "--placement", "none",
                         *chip, *extra)
    assert code == 0, err
    assert expect in out.splitlines()[0]


# ---------------------------------------------------------------- row 1: an artifact graph's inputs
def _artifact_graph(tmp_path, mutate=None):
    """x (id 1) -> Dot with weight 100 -> Relu -> Dot with weight 101 -> Result; ``mutate`` edits the nodes."""
    from tests.test_artifact_graphs import mlp_graph, write
    nodes = mlp_graph(layers=2)
    if mutate:
        mutate(nodes)
    return write(tmp_path, nodes)


def test_artifact_inputs_are_summarised_in_the_banner(tmp_path, capsys):
    path = _artifact_graph(tmp_path)
    code, out, err = run(capsys, "compile", str(path), "--designs", "basic", "--bound", "none",
                         "--placement", "none", "--cores", "1472")
    assert code == 0, err
    assert "inputs: 3 graph inputs (ids read that no node has), 3 loaded from HBM" in out


def test_artifact_input_read_at_another_output_is_refused(tmp_path, capsys):
    def port_one(nodes):
        nodes[2][3][1] = [101, 1]
    code, out, err = run(capsys, "compile", str(_artifact_graph(tmp_path, port_one)))
    assert code == 2
    assert "reads output 1 of id 101" in one_error_line(err)


def test_artifact_input_read_with_two_shapes_is_refused(tmp_path, capsys):
    from tests.test_artifact_graphs import DOT, node

    def same_weight(nodes):  # the second Dot reads the first Dot's weight id, with another shape
        nodes[2] = node(12, DOT, "Dot", [11, 100], [[99, 66, 64], [64, 32]])
    code, out, err = run(capsys, "compile", str(_artifact_graph(tmp_path, same_weight)))
    assert code == 2
    line = one_error_line(err)
    assert "graph input 100" in line and "[64, 32]" in line and "[64, 64]" in line


def test_artifact_input_read_with_two_dtypes_is_refused(tmp_path, capsys):
    def as_half(nodes):
        nodes[2][1] = nodes[2][1].replace('"input1" : { "dtype" : "float32"', '"input1" : { "dtype" : "float16"')
        nodes[2][3][1] = [100, 0]
    code, out, err = run(capsys, "compile", str(_artifact_graph(tmp_path, as_half)))
    assert code == 2
    assert "as float16" in one_error_line(err)


# ---------------------------------------------------------------- README: confusing output
def test_tables_line_holds_no_compile_total(capsys):
    code, out, err = run(capsys, "compile", "tiny", "--designs", "basic", "--bound", "none", "--placement", "none")
    assert code == 0, err
    tables = next(line for line in out.splitlines() if line.startswith("plan tables:"))
    assert "total" not in tables
    assert any(line.startswith("compile: ") and "s in all" in line for line in out.splitlines())


def test_plans_says_when_the_table_came_from_the_cache(capsys):
    run(capsys, "plans", "tiny", "--op", "1", "--limit", "1")  # builds (or finds) it
    code, out, err = run(capsys, "plans", "tiny", "--op", "1", "--limit", "1")
    assert code == 0 and "from the cache (built earlier in" in out and "; built in" not in out


def test_warm_start_hint_is_quoted_for_the_shell(tmp_path, capsys):
    import shlex
    path = tmp_path / "my schedules" / "s 1.json"
    code, out, err = run(capsys, "compile", "tiny", "--designs", "elk-dyn", "--bound", "none", "--placement", "none",
                         "--save-schedule", str(path))
    assert code == 0, err
    assert f"--warm-start {shlex.quote(str(path))})" in out


# ---------------------------------------------------------------- README: the sweep prints certified gaps
def test_sweep_table_has_labelled_gap_and_ideal_columns(tmp_path, capsys):
    code, out, err = run(capsys, "sweep", "--model", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2",
                         "--designs", "elk-dyn,ideal", "--out", str(tmp_path / "s"), "--workers", "1", "--quiet")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert "elk-dyn gap %" in header and "elk-dyn % ideal" in header and "ideal gap %" not in header
    row = next(line for line in out.splitlines() if line.startswith("tiny")).split()
    assert len(row) == len(["model", "elk-dyn ms", "ideal ms", "bound ms", "gap", "ideal"])
    assert float(row[4]) >= 0


# ---------------------------------------------------------------- figures
@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib Figure saved during the test (still drawn to its file)."""
    from matplotlib.figure import Figure
    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_timeline_has_an_interconnect_lane_and_a_shade_legend(tmp_path, capsys, saved_figures):
    code, out, err = run(capsys, "compile", "tiny", "--designs", "elk-dyn", "--bound", "none", "--placement", "none",
                         "--timeline", str(tmp_path / "t.png"))
    assert code == 0, err
    (fig,) = saved_figures
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("interconnect" in label for label in labels)
    assert not any("opacity" in label for label in labels)
    legend_text = " ".join(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
    assert "plan time" in legend_text and "waiting for the interconnect" in legend_text


def test_packing_lines_sit_below_the_top_frame(tmp_path, saved_figures):
    from elk.allocation import AllocationProblem
    from elk.driver.alloc_plot import plot_packing
    problem = AllocationProblem.from_arrays([0, 0, 2], [2, 2, 4], [4, 4, 8])
    plot_packing(tmp_path / "p.png", problem, [0, 4, 0], capacity=8)
    (fig,) = saved_figures
    ax = fig.axes[0]
    assert ax.get_ylim()[1] >= 8 * 1.15  # peak = bound = capacity = 8 would otherwise sit on the frame
