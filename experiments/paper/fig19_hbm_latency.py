"""Fig. 19: per-token latency vs HBM bandwidth 4-16 TB/s (step 1), 4 LLMs, all-to-all and mesh (B32 S2048).

The mesh is elk's own model (hops and link bandwidth, ``topology="mesh"``),
not the artifact's scalar slowdown. Every bandwidth point is plotted as run.

    python -m experiments.paper.fig19_hbm_latency --out DIR [--quick | --smoke] [--exact] [--workers N]

Quick: Llama2-13B at 8 and 16 TB/s. Exact: Llama2-13B at 4, 10 and 16 TB/s, both topologies.
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, LLMS, TOPOLOGIES, FigureSpec, Options, columns, small_model, sweep

HBM_TBPS = list(range(4, 17))


def points(opts: Options):
    if opts.level == "full":
        return sweep(LLMS, hbm_tbps=HBM_TBPS, topology=TOPOLOGIES)
    return sweep((small_model(opts),), hbm_tbps=[8, 16], topology=TOPOLOGIES)


def exact_configs(opts: Options):
    if opts.level == "full":
        return sweep(("llama2-13b",), hbm_tbps=[4, 10, 16], topology=TOPOLOGIES)
    return sweep((small_model(opts),), hbm_tbps=8, topology="all-to-all")


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, BASE_COLUMNS)


def draw(tab: pd.DataFrame):
    return plots.line_panels(tab, rows="topology", cols="model", x="hbm_tbps", y="latency_ms",
                             xlabel="HBM bandwidth (TB/s)", ylabel="latency (ms)",
                             title=lambda topo, model: f"{model}, {topo}")


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """% of Ideal per topology and design, averaged over models and bandwidths; plus the range."""
    g = tab.groupby(["topology", "design"])["pct_of_ideal"]
    out = pd.DataFrame({"mean % of Ideal": g.mean(), "min": g.min(), "max": g.max(), "points": g.size()})
    out = out.reset_index()
    out["design"] = pd.Categorical(out["design"], style.ordered(out["design"]))
    out = out.sort_values(["topology", "design"])
    out["design"] = out["design"].astype(str).map(style.label)
    return out.set_index(["topology", "design"]).round(1)


SPEC = FigureSpec(name="fig19", title="Fig. 19: latency vs HBM bandwidth (B32, S2048)", points=points,
                  exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: % of Ideal per topology and design over all models and bandwidths.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
