"""The solver studies (``python -m experiments.gap_study``, ``experiments.tune_solver``) end to end on the tiny model.

They run in-process with one-second limits: what matters here is that the CSVs
have their columns and one row per run (per configuration x design for the gap
study), that figures are real PNGs, that the summaries count what they say, and
that a rerun does not redo or duplicate finished work.
"""
from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

pytestmark = pytest.mark.solver

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str) -> ModuleType:
    """Import a script of the experiments package (``experiments.gap_study``...), as ``python -m`` runs it."""
    return importlib.import_module(f"experiments.{name}")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


# -- gap study ---------------------------------------------------------------------------------------------------

GAP_ARGS = ["--models", "tiny", "--quick", "--exact-time-limit", "2", "--window-time-limit", "1",
            "--bound-time-limit", "5", "--workers", "1", "--no-progress", "--bound", "lp",
            "--exact-designs", "periodic,milp"]


@pytest.fixture(scope="module")
def gap_run(tmp_path_factory):
    """The gap study's quick subset on the tiny model, shared by the checks below (and its printed output)."""
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


def test_gap_study_quick_grid():
    gap = load("gap_study")
    quick = gap.grid(["tiny"], quick=True)
    assert len(quick) == 4
    assert {(c.topology, c.hbm_tbps) for c in quick} == {("all-to-all", 16.0)}
    assert {(c.sram_requested_kib, c.load_model) for c in quick} == {(s, m) for s in (624.0, 192.0)
                                                                     for m in ("fluid", "rigid")}
    full = gap.grid(list(gap.LLMS), quick=False)
    assert len(full) == 96 and len({c.point(gap.Settings()).key() for c in full}) == 96
    p = full[0].point(gap.Settings())
    # heuristics, Ideal for reference, then periodic, the MILP windows (which start from periodic) and the
    # relaxation's own schedule
    assert p.resolved.designs == ("basic", "static", "elk-dyn", "elk-full", "ideal", "periodic", "milp", "lp-guided")
    assert p.resolved.design_options["periodic"].time_limit == 60.0
    assert p.resolved.design_options["periodic"].deterministic_time == gap.PERIODIC_DETERMINISTIC_TIME
    assert p.resolved.design_options["periodic"].workers == 1
    assert p.resolved.design_options["milp"].time_limit == gap.WINDOW_TIME_LIMIT == 2.0
    assert p.resolved.design_options["milp"].window == 8
    assert p.resolved.design_options["lp-guided"].time_limit == 5.0  # its own limit, not the window limit
    assert (p.resolved.bound, p.resolved.bound_time_limit) == ("layers", gap.BOUND_TIME_LIMIT)
    args = gap.parse_args([])  # the command line's defaults are the Settings' defaults
    assert (args.exact_designs, args.exact_time_limit, args.bound) == ("periodic,milp,lp-guided", 60.0, "layers")
    assert args.periodic_deterministic_time == gap.Settings().periodic_deterministic_time
    assert (args.window_time_limit, args.guided_time_limit, args.bound_time_limit) == \
        (gap.Settings().window_time_limit, gap.Settings().guided_time_limit, gap.Settings().bound_time_limit)
    assert gap.parse_args(["--periodic-deterministic-time", "none"]).periodic_deterministic_time is None
    assert args.periodic_workers == gap.Settings().periodic_workers == 1


def test_gap_study_refuses_bad_counts_and_time_limits_before_any_work(tmp_path, capsys):
    gap = load("gap_study")
    for flag in ("--periodic-workers", "--solver-workers", "--workers", "--window"):
        assert gap.main(["--models", "tiny", "--quick", flag, "0", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err == f"gap_study: error: {flag} must be a positive integer, got 0\n"
    for flag in ("--exact-time-limit", "--window-time-limit", "--guided-time-limit", "--bound-time-limit"):
        assert gap.main(["--models", "tiny", "--quick", flag, "0", "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"gap_study: error: {flag} must be a positive number of seconds, got 0\n"
    for value in ("0", "-1", "inf", "nan"):
        assert gap.main(["--models", "tiny", "--quick", "--periodic-deterministic-time", value,
                         "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err.startswith("gap_study: error: --periodic-deterministic-time must be a "
                                                  "positive number or 'none'")
    assert not (tmp_path / "out").exists()


def test_gap_study_knows_every_exact_design_in_run_order():
    """The gap study may run every exact design the registry has, in its order, except ``optimal`` (which refuses
    programs as large as the grid's LLMs); lns gets the window time limit, lp-guided its own."""
    from solvers.registry import EXACT_DESIGNS
    gap = load("gap_study")
    assert gap.EXACT_KNOWN == tuple(d for d in EXACT_DESIGNS if d != "optimal")
    assert gap.DESIGN_ORDER == (*gap.HEURISTICS, "ideal", *gap.EXACT_KNOWN, "best")
    settings = gap.Settings(exact_designs=("lns", "periodic", "lp-guided"))
    p = gap.grid(["tiny"], quick=True)[0].point(settings)
    assert p.resolved.designs[-3:] == ("periodic", "lp-guided", "lns")
    assert p.resolved.design_options["lp-guided"].time_limit == 5.0
    assert p.resolved.design_options["lns"].time_limit == gap.WINDOW_TIME_LIMIT
    assert gap.grid(["tiny"], quick=True)[0].point(gap.Settings(guided_time_limit=7.0)) \
        .resolved.design_options["lp-guided"].time_limit == 7.0
    assert gap.parse_args(["--exact-designs", "lp-guided,lns"]).exact_designs == "lp-guided,lns"


def test_study_knobs_the_studies_rely_on():
    """periodic_time_limit and the bound level reach the compile; unset (or default) they do not change keys."""
    from elk.study import Point
    from elk.study.point import StudyError
    base = Point(model="tiny", designs="paper,periodic,milp", time_limit=5.0)
    assert Point(model="tiny", bound="lp", bound_time_limit=30.0).key() == Point(model="tiny").key()
    assert Point(model="tiny", bound="milp").key() != Point(model="tiny").key()
    assert Point(model="tiny", bound="milp").resolved.knobs["bound"] == "milp"
    longer = Point(model="tiny", designs="paper,periodic,milp", time_limit=5.0, periodic_time_limit=30.0)
    assert longer.key() != base.key()
    assert longer.resolved.design_options["periodic"].time_limit == 30.0
    assert longer.resolved.design_options["milp"].time_limit == 5.0
    assert base.resolved.design_options["periodic"].time_limit == 5.0
    steady = Point(model="tiny", designs="paper,periodic,milp", time_limit=5.0, periodic_deterministic_time=2.0)
    assert steady.key() != base.key()
    assert steady.resolved.design_options["periodic"].deterministic_time == 2.0
    assert base.resolved.design_options["periodic"].deterministic_time is None
    assert getattr(steady.resolved.design_options["milp"], "deterministic_time", None) is None
    # without the periodic design the knob means nothing, so it is not part of the key
    assert Point(model="tiny", designs="paper,milp", periodic_time_limit=30.0).key() == \
        Point(model="tiny", designs="paper,milp").key()
    assert Point(model="tiny", designs="paper,milp", periodic_deterministic_time=2.0).key() == \
        Point(model="tiny", designs="paper,milp").key()
    guided = Point(model="tiny", designs="paper,milp,lp-guided", time_limit=5.0, guided_time_limit=9.0)
    assert guided.key() != Point(model="tiny", designs="paper,milp,lp-guided", time_limit=5.0).key()
    assert guided.resolved.design_options["lp-guided"].time_limit == 9.0
    assert guided.resolved.design_options["milp"].time_limit == 5.0
    assert Point(model="tiny", designs="paper,milp", guided_time_limit=9.0).key() == \
        Point(model="tiny", designs="paper,milp").key()
    with pytest.raises(StudyError, match="unknown bound"):
        Point(model="tiny", bound="exact")


def test_gap_study_table(gap_run):
    gap, out, printed = gap_run
    rows = read_rows(out / "gaps.csv")
    assert list(rows[0]) == list(gap.COLUMNS)
    assert len(rows) == 4 * (7 + 1)  # 4 configurations x (7 designs + the best schedule)
    assert {r["load_model"] for r in rows} == {"fluid", "rigid"} and {r["sram_kib"] for r in rows} == {"624.0",
                                                                                                         "192.0"}
    for r in rows:
        assert r["status"] == "ok" and r["valid"] == "True", r
        bound = float(r["bound_ms"])
        families = {f: r[f"bound_{f.replace('-', '_')}_ms"] for f in gap.BOUND_FAMILIES}
        # level lp: the MILP and the layers level's families are not computed, the SRAM window only where a conflict exists
        assert all(families[f] for f in gap.BOUND_FAMILIES
                   if f not in ("milp", "sram-window", "steady-state", "multi-layer")), families
        assert not families["milp"]
        assert max(float(v) for v in families.values() if v) == pytest.approx(bound)
        assert r["bound_name"] in gap.BOUND_FAMILIES
        if r["design"] == "ideal":
            assert r["certified_gap_pct"] == "" and r["relaxed"] == "True"
        else:
            gap_pct = float(r["certified_gap_pct"])
            assert gap_pct >= -1e-6 and gap_pct == pytest.approx(100 * (float(r["latency_ms"]) / bound - 1))
    for cfg in {r["key"] for r in rows}:
        mine = {r["design"]: r for r in rows if r["key"] == cfg}
        best = mine["best"]
        strict = [float(r["latency_ms"]) for d, r in mine.items() if d not in ("ideal", "best")]
        if best["best_design"].endswith(gap.RIGID_SUFFIX):  # the chip's rigid schedule, faster (fluid only)
            assert best["load_model"] == "fluid" and float(best["latency_ms"]) < min(strict)
        else:
            assert float(best["latency_ms"]) == pytest.approx(min(strict))
            assert best["best_design"] in mine
        heur = min(float(mine[d]["latency_ms"]) for d in ("basic", "static", "elk-dyn", "elk-full"))
        assert float(mine["milp"]["latency_ms"]) <= float(mine["periodic"]["latency_ms"]) + 1e-12 <= heur + 2e-12
        assert mine["milp"]["warm_start"] in mine  # the fastest schedule before it (periodic's unless tied)
        # the periodic design's layer solve is recorded in the solver columns, like the windows' solves
        assert float(mine["periodic"]["solve_seconds"]) > 0
        assert mine["periodic"]["proven_optimal_pct"] in ("0.0", "100.0") and mine["milp"]["windows"]
        assert float(mine["milp"]["gain_over_best_heuristic_pct"]) == pytest.approx(
            100 * (heur - float(mine["milp"]["latency_ms"])) / heur)
    assert "certified gap (%) per configuration and design" in printed and "tiny all-to-all 16 TB/s" in printed


def test_gap_study_figure_and_summary(gap_run):
    _, out, _ = gap_run
    assert_png(out / "certified_gaps.png")
    text = (out / "gap_study.md").read_text()
    assert "# Certified optimality gaps" in text
    assert "Certified gap of the best schedule (any design) <= 3% at **4 of 4** configurations" in text
    assert "## Designs" in text and "## Bounds" in text and "Bound that binds (configurations):" in text
    assert "Ideal (relaxed schedule) is below the best proven bound at 0 of 4" in text
    assert "best-heuristic certified gap above 2%" in text  # tiny's best heuristic is within 2% everywhere


def test_gap_study_rerun_computes_nothing(gap_run):
    gap, out, _ = gap_run
    points = sorted(p.name for p in (out / "results" / "points").glob("*.json"))
    mtimes = [(out / "results" / "points" / p).stat().st_mtime_ns for p in points]
    before = (out / "gaps.csv").read_text()
    run_main(gap, [*GAP_ARGS, "--out", str(out)])
    assert sorted(p.name for p in (out / "results" / "points").glob("*.json")) == points
    assert [(out / "results" / "points" / p).stat().st_mtime_ns for p in points] == mtimes
    assert (out / "gaps.csv").read_text() == before


def test_gap_study_reports_a_study_stopped_early(gap_run, tmp_path):
    """--stored-only runs nothing and reports the configurations already stored (here: 2 of the 4)."""
    import shutil
    gap, out, _ = gap_run
    part = tmp_path / "part"
    shutil.copytree(out, part)
    for p in sorted((part / "results" / "points").glob("*.json"))[2:]:
        p.unlink()
    printed = run_main(gap, [*GAP_ARGS, "--out", str(part), "--stored-only"])
    assert "2 configurations stored" in printed
    assert len(list((part / "results" / "points").glob("*.json"))) == 2  # nothing was run
    assert len(read_rows(part / "gaps.csv")) == 2 * (7 + 1)


def no_compiling(monkeypatch) -> None:
    """Make every way of compiling a design fail: --rebound must only prove bounds."""
    def refuse(*args, **kwargs):
        raise AssertionError("--rebound compiled a design")

    for target in ("solvers.run_plan.run_plan", "elk.driver.api.compile", "elk.study.run_study",
                   "elk.study.execute.execute_point"):
        monkeypatch.setattr(target, refuse)


def test_gap_study_rebound_reproves_bounds_without_compiling(gap_run, tmp_path, monkeypatch):
    """--rebound re-certifies gaps.csv alone (no point store): stored latencies as they were, one bound
    computation per chip shared by fluid and rigid, the stored bound kept for comparison, and no bound above a
    valid latency."""
    import shutil
    gap, out, _ = gap_run
    reb = load("gap_rebound")
    part = tmp_path / "rebound"
    shutil.copytree(out, part)
    shutil.rmtree(part / "results")
    no_compiling(monkeypatch)
    printed = run_main(gap, [*GAP_ARGS, "--out", str(part), "--rebound"])
    stored, all_rows = read_rows(out / "gaps.csv"), read_rows(part / "gaps.csv")
    assert list(all_rows[0]) == [*gap.COLUMNS, *reb.REBOUND_COLUMNS]
    rows = [r for r in all_rows if r["design"] != "lp-guided"]  # the chip's guided schedule: new rows, where valid
    assert len(rows) == len(stored)
    for old, new in zip(stored, rows):
        moved = new["design"] == "best" and new["best_design"] == "lp-guided"  # only to a faster guided schedule
        for keep in ("model", "sram_kib", "load_model", "design", "valid", "key"):
            assert new[keep] == old[keep]
        if moved:
            assert float(new["latency_ms"]) < float(old["latency_ms"])
        else:
            assert (new["latency_ms"], new["best_design"]) == (old["latency_ms"], old["best_design"])
        assert (new["old_bound_ms"], new["old_bound_name"]) == (old["bound_ms"], old["bound_name"])
        assert new["bound_reproven"] == "True"
        bound = float(new["bound_ms"])
        assert bound == pytest.approx(float(old["bound_ms"]), rel=1e-4)  # the same code proved both
        if new["design"] != "ideal" and new["valid"] == "True":
            assert float(new["latency_ms"]) >= bound * (1 - 1e-9)
            assert float(new["certified_gap_pct"]) == pytest.approx(100 * (float(new["latency_ms"]) / bound - 1))
    chips = json.loads((part / "rebound.json").read_text())
    assert len(chips) == 2  # tiny at 624 and 192 KiB: the fluid and rigid configurations share a computation
    for size in ("624.0", "192.0"):
        assert len({r["bound_ms"] for r in rows if r["sram_kib"] == size}) == 1
    text = (part / "gap_study.md").read_text()
    assert "**Re-certified.**" in text and "## Re-proven bounds" in text and "2 of 2 chips" in text
    assert text.startswith("# Certified optimality gaps\n\n`python -m experiments.gap_study --models tiny")
    assert_png(part / "certified_gaps.png")
    assert "certified gap (%) per configuration and design" in printed


def test_gap_study_rebound_refuses_a_bound_above_a_valid_latency(gap_run, tmp_path, monkeypatch, capsys):
    """A stored valid latency below the re-proven bound is a bug in a bound: reported, nothing rewritten."""
    import shutil
    import pandas as pd
    gap, out, _ = gap_run
    part = tmp_path / "bad"
    shutil.copytree(out, part)
    frame = pd.read_csv(part / "gaps.csv")
    frame.loc[frame["design"] == "basic", "latency_ms"] = frame["bound_ms"] * 0.5  # a "schedule" beating it
    frame.to_csv(part / "gaps.csv", index=False)
    before = {p: (part / p).read_bytes() for p in ("gaps.csv", "gap_study.md", "certified_gaps.png")}
    no_compiling(monkeypatch)
    assert gap.main([*GAP_ARGS, "--out", str(part), "--rebound"]) == 1
    said = capsys.readouterr().out
    assert "a re-proven bound exceeds a stored valid latency" in said and "tiny all-to-all 16 TB/s" in said
    assert {p: (part / p).read_bytes() for p in before} == before
    assert (part / "rebound.json").is_file()  # the bounds proven are kept for looking into


def test_rebound_frame_applies_a_bound_only_where_it_holds():
    """A family proven for rigid loads only raises the rigid configuration's bound; a chip not re-proven keeps
    its stored bound (and says so)."""
    import pandas as pd
    gap, reb = load("gap_study"), load("gap_rebound")
    rows = []
    for model in ("a", "b"):
        for lm in ("fluid", "rigid"):
            for design, ms in (("elk-full", 12.0), ("best", 12.0)):
                rows.append({"model": model, "topology": "mesh", "hbm_tbps": 8.0, "sram_kib": 624.0,
                             "sram_requested_kib": 624.0, "load_model": lm, "design": design, "latency_ms": ms,
                             "valid": True, "relaxed": False, "certified_gap_pct": 20.0, "bound_ms": 10.0,
                             "bound_name": "lp", "best_heuristic_ms": 12.0})
    frame = pd.DataFrame(rows)
    for col in gap.COLUMNS:
        if col not in frame:
            frame[col] = None
    configs = reb.stored_configs(frame)
    assert len(configs) == 4
    proven = reb.Reproven((reb.FamilyBound("lp", 10.5, "optimal", 1.0, ("fluid", "rigid")),
                           reb.FamilyBound("layer", 11.0, "optimal", 1.0, ("rigid",))), seconds=2.0)
    new = reb.rebound_frame(frame, configs, {reb.ChipKey("a", "mesh", 8.0, 624.0): proven})
    got = {(r["model"], r["load_model"]): (r["bound_ms"], r["bound_name"], bool(r["bound_reproven"]))
           for _, r in new[new["design"] == "best"].iterrows()}
    assert got == {("a", "fluid"): (10.5, "lp", True), ("a", "rigid"): (11.0, "layer", True),
                   ("b", "fluid"): (10.0, "lp", False), ("b", "rigid"): (10.0, "lp", False)}
    a_rigid = new[(new["model"] == "a") & (new["load_model"] == "rigid")].iloc[0]
    assert a_rigid["certified_gap_pct"] == pytest.approx(100 * (12.0 / 11.0 - 1))
    assert (a_rigid["old_bound_ms"], a_rigid["old_certified_gap_pct"]) == (10.0, 20.0)
    with pytest.raises(reb.BoundAboveLatency, match="a mesh 8 TB/s 624 KiB rigid elk-full"):
        too_high = reb.Reproven((reb.FamilyBound("lp", 12.5, "optimal", 1.0, ("fluid", "rigid")),), seconds=1.0)
        reb.rebound_frame(frame, configs, {reb.ChipKey("a", "mesh", 8.0, 624.0): too_high})


def test_rebound_adds_the_guided_schedule_where_it_is_valid_and_moves_the_best_to_it():
    """The chip's lp-guided schedule gives a row under each load model it is valid under; the best row moves to
    it only where it is faster, and its certified gap is taken against the re-proven bound."""
    import pandas as pd
    gap, reb = load("gap_study"), load("gap_rebound")
    rows = []
    for lm in ("fluid", "rigid"):
        for design, ms in (("elk-full", 12.0), ("best", 12.0)):
            rows.append({"model": "a", "topology": "mesh", "hbm_tbps": 8.0, "sram_kib": 624.0,
                         "sram_requested_kib": 624.0, "load_model": lm, "design": design, "latency_ms": ms,
                         "valid": True, "relaxed": False, "certified_gap_pct": 20.0, "bound_ms": 10.0,
                         "bound_name": "lp", "best_heuristic_ms": 12.0, "best_design": "elk-full"})
    ran = dict(rows[2], design="lp-guided", latency_ms=12.0, warm_start="elk-full")  # the study ran the design
    frame = pd.DataFrame(rows[:3] + [ran] + rows[3:])
    for col in gap.COLUMNS:
        if col not in frame:
            frame[col] = None
    configs = reb.stored_configs(frame)
    proven = reb.Reproven((reb.FamilyBound("lp", 10.5, "optimal", 1.0, ("fluid", "rigid")),), seconds=2.0,
                          guided_ms={"fluid": 11.0, "rigid": 11.5}, guided_seconds=1.5)
    new = reb.rebound_frame(frame, configs, {reb.ChipKey("a", "mesh", 8.0, 624.0): proven})
    fluid = new[new["load_model"] == "fluid"].set_index("design")
    rigid = new[new["load_model"] == "rigid"].set_index("design")
    assert list(fluid.index) == ["elk-full", "lp-guided", "best"]
    assert list(rigid.index) == ["elk-full", "lp-guided", "best"] and rigid.loc["lp-guided", "latency_ms"] == 12.0
    assert fluid.loc["best", "latency_ms"] == 11.0 and fluid.loc["best", "best_design"] == "lp-guided"
    assert fluid.loc["best", "certified_gap_pct"] == pytest.approx(100 * (11.0 / 10.5 - 1))
    assert fluid.loc["lp-guided", "gain_over_best_heuristic_pct"] == pytest.approx(100 / 12)
    assert rigid.loc["best", "latency_ms"] == 12.0 and rigid.loc["best", "best_design"] == "elk-full"
    again = reb.Reproven.from_json(proven.to_json())
    assert again.guided_ms == {"fluid": 11.0, "rigid": 11.5} and again.guided_seconds == 1.5


def test_gap_study_refresh_compiles_one_design_again(gap_run, tmp_path):
    """--refresh with the real compile step (tests/test_gap_refresh.py fakes it): the code that ran the study gives
    each refreshed row its stored latency back, so nothing else moves; only that design's rigid rows are marked."""
    import shutil
    gap, out, _ = gap_run
    part = tmp_path / "refresh"
    shutil.copytree(out, part)
    shutil.rmtree(part / "results")  # a refresh reads gaps.csv alone
    printed = run_main(gap, ["--refresh", "elk-full", "--load-models", "rigid", "--out", str(part)])
    stored, rows = read_rows(out / "gaps.csv"), read_rows(part / "gaps.csv")
    assert [r["design"] for r in rows] == [r["design"] for r in stored]
    for old, new in zip(stored, rows):
        mine = new["design"] == "elk-full" and new["load_model"] == "rigid"
        assert new["refreshed"] == str(mine)
        assert new["old_latency_ms"] == (old["latency_ms"] if mine else "")
        for keep in ("latency_ms", "valid", "best_design", "best_heuristic", "bound_ms"):
            if keep == "latency_ms" and old[keep]:
                assert float(new[keep]) == pytest.approx(float(old[keep]), rel=1e-9), (new["design"], keep)
            else:
                assert new[keep] == old[keep], (new["design"], keep)
    assert printed.count("elk-full: ") == 2  # tiny at 624 and 192 KiB, rigid
    assert "The best schedule moved at **0 of 2**" in (part / "gap_study.md").read_text()


def test_gap_study_rebound_needs_a_finished_study(tmp_path, capsys):
    gap = load("gap_study")
    assert gap.main(["--rebound", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gap_study: error: --rebound needs a finished study") and err.count("\n") == 1


def test_gap_study_sram_ladder(tmp_path):
    """A size a model does not fit in is replaced by the smallest of 400, 448, 512, ... KiB it fits (cached)."""
    gap = load("gap_study")
    assert gap.ladder(192.0) == [192.0, 400.0, 448.0, 512.0, 576.0, 624.0]
    calls = []

    def probe(model, kib):
        calls.append((model, kib))
        needs = {"big": 440.0, "huge": 10_000.0}.get(model, 0.0)
        return kib >= needs, f"operator head: needs at least {needs:g} KiB per core, but a core has {kib:g} KiB"

    assert gap.smallest_fitting_sram("small", 192.0, probe) == (192.0, "")
    size, note = gap.smallest_fitting_sram("big", 192.0, probe)
    assert size == 448.0
    assert note == ("192 KiB does not fit (operator head: needs at least 440 KiB per core): runs at 448 KiB, the "
                    "smallest that fits of 400, 448 KiB")
    size, note = gap.smallest_fitting_sram("huge", 192.0, probe)
    assert size is None and "nor does any of 400, 448, 512, 576, 624 KiB" in note

    configs = [c for c in gap.grid(["big", "small"], quick=True)]
    calls.clear()
    resolved = gap.resolve_sram(configs, tmp_path / "sram.json", probe)
    assert {(c.model, c.sram_requested_kib, c.sram_kib) for c in resolved} == {
        ("big", 624.0, 624.0), ("big", 192.0, 448.0), ("small", 624.0, 624.0), ("small", 192.0, 192.0)}
    assert all(("does not fit" in c.sram_note) == (c.sram_kib != c.sram_requested_kib) for c in resolved)
    assert sorted(set(calls)) == [("big", 192.0), ("big", 400.0), ("big", 448.0), ("small", 192.0)]  # 624 not probed
    calls.clear()
    assert gap.resolve_sram(configs, tmp_path / "sram.json", probe) == resolved and not calls  # cached


def made_up_gaps(gap, rows):
    """gaps.csv-shaped rows: (config id, design, latency, best-heuristic gap %, gain %) with a bound of 10 ms."""
    import pandas as pd
    out = []
    for cid, design, ms, heur_gap, gain in rows:
        out.append({"model": f"m{cid}", "topology": "mesh", "hbm_tbps": 8.0, "sram_kib": 192.0,
                    "sram_requested_kib": 192.0, "load_model": "fluid", "design": design, "latency_ms": ms,
                    "certified_gap_pct": 100 * (ms / 10.0 - 1), "relaxed": False, "best_heuristic_gap_pct": heur_gap,
                    "gain_over_best_heuristic_pct": gain, "bound_ms": 10.0, "bound_name": "lp"})
    frame = pd.DataFrame(out)
    for col in gap.COLUMNS:
        if col not in frame:
            frame[col] = None
    return frame


def test_exact_wins_counts_configurations_with_an_open_heuristic_gap():
    gap = load("gap_study")
    frame = made_up_gaps(gap, [
        (1, "periodic", 10.5, 8.0, 2.8), (1, "milp", 10.4, 8.0, 3.7),   # open, exact wins by >= 1%
        (2, "periodic", 10.9, 10.0, 0.9), (2, "milp", 10.85, 10.0, 1.4),  # open, the better exact design wins
        (3, "periodic", 11.1, 12.0, 0.9), (3, "milp", 11.1, 12.0, 0.9),   # open, gain below 1%
        (4, "periodic", 10.1, 1.5, 0.5), (4, "milp", 10.1, 1.5, 0.5)])    # heuristic gap within 2%: not counted
    wins = gap.exact_wins(frame)
    assert (wins["open"], wins["wins"]) == (3, 2)
    assert [c.split()[0] for c in wins["configurations"]] == ["m1", "m2"]


def test_a_fluid_configuration_takes_its_chips_rigid_schedule_where_faster():
    """A rigid-valid schedule is fluid-valid with the same latency (docs/design.md §5.1): the fluid
    configuration's best row takes it, named as such, gap and gain recomputed; recomputed from the design rows
    every time, so it is idempotent and reverts when the rigid row is no longer faster."""
    import pandas as pd
    gap = load("gap_study")

    def rows(lm, milp_ms, best_ms, best_design):
        base = {"model": "m", "topology": "mesh", "hbm_tbps": 8.0, "sram_kib": 192.0, "load_model": lm,
                "bound_ms": 10.0, "best_heuristic_ms": 11.0, "ideal_ms": 9.5, "relaxed": False, "valid": True}
        return [{**base, "design": "elk-full", "latency_ms": 11.0}, {**base, "design": "milp", "latency_ms": milp_ms},
                {**base, "design": "ideal", "latency_ms": 9.5, "relaxed": True},
                {**base, "design": "best", "latency_ms": best_ms, "best_design": best_design,
                 "certified_gap_pct": 100 * (best_ms / 10 - 1)}]
    frame = pd.DataFrame(rows("fluid", 10.8, 10.8, "milp") + rows("rigid", 10.5, 10.5, "milp"))
    out = gap.with_rigid_schedules(frame)
    fluid = out[(out["design"] == "best") & (out["load_model"] == "fluid")].iloc[0]
    assert fluid["best_design"] == "milp" + gap.RIGID_SUFFIX and fluid["latency_ms"] == 10.5
    assert fluid["certified_gap_pct"] == pytest.approx(5.0)
    assert fluid["gain_over_best_heuristic_pct"] == pytest.approx(100 * 0.5 / 11)
    assert fluid["pct_of_ideal"] == pytest.approx(100 * 9.5 / 10.5)
    rigid = out[(out["design"] == "best") & (out["load_model"] == "rigid")].iloc[0]
    assert rigid["latency_ms"] == 10.5 and rigid["best_design"] == "milp"  # the rigid side never borrows
    assert gap.with_rigid_schedules(out).equals(out)
    slower = out.copy()
    slower.loc[(slower["load_model"] == "rigid") & (slower["design"] == "milp"), "latency_ms"] = 10.9
    back = gap.with_rigid_schedules(slower)
    fluid = back[(back["design"] == "best") & (back["load_model"] == "fluid")].iloc[0]
    assert fluid["best_design"] == "milp" and fluid["latency_ms"] == 10.8
    assert fluid["certified_gap_pct"] == pytest.approx(8.0)
    # an invalid rigid row lends nothing
    invalid = frame.copy()
    invalid.loc[(invalid["load_model"] == "rigid") & (invalid["design"] == "milp"), "valid"] = False
    assert gap.with_rigid_schedules(invalid).equals(invalid)


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


def test_tune_covers_the_whole_program_model(tmp_path):
    """--problems whole: the optimal design's model of tiny's one-layer program, one row per quick setting,
    from a feasible hint; a program larger than the model takes is refused in one line."""
    tune = load("tune_solver")
    args = ["--model", "tiny", "--problems", "whole", "--layers", "1", "--time-limit", "1", "--quick",
            "--out", str(tmp_path)]
    printed = run_main(tune, args)
    rows = read_rows(tmp_path / "tune.csv")
    assert len(rows) == len(tune.QUICK)
    assert {r["problems"] for r in rows} == {"whole"}
    assert {r["window_size"] for r in rows} == {"49"} and {r["first_op"] for r in rows} == {"0"}
    assert all(r["hint_ok"] == "True" for r in rows)
    # one second is too short to prove or improve anything here: the rows say what the solver said
    assert all(r["status"] in ("OPTIMAL", "FEASIBLE", "UNKNOWN") for r in rows)
    assert "settings ranked" in printed and "(a feasible hint)" in printed
    with pytest.raises(SystemExit, match="at most 64"):
        tune.main([*args[:5], "2", *args[6:]])


def test_train_step_smoke(tmp_path):
    """The training-step example on the tiny model: every program compiles valid, files written, the step's
    FLOPs about 3x the forward proxy's."""
    import pandas as pd
    from experiments import train_step
    assert train_step.main(["--smoke", "--out", str(tmp_path), "--compute-scales", "1,1.5"]) == 0
    frame = pd.read_csv(tmp_path / "train_step.csv")
    assert frame["valid"].all()
    assert set(frame["program"]) == {"forward proxy", "step", "step, checkpoint layer"}
    fwd = frame[frame["program"] == "forward proxy"]["flops"].iloc[0]
    step = frame[frame["program"] == "step"]
    assert 2.8 < step["flops"].iloc[0] / fwd < 3.2 and (step["hbm_write_bytes"] > 0).all()
    assert (tmp_path / "train_step.md").read_text().startswith("# One training step")
    assert (tmp_path / "fig_train_tflops.png").stat().st_size > 0
