"""Fig. 17: per-token decode latency of the five designs, 4 LLMs x batch {16,32,64} x KV length {2048,4096}.

IPU-POD4 (5,888 cores), 16 TB/s HBM, all-to-all, under the evaluation's load
model (fluid by default). The same 24 points also run under the other load
model (heuristics only): the table's ``fluid_ms``, ``rigid_ms`` and
``rigid_over_fluid`` columns, and the short black ticks on the bars, show what
the modelling choice is worth per design. With ``--exact`` the exact designs
(periodic, then the MILP windows, starting from the best heuristic) are added
at B32 S2048 of every model.

    python -m experiments.paper.fig17_latency --out DIR [--quick | --smoke] [--exact] [--workers N]

Quick: Llama2-13B and OPT-30B at B32 S2048. Smoke: the tiny model.
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, CONFIG, LLMS, FigureSpec, Options, columns, main_rows, sweep

QUICK_MODELS = ("llama2-13b", "opt-30b")


def points(opts: Options):
    if opts.level == "full":
        return sweep(LLMS, batch=[16, 32, 64], seq=[2048, 4096])
    if opts.level == "quick":
        return sweep(QUICK_MODELS, batch=32, seq=2048)
    return sweep(("tiny",), batch=[16, 32], seq=2048)


def exact_configs(opts: Options):
    """B32 S2048 of every model (the paper's default point)."""
    return sweep(opts.pick(LLMS, QUICK_MODELS[:1], ("tiny",)), batch=32, seq=2048)


#: Columns of the load-model comparison (NaN where a design did not run under both, e.g. exact designs).
LOAD_MODEL_COLUMNS = ("fluid_ms", "rigid_ms", "rigid_over_fluid")


def table(rows: pd.DataFrame) -> pd.DataFrame:
    main = main_rows(rows)
    tab = columns(main, BASE_COLUMNS)
    return with_load_model_columns(tab, rows)


def with_load_model_columns(tab: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Add each row's latency under fluid and rigid loads (one is the row's own, the other its variant's)."""
    tab = tab.copy()
    for c in LOAD_MODEL_COLUMNS:
        tab[c] = float("nan")
    if "variant" not in rows or tab.empty:
        return tab
    other = rows[rows["variant"].astype(bool)]
    if other.empty:
        return tab
    config = [c for c in CONFIG if c != "load_model" and c in tab.columns and c in other.columns]
    lookup = other.set_index([*config, "design"])["latency_ms"]
    lookup = lookup[~lookup.index.duplicated()]
    other_model = str(other["load_model"].iloc[0])
    keys = pd.MultiIndex.from_frame(tab[[*config, "design"]])
    other_ms = lookup.reindex(keys).to_numpy(dtype=float)
    own = tab["latency_ms"].to_numpy(dtype=float)
    tab["fluid_ms"] = other_ms if other_model == "fluid" else own
    tab["rigid_ms"] = other_ms if other_model == "rigid" else own
    tab["rigid_over_fluid"] = tab["rigid_ms"] / tab["fluid_ms"]
    return tab


def draw(tab: pd.DataFrame):
    models = plots.panel_values(tab, "model")
    fig, axes = style.grid(1, len(models), width=4.2, height=3.0)
    own = str(tab["load_model"].iloc[0]) if "load_model" in tab and len(tab) else "fluid"
    other = "rigid" if own == "fluid" else "fluid"
    overlay = f"{other}_ms" if f"{other}_ms" in tab and tab[f"{other}_ms"].notna().any() else None
    for ax, model in zip(axes[0], models):
        plots.grouped_bars(ax, tab[tab["model"] == model], group=("seq", "batch"), y="latency_ms",
                           group_label=lambda g: f"S{g[0]}\nB{g[1]}", overlay=overlay,
                           overlay_label=f"same design, {other} loads")
        ax.set_title(f"{model} ({own} loads)", fontsize=9)
    axes[0, 0].set_ylabel("per-token latency (ms)", fontsize=8)
    style.legend_below(fig, axes)
    return fig


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """% of Ideal per model and design, averaged over batch and KV length."""
    out = tab.pivot_table(index="model", columns="design", values="pct_of_ideal", aggfunc="mean")
    out = out[style.ordered(out.columns)]
    out.loc["average"] = out.mean()
    return out.rename(columns=style.label).round(1)


SPEC = FigureSpec(name="fig17", title="Fig. 17: per-token latency (ms) of every design", points=points,
                  exact_configs=exact_configs, table=table, draw=draw, summary=summary, compare_load_models=True,
                  notes="Summary: % of Ideal (relaxed schedule; Ideal latency / design latency), averaged over "
                        "B and S. Ticks on the bars: the same design under the other load model.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
