"""Fig. 23: latency vs core count, all-to-all and mesh (B32 S2048), HBM bandwidth scaled with the cores.

LLMs: cores = 736 x {3..7} = 2,208-5,152 with HBM = cores x 4/1,472 TB/s
(6-14 TB/s; 5,888 cores would be the default 16 TB/s). DiT-XL/2 (one
denoising step over 32 images of 256 tokens): cores = 184 x {3..8} = 552-1,472
with HBM = cores x 1/1,472 TB/s (0.375-1 TB/s). The artifact's ViT-Huge is
replaced by DiT-XL/2 (the model the paper names for this figure). Meshes use
the most square rows x cols for each core count.

    python -m experiments.paper.fig23_cores --out DIR [--quick | --smoke] [--exact] [--workers N]

Quick: Llama2-13B at 2,208 cores and DiT-XL/2 at 552 and 1,472 cores, all-to-all.
"""
from __future__ import annotations

import sys

import pandas as pd

from experiments.paper import plots, style
from experiments.paper.script import main_for
from experiments.paper.spec import BASE_COLUMNS, LLMS, TOPOLOGIES, FigureSpec, Options, columns, point

DIT = "dit-xl-2"
LLM_CORES = [736 * k for k in range(3, 8)]
DIT_CORES = [184 * k for k in range(3, 9)]
#: HBM TB/s per core: 16 TB/s over 5,888 cores for LLMs (4 per 1,472), 1 TB/s per 1,472 cores for DiT.
LLM_TBPS_PER_CORE = 4 / 1472
DIT_TBPS_PER_CORE = 1 / 1472


def scaled(model: str, cores: int, topology: str):
    per_core = DIT_TBPS_PER_CORE if model == DIT else LLM_TBPS_PER_CORE
    return point(model, cores=cores, hbm_tbps=cores * per_core, topology=topology)


def points(opts: Options):
    if opts.level == "full":
        llm = [scaled(m, c, t) for t in TOPOLOGIES for c in LLM_CORES for m in LLMS]
        return llm + [scaled(DIT, c, t) for t in TOPOLOGIES for c in DIT_CORES]
    if opts.level == "quick":
        return [scaled("llama2-13b", LLM_CORES[0], "all-to-all"),
                *(scaled(DIT, c, "all-to-all") for c in (DIT_CORES[0], DIT_CORES[-1]))]
    return [scaled("tiny", c, "all-to-all") for c in (LLM_CORES[0], LLM_CORES[-1])]


def exact_configs(opts: Options):
    if opts.level == "full":
        return [scaled(m, c, "all-to-all") for m, cs in (("llama2-13b", LLM_CORES), (DIT, DIT_CORES))
                for c in (cs[0], cs[-1])]
    if opts.level == "quick":
        return [scaled(DIT, DIT_CORES[0], "all-to-all")]
    return [scaled("tiny", LLM_CORES[0], "all-to-all")]


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, BASE_COLUMNS)


def draw(tab: pd.DataFrame):
    return plots.line_panels(tab, rows="topology", cols="model", x="cores", y="latency_ms", xlabel="cores",
                             ylabel="latency (ms)", title=lambda topo, model: f"{model}, {topo}")


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """ELK-Full's speedup over Basic and Static per model and topology (mean over core counts)."""
    piv = tab.pivot_table(index=["model", "topology", "cores"], columns="design", values="latency_ms")
    if "elk-full" not in piv:
        return pd.DataFrame()
    out = pd.DataFrame({f"vs {style.label(d)}": (piv[d] / piv["elk-full"]).groupby(level=["model", "topology"]).mean()
                        for d in ("basic", "static", "elk-dyn") if d in piv})
    if "ideal" in piv:
        pct = (100 * piv["ideal"] / piv["elk-full"]).groupby(level=["model", "topology"]).mean()
        out["ELK-Full % of Ideal"] = pct
    return out.round(2)


SPEC = FigureSpec(name="fig23", title="Fig. 23: latency vs core count (HBM scaled with cores, B32)", points=points,
                  exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: ELK-Full's mean speedup over the other designs per model and topology.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
