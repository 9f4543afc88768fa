"""Fig. 20: Llama2-13B latency breakdown vs HBM bandwidth 6-16 TB/s (step 1), all-to-all, B32 S2048.

A subset of Fig. 19's points (they run once). Stacked bars in ms: execution
overlapped with loading, loading only, execution only, interconnect stall.
Unlike the artifact's version of this figure, no time is moved between
categories.

    python -m experiments.paper.fig20_hbm_breakdown --out DIR [--quick | --smoke] [--exact] [--workers N]
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, FigureSpec, Options, columns, small_model, sweep

HBM_TBPS = list(range(6, 17))


def points(opts: Options):
    hbm = HBM_TBPS if opts.level == "full" else [8, 16]
    return sweep((small_model(opts),), hbm_tbps=hbm, topology="all-to-all")


def exact_configs(opts: Options):
    return sweep((small_model(opts),), hbm_tbps=[10, 16] if opts.level == "full" else 8, topology="all-to-all")


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, (*BASE_COLUMNS, *style.BREAKDOWN))


def draw(tab: pd.DataFrame):
    designs = style.ordered(tab["design"].unique())
    fig, axes = style.grid(1, max(len(designs), 1), width=2.6, height=3.0, sharey=True)
    for ax, design in zip(axes[0], designs):
        sub = tab[tab["design"] == design].sort_values("hbm_tbps")
        plots.stacked_breakdown(ax, sub, x_labels=[f"{v:g}" for v in sub["hbm_tbps"]])
        ax.set_title(f"{', '.join(sub['model'].unique())}: {style.label(design)}", fontsize=9)
        ax.set_xlabel("HBM TB/s", fontsize=8)
    axes[0, 0].set_ylabel("time (ms)", fontsize=8)
    style.legend_below(fig, axes[:, :1])
    return fig


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """Per design and bandwidth extremes: latency and its breakdown (ms)."""
    lo, hi = tab["hbm_tbps"].min(), tab["hbm_tbps"].max()
    sub = tab[tab["hbm_tbps"].isin([lo, hi])].copy()
    sub["design"] = pd.Categorical(sub["design"], style.ordered(sub["design"]))
    sub = sub.sort_values(["design", "hbm_tbps"])
    out = sub[["design", "hbm_tbps", "latency_ms", *style.BREAKDOWN]].copy()
    out["design"] = out["design"].astype(str).map(style.label)
    out.columns = ["design", "HBM TB/s", "latency ms", "overlapped", "preload only", "execute only", "stall"]
    return out.set_index(["design", "HBM TB/s"]).round(3)


SPEC = FigureSpec(name="fig20", title="Fig. 20: Llama2-13B breakdown vs HBM bandwidth (all-to-all, B32, S2048)",
                  points=points, exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: latency and breakdown (ms) at the lowest and highest bandwidth.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
