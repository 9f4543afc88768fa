"""``elk alloc``: output, files written, exit codes, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alloc_cases import DATA
from elk.allocation import read_placement, validate
from elk.cli.main import main


def test_alloc_minimise_writes_csv_png_json(tmp_path, capsys):
    out, png, js = tmp_path / "solved.csv", tmp_path / "p.png", tmp_path / "r.json"
    code = main(["alloc", str(DATA / "worked.csv"), "--out", str(out), "--png", str(png), "--json", str(js)])
    text = capsys.readouterr().out
    assert code == 0
    assert "no capacity: minimising the peak" in text
    assert "status       optimal" in text and "peak         8 (1.000x the lower bound)" in text
    assert "lower bound  8 (max load)" in text and "time " in text
    problem, offsets = read_placement(out)
    validate(problem, offsets)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(js.read_text())
    assert report["status"] == "optimal" and report["peak"] == 8 and report["buffers"] == 4


def test_alloc_capacity_from_the_file_name(capsys):
    code = main(["alloc", str(DATA / "tight.8.csv")])
    assert code == 0
    assert "capacity 8 (from the file name)" in capsys.readouterr().out


def test_alloc_infeasible_capacity_exits_1(capsys):
    code = main(["alloc", str(DATA / "worked.csv"), "--capacity", "7", "--out", "x.csv"])
    text = capsys.readouterr().out
    assert code == 1
    assert "status       infeasible" in text and "no placement to write" in text


@pytest.mark.parametrize("argv, message", [
    (["--capacity", "4"], "buffer 'y' of size 5 does not fit in capacity 4"),
    (["--time-limit", "0"], "time limit must be a positive number"),
    (["--workers", "0"], "workers must be a positive integer"),
])
def test_alloc_user_mistakes_are_one_line_exit_2(capsys, argv, message):
    code = main(["alloc", str(DATA / "worked.csv"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("elk: error: ") and message in err and err.count("\n") == 1


def test_alloc_bad_csv_names_the_row(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lower,upper,size\na,0,3,4\nb,5,2,1\n")
    assert main(["alloc", str(bad)]) == 2
    assert "line 3 (id 'b'): upper 2 <= lower 5" in capsys.readouterr().err


def test_alloc_baseline_offsets(tmp_path, capsys):
    f = tmp_path / "base.csv"
    f.write_text("id,lower,upper,size,offset\na,0,2,4,0\nb,1,3,4,8\nc,2,4,4,0\n")
    assert main(["alloc", str(f), "--offsets", "baseline"]) == 0
    text = capsys.readouterr().out
    assert "baseline     12 (the file's own offsets, 1.500x)" in text and "peak         8" in text


@pytest.mark.solver
def test_alloc_with_an_exact_solver(capsys):
    code = main(["alloc", str(DATA / "mixed.96.csv"), "--minimize", "--solver", "cpsat", "--time-limit", "10",
                 "--workers", "1"])
    text = capsys.readouterr().out
    assert code == 0 and "cpsat (ortools 9.15" in text and "status       optimal" in text


def test_bench_alloc_runs_on_the_fixtures(capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_alloc.py"
    spec = importlib.util.spec_from_file_location("bench_alloc", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(DATA), "--solvers", "heuristic", "--time-limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "worked" in out and "tight.8" in out and "placed: heuristic 3/3" in out


def test_bench_alloc_repeats_and_compares_with_a_baseline(tmp_path, capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_alloc.py"
    spec = importlib.util.spec_from_file_location("bench_alloc", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = tmp_path / "before.csv"
    assert bench.main([str(DATA), "--solvers", "heuristic", "--time-limit", "5", "--repeat", "3",
                       "--csv", str(before)]) == 0
    out = capsys.readouterr().out
    assert "3 runs each" in out and "placed 3/3" in out
    assert bench.main([str(DATA), "--solvers", "heuristic", "--time-limit", "5", "--baseline", str(before)]) == 0
    out = capsys.readouterr().out
    assert "before / after" in out and "speed-up" in out
    assert out.count("heuristic  optimal") >= 2  # tight.8 and worked, before and after


# ---------------------------------------------------------------- checked before solving
@pytest.mark.parametrize("option", ["--out", "--png", "--json"])
def test_unwritable_outputs_fail_before_solving(tmp_path, capsys, monkeypatch, option):
    import solvers.alloc.allocate

    def refuse(*args, **kwargs):
        raise AssertionError("the allocator ran although an output cannot be written")

    monkeypatch.setattr(solvers.alloc.allocate, "allocate", refuse)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target in [blocker / "x.out", tmp_path] + ([Path("/proc/x.out")] if Path("/proc/self").is_dir() else []):
        code = main(["alloc", str(DATA / "worked.csv"), "--solver", "portfolio", option, str(target)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("elk: error: cannot write") and err.count("\n") == 1, err
        assert option in err and str(target) in err


# ---------------------------------------------------------------- what a CSV may be
@pytest.mark.parametrize("kind", ["random", "png", "gzip", "utf16"])
def test_binary_file_is_not_a_text_csv(tmp_path, capsys, kind):
    import gzip
    import numpy as np
    text = (DATA / "worked.csv").read_bytes()
    data = {"random": np.random.default_rng(0).bytes(3000),
            "png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
            "gzip": gzip.compress(text),
            "utf16": text.decode().encode("utf-16")}[kind]
    bad = tmp_path / "binary.csv"
    bad.write_bytes(data)
    assert main(["alloc", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"elk: error: {bad}: not a text CSV") and err.count("\n") == 1, err


def test_latin1_file_is_not_a_text_csv(tmp_path, capsys):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("id,lower,upper,size\nb\xe9ta,0,3,4\n".encode("latin-1"))
    assert main(["alloc", str(bad)]) == 2
    assert "not a text CSV (not UTF-8: byte 0xe9" in capsys.readouterr().err


def test_byte_order_mark_is_accepted(tmp_path, capsys):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (DATA / "worked.csv").read_bytes())
    assert main(["alloc", str(bom), "--solver", "heuristic"]) == 0
    assert "peak         8 (1.000x the lower bound)" in capsys.readouterr().out


# ---------------------------------------------------------------- the default solver
@pytest.mark.solver
def test_default_solver_places_what_greedy_cannot(tmp_path, capsys):
    """A perfect packing (no slack at all): greedy misses it, the default (the portfolio) places it."""
    from alloc_cases import perfect_packing
    from elk.allocation import write_csv
    from solvers.alloc.allocate import allocate
    for seed in range(30):
        problem, _ = perfect_packing(30, seed)
        if allocate(problem, solver="heuristic").status == "unknown":
            break
    else:
        pytest.fail("no perfect packing that greedy misses")
    path = tmp_path / "perfect.64.csv"
    write_csv(problem, None, path)
    out = tmp_path / "placed.csv"
    # a work limit, not the clock, bounds the solve (the time limit only guards against a hang)
    code = main(["alloc", str(path), "--work-limit", "20", "--time-limit", "600", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "solver       portfolio" in text and "work limit 20" in text and "capacity 64 (from the file name)" in text
    placed, offsets = read_placement(out)
    validate(placed, offsets, 64)


def test_png_of_a_result_over_the_capacity(tmp_path, capsys):
    png = tmp_path / "over.png"
    code = main(["alloc", str(DATA / "worked.csv"), "--capacity", "7", "--png", str(png)])
    text = capsys.readouterr().out
    assert code == 1 and "status       infeasible" in text
    assert f"wrote {png} (the best greedy placement, peak 8: over the capacity)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
