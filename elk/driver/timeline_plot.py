"""A static picture of a simulated schedule: executions, HBM loads, the interconnect and SRAM over time.

The Chrome trace (:mod:`elk.driver.trace`) is for interactive digging; this PNG is
for reports and papers, where one glance should show whether loads hide
behind execution, where operators stretch waiting for the interconnect, and
how close SRAM comes to its capacity.

It draws with :class:`matplotlib.figure.Figure` directly, so it needs no
pyplot state and never switches the caller's backend. Bars are drawn with one
``broken_barh`` call per kind (not per operator), so whole models plot fast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from elk.schedule import Schedule
from elk.simulator import SimResult, Timeline
from elk.driver.trace import collapse_steps, has_timeline, noc_share_series
from elk.workload import Workload

_LOAD_COLOR = "tab:purple"
_COMM_COLOR = "tab:orange"
#: Outline width (points) of every bar: a microsecond operator on a millisecond axis stays a visible line.
_MIN_BAR = 0.6


def _window_end(tl: Timeline, max_ops: int | None) -> float:
    """End (cycles) of the time window to show: the first ``max_ops`` operators, or everything."""
    ends = [tl.exec_end.max()] if len(tl.exec_end) else [0.0]
    if max_ops is not None and 0 < max_ops < len(tl.exec_end):
        return float(tl.exec_end[max_ops - 1])
    if len(tl.load_end):
        ends.append(tl.load_end.max())
    return float(max(ends))


def _bars(start: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(start, width) pairs as ``broken_barh`` wants them."""
    return np.column_stack([start, width]) if len(start) else np.zeros((0, 2))


def _plot_executions(ax, workload: Workload, schedule: Schedule, tl: Timeline, to_ms: float,
                     t_end: float) -> None:
    """One lane per operator kind: the light bar is the run, the dark inner bar its plan time.

    A light tail to the right of a dark bar is time the operator was stretched
    waiting for interconnect capacity the loads were using.
    """
    kinds = np.array([op.kind.value for op in workload.program.ops])
    names = sorted(set(kinds.tolist()))
    plan = workload.chosen(schedule.entry)["time"]
    shown = tl.exec_start <= t_end
    colors = {name: f"C{k % 10}" for k, name in enumerate(names)}
    for lane, name in enumerate(names):
        sel = shown & (kinds == name)
        s, e, p = tl.exec_start[sel] * to_ms, tl.exec_end[sel] * to_ms, plan[sel] * to_ms
        ax.broken_barh(_bars(s, e - s), (lane - 0.4, 0.8), facecolors=to_rgba(colors[name], 0.3),
                       edgecolor=to_rgba(colors[name], 0.3), linewidth=_MIN_BAR)
        ax.broken_barh(_bars(s, np.minimum(p, e - s)), (lane - 0.25, 0.5), facecolors=colors[name],
                       edgecolor=colors[name], linewidth=_MIN_BAR)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_ylabel("execution")
    ax.legend(handles=[Patch(facecolor="0.35", label="dark: plan time (the operator at full rate)"),
                       Patch(facecolor=to_rgba("0.35", 0.3), label="light: stretched, waiting for the interconnect")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _plot_loads(ax, tl: Timeline, to_ms: float, t_end: float) -> None:
    """HBM loads on one lane, alternating two shades so back-to-back loads stay apart (an HBM-bound run
    is one continuous run of loads); their interconnect use is the lane below."""
    sel = tl.load_start <= t_end
    s, e = tl.load_start[sel] * to_ms, tl.load_end[sel] * to_ms
    for k, alpha in enumerate((1.0, 0.55)):
        ax.broken_barh(_bars(s[k::2], (e - s)[k::2]), (0.1, 0.8), facecolors=to_rgba(_LOAD_COLOR, alpha),
                       edgecolor=to_rgba(_LOAD_COLOR, alpha), linewidth=_MIN_BAR)
    ax.set_yticks([0.5], ["HBM"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("loads", fontsize=9)
    busy = float(np.sum(e - s)) if len(s) else 0.0
    ax.text(1.005, 0.5, f"{len(s):,} loads\n{busy:.3g} ms busy", transform=ax.transAxes, fontsize=8,
            va="center")


def _plot_noc(ax, workload: Workload, schedule: Schedule, tl: Timeline, to_ms: float, t_end: float) -> None:
    """Interconnect share over time, stacked: the active load's and the running operator's communication
    (its average over the run, so the two may pass 1 at an instant in a valid schedule; the trace's counter)."""
    times, load, run = noc_share_series(workload, schedule, tl)
    keep = times <= t_end
    t, a, b = times[keep] * to_ms, load[keep], run[keep]
    if len(t):
        t = np.append(t, t_end * to_ms)
        a, b = np.append(a, a[-1]), np.append(b, b[-1])
        ax.fill_between(t, 0, a, step="post", color=_LOAD_COLOR, alpha=0.6, linewidth=0, label="HBM loads")
        ax.fill_between(t, a, a + b, step="post", color=_COMM_COLOR, alpha=0.6, linewidth=0,
                        label="operator communication\n(average over its run)")
    ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1.0, label="capacity")
    top = float(np.max(a + b)) if len(t) else 1.0
    ax.set_ylim(0, max(1.1, top * 1.08))
    ax.set_ylabel("interconnect\nshare", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _plot_sram(ax, tl: Timeline, capacity: int, to_ms: float, t_end: float) -> None:
    """Per-core SRAM in use as a step line, with the capacity dashed."""
    t, v = collapse_steps(tl.sram_time, tl.sram_bytes)
    keep = t <= t_end
    t, v = t[keep], np.asarray(v, dtype=np.float64)[keep]
    if len(t) and t[-1] < t_end:  # carry the last level to the window's edge
        t, v = np.append(t, t_end), np.append(v, v[-1])
    ax.step(t * to_ms, v / 1024, where="post", color="tab:green", linewidth=1.0, label="in use")
    ax.axhline(capacity / 1024, color="tab:red", linestyle="--", linewidth=1.0, label="capacity")
    ax.set_ylim(0, capacity / 1024 * 1.15)
    ax.set_ylabel("SRAM KiB/core")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _title(workload: Workload, result: SimResult, max_ops: int | None) -> str:
    latency = f"{result.latency_ms:.4g} ms" if np.isfinite(result.latency_ms) else "no latency"
    title = f"{workload.program.name} on {workload.chip.name} | {result.design} | {latency}"
    if not result.valid:
        title += " | INVALID"
    if max_ops is not None and 0 < max_ops < len(workload):
        title += f" | first {max_ops} of {len(workload)} operators"
    return title


def plot_timeline(path: str | Path, workload: Workload, schedule: Schedule, result: SimResult, *,
                  max_ops: int | None = None) -> Path:
    """Write a four-panel picture (executions, HBM loads, interconnect share, SRAM) of a schedule; return the path.

    ``max_ops`` limits the time axis to the first N operators' window, since a
    whole model's thousands of bars are unreadable at page width.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tl = result.timeline
    to_ms = 1e3 / workload.chip.clock_hz
    fig = Figure(figsize=(13, 8.5), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 0.8, 1.5, 2]})
    fig.suptitle(_title(workload, result, max_ops))
    if has_timeline(workload, result):
        t_end = _window_end(tl, max_ops)
        _plot_executions(axes[0], workload, schedule, tl, to_ms, t_end)
        _plot_loads(axes[1], tl, to_ms, t_end)
        _plot_noc(axes[2], workload, schedule, tl, to_ms, t_end)
        _plot_sram(axes[3], tl, workload.chip.sram_per_core, to_ms, t_end)
        axes[3].set_xlim(0, max(t_end * to_ms, 1e-12))
    else:
        axes[0].text(0.5, 0.5, "schedule rejected before timing: no timeline", ha="center",
                     va="center", transform=axes[0].transAxes)
    axes[3].set_xlabel("time (ms)")
    fig.savefig(path, dpi=120)
    return path
