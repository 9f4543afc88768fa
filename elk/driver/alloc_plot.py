"""PNG of a placement: one rectangle per buffer, time across, address up (matplotlib, Agg backend).

Rectangles go through one PolyCollection, so 60,000 buffers draw in about
a second. The capacity and the max-load lower bound are drawn as lines, so
a glance shows how much of the gap between them the placement closed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from elk.allocation import AllocationProblem, max_load_lower_bound


def plot_packing(path: str | Path, problem: AllocationProblem, offsets: np.ndarray, *, capacity: int | None = None,
                 title: str = "") -> Path:
    """Draw a placement as boxes (live range x address range) into a PNG at ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    off = np.asarray(offsets, np.int64)
    lo, hi = problem.lower.astype(float), problem.upper.astype(float)
    bottom, top = off.astype(float), (off + problem.size).astype(float)
    boxes = np.stack([np.stack([lo, bottom], 1), np.stack([hi, bottom], 1), np.stack([hi, top], 1),
                      np.stack([lo, top], 1)], 1)
    rng = np.random.default_rng(0)  # fixed colours: the same file draws the same picture
    colours = plt.get_cmap("tab20")(rng.integers(0, 20, problem.n))
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    edge = "black" if problem.n <= 2000 else "none"
    ax.add_collection(PolyCollection(boxes, facecolors=colours, edgecolors=edge, linewidths=0.3))
    peak = int(top.max(initial=0))
    bound = max_load_lower_bound(problem)
    ax.axhline(bound, color="tab:green", lw=1, ls="--", label=f"max-load bound {bound:,}")
    if capacity is not None:
        ax.axhline(capacity, color="tab:red", lw=1.2, label=f"capacity {capacity:,}")
    ax.axhline(peak, color="tab:blue", lw=1, ls=":", label=f"peak {peak:,}")
    ax.set_xlim(float(lo.min(initial=0)), float(hi.max(initial=1)))
    ax.set_ylim(0, max(peak, capacity or 0, bound, 1) * 1.04)
    ax.set_xlabel("time")
    ax.set_ylabel("address")
    ax.set_title(title or f"{problem.name or 'allocation'}: {problem.n:,} buffers")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["plot_packing"]
