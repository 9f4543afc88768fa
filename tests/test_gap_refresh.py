"""``python -m experiments.gap_study --refresh``: one heuristic's rows of a finished gap study compiled again.

A tiny synthetic study (three rigid configurations and a fluid one, made by the
study's own ``rows_for``) with the compile step faked, so the checks are fast
and deterministic: the best row follows the refreshed latencies exactly as a
fresh study's would, the replaced latency is kept, a rerun resumes from
``refresh.json``, a later ``--rebound`` keeps it all, and bad input is one line
and exit 2.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from experiments import gap_refresh as ref
from experiments import gap_study as gap

BOUND = 10.0
#: the stored rows of every configuration: design -> (latency ms, warm start); all valid
STORED = {"basic": (20.0, None), "elk-dyn": (13.0, None), "elk-full": (12.0, None), "ideal": (9.5, None),
          "milp": (11.5, "elk-full")}
#: the refreshed elk-full per model: faster than every stored design, slower than before, invalid and fast
FAKE = {"a": ref.Compiled(11.0, True, 2.0), "b": ref.Compiled(12.5, True, 2.0), "c": ref.Compiled(5.0, False, 2.0)}
ARGS = ["--refresh", "elk-full", "--load-models", "rigid"]


def configs() -> list[gap.Config]:
    return [gap.Config(m, "mesh", 8.0, 624.0, "rigid", sram_kib=624.0) for m in "abc"] + [
        gap.Config("a", "mesh", 8.0, 624.0, "fluid", sram_kib=624.0)]


def record(config: gap.Config) -> dict:
    rows = [{"design": d, "latency_ms": ms, "valid": True, "warm_start": warm, "compile_seconds": 1.0,
             "pct_of_ideal": 100 * 9.5 / ms} for d, (ms, warm) in STORED.items()]
    return {"key": f"key-{config.model}-{config.load_model}", "status": "ok", "error": None, "point_seconds": 9.0,
            "bound_ms": BOUND, "bound_name": "lp", "bound_seconds": 1.0,
            "bounds": [{"name": "lp", "ms": BOUND}, {"name": "hbm", "ms": 8.0}], "rows": rows}


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A finished study's gaps.csv and gap_study.md, as ``gap_study.main`` writes them."""
    out = tmp_path / "gap"
    out.mkdir()
    cs = configs()
    frame = pd.DataFrame([row for c in cs for row in gap.rows_for(c, record(c))])
    frame = frame.reindex(columns=list(gap.COLUMNS))  # gaps_frame's layout (its points need zoo models)
    frame.to_csv(out / "gaps.csv", index=False)
    gap.write_summary(frame, out / "gap_study.md", command="python -m experiments.gap_study --models a,b,c",
                      settings=gap.Settings(), configs=cs, seconds=60.0)
    return out


@pytest.fixture
def fake_compile(monkeypatch) -> list[tuple[str, str]]:
    """The compile step replaced by FAKE; the calls made, in order."""
    calls: list[tuple[str, str]] = []

    def compile_design(config: gap.Config, design: str, settings=None) -> ref.Compiled:
        calls.append((config.model, config.load_model))
        assert (design, config.load_model) == ("elk-full", "rigid")
        return FAKE[config.model]

    monkeypatch.setattr(ref, "compile_design", compile_design)
    return calls


def rows(out: Path, model: str, load_model: str = "rigid") -> pd.DataFrame:
    frame = pd.read_csv(out / "gaps.csv")
    return frame[(frame["model"] == model) & (frame["load_model"] == load_model)].set_index("design")


def test_refresh_replaces_the_design_and_rebuilds_the_best(study, fake_compile, capsys):
    assert gap.main([*ARGS, "--out", str(study)]) == 0
    assert fake_compile == [("a", "rigid"), ("b", "rigid"), ("c", "rigid")]  # the fluid one is not compiled
    frame = pd.read_csv(study / "gaps.csv")
    assert list(frame.columns)[-2:] == ["old_latency_ms", "refreshed"]
    assert frame["refreshed"].sum() == 3 and set(frame[frame["refreshed"]]["design"]) == {"elk-full"}
    assert frame[frame["refreshed"]]["old_latency_ms"].tolist() == [12.0, 12.0, 12.0]
    assert frame[~frame["refreshed"]]["old_latency_ms"].isna().all()
    a = rows(study, "a")  # faster than every design: the best moves to it, and the heuristics' figures with it
    assert a.loc["elk-full", "latency_ms"] == 11.0 and a.loc["elk-full", "design_seconds"] == 2.0
    assert a.loc["elk-full", "certified_gap_pct"] == pytest.approx(10.0)
    assert (a.loc["best", "latency_ms"], a.loc["best", "best_design"]) == (11.0, "elk-full")
    assert (a["best_heuristic"] == "elk-full").all() and (a["best_heuristic_ms"] == 11.0).all()
    assert a.loc["milp", "gain_over_best_heuristic_pct"] == pytest.approx(100 * (11.0 - 11.5) / 11.0)
    b = rows(study, "b")  # slower than before: the best stays the fastest valid row
    assert b.loc["elk-full", "latency_ms"] == 12.5
    assert (b.loc["best", "latency_ms"], b.loc["best", "best_design"]) == (11.5, "milp")
    assert b.loc["best", "certified_gap_pct"] == pytest.approx(15.0)
    c = rows(study, "c")  # invalid, and below every valid latency: never the best, never a heuristic's best
    assert c.loc["elk-full", "valid"] == False and c.loc["elk-full", "latency_ms"] == 5.0  # noqa: E712
    assert (c.loc["best", "latency_ms"], c.loc["best", "best_design"]) == (11.5, "milp")
    assert (c["best_heuristic"] == "elk-dyn").all()
    fluid = rows(study, "a", "fluid")
    assert fluid.loc["elk-full", "latency_ms"] == 12.0 and not fluid["refreshed"].any()
    # its own rows are as stored, but the chip's rigid schedule (rigid-valid, so fluid-valid at the same
    # latency) is now faster than every one of them: the fluid best takes it, and says so
    assert (fluid.loc["best", "latency_ms"], fluid.loc["best", "best_design"]) == (11.0, "elk-full (rigid loads)")
    assert fluid.loc["best", "certified_gap_pct"] == pytest.approx(10.0)
    text = (study / "gap_study.md").read_text()
    assert text.startswith("# Certified optimality gaps\n\n`python -m experiments.gap_study --models a,b,c`")
    note = next(line for line in text.splitlines() if line.startswith("**Refreshed.**"))
    assert f"`python -m experiments.gap_study {' '.join(ARGS)} --out {study}`" in note
    assert "The best schedule moved at **1 of 3**" in note and "1 faster, 1 slower, 1 invalid" in note
    assert "| a mesh 8 TB/s 624 KiB rigid | 10.00 | elk-full |" in text
    stored = json.loads((study / "refresh.json").read_text())
    assert len(stored["results"]) == 3 and list(stored["runs"]) == ["elk-full | rigid"]
    assert "[1/3] a mesh 8 TB/s 624 KiB rigid elk-full: 12.0000 -> 11.0000 ms" in capsys.readouterr().out


def test_refresh_resumes_from_its_store(study, fake_compile, monkeypatch):
    """An interrupted run keeps what it computed; the rerun compiles only the rest, and a finished one nothing
    (the latency it replaced stays the study's)."""
    done = fake_compile

    def interrupted(config: gap.Config, design: str, settings=None) -> ref.Compiled:
        if config.model == "b":
            raise KeyboardInterrupt
        done.append((config.model, config.load_model))
        return FAKE[config.model]

    before = (study / "gaps.csv").read_bytes()
    monkeypatch.setattr(ref, "compile_design", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gap.main([*ARGS, "--out", str(study)])
    assert (study / "gaps.csv").read_bytes() == before
    assert len(json.loads((study / "refresh.json").read_text())["results"]) == 1
    done.clear()
    monkeypatch.undo()
    calls: list[str] = []
    monkeypatch.setattr(ref, "compile_design", lambda config, design, settings=None: calls.append(config.model) or FAKE[config.model])
    assert gap.main([*ARGS, "--out", str(study)]) == 0
    assert calls == ["b", "c"]
    assert "1 of them compiled by an earlier run (refresh.json)" in (study / "gap_study.md").read_text()
    first = pd.read_csv(study / "gaps.csv")

    def refuse(config: gap.Config, design: str) -> ref.Compiled:
        raise AssertionError("a stored result was compiled again")

    monkeypatch.setattr(ref, "compile_design", refuse)
    assert gap.main([*ARGS, "--out", str(study)]) == 0
    again = pd.read_csv(study / "gaps.csv")
    pd.testing.assert_frame_equal(first, again)
    assert again[again["refreshed"]]["old_latency_ms"].tolist() == [12.0, 12.0, 12.0]
    text = (study / "gap_study.md").read_text()
    assert "moved at **1 of 3**" in text and "3 of them compiled by an earlier run" in text


def test_a_later_rebound_keeps_the_refresh(study, fake_compile, monkeypatch):
    """--rebound reads latencies from gaps.csv: the refreshed ones, their columns and the paragraph survive."""
    from experiments import gap_rebound as reb
    assert gap.main([*ARGS, "--out", str(study)]) == 0
    refreshed = pd.read_csv(study / "gaps.csv")
    proven = reb.Reproven((reb.FamilyBound("lp", BOUND, "optimal", 1.0, ("fluid", "rigid")),), seconds=1.0)
    monkeypatch.setattr(reb, "prove", lambda config, settings: proven)
    monkeypatch.setattr(ref, "compile_design", lambda *a: pytest.fail("--rebound compiled a design"))
    assert gap.main(["--rebound", "--out", str(study)]) == 0
    frame = pd.read_csv(study / "gaps.csv")
    assert list(frame.columns)[-2:] == ["old_latency_ms", "refreshed"]
    for col in ("design", "latency_ms", "valid", "best_design", "old_latency_ms", "refreshed"):
        pd.testing.assert_series_equal(frame[col], refreshed[col])
    text = (study / "gap_study.md").read_text()
    assert "**Re-certified.**" in text and "The best schedule moved at **1 of 3**" in text
    assert gap.main([*ARGS, "--out", str(study)]) == 0  # and a refresh after it keeps the re-certification's note
    text = (study / "gap_study.md").read_text()
    assert text.count("**Re-certified.**") == 1 and text.count("**Refreshed.**") == 1
    assert "## Re-proven bounds" in text


def test_refresh_refuses_a_latency_below_its_bound(study, monkeypatch, capsys):
    before = {p: (study / p).read_bytes() for p in ("gaps.csv", "gap_study.md")}
    monkeypatch.setattr(ref, "compile_design", lambda config, design, settings=None: ref.Compiled(BOUND / 2, True, 1.0))
    assert gap.main([*ARGS, "--out", str(study)]) == 1
    assert "a refreshed valid latency is below its proven bound" in capsys.readouterr().out
    assert {p: (study / p).read_bytes() for p in before} == before
    assert (study / "refresh.json").is_file()


@pytest.mark.parametrize("argv, said", [
    (["--refresh", "nope"], "--refresh takes one of the study's designs (basic, static, elk-dyn, elk-full, "
                            "periodic, milp, lp-guided), not 'nope'"),
    (["--refresh", "ideal"], "--refresh takes one of the study's designs"),
    (["--refresh", "elk-full", "--load-models", "solid"], "--load-models takes a comma list of fluid, rigid"),
    (["--load-models", "rigid"], "--load-models goes with --refresh"),
    (["--refresh", "elk-full", "--rebound"], "--refresh and --rebound are separate runs"),
])
def test_refresh_bad_input_is_one_line_and_exit_2(study, fake_compile, capsys, argv, said):
    before = (study / "gaps.csv").read_bytes()
    assert gap.main([*argv, "--out", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gap_study: error: {said}") and err.count("\n") == 1
    assert (study / "gaps.csv").read_bytes() == before and not fake_compile


def test_refresh_needs_a_finished_study(tmp_path, fake_compile, capsys):
    assert gap.main([*ARGS, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gap_study: error: --refresh needs a finished study") and err.count("\n") == 1
    shutil.rmtree(tmp_path)
    assert gap.main([*ARGS, "--out", str(tmp_path)]) == 2  # no folder at all: the same
    assert capsys.readouterr().err.startswith("gap_study: error: --refresh needs a finished study")


def test_an_exact_designs_refresh_keeps_its_new_warm_start(study, monkeypatch):
    """A refreshed MILP row carries the warm start and solver seconds of its new compile; the gain over the
    best heuristic and the best row follow its latency."""
    monkeypatch.setattr(ref, "compile_design", lambda config, design, settings=None: ref.Compiled(
        10.8, True, 30.0, warm_start="elk-dyn", solve_seconds=25.0))
    assert gap.main(["--refresh", "milp", "--load-models", "rigid", "--out", str(study)]) == 0
    a = rows(study, "a")
    assert a.loc["milp", "latency_ms"] == 10.8 and a.loc["milp", "warm_start"] == "elk-dyn"
    assert a.loc["milp", "solve_seconds"] == 25.0 and a.loc["milp", "old_latency_ms"] == 11.5
    assert a.loc["milp", "gain_over_best_heuristic_pct"] == pytest.approx(100 * (12.0 - 10.8) / 12.0)
    assert (a.loc["best", "latency_ms"], a.loc["best", "best_design"]) == (10.8, "milp")
    stored = json.loads((study / "refresh.json").read_text())["results"]
    entry = ref.Entry.from_json(next(iter(stored.values())))
    assert (entry.result.warm_start, entry.result.solve_seconds) == ("elk-dyn", 25.0)


def test_exact_designs_refreshed_together_share_one_compile(study, monkeypatch):
    """``--refresh periodic,milp``: one compile per configuration gives both rows (the windows may start from
    the periodic schedule, as in the study); each design's run is noted, saying what it was compiled with."""
    calls: list[tuple[str, tuple[str, ...]]] = []

    def compile_designs(config: gap.Config, designs, settings=None) -> dict:
        calls.append((config.model, tuple(designs)))
        return {"periodic": ref.Compiled(11.2, True, 60.0), "milp": ref.Compiled(11.1, True, 70.0,
                                                                                warm_start="periodic")}

    monkeypatch.setattr(ref, "compile_designs", compile_designs)
    monkeypatch.setattr(ref, "compile_design", lambda *a: pytest.fail("compiled one design alone"))
    assert gap.main(["--refresh", "periodic,milp", "--load-models", "rigid", "--out", str(study)]) == 0
    assert calls == [(m, ("periodic", "milp")) for m in "abc"]
    a = rows(study, "a")
    assert a.loc["periodic", "latency_ms"] == 11.2 and a.loc["milp", "latency_ms"] == 11.1
    assert a.loc["milp", "warm_start"] == "periodic" and a.loc["periodic", "refreshed"] == True  # noqa: E712
    assert (a.loc["best", "latency_ms"], a.loc["best", "best_design"]) == (11.1, "milp")
    runs = json.loads((study / "refresh.json").read_text())["runs"]
    assert sorted(runs) == ["milp | rigid", "periodic | rigid"]
    assert runs["milp | rigid"]["together"] == ["periodic"]
    text = (study / "gap_study.md").read_text()
    assert "The `milp` rows of the 3 rigid configurations" in text and "compiled with `periodic`" in text
    calls.clear()  # a rerun reuses both stored results
    assert gap.main(["--refresh", "periodic,milp", "--load-models", "rigid", "--out", str(study)]) == 0
    assert calls == []


def test_refresh_compiles_with_the_commands_solver_settings(study, monkeypatch):
    """``--exact-time-limit`` and ``--window`` given with ``--refresh`` reach the compile (a refresh of a study run
    with other settings than today's defaults says them again, and is not silently run at the defaults)."""
    seen = []

    def compile_designs(config, designs, settings=None):
        seen.append(settings)
        return {"periodic": ref.Compiled(11.2, True, 60.0)}

    monkeypatch.setattr(ref, "compile_designs", compile_designs)
    monkeypatch.setattr(ref, "compile_design", lambda config, design, settings=None:
                        compile_designs(config, (design,), settings)[design])
    assert gap.main(["--refresh", "periodic", "--load-models", "rigid", "--exact-time-limit", "60", "--window", "6",
                     "--out", str(study)]) == 0
    assert seen and all(s.exact_time_limit == 60.0 and s.window == 6 for s in seen)
    point = gap.Config("llama2-13b", "mesh", 16.0, 192.0, "rigid").point(seen[0])
    assert point.resolved.design_options["periodic"].time_limit == 60.0


def test_refresh_takes_only_the_models_asked_for(study, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(ref, "compile_design", lambda config, design, settings=None: calls.append(config.model) or FAKE["a"])
    assert gap.main([*ARGS, "--models", "a,c", "--out", str(study)]) == 0
    assert calls == ["a", "c"]
    frame = pd.read_csv(study / "gaps.csv")
    assert set(frame[frame["refreshed"]]["model"]) == {"a", "c"}
    assert "The `elk-full` rows of the 2 rigid configurations" in (study / "gap_study.md").read_text()


def test_milp_alone_compiles_periodic_where_it_was_the_studys_warm_start(study, monkeypatch):
    """``--refresh milp``: where the stored periodic row beat every heuristic, the periodic design is compiled
    again with the windows (they start from it, as in the study) and only the windows' row is replaced;
    elsewhere the windows are compiled alone."""
    frame = pd.read_csv(study / "gaps.csv")
    stored_periodic = {"design": "periodic", "latency_ms": 11.8, "valid": True}
    periodic_rows = []
    for model, ms in (("a", 11.8), ("b", 12.5)):  # a: faster than elk-full's 12.0; b: slower
        row = frame[(frame["model"] == model) & (frame["load_model"] == "rigid")].iloc[0].to_dict()
        periodic_rows.append({**row, **stored_periodic, "latency_ms": ms})
    frame = pd.concat([frame, pd.DataFrame(periodic_rows)], ignore_index=True)
    frame.to_csv(study / "gaps.csv", index=False)
    together: list[tuple[str, tuple[str, ...]]] = []
    alone: list[str] = []

    def compile_designs(config, designs, settings=None):
        together.append((config.model, tuple(designs)))
        return {"periodic": ref.Compiled(11.9, True, 60.0), "milp": ref.Compiled(11.7, True, 9.0,
                                                                                warm_start="periodic")}

    monkeypatch.setattr(ref, "compile_designs", compile_designs)
    monkeypatch.setattr(ref, "compile_design", lambda config, design, settings=None: alone.append(config.model) or ref.Compiled(
        11.6, True, 9.0, warm_start="elk-full"))
    assert ref.warm_start_designs(frame[frame["model"] == "a"], ["milp"]) == ("periodic",)
    assert ref.warm_start_designs(frame[frame["model"] == "a"], ["periodic", "milp"]) == ()
    assert gap.main(["--refresh", "milp", "--load-models", "rigid", "--out", str(study)]) == 0
    assert together == [("a", ("periodic", "milp"))] and alone == ["b", "c"]
    a = rows(study, "a")
    assert a.loc["milp", "latency_ms"] == 11.7 and a.loc["milp", "warm_start"] == "periodic"
    assert a.loc["periodic", "latency_ms"] == 11.8  # the stored periodic row stays
    assert rows(study, "b").loc["milp", "latency_ms"] == 11.6
