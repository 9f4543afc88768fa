"""Fig. 22: Llama2-70B latency vs NoC bandwidth at HBM 8, 10, 12 and 14 TB/s, all-to-all and mesh (B32 S2048).

NoC bandwidth is swept as the chip's ``noc_scale`` in {0.75, 1, 1.25, 1.5}
(it scales core-to-core shifts and the bandwidth that spreads HBM data over
the cores) and plotted as the all-to-all load-distribution bandwidth it gives:
cores x 5.5 GB/s x scale = 24.3, 32.4, 40.5 and 48.6 TB/s at 5,888 cores. On a
mesh the same scale multiplies the link bandwidth.

    python -m experiments.paper.fig22_noc_bandwidth --out DIR [--quick | --smoke] [--exact] [--workers N]

Quick: Llama2-13B at NoC x0.75 and x1.5, HBM 8 TB/s, all-to-all.
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, TOPOLOGIES, FigureSpec, Options, columns, small_model, sweep

NOC_SCALES = [0.75, 1.0, 1.25, 1.5]
HBM_TBPS = [8, 10, 12, 14]


def points(opts: Options):
    if opts.level == "full":
        return sweep(("llama2-70b",), noc_scale=NOC_SCALES, hbm_tbps=HBM_TBPS, topology=TOPOLOGIES)
    return sweep((small_model(opts),), noc_scale=[0.75, 1.5], hbm_tbps=8, topology="all-to-all")


def exact_configs(opts: Options):
    if opts.level == "full":
        return sweep(("llama2-70b",), noc_scale=[0.75, 1.5], hbm_tbps=8, topology="all-to-all")
    return sweep((small_model(opts),), noc_scale=0.75, hbm_tbps=8, topology="all-to-all")


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, (*BASE_COLUMNS, "noc_tbps", "noc_utilisation", "stall_ms"))


def draw(tab: pd.DataFrame):
    return plots.line_panels(tab, rows="topology", cols="hbm_tbps", x="noc_tbps", y="latency_ms",
                             xlabel="NoC load bandwidth (TB/s)", ylabel="latency (ms)",
                             title=lambda topo, hbm: f"{tab['model'].iloc[0]}, HBM {hbm:g} TB/s, {topo}")


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """Per topology and design: speedup from the lowest to the highest NoC scale (over HBM settings)."""
    lo, hi = tab["noc_scale"].min(), tab["noc_scale"].max()
    piv = tab.pivot_table(index=["topology", "design", "hbm_tbps"], columns="noc_scale", values="latency_ms")
    if lo == hi or lo not in piv or hi not in piv:
        return pd.DataFrame()
    gain = (piv[lo] / piv[hi]).dropna().groupby(level=["topology", "design"])
    out = pd.DataFrame({f"mean speedup x{lo:g} -> x{hi:g}": gain.mean(), "min": gain.min(), "max": gain.max(),
                        "HBM settings": gain.size()}).reset_index()
    out["design"] = pd.Categorical(out["design"], style.ordered(out["design"]))
    out = out.sort_values(["topology", "design"])
    out["design"] = out["design"].astype(str).map(style.label)
    return out.set_index(["topology", "design"]).round(3)


SPEC = FigureSpec(name="fig22", title="Fig. 22: latency vs NoC bandwidth (B32, S2048)", points=points,
                  exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: latency at the lowest NoC scale / latency at the highest, over the HBM settings.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
