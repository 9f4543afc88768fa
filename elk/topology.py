"""Interconnect costs that depend on where cores sit.

All-to-all (the IPU exchange): every core reaches every other at its own
shift rate, so communication costs are the artifact's formulas unchanged and
the NoC can spread HBM data at ``noc_load_bytes_per_s_per_core`` per core.

Mesh (rows x cols, links of ``link_bytes_per_cycle`` each way) -- elk's model,
stated so it can be argued with:

* Cores of a plan are laid out in row-major order of the plan's index grid
  (last index fastest), so consecutive members of a replica group along index
  ``d`` are ``stride_d = prod(p[d+1:])`` cores apart in that order, which is
  ``stride`` hops along a row when ``stride < cols`` and ``ceil(stride/cols)``
  hops down a column otherwise.
* Rotations and gathers run as rings folded onto the mesh: every step moves
  data ``2 * hops`` link traversals (folding doubles the path) while all groups
  move at once, so a step is slower than on all-to-all by
  ``max(1, 2 * hops * core_rate / link_rate)``, ``core_rate`` being the
  per-core shift rate (1 / shift_cycles_per_byte).
* HBM enters through one port per perimeter core. A loaded byte travels from
  its port to the nearest-edge distance of its destination; the load
  distribution capacity is the least of the all-to-all figure, the perimeter
  ingress ``2 (rows + cols) link_rate`` and total link bandwidth divided by the
  mean hop count.

Barrier sync and the multi-chip factor are topology independent.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from elk.chip import Chip, Topology


def load_noc_bytes_per_cycle(chip: Chip) -> float:
    """Bytes per cycle the interconnect can spread from HBM over the cores."""
    all_to_all = chip.cores * chip.noc_load_bytes_per_s_per_core * chip.noc_scale / chip.clock_hz
    topo = chip.topology
    if topo.kind != "mesh":
        return all_to_all
    link = topo.link_bytes_per_cycle * chip.noc_scale
    ingress = 2 * (topo.rows + topo.cols) * link
    links = 2 * (topo.rows * (topo.cols - 1) + topo.cols * (topo.rows - 1))
    spread = links * link / mean_port_hops(topo.rows, topo.cols)
    return min(all_to_all, ingress, spread)


@lru_cache(maxsize=64)
def mean_port_hops(rows: int, cols: int) -> float:
    """Mean hops from a core to the nearest perimeter port (the port link counts as one)."""
    r = np.arange(rows)
    c = np.arange(cols)
    to_edge = np.minimum.outer(np.minimum(r, rows - 1 - r), np.minimum(c, cols - 1 - c))
    return float(to_edge.mean() + 1.0)


def ring_step_factor(chip: Chip, stride: np.ndarray) -> np.ndarray:
    """Slowdown, relative to all-to-all, of ring steps whose members are ``stride`` cores apart."""
    stride = np.asarray(stride, dtype=np.float64)
    topo: Topology = chip.topology
    if topo.kind != "mesh":
        return np.ones_like(stride)
    hops = np.where(stride < topo.cols, stride, np.ceil(stride / topo.cols))
    core_rate = 1.0 / chip.shift_cycles_per_byte
    return np.maximum(1.0, 2.0 * hops * core_rate / topo.link_bytes_per_cycle)
