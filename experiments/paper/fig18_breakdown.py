"""Fig. 18: where the time goes at B32 S2048: breakdown, HBM utilisation, achieved TFLOPS, NoC utilisation.

The same configurations as Fig. 17's B32 S2048 column (they run once). The
breakdown is the simulator's four-way split of the latency: execution
overlapped with HBM loading, loading only, execution only, and interconnect
stall.

    python -m experiments.paper.fig18_breakdown --out DIR [--quick | --smoke] [--exact] [--workers N]
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.fig17_latency import QUICK_MODELS
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, LLMS, FigureSpec, Options, columns, sweep

METRICS = (*style.BREAKDOWN, "hbm_utilisation", "noc_utilisation", "achieved_tflops", "peak_sram_bytes")


def points(opts: Options):
    return sweep(opts.pick(LLMS, QUICK_MODELS, ("tiny",)), batch=32, seq=2048)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, (*BASE_COLUMNS, *METRICS))


def draw(tab: pd.DataFrame):
    fig, axes = style.grid(2, 2, width=6.0, height=3.2)
    ordered = tab.copy()
    rank = {d: i for i, d in enumerate(style.DESIGN_ORDER)}
    ordered["_r"] = ordered["design"].map(lambda d: rank.get(d, len(rank)))
    ordered = ordered.sort_values(["model", "_r"])
    plots.stacked_breakdown(axes[0, 0], ordered, normalise=True,
                            x_labels=[f"{m} {style.label(d)}" for m, d in zip(ordered["model"], ordered["design"])])
    axes[0, 0].set_ylabel("% of latency", fontsize=8)
    axes[0, 0].set_title("(a) time breakdown", fontsize=9)
    axes[0, 0].legend(fontsize=6, loc="lower right", framealpha=0.9)
    scaled = tab.assign(hbm_pct=100 * tab["hbm_utilisation"], noc_pct=100 * tab["noc_utilisation"])
    for ax, y, name in ((axes[0, 1], "hbm_pct", "(b) HBM utilisation (%)"),
                        (axes[1, 0], "achieved_tflops", "(c) achieved TFLOPS"),
                        (axes[1, 1], "noc_pct", "(d) NoC utilisation (%)")):
        plots.grouped_bars(ax, scaled, group=("model",), y=y, group_label=lambda g: g[0])
        ax.set_title(name, fontsize=9)
    style.legend_below(fig, axes[:, 1:])
    return fig


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """Per design, averaged over models: breakdown shares of latency, utilisations and TFLOPS."""
    shares = tab.copy()
    for part in style.BREAKDOWN:
        shares[part] = 100 * shares[part] / shares["latency_ms"]
    shares["hbm_utilisation"] *= 100
    shares["noc_utilisation"] *= 100
    out = shares.groupby("design")[[*style.BREAKDOWN, "hbm_utilisation", "noc_utilisation",
                                    "achieved_tflops"]].mean()
    out = out.loc[style.ordered(out.index)]
    out.index = [style.label(d) for d in out.index]
    out.columns = ["overlapped %", "preload only %", "execute only %", "stall %", "HBM util %", "NoC util %",
                   "TFLOPS"]
    return out.round(1)


SPEC = FigureSpec(name="fig18", title="Fig. 18: breakdown, HBM utilisation, TFLOPS and NoC use (B32, S2048)",
                  points=points, exact_configs=points, table=table, draw=draw, summary=summary,
                  notes="Summary: per design, mean over models; breakdown as % of latency.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
