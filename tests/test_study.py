"""The study runner (elk/study*.py) and `elk sweep`: keys, grids, resume after a kill, failures, pools, Dask."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from elk.cli.main import main
from elk.study import (KNOBS, RESULT_COLUMNS, Point, Study, StudyError, export_results, grid, load_results,
                       run_study)
from elk.study.point import SCHEMA_VERSION

TINY = dict(model="tiny", batch=4, seq=128, chip="ipu-mk2")


def files(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}


# ------------------------------------------------------------------ keys and grids
def test_key_is_stable_and_canonical():
    p = Point(**TINY)
    assert p.key() == Point(**TINY).key()
    assert len(p.key()) == 20 and int(p.key(), 16) >= 0
    # spellings of the same run share a key: defaults made explicit, design aliases and order, int vs float
    assert Point(**TINY, hbm_tbps=16).key() == p.key()
    assert Point(**TINY, hbm_tbps=16.0, sram_kib=624, topology="all-to-all").key() == p.key()
    assert Point(**{**TINY, "model": "Tiny"}).key() == p.key()
    assert Point(**TINY, designs="all").key() == Point(**TINY, designs="ideal,basic,elk-full,static,elk-dyn").key()
    # solver settings reach only the exact designs, so they do not split heuristic points
    assert Point(**TINY, window=4, seed=3).key() == p.key()
    assert Point(**TINY, designs="cpsat", window=4).key() != Point(**TINY, designs="cpsat", window=8).key()
    # a DiT runs one forward step whatever the mode and sequence say
    assert Point("dit-xl-2", mode="decode", seq=2048).key() == Point("dit-xl-2", mode="forward", seq=77).key()


@pytest.mark.parametrize("change", [dict(batch=8), dict(seq=256), dict(hbm_tbps=8), dict(cores=736),
                                    dict(sram_kib=512), dict(noc_scale=1.5), dict(compute_scale=0.75),
                                    dict(topology="mesh"), dict(designs="basic,ideal"), dict(mode="forward"),
                                    dict(chip="ipu-pod4"), dict(load_model="rigid")])
def test_key_changes_with_every_input(change):
    assert Point(**{**TINY, **change}).key() != Point(**TINY).key()


def test_key_is_the_same_in_another_process():
    code = "from elk.study import Point; print(Point('tiny', batch=4, seq=128, chip='ipu-mk2', hbm_tbps=8).key())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == Point(**TINY, hbm_tbps=8).key()


def test_load_model_knob():
    from elk.chip import LoadModel
    rigid = Point(**TINY, load_model="rigid")
    assert rigid.resolved.chip.load_model is LoadModel.RIGID and rigid.resolved.knobs["load_model"] == "rigid"
    assert "load_model=rigid" in rigid.label()
    # the default spelled out is the same run; the table group (plan tables) is shared by both models
    assert Point(**TINY, load_model="fluid").key() == Point(**TINY).key() != rigid.key()
    assert Point(**TINY).resolved.knobs["load_model"] == "fluid"
    assert rigid.resolved.table_group == Point(**TINY).resolved.table_group
    assert {p.load_model for p in grid(**TINY, load_model=["fluid", "rigid"])} == {"fluid", "rigid"}


def test_solver_knobs_reach_the_periodic_design():
    p = Point(**TINY, designs="periodic,cpsat", time_limit=2, workers=1, seed=3, window=4)
    opts = p.resolved.design_options
    from solvers.solver_options import CpsatOptions, PeriodicOptions
    assert opts["periodic"] == PeriodicOptions(time_limit=2, seed=3)  # workers are the windows'; periodic keeps 8
    assert opts["cpsat"] == CpsatOptions(window=4, time_limit=2, workers=1, seed=3)
    own = Point(**TINY, designs="periodic,cpsat", workers=1, periodic_workers=4).resolved.design_options
    assert own["periodic"].workers == 4 and own["cpsat"].workers == 1
    assert Point(**TINY, designs="periodic", periodic_workers=4).key() != Point(**TINY, designs="periodic").key()
    assert Point(**TINY, periodic_workers=4).key() == Point(**TINY).key()  # no periodic design: not a knob
    assert Point(**TINY, designs="periodic", seed=1).key() != Point(**TINY, designs="periodic", seed=2).key()


def test_noc_tbps_is_noc_scale_in_bandwidth_units():
    p = Point(**TINY, noc_scale=1.5)
    tbps = p.resolved.knobs["noc_tbps"]
    assert Point(**TINY, noc_tbps=tbps).resolved.chip.noc_scale == pytest.approx(1.5)
    with pytest.raises(StudyError, match="not both"):
        Point(**TINY, noc_scale=1.5, noc_tbps=10)


def test_grid_is_a_cartesian_product():
    pts = grid(model="tiny", batch=[4, 8], seq=128, hbm_tbps=[8, 16], topology=["all-to-all", "mesh"])
    assert len(pts) == 8
    assert {(p.batch, p.hbm_tbps, p.topology) for p in pts} == {(b, h, t) for b in (4, 8) for h in (8, 16)
                                                               for t in ("all-to-all", "mesh")}
    assert len(Study("dup", pts + pts).points) == 8


@pytest.mark.parametrize("axes, message", [
    (dict(model="tiny", hbm=8), "unknown knob"),
    (dict(model="no-such-model"), "unknown model"),
    (dict(model="tiny", designs="basic,fast"), "unknown design"),
    (dict(model="tiny", batch=[]), "empty"),
    (dict(batch=4), "model axis"),
    (dict(model="tiny", batch=0), "positive integer"),
    (dict(model="tiny", cores=2.5), "positive integer"),
    (dict(model="tiny", hbm_tbps=-1), "positive number"),
    (dict(model="tiny", topology="torus"), "unknown topology"),
    (dict(model="tiny", mode="infer"), "unknown mode"),
    (dict(model="tiny", chip="ipu-mk9"), "unknown chip preset"),
    (dict(model="tiny", mesh="3x3"), "mesh"),
    (dict(model="tiny", designs="cpsat", milp_solver="gurobi"), "milp_solver"),
    (dict(model="tiny", load_model="soft"), "unknown load_model 'soft'"),
])
def test_bad_grids_fail_when_declared(axes, message):
    from elk.errors import ElkError
    with pytest.raises(ElkError, match=message):
        grid(**axes)


def test_empty_study_is_an_error():
    with pytest.raises(StudyError, match="no points"):
        Study("empty", [])


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StudyError, match="not writable"):
        run_study([Point(**TINY)], blocker / "out", workers=1, progress=False)


# ------------------------------------------------------------------ running and resuming
def test_run_study_rows_and_resume(tmp_path):
    out = tmp_path / "study"
    pts = grid(**TINY, hbm_tbps=[8, 16])
    df = run_study(Study("two", pts), out, workers=1, progress=False)
    assert len(df) == 2 * 5
    assert set(KNOBS) | set(RESULT_COLUMNS) <= set(df.columns)
    assert (df["status"] == "ok").all() and df["valid"].all()
    assert set(df["design"]) == {"basic", "static", "elk-dyn", "elk-full", "ideal"}
    assert sorted(df["hbm_tbps"].unique()) == [8.0, 16.0]
    assert (df.loc[df["design"] == "ideal", "pct_of_ideal"] == 100).all()
    assert df.attrs["study"]["ran"] == 2
    rec = json.loads((out / "points" / f"{pts[0].key()}.json").read_text())
    assert rec["schema"] == SCHEMA_VERSION and rec["inputs"]["hbm_tbps"] == 8 and rec["elk_version"]
    before = files(out)
    # a larger grid: only the new point runs, the finished ones are not touched
    df2 = run_study(grid(**TINY, hbm_tbps=[8, 16, 4]), out, workers=1, progress=False)
    assert df2.attrs["study"] == {**df2.attrs["study"], "ran": 1, "skipped": 2}
    after = files(out)
    assert {k: after[k] for k in before} == before and len(after) == 3
    assert len(load_results(out)) == 15
    assert (out / "studies" / "two.json").is_file()


def test_corrupt_point_file_is_redone(tmp_path, capsys):
    out = tmp_path / "study"
    pts = grid(**TINY, hbm_tbps=[8, 16])
    run_study(pts, out, workers=1, progress=False)
    bad = out / "points" / f"{pts[0].key()}.json"
    good = out / "points" / f"{pts[1].key()}.json"
    bad.write_text(bad.read_text()[:100])  # truncated
    good_mtime = good.stat().st_mtime_ns
    df = run_study(pts, out, workers=1, progress=False)
    assert df.attrs["study"]["redone_corrupt"] == [pts[0].key()]
    assert df.attrs["study"]["ran"] == 1 and len(df) == 10
    assert "corrupt point file" in capsys.readouterr().err
    assert (out / "points" / f"{pts[0].key()}.json.corrupt").is_file()
    assert good.stat().st_mtime_ns == good_mtime
    # garbage in a file load_results meets is reported, not silently dropped
    good.write_text("{not json")
    assert len(load_results(out)) == 5
    assert "corrupt point file" in capsys.readouterr().err


def test_failing_point_is_a_failure_row(tmp_path, capsys):
    out = tmp_path / "study"
    pts = [Point(**TINY), Point(**{**TINY, "sram_kib": 0.01})]  # nothing fits in 10 bytes of SRAM
    df = run_study(pts, out, workers=1, progress=False)
    bad = df[df["key"] == pts[1].key()]
    assert len(bad) == 5 and (bad["status"] == "error").all() and not bad["valid"].any()
    assert bad["error"].str.contains("SRAM").all()
    assert (df[df["key"] == pts[0].key()]["status"] == "ok").all()
    assert df.attrs["study"]["failed"][0][0] == pts[1].key()
    # an error is final: the rerun does not retry it (a crash would be retried)
    df = run_study(pts, out, workers=1, progress=False)
    assert df.attrs["study"]["ran"] == 0


def test_crashed_point_is_retried(tmp_path):
    out = tmp_path / "study"
    p = Point(**TINY)
    run_study([p], out, workers=1, progress=False)
    path = out / "points" / f"{p.key()}.json"
    rec = json.loads(path.read_text())
    rec["status"] = "crash"
    path.write_text(json.dumps(rec))
    df = run_study([p], out, workers=1, progress=False)
    assert df.attrs["study"]["redone_crashed"] == [p.key()] and (df["status"] == "ok").all()


KILL_SCRIPT = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from elk.study import store as study_store
    from elk.study import grid, run_study
    out, marker = Path(sys.argv[1]), Path(sys.argv[2])
    real_replace = study_store.os.replace
    renamed = []
    def replace(src, dst):
        if Path(dst).parent.name == "points" and str(dst).endswith(".json"):
            renamed.append(dst)
            if len(renamed) == 3:  # the third point's file is written but not renamed: wait here to be killed
                marker.write_text(str(src))
                threading.Event().wait()
        return real_replace(src, dst)
    study_store.os.replace = replace
    run_study(grid(model="tiny", batch=4, seq=128, chip="ipu-mk2", hbm_tbps=[2, 4, 6, 8, 10, 12]), out,
              workers=1, progress=False)
""")

#: How long a helper process may take to reach a state before the test gives up: a guard against a hang,
#: never what decides an outcome (each wait also ends at once if the process dies).
HANG_GUARD = 300.0


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition`` until it holds; fail at once (with the child's stderr) if ``proc`` exits first."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the child exited with {proc.returncode} before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {HANG_GUARD:.0f} s")
        time.sleep(0.05)


def test_kill_and_restart_loses_and_redoes_nothing(tmp_path):
    """SIGKILL while the third point's file is half stored (written to its temporary name, not renamed,
    the folder lock held): the two finished points stay whole, the third is not a point, nothing waits
    for the dead run's lock, and the rerun runs exactly the four missing points."""
    out, marker = tmp_path / "killed", tmp_path / "at-third-write"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), str(marker)], env={**os.environ},
                            stderr=subprocess.PIPE, text=True)
    wait_for(marker.exists, proc, "the third point's write")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = files(out)
    assert len(done) == 2, "the first two points are stored, the third not"
    for p in (out / "points").glob("*.json"):
        json.loads(p.read_text())  # every finished file is whole
    temp = Path(marker.read_text())
    leftovers = sorted(p.name for p in (out / "points").iterdir() if p.name not in done)
    assert leftovers == [temp.name] and temp.name.startswith(".") and temp.name.endswith(".tmp")
    json.loads(temp.read_text())  # the killed write left its whole temporary file, never a partial point
    df = run_study(grid(**TINY, hbm_tbps=[2, 4, 6, 8, 10, 12]), out, workers=1, progress=False)
    assert df.attrs["study"]["skipped"] == 2 and df.attrs["study"]["ran"] == 4
    after = files(out)
    assert len(after) == 6 and {k: after[k] for k in done} == done
    assert len(df) == 30 and (df["status"] == "ok").all()
    assert sorted(p.name for p in (out / "points").iterdir() if p.name not in after) == [temp.name]


ORPHAN_SCRIPT = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from elk.study import grid, run_study
    from elk.study.store import PointStore
    marker = Path(sys.argv[2])
    def write(self, record):  # the first finished point: the pool's workers are up; wait here to be killed
        marker.write_text("pool running")
        threading.Event().wait()
    PointStore.write = write
    run_study(grid(model="tiny", batch=4, seq=128, chip="ipu-mk2", hbm_tbps=[2, 4, 6, 8, 10, 12]), sys.argv[1],
              workers=2, progress=False)
""")


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: a child started in its own session and all it started."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] not in "ZX":
            pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table from /proc")
def test_sigkill_of_a_study_leaves_no_process_behind(tmp_path):
    """SIGKILL runs no cleanup; the pool's workers (children of the forkserver, not of the study) must
    notice their owner is gone and end, and then the forkserver and the resource tracker end too."""
    marker = tmp_path / "pool-running"
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path / "out"), str(marker)],
                            env={**os.environ}, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(marker.exists, proc, "a finished point")
    helpers = [p for p in session_members(proc.pid) if p != proc.pid]
    assert len(helpers) >= 3, "expected the forkserver, the resource tracker and two workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + HANG_GUARD  # a guard: without the fix they stay for good
    while session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_members(proc.pid)
    for pid in left:  # do not leak them into the rest of the test run
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} process(es) outlived the killed study"


def test_worker_watchdog_ends_the_worker_with_its_owner(tmp_path):
    """The mechanism itself, in isolation: a process running elk.procs.exit_with(owner) ends once the owner does."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    code = (f"import sys, time; from elk.procs import exit_with; exit_with({owner.pid}); print('watching', "
            "flush=True); time.sleep(3600); sys.exit(7)")
    watcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().strip() == "watching"  # set up, and alive while its owner is
        assert watcher.poll() is None
        owner.kill()
        owner.wait()
        assert watcher.wait(timeout=HANG_GUARD) == 1  # os._exit(1) from the watchdog, long before the sleep ends
    finally:
        for p in (owner, watcher):
            if p.poll() is None:
                p.kill()
                p.wait()
        watcher.stdout.close()


# ------------------------------------------------------------------ several runs into one folder
WRITER_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import pandas as pd
    from elk.study import write_frame
    me, path = int(sys.argv[1]), Path(sys.argv[2])
    df = pd.DataFrame({"writer": [me] * 500, "row": range(500), "text": ["x" * 40] * 500})
    for _ in range(60):
        write_frame(df, path)
        back = pd.read_csv(path)  # whatever writer's table it is now, it is whole
        assert len(back) == 500 and back["writer"].nunique() == 1, (len(back), back["writer"].unique())
""")


def test_concurrent_write_frame_never_mixes_tables(tmp_path):
    path = tmp_path / "sweep.csv"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(k), str(path)], stderr=subprocess.PIPE,
                              text=True) for k in range(3)]
    errors = [(p.wait(timeout=HANG_GUARD), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    assert all(code == 0 for code, _ in errors), [err[-1500:] for code, err in errors if code]
    import pandas as pd
    assert len(pd.read_csv(path)) == 500
    assert not [p.name for p in tmp_path.iterdir() if p.name != "sweep.csv" and not p.name.startswith(".elk.lock")]


def test_two_identical_sweeps_into_one_folder(tmp_path):
    """The same sweep started twice at once into one folder, several times: every point exactly once, no
    corrupt or stray file, and a sweep.csv pandas reads with one row per point and design."""
    import pandas as pd
    argv = ["-m", "elk.cli.main", "sweep", "--model", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2",
            "--vary", "hbm_tbps=4:10:2", "--designs", "elk-dyn,ideal", "--workers", "1", "--quiet"]
    keys = {p.key() for p in grid(**TINY, hbm_tbps=[4, 6, 8, 10], designs="elk-dyn,ideal")}
    for attempt in range(3):
        out = tmp_path / f"try{attempt}"
        procs = [subprocess.Popen([sys.executable, *argv, "--out", str(out)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [p.communicate(timeout=HANG_GUARD) for p in procs]
        for p, (stdout, stderr) in zip(procs, results):
            assert p.returncode == 0, stderr[-2000:]
        assert {p.stem for p in (out / "points").glob("*.json")} == keys
        assert sorted(p.name for p in (out / "points").iterdir()) == sorted(f"{k}.json" for k in keys)
        for k in keys:
            assert json.loads((out / "points" / f"{k}.json").read_text())["key"] == k
        df = pd.read_csv(out / "sweep.csv")
        assert len(df) == 2 * len(keys) and set(df["key"]) == keys
        assert (df.groupby("key")["design"].apply(sorted) == pd.Series([["elk-dyn", "ideal"]] * len(keys),
                                                                        index=sorted(keys))).all()
        json.loads((out / "studies" / "sweep.json").read_text())
        strays = [p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".corrupt"))]
        assert not strays, strays


# ------------------------------------------------------------------ the folder stops being writable
def test_folder_unwritable_mid_sweep_is_one_line_and_resumes(tmp_path, capsys, monkeypatch):
    """The points folder refuses new files after the first point (a read-only remount, a full quota): one
    line naming the folder, exit status 2; the finished point stays, and a rerun resumes from it."""
    from elk import atomic
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2",
            "--vary", "hbm_tbps=4:8:2", "--designs", "elk-dyn,ideal", "--out", str(out), "--workers", "1", "--quiet"]
    made = []

    def refusing(file, *args, **kwargs):  # every atomic write opens its temporary file through this name
        if Path(file).parent == out / "points":
            made.append(file)
            if len(made) > 1:
                raise PermissionError(13, "Permission denied")
        return open(file, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", refusing, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"elk: error: cannot write to the output folder {out}: Permission denied"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert len(files(out)) == 1
    assert not list((out / "points").glob(".*.tmp"))  # the refused write left no temporary file behind
    monkeypatch.delattr(atomic, "open")
    assert main(argv) == 0
    assert "(2 run now, 1 already done)" in capsys.readouterr().out


def test_local_pool_with_two_workers(tmp_path):
    out = tmp_path / "pool"
    pts = grid(**TINY, hbm_tbps=[4, 8, 16], topology=["all-to-all", "mesh"])
    df = run_study(pts, out, workers=2, progress=False)
    assert len(df) == 30 and (df["status"] == "ok").all()
    serial = run_study(pts, tmp_path / "serial", workers=1, progress=False)
    cols = ["key", "design", "latency_ms"]
    assert df[cols].sort_values(cols[:2]).reset_index(drop=True).equals(
        serial[cols].sort_values(cols[:2]).reset_index(drop=True))
    pids = {json.loads(p.read_text())["pid"] for p in (out / "points").glob("*.json")}
    assert os.getpid() not in pids


def test_export(tmp_path):
    out = tmp_path / "study"
    run_study([Point(**TINY)], out, workers=1, progress=False)
    path = export_results(out, tmp_path / "r.csv")
    import pandas as pd
    assert len(pd.read_csv(path)) == 5
    auto = export_results(out)
    assert auto.suffix in (".csv", ".parquet") and auto.parent == out


def test_grouping_puts_table_sharing_points_together():
    from elk.study.execute import Dispatcher, Plan
    pts = grid(model="tiny", batch=[4, 8], seq=128, chip="ipu-mk2", hbm_tbps=[4, 8, 16])
    plan = Plan.of(pts)
    assert [len(g) for g in plan.groups.values()] == [3, 3]  # HBM bandwidth does not change plan tables
    d = Dispatcher(plan)
    first, second = d.next(), d.next()
    assert first[0] == "tables" and second[0] == "tables"
    assert d.next() is None  # points wait for their tables
    d.tables_done(first[1])
    kind, p = d.next()
    assert kind == "point" and p.resolved.table_group == first[1].resolved.table_group


def test_a_compute_and_noc_sweep_builds_its_tables_in_one_task():
    """Table groups differing only in compute/NoC scale are one family: one table task builds every group's
    tables (one enumeration per operator), and every group's points are released when it is done."""
    from elk.study.execute import Dispatcher, Plan
    pts = grid(model="tiny", batch=4, seq=128, chip="ipu-mk2", compute_scale=[0.75, 1.5], noc_scale=[1.0, 1.5],
               topology=["all-to-all", "mesh"])
    plan = Plan.of(pts)
    assert len(plan.groups) == 8 and len({p.resolved.table_family for p in pts}) == 2
    d = Dispatcher(plan)
    first, second = d.next(), d.next()
    assert first[0] == "tables" and second[0] == "tables" and d.next() is None
    assert first[1].resolved.table_family != second[1].resolved.table_family
    chips = d.family_chips(first[1])
    assert chips[0] == first[1].resolved.chip and len(chips) == 4
    assert {c.enumeration_key() for c in chips} == {first[1].resolved.chip.enumeration_key()}
    d.tables_done(first[1])
    released = [d.next() for _ in range(4)]
    assert all(kind == "point" and p.resolved.table_family == first[1].resolved.table_family for kind, p in released)
    assert d.next() is None  # the other family still waits for its task


# ------------------------------------------------------------------ elk sweep
def test_sweep_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2",
            "--vary", "hbm_tbps=4:8:2", "--vary", "topology=all-to-all,mesh", "--out", str(out),
            "--workers", "1", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "elk-full ms" in text and "ideal ms" in text and "6 points (6 run now, 0 already done)" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("tiny")]
    assert [ln.split()[1:3] for ln in lines] == [["4", "all-to-all"], ["4", "mesh"], ["6", "all-to-all"],
                                                 ["6", "mesh"], ["8", "all-to-all"], ["8", "mesh"]]
    assert main(argv) == 0
    assert "(0 run now, 6 already done)" in capsys.readouterr().out
    assert list(out.glob("sweep.*"))


def test_sweep_over_load_models_with_bound_columns(tmp_path, capsys):
    out = tmp_path / "lm"
    argv = ["sweep", "--model", "tiny", "--batch", "4", "--seq", "128", "--chip", "ipu-mk2", "--designs",
            "elk-dyn,ideal", "--vary", "load_model=fluid,rigid", "--out", str(out), "--workers", "1", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "bound ms" in text
    assert [ln.split()[1] for ln in text.splitlines() if ln.startswith("tiny")] == ["fluid", "rigid"]
    df = load_results(out)
    assert {"load_model", "bound_ms", "bound_name", "gap_to_bound"} <= set(df.columns)
    assert sorted(df["load_model"].unique()) == ["fluid", "rigid"] and df["key"].nunique() == 2
    assert (df["bound_ms"] > 0).all() and df["bound_name"].notna().all()
    dyn = df[df["design"] == "elk-dyn"]
    assert (dyn["gap_to_bound"] >= -1e-9).all()
    assert (dyn["latency_ms"] >= dyn["bound_ms"] * (1 - 1e-9)).all()
    assert df.loc[df["design"] == "ideal", "gap_to_bound"].isna().all()  # a relaxed schedule has no certified gap
    rec = json.loads(next((out / "points").glob("*.json")).read_text())
    assert rec["schema"] == SCHEMA_VERSION == 2 and rec["bound_name"]
    assert rec["knobs"]["load_model"] in ("fluid", "rigid")
    # the chip's bounds were proven once, by the first point, and the other reused that proof
    recs = sorted((json.loads(f.read_text()) for f in (out / "points").glob("*.json")),
                  key=lambda r: r["finished_at"])
    assert [r["bound_shared"] for r in recs] == [False, True]
    assert recs[0]["bound_seconds"] > 0 and recs[1]["bound_seconds"] == 0
    assert recs[0]["bounds"] == recs[1]["bounds"] and recs[0]["bound_ms"] == recs[1]["bound_ms"]
    assert len(list((out / "bounds").glob("*.json"))) == 1
    assert "ELK_STUDY_BOUNDS" not in os.environ  # set for the run only


def test_pool_workers_share_a_chips_bounds(tmp_path):
    """Pool workers start from a forkserver, not from the study's process: they get the proofs folder through
    their initializer, so the fluid and rigid points of a chip prove its bounds once between them."""
    pts = grid(**TINY, designs="elk-dyn", hbm_tbps=[8, 16], load_model=["fluid", "rigid"])
    df = run_study(pts, tmp_path / "s", workers=2, progress=False)
    recs = [json.loads(f.read_text()) for f in (tmp_path / "s" / "points").glob("*.json")]
    assert sorted(r["bound_shared"] for r in recs) == [False, False, True, True]
    for hbm in (8, 16):
        mine = [r for r in recs if r["knobs"]["hbm_tbps"] == hbm]
        assert {r["bound_shared"] for r in mine} == {False, True}
        assert mine[0]["bound_ms"] == mine[1]["bound_ms"]
    assert len(list((tmp_path / "s" / "bounds").glob("*.json"))) == 2 and df["bound_ms"].notna().all()


def test_shared_bounds_are_the_bounds_a_point_proves_alone(tmp_path, monkeypatch):
    """A point that reuses a study's proof gets exactly the bounds it would have proven itself; one that finds
    another process proving its chip compiles first and then waits for that proof instead of proving again."""
    from filelock import FileLock

    from elk.study.execute import execute_point
    from elk.study.shared_bounds import BOUND_CACHE_ENV, SharedBounds, bound_key

    fluid, rigid = Point(**TINY, designs="elk-dyn"), Point(**TINY, designs="elk-dyn", load_model="rigid")
    alone = execute_point(rigid)
    monkeypatch.setenv(BOUND_CACHE_ENV, str(tmp_path / "b"))
    first = execute_point(fluid)
    shared = execute_point(rigid)
    assert first["bound_shared"] is False and shared["bound_shared"] is True
    def proven(rec):
        return [(b["name"], b["ms"], b["status"]) for b in rec["bounds"]]
    assert proven(shared) == proven(alone) and shared["bound_ms"] == alone["bound_ms"]
    assert [r["gap_to_bound"] for r in shared["rows"]] == [r["gap_to_bound"] for r in alone["rows"]]
    # a busy key: without waiting the cache says so (None), and proves nothing
    res = rigid.resolved
    other = Point(**TINY, designs="elk-dyn", hbm_tbps=4).resolved
    key = bound_key(other.table_group, other.chip, other.bound, other.bound_time_limit)
    cache = SharedBounds(tmp_path / "b")
    with FileLock(str(tmp_path / "b" / f"{key}.json") + ".lock"):
        assert cache.get_or_prove(key, lambda: pytest.fail("proved a busy key"), wait=False) == (None, False)
    assert key != bound_key(res.table_group, res.chip, res.bound, res.bound_time_limit)


def test_sweep_prints_why_points_failed(tmp_path, capsys):
    """1 KiB of SRAM cannot hold tiny's operators: the table says "error", and the reason is printed, on
    the run that computed it and on a rerun that only reads it back."""
    argv = ["sweep", "--model", "tiny", "--chip", "ipu-mk2", "--vary", "sram_kib=1,624", "--designs", "elk-dyn",
            "--out", str(tmp_path / "s"), "--workers", "1", "--quiet"]
    for _ in range(2):
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert "1 point(s) failed" in out
        line = next(ln for ln in out.splitlines() if ln.strip().startswith("model=tiny sram_kib=1:"))
        assert "error: OperatorDoesNotFitError" in line and "1024 bytes of SRAM" in line
        assert "sram_kib=624" not in out


@pytest.mark.parametrize("vary, message", [
    ("hbm=4", "unknown knob"), ("hbm_tbps=8:4:1", "STOP >= START"), ("hbm_tbps=4:8:0", "STEP > 0"),
    ("cores=1.5", "not an integer"), ("topology=1:2:1", "numeric knob"), ("hbm_tbps", "KNOB="),
    ("hbm_tbps=x,y", "not a number"), ("model=tiny", "unknown knob")])
def test_sweep_cli_errors(tmp_path, capsys, vary, message):
    assert main(["sweep", "--model", "tiny", "--vary", vary, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elk: error:") and message in err and err.count("\n") == 1


def test_sweep_cli_unwritable_folder(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["sweep", "--model", "tiny", "--out", str(tmp_path / "f" / "x")]) == 2
    assert "not writable" in capsys.readouterr().err


# ------------------------------------------------------------------ Dask
@pytest.mark.cluster
def test_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster
    out = tmp_path / "dask"
    pts = grid(**TINY, hbm_tbps=[4, 8, 16])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        df = run_study(pts, out, address=cluster.scheduler_address, progress=False)
        assert len(df) == 15 and (df["status"] == "ok").all()
        with Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
    pids = {json.loads(p.read_text())["pid"] for p in (out / "points").glob("*.json")}
    assert pids <= worker_pids
    again = run_study(pts, out, address="local", workers=1, progress=False)
    assert again.attrs["study"]["ran"] == 0


@pytest.mark.solver
def test_carried_schedules_keep_exact_curves_from_rising(tmp_path):
    """Along HBM bandwidth and SRAM, each point's exact design may start from a dominated point's schedule."""
    pts = grid(model="tiny", batch=4, seq=128, chip="ipu-mk2", designs="elk-dyn,milp", hbm_tbps=[1, 2, 4],
               sram_kib=[96, 624], window=4, time_limit=2, workers=1)
    df = run_study(pts, tmp_path / "out", workers=1, progress=False, carry=True)
    exact = df[df.design == "milp"].sort_values(["sram_kib", "hbm_tbps"])
    for _, chain in exact.groupby("sram_kib"):
        lat = chain.latency_ms.to_numpy()
        assert (lat[1:] <= lat[:-1] + 1e-12).all(), lat  # never rises with more bandwidth
    big = exact[exact.sram_kib == 624].set_index("hbm_tbps").latency_ms
    small = exact[exact.sram_kib == 96].set_index("hbm_tbps").latency_ms
    assert (big <= small + 1e-12).all()  # nor with more SRAM
    assert exact.warm_start.str.contains("@hbm_tbps=").any()  # some point did start from a carried schedule
    # a rerun redoes nothing
    again = run_study(pts, tmp_path / "out", workers=1, progress=False, carry=True)
    assert again.attrs["study"]["ran"] == 0
