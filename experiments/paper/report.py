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
    """Mean, min and max % of Ideal per design over a table's configurations."""
    g = tab.dropna(subset=["pct_of_ideal"]).groupby("design")["pct_of_ideal"]
    out = pd.DataFrame({"mean % of Ideal": g.mean(), "min": g.min(), "max": g.max(), "configurations": g.size()})
    return out.loc[style.ordered(out.index)]


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


def exact_gaps(frame: pd.DataFrame, exact_keys: Iterable[str], reference: str = "elk-full") -> pd.DataFrame:
    """Per exact point and exact design: the heuristic's latency, the exact one, and the gain.

    Compared inside one point (the exact designs are warm-started from the
    ``reference`` schedule computed in the same run), so the difference is the
    solver's alone.
    """
    ok = succeeded(frame)
    ok = ok[ok["key"].isin(set(exact_keys))]
    rows = []
    for key, pt in ok.groupby("key", sort=False):
        by = pt.set_index("design")
        if reference not in by.index:
            continue
        ref = by.loc[reference]
        for d in style.EXACT:
            if d not in by.index:
                continue
            ex = by.loc[d]
            gain = 100.0 * (ref["latency_ms"] - ex["latency_ms"]) / ref["latency_ms"]
            rows.append({**{c: ref[c] for c in CONFIG if c in by.columns}, "design": d,
                         f"{reference} ms": ref["latency_ms"], "exact ms": ex["latency_ms"],
                         "gain %": gain, "% of Ideal (heur.)": ref.get("pct_of_ideal"),
                         "% of Ideal (exact)": ex.get("pct_of_ideal"),
                         "proven optimal %": ex.get("proven_optimal_pct"),
                         "solve s": ex.get("solve_seconds"), "design s": ex.get("compile_seconds"),
                         "point s": ex.get("point_seconds"), "valid": ex.get("valid")})
    return pd.DataFrame(rows)


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


def write_report(out: Path, frame: pd.DataFrame, figures: list[Rendered], info: RunInfo,
                 exact_keys: Iterable[str]) -> Path:
    """Write ``out/report.md`` and return its path."""
    out = Path(out)
    exact_keys = list(exact_keys)
    lines: list[str] = ["# elk: the Elk paper's evaluation (Figs. 17-24)", ""]
    level = {"full": "the full evaluation", "quick": "the quick subset (`--quick`)",
             "smoke": "the smoke subset (`--smoke`, tiny model)"}[info.level]
    lines += [f"Results of {level}" + (", with exact designs at a few points per figure (`--exact`)."
                                       if info.exact else ", heuristic designs only."),
              "Every number below is computed from the stored results (`results/points/*.json`); "
              "nothing is smoothed, clipped or made monotone.", ""]

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
    lines += ["## Headline numbers", ""]
    if fig17 is not None and not fig17.table.empty:
        heur = fig17.table[fig17.table["design"].isin(style.HEURISTICS)]
        pct = pct_of_ideal(heur)
        pct.index = [style.label(d) for d in pct.index]
        n_cfg = heur[[c for c in CONFIG if c in heur]].drop_duplicates().shape[0]
        lines += [f"Average % of Ideal (Ideal latency / design latency) over Fig. 17's {n_cfg} configurations:", "",
                  md_table(pct, digits=1), ""]
        sp = speedups(heur)
        if not sp.empty:
            lines += ["ELK-Full's speedup (other design's latency / ELK-Full's) over the same configurations:", "",
                      md_table(sp, digits=3), ""]
    else:
        lines += ["_Fig. 17 has no results._", ""]
    invalid = succeeded(frame)
    invalid = invalid[invalid["valid"].astype(str).str.lower().isin(("false", "0"))]
    failed = failures(frame)
    lines += [f"Schedules the simulator rejected: {len(invalid)}. Points that failed to compile: "
              f"{failed['key'].nunique() if not failed.empty else 0}.", ""]
    if not failed.empty:
        lines += [md_table(failed.drop_duplicates("key")[["model", "key", "status", "error"]], index=False), ""]

    lines += ["## Exact designs against the heuristics", ""]
    gaps = exact_gaps(frame, exact_keys)
    if gaps.empty:
        lines += ["Not run (add `--exact`)." if not info.exact else "_No exact results._", ""]
    else:
        lines += exact_section(gaps, frame, exact_keys)

    lines += ["## Figures", ""]
    for r in figures:
        rel = lambda p: os.path.relpath(p, out)  # noqa: E731
        n_cfg = r.table[[c for c in CONFIG if c in r.table]].drop_duplicates().shape[0] if not r.table.empty else 0
        lines += [f"### {r.spec.title}{subset_note(r.table, opts_level(info.level))}".replace("\n", " "), "", f"![{r.spec.name}]({rel(r.png)})", "",
                  f"{plural(n_cfg, 'configuration')}, {plural(len(r.table), 'row')}: [{rel(r.csv)}]({rel(r.csv)}), "
                  f"[{rel(r.pdf)}]({rel(r.pdf)}). {r.spec.notes}", "", md_table(r.summary), ""]

    lines += ["## Regenerate", "", "This report (and every figure, CSV and stored point under this folder):", "",
              "```bash", info.command, "```", "",
              "One figure at a time (each reuses the points already stored in the same folder):", "", "```bash",
              *info.figure_commands, "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def exact_section(gaps: pd.DataFrame, frame: pd.DataFrame, exact_keys: Sequence[str]) -> list[str]:
    lines: list[str] = []
    tol = 1e-6
    for d in style.EXACT:
        g = gaps[gaps["design"] == d]
        if g.empty:
            continue
        better = g[g["gain %"] > tol]
        worse = g[g["gain %"] < -tol]
        text = (f"**{style.label(d)}** (warm-started from ELK-Full in the same run) at {len(g)} configurations: "
                f"faster than ELK-Full at {len(better)}")
        if len(better):
            best = better.loc[better["gain %"].idxmax()]
            text += (f", by {better['gain %'].mean():.2f}% on average there and at most {best['gain %']:.2f}% "
                     f"({describe_config(best.to_dict())}: {best['elk-full ms']:.4f} -> {best['exact ms']:.4f} ms, "
                     f"{best['% of Ideal (heur.)']:.1f} -> {best['% of Ideal (exact)']:.1f}% of Ideal)")
        text += f"; equal at {len(g) - len(better) - len(worse)}"
        if len(worse):
            text += f"; slower at {len(worse)} (should not happen: the warm start is kept otherwise)"
        proven = g["proven optimal %"].dropna()
        solve = g["design s"].dropna()
        text += (f". Windows proven optimal: {proven.mean():.1f}% on average. Solver time per configuration: "
                 f"{solve.mean():.1f} s mean, {solve.max():.1f} s max ({solve.sum():.1f} s in all).")
        lines += [text, ""]
    points = succeeded(frame)
    points = points[points["key"].isin(set(exact_keys))].drop_duplicates("key")
    lines += [f"The exact points ({len(points)}) took {points['point_seconds'].sum():.1f} s of compile time in all "
              "(summed over points, each including its ELK-Full warm start).", ""]
    show = gaps.copy()
    show["configuration"] = [describe_config(r) for r in show.to_dict("records")]
    show["design"] = show["design"].map(style.label)
    show = show[["configuration", "design", "elk-full ms", "exact ms", "gain %", "% of Ideal (heur.)",
                 "% of Ideal (exact)", "proven optimal %", "design s"]]
    lines += [md_table(show, index=False, digits=4), ""]
    return lines
