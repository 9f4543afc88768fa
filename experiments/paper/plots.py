"""Drawing building blocks the figures share: a panel grid of per-design curves, grouped bars, stacked breakdowns.

Each takes the figure's tidy table (one row per configuration x design) and
plots values exactly as they are: no smoothing, clipping or monotone envelopes.
A configuration a design did not run at (e.g. exact designs outside their few
points) is simply absent from its curve.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import style


def panel_values(table: pd.DataFrame, column: str) -> list:
    """Distinct values of a panel axis, sorted (strings alphabetically, numbers numerically)."""
    if column not in table or table.empty:
        return [None]
    return sorted(table[column].dropna().unique().tolist())


def line_panels(table: pd.DataFrame, *, rows: str | None, cols: str, x: str, y: str, xlabel: str, ylabel: str,
                designs: Sequence[str] | None = None, title: Callable[[object, object], str] | None = None,
                sharey: bool | str = False):
    """A rows x cols grid of panels, each with one line per design of ``y`` against ``x``."""
    row_values = panel_values(table, rows) if rows else [None]
    col_values = panel_values(table, cols)
    fig, axes = style.grid(len(row_values), len(col_values), sharey=sharey)
    chosen = style.ordered(designs if designs is not None else table["design"].unique())
    for i, rv in enumerate(row_values):
        for j, cv in enumerate(col_values):
            ax = axes[i, j]
            sub = table
            if rows:
                sub = sub[sub[rows] == rv]
            sub = sub[sub[cols] == cv]
            for design in chosen:
                curve = sub[sub["design"] == design].sort_values(x)
                if curve.empty:
                    continue
                kwargs = style.line_style(design)
                if len(curve) == 1 or design in style.EXACT:
                    kwargs.update(linestyle="none", markersize=7, marker=kwargs["marker"] or "_")
                ax.plot(curve[x], curve[y], **kwargs)
            ax.set_title(title(rv, cv) if title else f"{cv}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == len(row_values) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
    style.legend_below(fig, axes)
    return fig


def grouped_bars(ax, table: pd.DataFrame, *, group: Sequence[str], y: str, designs: Sequence[str] | None = None,
                 group_label: Callable[[tuple], str] | None = None, overlay: str | None = None,
                 overlay_label: str = "") -> None:
    """Bars of ``y``: one cluster per value of the ``group`` columns, one bar per design inside it.

    ``overlay``: another column drawn as a short black tick across each bar (where it has a value).
    """
    if table.empty:
        return
    chosen = style.ordered(designs if designs is not None else table["design"].unique())
    groups = table[list(group)].drop_duplicates().sort_values(list(group)).itertuples(index=False, name=None)
    groups = list(groups)
    width = 0.8 / max(len(chosen), 1)
    ticks_x, ticks_y = [], []
    for k, design in enumerate(chosen):
        xs, ys = [], []
        for g, key in enumerate(groups):
            match = table["design"] == design
            for col, val in zip(group, key):
                match &= table[col] == val
            if match.any():
                xs.append(g - 0.4 + width * (k + 0.5))
                ys.append(float(table.loc[match, y].iloc[0]))
                if overlay is not None and overlay in table:
                    value = float(table.loc[match, overlay].iloc[0])
                    if value == value:
                        ticks_x.append(xs[-1])
                        ticks_y.append(value)
        if xs:
            ax.bar(xs, ys, width=width, color=style.COLOURS.get(design), label=style.label(design))
    if ticks_x:
        from matplotlib import patheffects
        ax.scatter(ticks_x, ticks_y, marker="_", s=max(20.0, 300.0 * width), color="black", linewidths=1.4,
                   label=overlay_label or overlay, zorder=3,
                   path_effects=[patheffects.withStroke(linewidth=3.0, foreground="white")])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([group_label(g) if group_label else "/".join(map(str, g)) for g in groups], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)


def stacked_breakdown(ax, table: pd.DataFrame, *, x_labels: Sequence[str], normalise: bool = False) -> None:
    """Stacked bars of the four-way breakdown, one bar per row of ``table`` (in its order)."""
    bottom = np.zeros(len(table))
    total = table[list(style.BREAKDOWN)].sum(axis=1).to_numpy() if normalise else None
    for part in style.BREAKDOWN:
        values = table[part].to_numpy(dtype=float)
        if normalise:
            values = np.divide(100.0 * values, total, out=np.zeros_like(values), where=total > 0)
        ax.bar(range(len(table)), values, bottom=bottom, color=style.BREAKDOWN_COLOURS[part],
               label=style.BREAKDOWN_LABELS[part], width=0.75)
        bottom += values
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels(x_labels, fontsize=7, rotation=90)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
