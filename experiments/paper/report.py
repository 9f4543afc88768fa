"""``report.md``: the evaluation's headline numbers, every figure, and how to regenerate it.

Every number is computed here from the results frame and the figure tables;
nothing is typed in. The headline functions are separate from the Markdown
writer so tests can check them on synthetic frames.
"""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from . import style
from .script import Rendered, subset_note
from .spec import CONFIG, Options, failures, succeeded


@dataclass
class Phase:
    """One runner call: what it ran and what it cost."""

    name: str
    points: int
    ran: int
    wall_seconds: float
    memory: str
    peak_tree_bytes: int = 0
    #: Compile time summed over the points run now (what one worker alone would need) and shared table builds.
    point_seconds: float = 0.0
    #: CPU seconds of the points' own processes (robust to other load on the machine; tables built on
    #: helper processes are not in it, table tasks are).
    cpu_seconds: float = 0.0
    table_tasks: int = 0
    table_seconds: float = 0.0


@dataclass
class RunInfo:
    command: str
    level: str
    exact: bool
    phases: list[Phase] = field(default_factory=list)
    figure_commands: list[str] = field(default_factory=list)
    total_seconds: float = 0.0
    #: Earlier invocations into the same folder (``runs.jsonl``), oldest first, this one last.
    history: list[dict] = field(default_factory=list)


RUN_LOG = "runs.jsonl"


def log_run(out: Path, info: RunInfo) -> list[dict]:
    """Append this invocation to ``out/runs.jsonl`` and return every logged invocation.

    A rerun that finds everything stored costs seconds; the log keeps what the
    runs that actually computed the results cost (an interrupted evaluation's
    time is the sum of its invocations).
    """
    import dataclasses
    import json
    import time
    path = Path(out) / RUN_LOG
    entry = {"finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), "command": info.command, "level": info.level,
             "exact": info.exact, "total_seconds": info.total_seconds,
             "phases": [dataclasses.asdict(ph) for ph in info.phases], **environment()}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    history = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            history.append(json.loads(line))
        except ValueError:
            continue  # a torn last line from a killed run: skip it
    return history


def history_table(history: list[dict]) -> pd.DataFrame:
    rows = []
    for h in history:
        for ph in h.get("phases", []):
            rows.append({"finished": h.get("finished_at"), "level": h.get("level"), "phase": ph["name"],
                         "points run": f"{ph['ran']} of {ph['points']}", "wall s": round(ph["wall_seconds"], 1),
                         "CPU s in points": round(ph.get("cpu_seconds", 0.0), 1),
                         "peak GiB": round(ph.get("peak_tree_bytes", 0) / 1024 ** 3, 2),
                         "commit": h.get("git commit", "")})
    return pd.DataFrame(rows)


# ---- headline numbers -------------------------------------------------------------------------------------------


def pct_of_ideal(tab: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max % of Ideal (relaxed schedule) per design over a table's configurations."""
    g = tab.dropna(subset=["pct_of_ideal"]).groupby("design")["pct_of_ideal"]
    out = pd.DataFrame({"mean % of Ideal": g.mean(), "min": g.min(), "max": g.max(), "configurations": g.size()})
    return out.loc[style.ordered(out.index)]


def headline(tab: pd.DataFrame) -> pd.DataFrame:
    """Per design: % of Ideal (relaxed schedule: mean, min, max) and the certified gap (mean, max)."""
    pct = pct_of_ideal(tab)
    gaps = certified_gaps(tab)
    out = pct.rename(columns={"mean % of Ideal": "mean % of Ideal (relaxed)", "min": "min %", "max": "max %"})
    out["mean certified gap %"] = gaps["mean gap %"] if not gaps.empty else float("nan")
    out["max certified gap %"] = gaps["max gap %"] if not gaps.empty else float("nan")
    return out[["mean % of Ideal (relaxed)", "min %", "max %", "mean certified gap %", "max certified gap %",
                "configurations"]]


def speedups(tab: pd.DataFrame, of: str = "elk-full", over: Sequence[str] = ("basic", "static", "elk-dyn")
             ) -> pd.DataFrame:
    """Latency(other) / latency(``of``) per configuration: mean, max and where the max is."""
    piv = tab.pivot_table(index=[c for c in CONFIG if c in tab], columns="design", values="latency_ms")
    rows = []
    if of not in piv:
        return pd.DataFrame()
    for d in over:
        if d not in piv:
            continue
        ratio = (piv[d] / piv[of]).dropna()
        if ratio.empty:
            continue
        where = ratio.idxmax()
        rows.append({"over": style.label(d), "mean speedup": ratio.mean(), "max speedup": ratio.max(),
                     "min speedup": ratio.min(), "at max": describe_config(dict(zip(piv.index.names, where))),
                     "configurations": len(ratio)})
    return pd.DataFrame(rows).set_index("over") if rows else pd.DataFrame()


def gap_pct(rows: pd.DataFrame) -> pd.Series:
    """Certified gap in percent (latency / best proven bound - 1); NaN for Ideal and rows without a bound."""
    if "gap_to_bound" not in rows:
        return pd.Series(float("nan"), index=rows.index)
    return 100.0 * pd.to_numeric(rows["gap_to_bound"], errors="coerce")


def certified_gaps(tab: pd.DataFrame) -> pd.DataFrame:
    """Per design with a certified gap (valid schedules): mean, median and max gap (%) and where the max is."""
    if tab.empty:
        return pd.DataFrame()
    gaps = tab.assign(_gap=gap_pct(tab)).dropna(subset=["_gap"])
    if gaps.empty:
        return pd.DataFrame()
    rows = {}
    for design, g in gaps.groupby("design"):
        worst = g.loc[g["_gap"].idxmax()]
        rows[design] = {"mean gap %": g["_gap"].mean(), "median": g["_gap"].median(), "max gap %": g["_gap"].max(),
                        "at max": describe_config(worst.to_dict()), "configurations": len(g)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    return out.loc[style.ordered(out.index)]


def configurations(tab: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (the first row of each), CONFIG columns and the point-level columns."""
    cfg = [c for c in CONFIG if c in tab]
    return tab.drop_duplicates(cfg) if cfg else tab.iloc[:0]


def binding_bounds(tab: pd.DataFrame) -> pd.Series:
    """How many configurations each bound family binds at (the best proven bound's name)."""
    if tab.empty or "bound_name" not in tab:
        return pd.Series(dtype=int)
    names = configurations(tab.dropna(subset=["bound_name"]))["bound_name"]
    return names.value_counts()


def describe_binding(tab: pd.DataFrame) -> str:
    counts = binding_bounds(tab)
    if counts.empty:
        return "no proven bound recorded"
    return ", ".join(f"{name} at {n}" for name, n in counts.items())


#: Ideal is "below the bound" when its latency is under the best proven bound by more than float noise.
BELOW_TOLERANCE = 1e-9


def ideal_below_bound(frame: pd.DataFrame) -> pd.DataFrame:
    """Configurations where Ideal (a relaxed schedule) is faster than the best proven lower bound.

    No valid schedule can beat the bound, so there Ideal's "% of Ideal" cannot
    reach 100 for any design: it is not a bound, and this is where it shows.
    """
    if frame.empty or "bound_ms" not in frame:
        return pd.DataFrame()
    ok = succeeded(frame)
    ideal = ok[(ok["design"] == "ideal")].copy()
    ideal["bound_ms"] = pd.to_numeric(ideal["bound_ms"], errors="coerce")
    ideal = ideal.dropna(subset=["bound_ms"])
    below = ideal[ideal["latency_ms"] < ideal["bound_ms"] * (1 - BELOW_TOLERANCE)]
    below = configurations(below)
    if below.empty:
        return pd.DataFrame()
    return pd.DataFrame({"configuration": [describe_config(r) for r in below.to_dict("records")],
                         "Ideal ms": below["latency_ms"].to_numpy(), "bound ms": below["bound_ms"].to_numpy(),
                         "bound": below["bound_name"].to_numpy(),
                         "Ideal / bound": (below["latency_ms"] / below["bound_ms"]).to_numpy()})


def count_configurations(frame: pd.DataFrame, design: str = "ideal") -> int:
    ok = succeeded(frame)
    ok = ok[ok["design"] == design]
    if "bound_ms" in ok:
        ok = ok[pd.to_numeric(ok["bound_ms"], errors="coerce").notna()]
    return len(configurations(ok))


def load_model_comparison(tab: pd.DataFrame) -> pd.DataFrame:
    """Per design: mean latency under fluid and rigid loads and the ratio rigid / fluid (Fig. 17's columns)."""
    if tab.empty or "rigid_over_fluid" not in tab:
        return pd.DataFrame()
    both = tab.dropna(subset=["fluid_ms", "rigid_ms"])
    if both.empty:
        return pd.DataFrame()
    g = both.groupby("design")
    out = pd.DataFrame({"fluid ms (mean)": g["fluid_ms"].mean(), "rigid ms (mean)": g["rigid_ms"].mean(),
                        "rigid / fluid (mean)": g["rigid_over_fluid"].mean(),
                        "min": g["rigid_over_fluid"].min(), "max": g["rigid_over_fluid"].max(),
                        "configurations": g.size()})
    out = out.loc[style.ordered(out.index)]
    out.index = [style.label(d) for d in out.index]
    return out


def exact_gaps(frame: pd.DataFrame, exact_keys: Iterable[str]) -> pd.DataFrame:
    """Per exact point and exact design: the best heuristic's latency, the exact one, the gain, certified gaps.

    Compared inside one point: the heuristics ran in the same compile, and each
    exact design started from the fastest schedule run before it there (the
    best heuristic for the first, the exact designs before it for the others),
    so the difference is the solver's alone. Each gap is certified against the
    point's best proven bound.
    """
    ok = succeeded(frame)
    ok = ok[ok["key"].isin(set(exact_keys))]
    rows = []
    for key, pt in ok.groupby("key", sort=False):
        by = pt.drop_duplicates("design").set_index("design")
        heuristics = [d for d in style.STRICT_HEURISTICS if d in by.index]
        if not heuristics:
            continue
        best_name = min(heuristics, key=lambda d: by.loc[d, "latency_ms"])
        ref = by.loc[best_name]
        strict = [d for d in (*style.STRICT_HEURISTICS, *style.EXACT) if d in by.index]
        best_all = min(float(by.loc[d, "latency_ms"]) for d in strict)
        for d in style.EXACT:
            if d not in by.index:
                continue
            ex = by.loc[d]
            gain = 100.0 * (ref["latency_ms"] - ex["latency_ms"]) / ref["latency_ms"]
            rows.append({**{c: ref[c] for c in CONFIG if c in by.columns}, "design": d,
                         "best heuristic": best_name, "heuristic ms": ref["latency_ms"],
                         "exact ms": ex["latency_ms"], "gain %": gain,
                         "gap heur. %": 100.0 * ref["gap_to_bound"] if _num(ref.get("gap_to_bound")) else float("nan"),
                         "gap exact %": 100.0 * ex["gap_to_bound"] if _num(ex.get("gap_to_bound")) else float("nan"),
                         "gap best %": (100.0 * (best_all / ex["bound_ms"] - 1.0)
                                        if _num(ex.get("bound_ms")) else float("nan")),
                         "bound ms": ex.get("bound_ms"), "bound": ex.get("bound_name"),
                         "% of Ideal (heur.)": ref.get("pct_of_ideal"), "% of Ideal (exact)": ex.get("pct_of_ideal"),
                         "warm start": ex.get("warm_start"), "proven optimal %": ex.get("proven_optimal_pct"),
                         "solve s": ex.get("solve_seconds"), "design s": ex.get("compile_seconds"),
                         "point s": ex.get("point_seconds"), "valid": ex.get("valid")})
    return pd.DataFrame(rows)


def _num(value) -> bool:
    try:
        return value is not None and float(value) == float(value)
    except (TypeError, ValueError):
        return False


def exact_summary(gaps: pd.DataFrame, tol: float = 1e-6) -> pd.DataFrame:
    """Per exact design over its points: how often and by how much it beats the best heuristic; certified gaps."""
    rows = {}
    for d in style.EXACT:
        g = gaps[gaps["design"] == d] if not gaps.empty else gaps
        if g.empty:
            continue
        better = g[g["gain %"] > tol]
        rows[style.label(d)] = {"configurations": len(g), "faster": len(better),
                                "gain >= 1%": int((g["gain %"] >= 1.0).sum()),
                                "mean gain %": g["gain %"].mean(), "max gain %": g["gain %"].max(),
                                "mean gap %": g["gap exact %"].mean(), "max gap %": g["gap exact %"].max(),
                                "best heuristic's mean gap %": g["gap heur. %"].mean(),
                                "best schedule's mean gap %": g["gap best %"].mean()}
    return pd.DataFrame.from_dict(rows, orient="index")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def describe_config(cfg: dict) -> str:
    """A short human label of a configuration (only the knobs that differ from the paper's default)."""
    parts = [str(cfg.get("model"))]
    if cfg.get("mode") not in (None, "decode"):
        parts.append(str(cfg["mode"]))
    if "batch" in cfg:
        parts.append(f"B{cfg['batch']}")
    if "seq" in cfg:
        parts.append(f"S{cfg['seq']}")
    if cfg.get("cores") not in (None, 5888):
        parts.append(f"{cfg['cores']} cores")
    if "hbm_tbps" in cfg:
        parts.append(f"HBM {cfg['hbm_tbps']:g} TB/s")
    if cfg.get("noc_scale") not in (None, 1.0):
        parts.append(f"NoC x{cfg['noc_scale']:g}")
    if cfg.get("compute_scale") not in (None, 1.0):
        parts.append(f"compute x{cfg['compute_scale']:g}")
    if cfg.get("topology") not in (None, "all-to-all"):
        parts.append(str(cfg["topology"]))
    if cfg.get("load_model") not in (None, "fluid") and cfg.get("load_model") == cfg.get("load_model"):
        parts.append(f"{cfg['load_model']} loads")
    return " ".join(parts)


# ---- Markdown ---------------------------------------------------------------------------------------------------


def md_table(df: pd.DataFrame, *, index: bool = True, digits: int | None = None) -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency).

    Floats are rounded to ``digits`` decimals when given (figure summaries
    arrive rounded already) and printed in their shortest form.
    """
    if df is None or df.empty:
        return "_(no rows)_\n"
    tab = df.reset_index().rename(columns={"index": ""}) if index else df

    def cell(v) -> str:
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{round(v, digits) if digits is not None else v:g}"
        if v is None:
            return ""
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in tab.columns) + " |"
    rule = "|" + "|".join("---" for _ in tab.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in tab.itertuples(index=False, name=None)]
    return "\n".join([head, rule, *body]) + "\n"


def environment() -> dict[str, str]:
    import elk
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"elk version": elk.__version__, "git commit": commit or "unknown", "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs"}


def opts_level(level: str) -> Options:
    return Options(level=level)


GAP_DEFINITION = ("**Certified gap** = latency / best proven lower bound - 1: no valid schedule is faster than "
                  "the bound, so a design's certified gap is at least its distance from the optimum, proven. The "
                  "bound is the best of the families elk proves at every point (hbm, execution, flow-shop, lp, "
                  "layer; milp when asked for); \"bound\" names the one that binds. **Ideal (relaxed schedule)** "
                  "is not a bound: it is one heuristic schedule timed under relaxed rules (fastest plans, smallest "
                  "footprints, no interconnect contention), so \"% of Ideal\" (Ideal latency / design latency) "
                  "is a comparison with it, not a gap.")


def write_report(out: Path, frame: pd.DataFrame, figures: list[Rendered], info: RunInfo,
                 exact_keys: Iterable[str], load_model: str = "fluid") -> Path:
    """Write ``out/report.md`` and return its path."""
    out = Path(out)
    exact_keys = list(exact_keys)
    lines: list[str] = ["# elk: the Elk paper's evaluation (Figs. 17-24)", ""]
    level = {"full": "the full evaluation", "quick": "the quick subset (`--quick`)",
             "smoke": "the smoke subset (`--smoke`, tiny model)"}[info.level]
    other = "rigid" if load_model == "fluid" else "fluid"
    lines += [f"Results of {level}" + (", with exact designs at a few points per figure (`--exact`)."
                                       if info.exact else ", heuristic designs only."),
              f"Every point runs under the **{load_model}** load model; Fig. 17's points also run under the {other} "
              "one (heuristic designs) to show what the modelling choice is worth.",
              "Every number below is computed from the stored results (`results/points/*.json`); "
              "nothing is smoothed, clipped or made monotone.", "", GAP_DEFINITION, ""]

    lines += ["## Run", ""]
    env = environment()
    facts = [("command", f"`{info.command}`"), *env.items()]
    for ph in info.phases:
        facts.append((f"{ph.name}: points", f"{ph.points} ({ph.ran} run now, {ph.points - ph.ran} already stored)"))
        facts.append((f"{ph.name}: wall time", f"{ph.wall_seconds:.1f} s ({ph.wall_seconds / 60:.1f} min)"))
        if ph.ran:
            facts.append((f"{ph.name}: compile time summed over points",
                          f"{ph.point_seconds:.1f} s wall ({ph.cpu_seconds:.1f} s CPU) in points + "
                          f"{ph.table_seconds:.1f} s in {ph.table_tasks} shared plan-table builds"))
        facts.append((f"{ph.name}: peak memory", ph.memory))
    facts.append(("total wall time (runs and rendering)", f"{info.total_seconds:.1f} s"))
    lines += [md_table(pd.DataFrame(facts, columns=["", "value"]), index=False), ""]
    if len(info.history) > 1:
        lines += ["Every invocation into this folder (`runs.jsonl`); points already stored are not run again, so "
                  "the cost of the results is the sum over the invocations that ran them:", "",
                  md_table(history_table(info.history), index=False), ""]
    heur = next((ph for ph in info.phases if ph.name.startswith("heuristic")), None)
    if info.level == "full" and heur is not None and heur.ran == heur.points:
        minutes, gib = heur.wall_seconds / 60, heur.peak_tree_bytes / 1024 ** 3
        lines += [f"Budget for the heuristic evaluation on a 2-core machine (under 60 min, under 4 GB): "
                  f"{minutes:.1f} min ({'met' if minutes < 60 else 'NOT met'}), "
                  f"{gib:.2f} GiB ({'met' if 0 < gib < 4 else 'NOT met' if gib else 'not measured'}), "
                  f"with {os.cpu_count()} logical CPUs.", ""]

    fig17 = next((r for r in figures if r.spec.name == "fig17"), None)
    gaps = exact_gaps(frame, exact_keys)
    lines += ["## Headline numbers", ""]
    if fig17 is not None and not fig17.table.empty:
        heur = fig17.table[fig17.table["design"].isin(style.HEURISTICS)]
        n_cfg = configurations(heur).shape[0]
        head = headline(heur)
        head.index = [style.label(d) for d in head.index]
        lines += [f"Per design over Fig. 17's {n_cfg} configurations: % of Ideal (relaxed schedule) and the "
                  "certified gap (Ideal has none: it is not a valid schedule):", "",
                  md_table(head, digits=1), "",
                  f"Bound that binds (configurations): {describe_binding(heur)}.", ""]
        sp = speedups(heur)
        if not sp.empty:
            lines += ["ELK-Full's speedup (other design's latency / ELK-Full's) over the same configurations:", "",
                      md_table(sp, digits=3), ""]
        lm = load_model_comparison(fig17.table)
        if not lm.empty:
            lines += [f"Rigid against fluid loads (Fig. 17's {int(lm['configurations'].max())} configurations, "
                      "the same designs compiled under each model; rigid / fluid > 1 is what the fluid model gains):",
                      "", md_table(lm, digits=3), ""]
    else:
        lines += ["_Fig. 17 has no results._", ""]
    if not gaps.empty:
        summ = exact_summary(gaps)
        lines += ["Exact designs at the points that have them (gain over the best heuristic of the same point; "
                  "certified gaps against that point's best bound):", "", md_table(summ, digits=2), ""]
    below = ideal_below_bound(frame)
    total = count_configurations(frame)
    if below.empty:
        lines += [f"Ideal (relaxed schedule) is at or above the best proven bound at all {total} configurations "
                  "with both.", ""]
    else:
        lines += [f"**Ideal (relaxed schedule) is below the best proven bound at {len(below)} of {total} "
                  "configurations**: there no valid schedule can reach it (listed under "
                  "[Ideal below the bound](#ideal-below-the-bound)).", ""]
    invalid = succeeded(frame)
    invalid = invalid[invalid["valid"].astype(str).str.lower().isin(("false", "0"))]
    failed = failures(frame)
    lines += [f"Schedules the simulator rejected: {len(invalid)}. Points that failed to compile: "
              f"{failed['key'].nunique() if not failed.empty else 0}.", ""]
    if not failed.empty:
        lines += [md_table(failed.drop_duplicates("key")[["model", "key", "status", "error"]], index=False), ""]

    lines += ["## Exact designs against the heuristics", ""]
    if gaps.empty:
        lines += ["Not run (add `--exact`)." if not info.exact else "_No exact results._", ""]
    else:
        lines += exact_section(gaps, frame, exact_keys)

    if fig17 is not None and not load_model_comparison(fig17.table).empty:
        lines += ["## Load models: rigid against fluid", "", *load_model_section(fig17.table), ""]

    if not below.empty:
        lines += ["## Ideal below the bound", "",
                  "Configurations where Ideal (relaxed schedule) is faster than a proven lower bound (so it is "
                  "not one, and % of Ideal understates every design there):", "",
                  md_table(below, index=False, digits=4), ""]

    lines += ["## Figures", ""]
    for r in figures:
        rel = lambda p: os.path.relpath(p, out)  # noqa: E731
        n_cfg = configurations(r.table).shape[0] if not r.table.empty else 0
        lines += [f"### {r.spec.title}{subset_note(r.table, opts_level(info.level))}".replace("\n", " "), "",
                  f"![{r.spec.name}]({rel(r.png)})", "",
                  f"{plural(n_cfg, 'configuration')}, {plural(len(r.table), 'row')}: [{rel(r.csv)}]({rel(r.csv)}), "
                  f"[{rel(r.pdf)}]({rel(r.pdf)}). {r.spec.notes}", "", md_table(r.summary), ""]
        lines += figure_gap_lines(r.table)

    lines += ["## Regenerate", "", "This report (and every figure, CSV and stored point under this folder):", "",
              "```bash", info.command, "```", "",
              "One figure at a time (each reuses the points already stored in the same folder):", "", "```bash",
              *info.figure_commands, "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def figure_gap_lines(tab: pd.DataFrame) -> list[str]:
    """A figure's certified gaps per design, which bound binds, and where Ideal is below the bound."""
    if tab.empty or "gap_to_bound" not in tab:
        return []
    gaps = certified_gaps(tab)
    if gaps.empty:
        return []
    gaps.index = [style.label(d) for d in gaps.index]
    n = configurations(tab).shape[0]
    lines = [f"Certified gap per design (% above the best proven bound); bound that binds: {describe_binding(tab)}.",
             "", md_table(gaps, digits=2), ""]
    ideal = tab[tab["design"] == "ideal"]
    if not ideal.empty and "bound_ms" in ideal:
        bound = pd.to_numeric(ideal["bound_ms"], errors="coerce")
        below = int((ideal["latency_ms"] < bound * (1 - BELOW_TOLERANCE)).sum())
        lines += [f"Ideal (relaxed schedule) below the best bound at {below} of {n} configurations.", ""]
    return lines


def load_model_section(tab: pd.DataFrame) -> list[str]:
    """Fig. 17's designs under both load models: per model and design, and the extremes."""
    both = tab.dropna(subset=["fluid_ms", "rigid_ms"])
    piv = both.pivot_table(index="model", columns="design", values="rigid_over_fluid", aggfunc="mean")
    piv = piv[style.ordered(piv.columns)].rename(columns=style.label)
    worst = both.loc[both["rigid_over_fluid"].idxmax()]
    lines = ["Each design compiled under rigid loads (a load runs at one constant rate for its whole interval) and "
             "fluid loads (its rate may vary; docs/design.md §5.1), at Fig. 17's configurations. Mean of rigid / fluid "
             "latency per model:", "", md_table(piv, digits=3), "",
             f"Largest ratio: {style.label(worst['design'])} at {describe_config(worst.to_dict())}: "
             f"{worst['fluid_ms']:.4f} ms fluid, {worst['rigid_ms']:.4f} ms rigid "
             f"(x{worst['rigid_over_fluid']:.3f}). Per configuration: the `fluid_ms`, `rigid_ms` and "
             "`rigid_over_fluid` columns of fig17.csv."]
    return lines


def exact_section(gaps: pd.DataFrame, frame: pd.DataFrame, exact_keys: Sequence[str]) -> list[str]:
    lines: list[str] = []
    tol = 1e-6
    for d in style.EXACT:
        g = gaps[gaps["design"] == d]
        if g.empty:
            continue
        better = g[g["gain %"] > tol]
        worse = g[g["gain %"] < -tol]
        counts = g["warm start"].dropna().astype(str).value_counts()
        starts = ", ".join(f"{style.label(w)} at {n}" for w, n in counts.items()) if len(counts) > 1 else \
            style.label(counts.index[0]) if len(counts) else "the best heuristic"
        text = (f"**{style.label(d)}** (started from the fastest schedule before it in the same run: {starts}) at "
                f"{len(g)} configurations: faster than the best heuristic at {len(better)}")
        if len(better):
            best = better.loc[better["gain %"].idxmax()]
            text += (f", by {better['gain %'].mean():.2f}% on average there and at most {best['gain %']:.2f}% "
                     f"({describe_config(best.to_dict())}: {style.label(best['best heuristic'])} "
                     f"{best['heuristic ms']:.4f} -> {best['exact ms']:.4f} ms, certified gap "
                     f"{best['gap heur. %']:.2f}% -> {best['gap exact %']:.2f}%)")
        text += f"; equal at {len(g) - len(better) - len(worse)}"
        if len(worse):
            text += f"; slower at {len(worse)} (should not happen: the warm start is kept otherwise)"
        gap = g["gap exact %"].dropna()
        if len(gap):
            text += f". Certified gap {gap.mean():.2f}% mean, {gap.max():.2f}% max"
        proven = g["proven optimal %"].dropna()
        solve = g["design s"].dropna()
        if len(proven):
            text += f". Windows proven optimal: {proven.mean():.1f}% on average"
        if len(solve):
            text += (f". Solver time per configuration: {solve.mean():.1f} s mean, {solve.max():.1f} s max "
                     f"({solve.sum():.1f} s in all)")
        lines += [text + ".", ""]
    points = succeeded(frame)
    points = points[points["key"].isin(set(exact_keys))].drop_duplicates("key")
    lines += [f"The exact points ({len(points)}) took {points['point_seconds'].sum():.1f} s of compile time in all "
              "(summed over points, each including its heuristics and bounds).", ""]
    show = gaps.copy()
    show["configuration"] = [describe_config(r) for r in show.to_dict("records")]
    show["design"] = show["design"].map(style.label)
    show["best heuristic"] = show["best heuristic"].map(style.label)
    show = show[["configuration", "design", "best heuristic", "heuristic ms", "exact ms", "gain %", "gap heur. %",
                 "gap exact %", "bound", "% of Ideal (heur.)", "% of Ideal (exact)", "proven optimal %",
                 "design s"]]
    lines += [md_table(show, index=False, digits=4), ""]
    return lines
