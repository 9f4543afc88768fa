"""Fig. 24: Llama2-13B training (the paper's proxy, one forward pass: ``--mode forward``, B2 S2048) TFLOPS vs compute scale.

Sweep: compute scale {0.75, 1, 1.25, 1.5} (plotted as the chip's peak TFLOPS
it gives, 749-1,498 at 5,888 cores) x NoC scale {1, 1.5} x HBM {0.3, 0.4} TB/s
x {all-to-all, mesh}. All five designs run; the figure plots Static, ELK-Full
and Ideal as the paper does (plus exact designs where run); the CSV has all.

    python -m experiments.paper.fig24_training --out DIR [--quick | --smoke] [--exact] [--workers N]

Quick and smoke: the tiny model (a Llama2-13B training point builds ~1 min of
plan tables per compute/NoC/topology setting), B2 S256 / B1 S64, two compute
scales, all-to-all.
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, TOPOLOGIES, FigureSpec, Options, columns, sweep

COMPUTE_SCALES = [0.75, 1.0, 1.25, 1.5]
NOC_SCALES = [1.0, 1.5]
HBM_TBPS = [0.3, 0.4]
PLOTTED = ("static", "elk-full", "ideal", *style.EXACT)


def points(opts: Options):
    if opts.level == "full":
        return sweep(("llama2-13b",), mode="forward", batch=2, seq=2048, compute_scale=COMPUTE_SCALES,
                     noc_scale=NOC_SCALES, hbm_tbps=HBM_TBPS, topology=TOPOLOGIES)
    batch, seq = (2, 256) if opts.level == "quick" else (1, 64)
    return sweep(("tiny",), mode="forward", batch=batch, seq=seq, compute_scale=[0.75, 1.5], noc_scale=1.0,
                 hbm_tbps=0.3, topology="all-to-all")


def exact_configs(opts: Options):
    if opts.level == "full":
        return sweep(("llama2-13b",), mode="forward", batch=2, seq=2048, compute_scale=1.0, noc_scale=1.0,
                     hbm_tbps=0.4, topology="all-to-all")
    return points(opts)[:1]


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, (*BASE_COLUMNS, "peak_tflops", "achieved_tflops", "hbm_utilisation"))


def draw(tab: pd.DataFrame):
    shown = tab[tab["design"].isin(PLOTTED)].copy()
    shown["setting"] = [f"HBM {h:g} TB/s, NoC x{n:g}" for h, n in zip(shown["hbm_tbps"], shown["noc_scale"])]
    return plots.line_panels(shown, rows="topology", cols="setting", x="peak_tflops", y="achieved_tflops",
                             xlabel="available TFLOPS (peak x compute scale)", ylabel="achieved TFLOPS",
                             title=lambda topo, setting: f"{setting}, {topo}")


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """Achieved TFLOPS per design (mean over the sweep) and as % of Ideal's."""
    piv = tab.pivot_table(index=["topology", "hbm_tbps", "noc_scale", "compute_scale"], columns="design",
                          values="achieved_tflops")
    out = pd.DataFrame({"mean TFLOPS": piv.mean()})
    if "ideal" in piv:
        out["% of Ideal TFLOPS"] = (100 * piv.div(piv["ideal"], axis=0)).mean()
    out = out.loc[style.ordered(out.index)]
    out.index = [style.label(d) for d in out.index]
    return out.round(1)


SPEC = FigureSpec(name="fig24", title="Fig. 24: Llama2-13B training TFLOPS vs compute scale (B2, S2048)",
                  points=points, exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: mean achieved TFLOPS per design over the sweep.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
