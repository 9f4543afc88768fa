"""HBM load orders for ELK-Full: permute a layer's operator groups, the same way in every layer.

A group is one large operator (matmul or convolution) with the small
operators since the previous large one; trailing small operators join the last
group. Groups whose large operators have the same kind and volume are
interchangeable, so orders are distinct sequences of group *types*. Every group
may move at most ``max_displacement`` places.

``space="complete"`` yields every such type sequence (252 for a Llama layer,
150 for OPT). ``space="artifact"`` reproduces the Elk artifact's depth-first
generator, which also prunes any partial arrangement equal to a finished one
and so yields a subset (221 and 147).
"""
from __future__ import annotations

from itertools import permutations
from typing import Sequence

from elk.ir import OpKind, Program

LARGE = (OpKind.MATMUL, OpKind.CONV)


def layer_groups(program: Program) -> list[list[int]] | None:
    """Groups of one repeated layer, as op offsets inside the layer (None without layers)."""
    layers = program.layers
    if layers is None:
        return None
    ops = program.ops[layers.start: layers.start + layers.length]
    groups: list[list[int]] = []
    current: list[int] = []
    for k, op in enumerate(ops):
        current.append(k)
        if op.kind in LARGE:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def group_types(program: Program, groups: list[list[int]]) -> list[tuple]:
    """Per group of a layer, its kind and size: groups of one type are interchangeable in a load order."""
    layers = program.layers
    assert layers is not None
    types = []
    for g in groups:
        large = [program.ops[layers.start + k] for k in g if program.ops[layers.start + k].kind in LARGE]
        op = large[-1] if large else program.ops[layers.start + g[-1]]
        types.append((op.kind.value, op.volume))
    return types


#: layers of more groups than this search single moves, not every bounded permutation: with a displacement of
#: 4 there are 504 permutations of 6 groups (a forward layer), 6,902 of 8 and 1,396,948 of 12 (a training
#: step's backward block)
COMPLETE_GROUPS = 8


def group_orders(types: Sequence, max_displacement: int = 4, space: str = "complete") -> list[tuple[int, ...]]:
    """Permutations of group positions, one per distinct type sequence, identity first.

    ``complete``: every permutation moving no group more than ``max_displacement`` positions, for layers of up
    to :data:`COMPLETE_GROUPS` groups; a longer layer gets the *single moves* (one group moved up to
    ``max_displacement`` positions earlier or later, the others keeping their order), the orders next to the
    identity, since the complete space grows exponentially. ``artifact``: the Elk artifact's enumeration."""
    n = len(types)
    if space == "artifact":
        found = _artifact_orders(list(types), max_displacement)
    elif space == "complete" and n > COMPLETE_GROUPS:
        seen_moves: dict[tuple, tuple[int, ...]] = {}
        for j in range(n):
            for to in range(max(0, j - max_displacement), min(n, j + max_displacement + 1)):
                rest = [k for k in range(n) if k != j]
                perm = tuple(rest[:to] + [j] + rest[to:])
                seen_moves.setdefault(tuple(types[k] for k in perm), perm)
        found = list(seen_moves.values())
    elif space == "complete":
        seen: dict[tuple, tuple[int, ...]] = {}
        for perm in permutations(range(n)):
            if all(abs(perm[k] - k) <= max_displacement for k in range(n)):
                seen.setdefault(tuple(types[j] for j in perm), perm)
        found = list(seen.values())
    else:
        raise ValueError(f"unknown order space '{space}' (complete or artifact)")
    identity = tuple(range(n))
    rest = sorted(p for p in found if tuple(types[j] for j in p) != tuple(types))
    return [identity] + rest


def _artifact_orders(types: list, limit: int) -> list[tuple[int, ...]]:
    n = len(types)
    data, idx = list(types), list(range(n))
    finished: set[tuple] = set()
    orders: set[tuple[int, ...]] = set()

    def place(level: int) -> None:
        if level == n:
            finished.add(tuple(data))
            orders.add(tuple(idx))
            return
        for k in range(level, n):
            idx[level], idx[k] = idx[k], idx[level]
            data[level], data[k] = data[k], data[level]
            if tuple(data) not in finished and abs(idx[k] - k) <= limit and abs(idx[level] - level) <= limit:
                place(level + 1)
            idx[level], idx[k] = idx[k], idx[level]
            data[level], data[k] = data[k], data[level]

    place(0)
    return sorted(orders)


def load_order(program: Program, groups: list[list[int]], perm: Sequence[int]) -> list[int]:
    """Operator load order: preamble, each repeated layer with its groups permuted, then the tail."""
    layers = program.layers
    assert layers is not None
    inner = [k for g in perm for k in groups[g]]
    order = list(range(layers.start))
    for layer in range(layers.count):
        base = layers.start + layer * layers.length
        order.extend(base + k for k in inner)
    order.extend(range(layers.stop, len(program.ops)))
    return order
