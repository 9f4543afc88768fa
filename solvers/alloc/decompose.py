"""Shrink an allocation problem before an exact solver sees it: common factor, stacking, components.

* **Common factor.** If every size, fixed offset, and alignment is a multiple
  of g, some optimal placement has every offset a multiple of g (push each
  buffer down until it rests on another or on 0: offsets become sums of
  sizes rounded up to alignments), so the problem is solved in units of g
  with capacity floor(C / g). MiniMalloc's sizes share g = 1024, which turns
  a 2^20-wide address range into 1,024 values.
* **Stacking.** A buffer live at the same time as every other buffer of its
  component can go to the bottom: in any placement, moving it to offset 0
  and lifting the buffers that were below it by its size keeps them
  disjoint and the peak unchanged. Applied only where no buffer is fixed or
  aligned (lifting could break those).
* **Components.** Buffers separated by an instant where nothing is live
  never interact; after stacking, a component can fall apart into several,
  each solved on its own above the stacked height (recursively).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from math import gcd

import numpy as np

from elk.allocation import AllocationProblem


def common_factor(problem: AllocationProblem, capacity: int | None = None) -> int:
    """The largest g dividing every size, fixed offset and alignment > 1 (1 if there is none)."""
    values = [int(v) for v in problem.size.tolist() if v > 0]
    values += [int(v) for v in problem.fixed_offset.tolist() if v > 0]
    values += [int(v) for v in problem.alignment.tolist() if v > 1]
    g = reduce(gcd, values, 0)
    return max(g, 1)


@dataclass
class Piece:
    """Buffers that can be placed independently of the rest, stacked at ``base``."""

    buffers: np.ndarray  # indices into the problem
    base: int  # height of the buffers stacked under this piece


@dataclass
class Decomposition:
    """A problem split into buffers stacked at fixed offsets and independent pieces; ``assemble`` joins answers."""

    stacked: list[int] = field(default_factory=list)  # buffer indices placed by stacking
    stacked_offsets: list[int] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)

    def assemble(self, n: int, piece_offsets: list[np.ndarray]) -> np.ndarray:
        """Offsets for the whole problem from one offset array per piece (relative to its base)."""
        out = np.zeros(n, np.int64)
        out[self.stacked] = self.stacked_offsets
        for piece, offsets in zip(self.pieces, piece_offsets):
            out[piece.buffers] = np.asarray(offsets, np.int64) + piece.base
        return out


def components(lower: np.ndarray, upper: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
    """Split buffers ``idx`` where nothing is live (sweep by start, running latest end)."""
    if len(idx) == 0:
        return []
    order = idx[np.lexsort((idx, lower[idx]))]
    reach = np.maximum.accumulate(upper[order])
    cuts = np.flatnonzero(lower[order][1:] >= reach[:-1]) + 1
    return np.split(order, cuts)


def decompose(problem: AllocationProblem, stack: bool = True) -> Decomposition:
    """Stack buffers that meet all others, split into components, repeat inside each component."""
    out = Decomposition()
    lower, upper, size = problem.lower, problem.upper, problem.size
    movable = (problem.fixed_offset < 0) & (problem.alignment == 1)
    work = [(c, 0) for c in components(lower, upper, np.flatnonzero(size > 0))]
    zero = np.flatnonzero(size == 0)
    if len(zero):  # zero-size buffers occupy nothing: offset 0 (or their fixed offset) is always valid
        out.stacked.extend(zero.tolist())
        out.stacked_offsets.extend(np.maximum(problem.fixed_offset[zero], 0).tolist())
    while work:
        idx, base = work.pop()
        if stack and movable[idx].all():
            while len(idx) > 1:
                full = (lower[idx] < upper[idx].min()) & (upper[idx] > lower[idx].max())
                if not full.any():
                    break
                picked = idx[full]
                picked = picked[np.lexsort((picked, -size[picked]))]
                for i in picked.tolist():
                    out.stacked.append(i)
                    out.stacked_offsets.append(base)
                    base += int(size[i])
                idx = idx[~full]
            if len(idx) == 1:
                out.stacked.append(int(idx[0]))
                out.stacked_offsets.append(base)
                continue
            parts = components(lower, upper, idx)
            if len(parts) > 1:
                work.extend((p, base) for p in parts)
                continue
        if len(idx):
            out.pieces.append(Piece(np.sort(idx), base))
    out.pieces.sort(key=lambda p: -len(p.buffers))
    return out


def subproblem(problem: AllocationProblem, piece: Piece, g: int = 1, capacity: int | None = None) -> AllocationProblem:
    """The piece as a problem of its own, in units of g, with offsets relative to its base."""
    b = piece.buffers
    fixed = problem.fixed_offset[b]
    fixed = np.where(fixed >= 0, (fixed - piece.base) // g, -1)
    return AllocationProblem.from_arrays(problem.lower[b], problem.upper[b], problem.size[b] // g,
                                         ids=[problem.ids[i] for i in b],
                                         alignment=np.maximum(problem.alignment[b] // g, 1),
                                         fixed_offset=fixed, capacity=capacity, name=problem.name)


__all__ = ["common_factor", "decompose", "components", "subproblem", "Decomposition", "Piece"]
