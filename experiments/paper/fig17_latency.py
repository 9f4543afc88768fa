"""Fig. 17: per-token decode latency of the five designs, 4 LLMs x batch {16,32,64} x KV length {2048,4096}.

IPU-POD4 (5,888 cores), 16 TB/s HBM, all-to-all. With ``--exact`` CP-SAT and
MILP (warm-started from ELK-Full) are added at B32 S2048 of every model.

    python experiments/paper/fig17_latency.py --out DIR [--quick | --smoke] [--exact] [--workers N]

Quick: Llama2-13B and OPT-30B at B32 S2048. Smoke: the tiny model.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``paper`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from paper import plots, style  # noqa: E402
from paper.script import main_for  # noqa: E402
from paper.spec import BASE_COLUMNS, LLMS, FigureSpec, Options, columns, sweep  # noqa: E402

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


def table(rows: pd.DataFrame) -> pd.DataFrame:
    return columns(rows, BASE_COLUMNS)


def draw(tab: pd.DataFrame):
    models = plots.panel_values(tab, "model")
    fig, axes = style.grid(1, len(models), width=4.2, height=3.0)
    for ax, model in zip(axes[0], models):
        plots.grouped_bars(ax, tab[tab["model"] == model], group=("seq", "batch"), y="latency_ms",
                           group_label=lambda g: f"S{g[0]}\nB{g[1]}")
        ax.set_title(model, fontsize=9)
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
                  exact_configs=exact_configs, table=table, draw=draw, summary=summary,
                  notes="Summary: % of Ideal (Ideal latency / design latency), averaged over B and S.")
main = main_for(SPEC)

if __name__ == "__main__":
    sys.exit(main())
