"""Fig. 21: NoC utilisation vs HBM bandwidth 2-18 TB/s (step 1), 4 LLMs, all-to-all and mesh (B32 S2048).

NoC utilisation is the simulator's: interconnect capacity used by HBM-load
distribution and by operators' communication, over the latency. Values are
plotted as computed (the artifact scales values above 0.98 down; we don't).
Shares its 4-16 TB/s points with Fig. 19.

    python -m experiments.paper.fig21_noc_utilisation --out DIR [--quick | --smoke] [--exact] [--workers N]
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.fig19_hbm_latency import exact_configs  # the same few exact points
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, LLMS, TOPOLOGIES, FigureSpec, Options, columns, small_model, sweep

HBM_TBPS = list(range(2, 19))


def points(opts: Options):
    if opts.level == "full":
        return sweep(LLMS, hbm_tbps=HBM_TBPS, topology=TOPOLOGIES)
    hbm = [2, 8, 16] if opts.level == "quick" else [8, 16]
    return sweep((small_model(opts),), hbm_tbps=hbm, topology=TOPOLOGIES)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, (*BASE_COLUMNS, "noc_utilisation", "hbm_utilisation", "stall_ms"))


def draw(tab: pd.DataFrame):
    scaled = tab.assign(noc_pct=100 * tab["noc_utilisation"])
    return plots.line_panels(scaled, rows="topology", cols="model", x="hbm_tbps", y="noc_pct",
                             xlabel="HBM bandwidth (TB/s)", ylabel="NoC utilisation (%)",
                             title=lambda topo, model: f"{model}, {topo}")


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """NoC utilisation (%) per topology and design: mean and max over models and bandwidths."""
    g = (100 * tab["noc_utilisation"]).groupby([tab["topology"], tab["design"]])
    out = pd.DataFrame({"mean NoC util %": g.mean(), "max": g.max()}).reset_index()
    out["design"] = pd.Categorical(out["design"], style.ordered(out["design"]))
    out = out.sort_values(["topology", "design"])
    out["design"] = out["design"].astype(str).map(style.label)
    return out.set_index(["topology", "design"]).round(1)


SPEC = FigureSpec(name="fig21", title="Fig. 21: NoC utilisation vs HBM bandwidth (B32, S2048)", points=points,
                  exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: NoC utilisation (%) per topology and design over models and bandwidths.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
