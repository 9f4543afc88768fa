"""Repeated layers of an imported program, found from its operators' signatures (step 8 of
:mod:`elk.graphs.artifact`)."""
from __future__ import annotations

from dataclasses import replace
from typing import Hashable, Sequence

import numpy as np

from elk.ir import OpKind, Program

#: most matmuls/convs one repeated block may hold: ELK-Full enumerates orders of a block's groups
MAX_LARGE_PER_BLOCK = 8
#: least share of the program the repeated blocks must cover to be called layers
MIN_LAYER_COVERAGE = 0.5


def find_layers(keys: Sequence[Hashable], large: Sequence[bool], last_use: Sequence[int] | None = None,
                max_large: int = MAX_LARGE_PER_BLOCK) -> tuple[int, int, int] | None:
    """``(start, length, count)`` of the longest stretch of identical consecutive blocks.

    ``keys[i]`` identifies operator i (its signature), ``large[i]`` says whether it
    is a matmul or conv (a block must hold 1 to ``max_large`` of them), ``last_use[i]``
    is the last operator reading its output (-1: none). Of every period, the one whose
    repetition covers the most operators wins (ties: the shorter period). The
    blocks' phase inside the periodic stretch is the one where the fewest tensors
    cross a block boundary (a transformer's residual stream); ties: the earliest.
    """
    table: dict[Hashable, int] = {}
    seq = np.array([table.setdefault(k, len(table)) for k in keys], dtype=np.int64)
    n = len(seq)
    large_sum = np.concatenate(([0], np.cumsum(np.asarray(large, dtype=np.int64))))
    best: tuple[int, int, int, int] | None = None  # coverage, start, stretch, period
    for period in range(1, n // 2 + 1):
        if best is not None and (n // period) * period <= best[0]:
            continue  # cannot cover more than the best so far
        same = np.concatenate(([False], seq[:-period] == seq[period:], [False]))
        edges = np.diff(same.astype(np.int8))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        stretch = ends - starts + period
        count = stretch // period
        inside = large_sum[np.minimum(starts + period, n)] - large_sum[starts]
        ok = (count >= 2) & (inside > 0) & (inside <= max_large)
        if not ok.any():
            continue
        cover = np.where(ok, count * period, 0)
        k = int(np.argmax(cover))
        if best is None or cover[k] > best[0]:
            best = (int(cover[k]), int(starts[k]), int(stretch[k]), period)
    if best is None:
        return None
    _, start, stretch, period = best
    count = stretch // period
    if last_use is None:
        return start, period, count
    uses = np.asarray(last_use)
    produced_before = np.arange(n)

    def crossing(boundary: int) -> int:
        return int(np.count_nonzero((produced_before < boundary) & (uses >= boundary)))
    middle = (count // 2) * period
    phase = min(range(stretch - count * period + 1), key=lambda p: (crossing(start + p + middle), p))
    return start + phase, period, count


def with_layers(program: Program) -> tuple[Program, tuple[int, int, int] | None]:
    """``program`` with ``Operator.layer`` set on the repeated blocks find_layers reports."""
    ops = program.ops
    producer = {op.output.tensor: i for i, op in enumerate(ops)}
    last_use = [-1] * len(ops)
    for j, op in enumerate(ops):
        for operand in op.inputs:
            i = producer.get(operand.tensor)
            if i is not None and i < j:
                last_use[i] = j
    # blocks are compared without the on/off-chip flags: stitched graphs read a few inputs from
    # HBM in some copies only (Program.layers does the same, told by meta["layer_match"])
    found = find_layers([replace(op.signature, offchip=()) for op in ops],
                        [op.kind in (OpKind.MATMUL, OpKind.CONV) for op in ops], last_use)
    if found is None or found[1] * found[2] < MIN_LAYER_COVERAGE * len(ops):
        return program, None
    start, length, count = found
    labelled = list(ops)
    for k in range(start, start + length * count):
        labelled[k] = replace(labelled[k], layer=(k - start) // length)
    meta = {**program.meta, "layers_found": {"start": start, "length": length, "count": count}}
    return Program(program.name, tuple(labelled), meta, program.weights), found  # residency is already resolved


