"""The paper's studies (experiments/paper, experiments/run_all.py): grids, figures, report.

The grids are checked against the experiment matrix of the paper (sizes,
knobs, which points figures share); the figures and the report are rendered
from a synthetic results frame shaped like the runner's (fast, no compiling);
one end-to-end run on the tiny model goes through the real runner.
"""
from __future__ import annotations

import importlib
import math

import pandas as pd
import pytest

from experiments.paper import FIGURES
from experiments.paper.report import (Phase, RunInfo, binding_bounds, certified_gaps, exact_gaps, exact_summary,
                                      headline, ideal_below_bound, load_model_comparison, md_table, pct_of_ideal, speedups,
                                      write_report)
from experiments.paper.script import render
from experiments.paper.spec import Options, unique

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FULL = Options()
SPECS = {m: importlib.import_module(f"experiments.paper.{m}").SPEC for m in FIGURES}


def spec(name: str):
    return next(s for s in SPECS.values() if s.name == name)


def keys(points) -> set[str]:
    return {p.key() for p in points}


def knobs(points, name: str) -> list:
    return sorted({p.resolved.knobs[name] for p in points})


# ---- grids -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_points():
    return {s.name: s.heuristic_points(FULL) for s in SPECS.values()}


def test_grid_sizes_follow_the_experiment_matrix(full_points):
    sizes = {name: len(pts) for name, pts in full_points.items()}
    assert sizes == {"fig17": 24, "fig18": 4, "fig19": 104, "fig20": 11, "fig21": 136, "fig22": 32, "fig23": 52,
                     "fig24": 32}
    for pts in full_points.values():
        assert all(p.resolved.designs == ("basic", "static", "elk-dyn", "elk-full", "ideal") for p in pts)


def test_shared_points_run_once(full_points):
    k = {name: keys(pts) for name, pts in full_points.items()}
    assert k["fig18"] <= k["fig17"]
    assert k["fig20"] <= k["fig19"]
    assert k["fig19"] <= k["fig21"]  # 4-16 TB/s inside 2-18 TB/s
    assert len(k["fig22"] & k["fig19"]) == 8  # NoC x1 at HBM 8-14, both topologies
    assert len(k["fig17"] & k["fig19"]) == 4  # B32 S2048 all-to-all 16 TB/s
    total = set().union(*k.values())
    # The artifact's 268 runs count Fig. 22's mesh points at NoC x1 again (its mesh is an x-factor that
    # differs from Fig. 19's); elk's mesh model makes them the same 4 runs: 24+100+32+24+52+32.
    assert len(total) == 264
    assert len(unique(p for pts in full_points.values() for p in pts)) == 264
    assert {p.resolved.knobs["load_model"] for pts in full_points.values() for p in pts} == {"fluid"}


def test_fig17_also_runs_under_the_other_load_model(full_points):
    """Fig. 17's 24 configurations again under rigid loads, heuristics only; no other figure has variants."""
    rigid = spec("fig17").variant_points(FULL)
    assert len(rigid) == 24 and not keys(rigid) & keys(full_points["fig17"])
    assert {p.resolved.knobs["load_model"] for p in rigid} == {"rigid"}
    assert all(p.resolved.designs == ("basic", "static", "elk-dyn", "elk-full", "ideal") for p in rigid)
    strip = lambda p: tuple((k, v) for k, v in configuration(p) if k != "load_model")  # noqa: E731
    assert {strip(p) for p in rigid} == {strip(p) for p in full_points["fig17"]}
    assert all(not s.variant_points(FULL) for s in SPECS.values() if s.name != "fig17")
    assert len(unique(p for s in SPECS.values() for p in s.all_points(FULL))) == 288
    # --load-model rigid: the figures run rigid, and Fig. 17's comparison runs fluid
    opts = Options(load_model="rigid")
    assert {p.resolved.knobs["load_model"] for p in spec("fig19").heuristic_points(opts)} == {"rigid"}
    assert {p.resolved.knobs["load_model"] for p in spec("fig17").variant_points(opts)} == {"fluid"}
    with pytest.raises(ValueError):
        Options(load_model="elastic")


def test_figure_knobs(full_points):
    f17 = full_points["fig17"]
    assert knobs(f17, "batch") == [16, 32, 64] and knobs(f17, "seq") == [2048, 4096]
    assert knobs(f17, "model") == ["gemma2-27b", "llama2-13b", "llama2-70b", "opt-30b"]
    assert knobs(f17, "hbm_tbps") == [16.0] and knobs(f17, "cores") == [5888]
    assert knobs(f17, "topology") == ["all-to-all"]

    assert knobs(full_points["fig19"], "hbm_tbps") == list(range(4, 17))
    assert knobs(full_points["fig19"], "topology") == ["all-to-all", "mesh"]
    assert knobs(full_points["fig20"], "hbm_tbps") == list(range(6, 17))
    assert knobs(full_points["fig20"], "model") == ["llama2-13b"]
    assert knobs(full_points["fig21"], "hbm_tbps") == list(range(2, 19))

    f22 = full_points["fig22"]
    assert knobs(f22, "model") == ["llama2-70b"] and knobs(f22, "hbm_tbps") == [8, 10, 12, 14]
    assert knobs(f22, "noc_scale") == [0.75, 1.0, 1.25, 1.5]
    assert [round(t, 1) for t in knobs(f22, "noc_tbps")] == [24.3, 32.4, 40.5, 48.6]  # 5,888 x 5.5 GB/s x scale

    f23 = full_points["fig23"]
    llm = [p for p in f23 if p.resolved.knobs["model"] != "dit-xl-2"]
    dit = [p for p in f23 if p.resolved.knobs["model"] == "dit-xl-2"]
    assert (len(llm), len(dit)) == (40, 12)
    assert knobs(llm, "cores") == [2208, 2944, 3680, 4416, 5152]
    assert knobs(dit, "cores") == [552, 736, 920, 1104, 1288, 1472]
    for p in llm:
        assert math.isclose(p.resolved.knobs["hbm_tbps"], p.resolved.knobs["cores"] * 4 / 1472)
    for p in dit:
        assert math.isclose(p.resolved.knobs["hbm_tbps"], p.resolved.knobs["cores"] / 1472)
    assert all(p.resolved.chip.topology.rows * p.resolved.chip.topology.cols == p.resolved.chip.cores
               for p in f23 if p.resolved.knobs["topology"] == "mesh")

    f24 = full_points["fig24"]
    assert knobs(f24, "mode") == ["forward"] and knobs(f24, "batch") == [2] and knobs(f24, "seq") == [2048]
    assert knobs(f24, "compute_scale") == [0.75, 1.0, 1.25, 1.5]
    assert knobs(f24, "noc_scale") == [1.0, 1.5] and knobs(f24, "hbm_tbps") == [0.3, 0.4]
    assert knobs(f24, "topology") == ["all-to-all", "mesh"]


def configuration(p) -> tuple:
    """A point's knobs without its designs and solver settings."""
    skip = ("designs", "window", "time_limit", "workers", "seed", "milp_solver", "periodic_time_limit",
            "periodic_workers")
    return tuple(sorted((k, v) for k, v in p.resolved.knobs.items() if k not in skip))


def test_exact_points_are_few_and_reuse_heuristic_configurations():
    from solvers.solver_options import MilpOptions, PeriodicOptions
    opts = Options(exact=True, time_limit=3.0)
    all_exact = []
    for s in SPECS.values():
        ex = s.exact_points(opts)
        assert 1 <= len(ex) <= 6, s.name
        heur = {configuration(p) for p in s.heuristic_points(opts)}
        for p in ex:
            # the heuristics first (the best one is the warm start), then periodic, then the MILP windows
            assert p.resolved.designs == ("basic", "static", "elk-dyn", "elk-full", "ideal", "periodic", "milp")
            assert p.resolved.design_options["milp"] == MilpOptions(time_limit=3.0, window=8, workers=2, seed=0)
            assert p.resolved.design_options["periodic"] == PeriodicOptions(time_limit=30.0, seed=0)  # its own 8
            assert configuration(p) in heur, (s.name, p.label())
        all_exact += ex
    assert len(unique(all_exact)) == 16  # 4 (Figs. 17-18) + 5 (Figs. 19-21) + 2 + 4 + 1
    assert not Options().exact and all(not s.exact_points(Options()) for s in SPECS.values())


def test_quick_and_smoke_grids_are_small():
    quick = unique(p for s in SPECS.values() for p in s.all_points(Options(level="quick")))
    smoke = unique(p for s in SPECS.values() for p in s.all_points(Options(level="smoke")))
    assert len(quick) == 16  # 14 configurations and Fig. 17's two under rigid loads
    assert {p.resolved.knobs["model"] for p in quick} == {"llama2-13b", "opt-30b", "dit-xl-2", "tiny"}
    assert {p.resolved.knobs["model"] for p in smoke} == {"tiny"}
    assert len(smoke) <= 13
    for s in SPECS.values():
        assert s.heuristic_points(Options(level="smoke")), s.name


# ---- synthetic results: figures, tables, report numbers --------------------------------------------------------


def synthetic_frame(points) -> pd.DataFrame:
    """Rows shaped like elk.study's frame, with made-up but consistent numbers (Ideal fastest).

    The proven bound is 2% under Ideal on all-to-all and 5% above it on a mesh (so Ideal is below the bound
    there); rigid loads make every design but Ideal 10% slower.
    """
    factor = {"basic": 1.6, "static": 1.3, "elk-dyn": 1.15, "elk-full": 1.08, "ideal": 1.0, "periodic": 1.075,
              "cpsat": 1.07, "milp": 1.07}
    rows = []
    for p in points:
        k = p.resolved.knobs
        ideal = 5.0 + 40.0 / k["hbm_tbps"] + 3.0 * k["batch"] / 32 + 10000 / k["cores"] / k["noc_scale"]
        mesh = k["topology"] == "mesh"
        bound = ideal * (1.05 if mesh else 0.98)
        for d in p.resolved.designs:
            lat = ideal * factor[d] * (1.1 if k["load_model"] == "rigid" and d != "ideal" else 1.0)
            if mesh and d != "ideal":
                lat *= 1.1  # stays above the bound
            exact = d in ("periodic", "cpsat", "milp")
            rows.append({**k, "key": p.key(), "status": "ok", "error": None, "design": d, "latency_ms": lat,
                         "pct_of_ideal": 100 * ideal / lat, "valid": True, "overlapped_ms": 0.5 * lat,
                         "gap_to_bound": None if d == "ideal" else lat / bound - 1, "bound_ms": bound,
                         "bound_name": "lp" if mesh else "flow-shop",
                         "preload_only_ms": 0.2 * lat, "execute_only_ms": 0.25 * lat, "stall_ms": 0.05 * lat,
                         "hbm_utilisation": 0.9 / factor[d], "noc_utilisation": 0.5, "compile_seconds": 1.0,
                         "achieved_tflops": 100 * k["compute_scale"] / factor[d], "peak_sram_bytes": 5e5,
                         "point_seconds": 10.0, "table_seconds": 2.0,
                         "warm_start": ("elk-full" if d == "periodic" else "periodic") if exact else None,
                         "proven_optimal_pct": 100.0 if d in ("cpsat", "milp") else None,
                         "solve_seconds": 2.0 if exact else None})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def full_frame():
    opts = Options(exact=True)
    return synthetic_frame(unique(p for s in SPECS.values() for p in s.all_points(opts))), opts


@pytest.mark.parametrize("module", FIGURES)
def test_every_figure_renders_png_pdf_csv(module, full_frame, tmp_path):
    frame, opts = full_frame
    s = SPECS[module]
    r = render(s, frame, tmp_path, opts)
    assert r.png.read_bytes()[:8] == PNG_MAGIC
    assert r.pdf.read_bytes()[:5] == b"%PDF-"
    table = pd.read_csv(r.csv)
    n_heur = len(s.heuristic_points(opts))
    n_exact = len(s.exact_points(opts))
    assert len(table) == 5 * n_heur + 2 * n_exact  # paper designs everywhere, exact ones at their points
    assert {"model", "design", "latency_ms"} <= set(table.columns)
    assert not r.summary.empty


def test_failed_points_are_not_plotted(full_frame, tmp_path):
    frame, opts = full_frame
    frame = frame.copy()
    bad = frame["key"] == frame["key"].iloc[0]
    frame.loc[bad, ["status", "error", "latency_ms"]] = ["error", "ElkError: no", None]
    r = render(spec("fig17"), frame, tmp_path, opts)
    assert len(r.table) == 5 * 24 + 2 * 4 - bad.sum()


def test_a_figure_without_results_still_renders(tmp_path):
    r = render(spec("fig22"), pd.DataFrame(), tmp_path, FULL)
    assert r.png.read_bytes()[:8] == PNG_MAGIC and r.table.empty and r.summary.empty


def test_report_of_a_full_run(full_frame, tmp_path):
    frame, opts = full_frame
    rendered = [render(spec("fig17"), frame, tmp_path, opts), render(spec("fig19"), frame, tmp_path, opts)]
    exact = [p.key() for s in SPECS.values() for p in s.exact_points(opts)]
    info = RunInfo(command="python -m experiments.run_all --out X --exact", level="full", exact=True,
                   phases=[Phase("heuristic designs", 288, 288, 3000.0, "1 GiB", peak_tree_bytes=2 ** 30)])
    text = write_report(tmp_path, frame, rendered, info, exact).read_text()
    assert "50.0 min (met), 1.00 GiB (met)" in text
    assert "![fig17](fig17.png)" in text
    # synthetic MILP is 1.07/1.08 of ELK-Full's latency (the best heuristic) at every exact configuration
    assert ("**MILP** (started from the fastest schedule before it in the same run: Periodic) at 16 configurations: "
            "faster than the best heuristic at 16") in text
    assert "**Periodic** (started from the fastest schedule before it in the same run: ELK-Full) at 16 " in text
    assert "| Basic | 62.5 |" in text  # 100 / 1.6, from the frame
    assert "Ideal (relaxed schedule)" in text and "**Certified gap**" in text
    # headline: Fig. 17 is all-to-all, fluid: bound = 0.98 Ideal, so ELK-Full's gap is 1.08 / 0.98 - 1
    head = next(line for line in text.splitlines() if line.startswith("| ELK-Full |"))
    assert f"| {100 * (1.08 / 0.98 - 1):.1f} |" in head
    assert "Bound that binds (configurations): flow-shop at 24." in text
    # rigid vs fluid: every design but Ideal is 1.1x slower under rigid loads in the synthetic frame
    assert "## Load models: rigid against fluid" in text
    assert "| ELK-Full | " in text.split("Rigid against fluid loads")[1].split("\n\n")[1]
    # Ideal is below the bound at every mesh configuration (bound = 1.05 Ideal there)
    mesh = configurations_with(frame, "topology", "mesh")
    assert f"is below the best proven bound at {mesh} of " in text
    assert "## Ideal below the bound" in text
    assert "Ideal (relaxed schedule) below the best bound at 52 of 104 configurations." in text  # Fig. 19
    assert "Ideal (relaxed schedule) below the best bound at 0 of 24 configurations." in text  # Fig. 17


def configurations_with(frame: pd.DataFrame, column: str, value) -> int:
    from experiments.paper.spec import CONFIG
    ideal = frame[(frame["design"] == "ideal") & (frame[column] == value)]
    return len(ideal.drop_duplicates(list(CONFIG)))


def test_headline_numbers():
    tab = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "b"], "batch": 32, "design": ["basic", "elk-full", "ideal"] * 2,
                        "latency_ms": [20.0, 10.0, 8.0, 30.0, 12.0, 12.0]})
    tab["pct_of_ideal"] = 100 * tab.groupby("model")["latency_ms"].transform("min") / tab["latency_ms"]
    pct = pct_of_ideal(tab)
    assert list(pct.index) == ["basic", "elk-full", "ideal"]
    assert pct.loc["elk-full", "mean % of Ideal"] == pytest.approx((80 + 100) / 2)
    sp = speedups(tab)
    assert sp.loc["Basic", "mean speedup"] == pytest.approx((2.0 + 2.5) / 2)
    assert sp.loc["Basic", "max speedup"] == pytest.approx(2.5)
    assert sp.loc["Basic", "at max"].startswith("b B32")


def made_up(rows: list[tuple]) -> pd.DataFrame:
    """Rows (model, design, latency, bound, bound name) of one configuration per model, gaps as elk computes them."""
    tab = pd.DataFrame(rows, columns=["model", "design", "latency_ms", "bound_ms", "bound_name"])
    tab["batch"], tab["key"], tab["status"], tab["valid"] = 32, "k-" + tab["model"], "ok", True
    strict = tab["design"] != "ideal"
    tab["gap_to_bound"] = (tab["latency_ms"] / tab["bound_ms"] - 1).where(strict)
    ideal = tab[~strict].set_index("model")["latency_ms"]
    tab["pct_of_ideal"] = 100 * tab["model"].map(ideal) / tab["latency_ms"]
    return tab


def test_certified_gaps_and_binding_bounds():
    tab = made_up([("a", "basic", 12.0, 10.0, "lp"), ("a", "elk-full", 10.5, 10.0, "lp"),
                   ("a", "ideal", 9.0, 10.0, "lp"),
                   ("b", "basic", 8.0, 5.0, "layer"), ("b", "elk-full", 5.5, 5.0, "layer"),
                   ("b", "ideal", 5.5, 5.0, "layer"),
                   ("c", "basic", 4.4, 4.0, "lp"), ("c", "elk-full", 4.0, 4.0, "lp"), ("c", "ideal", 3.9, 4.0, "lp")])
    gaps = certified_gaps(tab)
    assert list(gaps.index) == ["basic", "elk-full"]  # Ideal is a relaxed schedule: no certified gap
    assert gaps.loc["elk-full", "mean gap %"] == pytest.approx((5 + 10 + 0) / 3)
    assert gaps.loc["basic", "max gap %"] == pytest.approx(60.0) and gaps.loc["basic", "at max"].startswith("b ")
    assert gaps.loc["basic", "configurations"] == 3
    assert binding_bounds(tab).to_dict() == {"lp": 2, "layer": 1}
    head = headline(tab)
    assert list(head.columns) == ["mean % of Ideal (relaxed)", "min %", "max %", "mean certified gap %",
                                  "max certified gap %", "configurations"]
    assert head.loc["elk-full", "max certified gap %"] == pytest.approx(10.0)
    assert head.loc["ideal", "mean % of Ideal (relaxed)"] == 100 and head.loc[["ideal"]].isna().any(axis=None)
    below = ideal_below_bound(tab)
    assert list(below["configuration"]) == ["a B32", "c B32"]  # 9.0 < 10 and 3.9 < 4; b's Ideal equals its bound
    assert list(below["bound"]) == ["lp", "lp"]
    assert below["Ideal / bound"].tolist() == pytest.approx([0.9, 0.975])


def test_load_model_comparison_from_fig17_columns():
    fig17 = importlib.import_module("experiments.paper.fig17_latency")
    rows = pd.DataFrame({"model": "m", "batch": 32, "seq": 2048, "design": ["elk-full", "ideal"] * 2,
                         "load_model": ["fluid", "fluid", "rigid", "rigid"], "latency_ms": [10.0, 8.0, 12.5, 8.0],
                         "variant": [False, False, True, True]})
    tab = fig17.table(rows)
    assert len(tab) == 2 and set(tab["load_model"]) == {"fluid"}
    full = tab.set_index("design")
    assert (full.loc["elk-full", "fluid_ms"], full.loc["elk-full", "rigid_ms"]) == (10.0, 12.5)
    assert full.loc["elk-full", "rigid_over_fluid"] == pytest.approx(1.25)
    cmp = load_model_comparison(tab)
    assert cmp.loc["ELK-Full", "rigid / fluid (mean)"] == pytest.approx(1.25)
    assert cmp.loc["Ideal (relaxed schedule)", "rigid / fluid (mean)"] == pytest.approx(1.0)
    # under --load-model rigid the rigid rows are the figure's own and the fluid ones the variant
    flipped = rows.assign(variant=~rows["variant"])
    tab = fig17.table(flipped).set_index("design")
    assert set(tab["load_model"]) == {"rigid"}
    assert (tab.loc["elk-full", "fluid_ms"], tab.loc["elk-full", "rigid_ms"]) == (10.0, 12.5)
    # no variant rows: the columns are there, empty
    assert fig17.table(rows[~rows["variant"]])["rigid_ms"].isna().all()


def test_exact_gaps_compare_with_the_best_heuristic_inside_one_point():
    frame = pd.DataFrame({"key": ["k"] * 5 + ["j"] * 3, "status": "ok", "model": ["m"] * 5 + ["n"] * 3,
                          "design": ["static", "elk-full", "ideal", "periodic", "milp", "elk-full", "periodic", "milp"],
                          "latency_ms": [9.9, 10.0, 8.0, 9.9, 9.405, 4.0, 4.0, 4.0],
                          "pct_of_ideal": [80.8, 80.0, 100, 80.8, 85.1, 90, 90, 90],
                          "bound_ms": [9.0] * 5 + [3.9] * 3, "bound_name": ["lp"] * 5 + ["layer"] * 3})
    frame["gap_to_bound"] = (frame["latency_ms"] / frame["bound_ms"] - 1).where(frame["design"] != "ideal")
    gaps = exact_gaps(frame, ["k", "j"])
    assert len(gaps) == 4
    k = gaps[gaps["model"] == "m"].set_index("design")
    assert set(k["best heuristic"]) == {"static"}  # Static beats ELK-Full at k: the reference is the best heuristic
    assert k.loc["periodic", "gain %"] == pytest.approx(0.0)
    assert k.loc["milp", "gain %"] == pytest.approx(5.0)
    assert k.loc["milp", "gap heur. %"] == pytest.approx(10.0) and k.loc["milp", "gap exact %"] == pytest.approx(4.5)
    assert k.loc["milp", "gap best %"] == pytest.approx(4.5) and k.loc["milp", "bound"] == "lp"
    summ = exact_summary(gaps)
    assert summ.loc["MILP", "faster"] == 1 and summ.loc["MILP", "gain >= 1%"] == 1
    assert summ.loc["Periodic", "faster"] == 0
    assert summ.loc["MILP", "max gap %"] == pytest.approx(4.5)
    assert summ.loc["MILP", "max gain %"] == pytest.approx(5.0)


def test_markdown_formatting():
    text = md_table(pd.DataFrame({"x": [1.5, 0.002, float("nan")], "y": ["a|b", "c", "d"]}), index=False)
    assert text.splitlines()[0] == "| x | y |" and "a\\|b" in text
    assert "| 0.002 |" in text and "| n/a |" in text
    assert "| 97.6 |" in md_table(pd.DataFrame({"p": [97.6123]}), index=False, digits=1)


# ---- end to end through the real runner (tiny model) -----------------------------------------------------------


def run_all(argv):
    module = importlib.import_module("experiments.run_all")
    return module.main(argv)


def test_run_all_smoke_subset_writes_report(tmp_path, capsys):
    out = tmp_path / "eval"
    assert run_all(["--out", str(out), "--smoke", "--figures", "fig17,fig18", "--workers", "1",
                    "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    for name in ("fig17", "fig18"):
        assert f"![{name}]({name}.png)" in report
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert (out / f"{name}.pdf").is_file() and (out / f"{name}.csv").is_file()
    assert "% of Ideal (relaxed schedule) and the certified gap" in report and "ELK-Full's speedup" in report
    assert "Certified gap per design" in report and "Bound that binds" in report
    assert "## Load models: rigid against fluid" in report  # Fig. 17's points ran under rigid loads too
    table = pd.read_csv(out / "fig17.csv")
    assert {"gap_to_bound", "bound_ms", "bound_name", "fluid_ms", "rigid_ms", "rigid_over_fluid"} <= set(table)
    strict = table[table["design"] != "ideal"]
    assert strict["gap_to_bound"].notna().all() and (strict["gap_to_bound"] >= -1e-9).all()
    assert table.loc[table["design"] == "ideal", "gap_to_bound"].isna().all()
    assert strict["rigid_ms"].notna().all()
    assert "python -m experiments.run_all --out" in report
    assert "python -m experiments.paper.fig17_latency" in report
    # Fig. 18's point is one of Fig. 17's; Fig. 17's two configurations also run under rigid loads
    assert len(list((out / "results" / "points").glob("*.json"))) == 4
    # a rerun computes nothing and renders the same tables
    before = (out / "fig17.csv").read_text()
    assert run_all(["--out", str(out), "--smoke", "--figures", "fig17,fig18", "--workers", "1",
                    "--no-progress"]) == 0
    assert "0 run now" in capsys.readouterr().out
    assert (out / "fig17.csv").read_text() == before
    report = (out / "report.md").read_text()
    assert "Every invocation into this folder" in report and "| 4 of 4 |" in report and "| 0 of 4 |" in report


def test_run_all_rejects_a_bad_option_before_running(tmp_path, capsys):
    assert run_all(["--out", str(tmp_path), "--smoke", "--exact", "--exact-designs", "nope"]) == 2
    assert "unknown design 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_figure_script_runs_alone(tmp_path):
    fig17 = importlib.import_module("experiments.paper.fig17_latency")
    assert fig17.main(["--out", str(tmp_path), "--smoke", "--workers", "1", "--no-progress"]) == 0
    assert (tmp_path / "fig17.png").is_file() and (tmp_path / "fig17.csv").is_file()


@pytest.mark.slow
@pytest.mark.solver
def test_run_all_smoke_every_figure_with_exact(tmp_path):
    out = tmp_path / "eval"
    assert run_all(["--out", str(out), "--smoke", "--exact", "--time-limit", "1", "--solver-workers", "1",
                    "--workers", "2", "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    for s in SPECS.values():
        assert f"![{s.name}]({s.name}.png)" in report
    assert "**Periodic**" in report and "**MILP**" in report
    assert "exact designs: wall time" in report
