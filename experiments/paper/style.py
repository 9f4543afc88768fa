"""How every paper figure looks: one colour, marker and label per design, and one way to save.

Kept in one place so the eight figures agree (ELK-Full is the same green in
Fig. 17 and Fig. 24) and so no figure script grows its own formatting rules.
matplotlib runs on the Agg backend: the studies run headless, often in pools.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

#: The paper's five designs, then the exact designs (periodic, then the windows), in plotting order.
HEURISTICS = ("basic", "static", "elk-dyn", "elk-full", "ideal")
#: The heuristics whose schedules are valid (Ideal is a relaxed schedule, timed under relaxed rules).
STRICT_HEURISTICS = ("basic", "static", "elk-dyn", "elk-full")
EXACT = ("periodic", "cpsat", "milp")
DESIGN_ORDER = HEURISTICS + EXACT
#: Ideal is not a lower bound: a heuristic schedule of a relaxed problem. Its name says so wherever it is shown.
IDEAL_LABEL = "Ideal (relaxed schedule)"

LABELS = {"basic": "Basic", "static": "Static", "elk-dyn": "ELK-Dyn", "elk-full": "ELK-Full",
          "ideal": IDEAL_LABEL, "periodic": "Periodic", "cpsat": "CP-SAT", "milp": "MILP"}
COLOURS = {"basic": "#9e9e9e", "static": "#4c72b0", "elk-dyn": "#dd8452", "elk-full": "#55a868",
           "ideal": "#222222", "periodic": "#937860", "cpsat": "#c44e52", "milp": "#8172b3"}
MARKERS = {"basic": "o", "static": "s", "elk-dyn": "^", "elk-full": "D", "ideal": "", "periodic": "X",
           "cpsat": "*", "milp": "P"}
LINESTYLES = {"ideal": "--"}

#: The simulator's four-way time breakdown, in stacking order, with labels and colours.
BREAKDOWN = ("overlapped_ms", "preload_only_ms", "execute_only_ms", "stall_ms")
BREAKDOWN_LABELS = {"overlapped_ms": "overlapped", "preload_only_ms": "preload only",
                    "execute_only_ms": "execute only", "stall_ms": "interconnect stall"}
BREAKDOWN_COLOURS = {"overlapped_ms": "#55a868", "preload_only_ms": "#4c72b0",
                     "execute_only_ms": "#dd8452", "stall_ms": "#c44e52"}

TOPOLOGY_LABELS = {"all-to-all": "all-to-all", "mesh": "mesh"}


def label(design: str) -> str:
    return LABELS.get(design, design)


def ordered(designs) -> list[str]:
    """Designs present, in the canonical order (unknown names last, alphabetically)."""
    present = list(dict.fromkeys(designs))
    known = [d for d in DESIGN_ORDER if d in present]
    return known + sorted(d for d in present if d not in DESIGN_ORDER)


def line_style(design: str) -> dict:
    """Keyword arguments for ``Axes.plot`` of one design's curve."""
    return {"color": COLOURS.get(design, None), "marker": MARKERS.get(design, "."),
            "linestyle": LINESTYLES.get(design, "-"), "label": label(design), "markersize": 4,
            "linewidth": 1.3}


def fmt_ms(value: float) -> str:
    """Milliseconds with three significant decimals for small values, fewer for large ones."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"


def grid(nrows: int, ncols: int, *, width: float = 3.2, height: float = 2.6, sharey: bool | str = False):
    """A figure with an nrows x ncols grid of axes (always a 2-D array); wide enough for a legend row."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(width * ncols, 7.0), height * nrows + 0.4),
                             squeeze=False, sharey=sharey)
    return fig, axes


def legend_below(fig, axes, *, ncol: int | None = None) -> None:
    """One legend for the whole figure, built from the handles of every axis (duplicates dropped)."""
    handles: dict[str, object] = {}
    for ax in axes.flat:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    if handles:
        # as many columns as the figure's width holds (labels such as "Ideal (relaxed schedule)" are long)
        fits = max(2, int(fig.get_figwidth() / 1.9))
        ncol = ncol or min(len(handles), 7, fits)
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, frameon=False, fontsize=8)
        fig.elk_legend_rows = -(-len(handles) // ncol)


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir`` and close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = getattr(fig, "elk_legend_rows", 1)
    bottom = min(0.35, max(0.06, (0.12 + 0.2 * rows) / fig.get_figheight()))
    fig.tight_layout(rect=(0, bottom, 1, 1))
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
