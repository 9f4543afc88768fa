"""The Elk artifact's IPU-fitted cost model, vectorized over plans.

Formulas (cycles) follow the artifact exactly on an all-to-all chip; the worked
check is Llama2-13B's QKV matmul (32 x 15360 x 5120) on 5,888 cores with
spatial split (2, 128, 23): compute 14,202, shuffle 7,874.25 after the
multi-chip factor, 22,076.25 in all, 64,496 hot bytes per core.

Where elk departs, on purpose:

* a mesh multiplies the data-moving part of each communication term by the
  ring-step slowdown of :mod:`elk.topology` (1 on all-to-all);
* ``compute_scale`` divides compute and ``noc_scale`` divides communication
  when the plan is costed, so the Pareto frontier is the one of the scaled
  chip (the artifact rescales only after choosing plans);
* convolutions use an implicit-GEMM form of the matmul formula and pooling
  the unary formula over the window: smooth per-core models that only DiT's
  patch embedding exercises (the artifact fits regressions to unpublished
  profiles).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elk.chip import Chip
from elk.ir import OpKind, OpSignature
from elk.topology import ring_step_factor


def ladder(x: np.ndarray) -> np.ndarray:
    """Round up the vector-unit ladder 1, 2, 4, 8, 12, 16, 24, then multiples of 48 (only above 2)."""
    y = np.asarray(x, dtype=np.float64)
    for bound, step in ((2, 4), (4, 8), (8, 12), (12, 16), (16, 24)):
        y = np.where(y > bound, np.maximum(step, y), y)
    return np.where(y > 24, np.ceil(y / 48) * 48, y)


def binary_cycles(x: np.ndarray) -> np.ndarray:
    """Cycles of an elementwise binary over ``x`` elements per core (the artifact's fit; capped for small ``x``)."""
    return np.where(x <= 16432, np.minimum(16434 * 0.5 + 300, 0.75 * x + 290), 0.5 * x + 300)


def reduce_cycles(aligned_out: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Cycles of a reduction: ``aligned_out`` output elements (rounded up the ladder) times ``batch`` inputs per output."""
    y = aligned_out * batch
    return np.where(y <= 480, np.minimum(481 * 0.25 + 175, 1.5 * y + 175), 0.25 * y + 175)


def matmul_cycles(m: np.ndarray, n: np.ndarray, k: np.ndarray, b: np.ndarray, bpe: int) -> np.ndarray:
    """IPU Mk2 AMP fit; m is the larger free side unless that side is <= 16."""
    big, small = np.maximum(m, n), np.minimum(m, n)
    m, n = np.where(big > 16, big, small), np.where(big > 16, small, big)
    m6 = np.ceil(m / 6)
    k16 = np.ceil(k / (32 / bpe))
    n16 = np.ceil(n / 16)
    return b * (bpe * 12 * m6 * k16 * n16 + 514 * k16 * n16 + 113 * n16 + 173)


def _prod_over(arr: np.ndarray, positions: list[int]) -> np.ndarray:
    if not positions:
        return np.ones(arr.shape[0], dtype=np.float64)
    return np.prod(arr[:, positions].astype(np.float64), axis=1)


def var_sizes(sig: OpSignature, per_core: np.ndarray, temporal: np.ndarray) -> np.ndarray:
    """(n, V) elements per core per iteration; a window axis spans a + b - 1."""
    out = np.empty((len(per_core), len(sig.variables)), dtype=np.int64)
    for v, axes in enumerate(sig.variables):
        size = np.ones(len(per_core), dtype=np.int64)
        for axis in axes:
            span = sum(-(-per_core[:, i] // temporal[:, i, v]) for i in axis) - (len(axis) - 1)
            size *= span
        out[:, v] = size
    return out


def compute_cycles_per_iter(sig: OpSignature, sub: np.ndarray) -> np.ndarray:
    """Cycles of one iteration on the sub-operator shape ``sub`` (n, D)."""
    kind = sig.kind
    total = np.prod(sub.astype(np.float64), axis=1)
    out_first = [axis[0] for axis in sig.variables[0]]
    if kind == OpKind.MATMUL:
        o, a, b = (set(i for axis in v for i in axis) for v in sig.variables[:3])
        k_idx = sorted((a & b) - o)
        m_idx = sorted((a & o) - b)
        n_idx = sorted((b & o) - a)
        batch = sorted(a & b & o)
        return matmul_cycles(_prod_over(sub, m_idx), _prod_over(sub, n_idx), _prod_over(sub, k_idx),
                             _prod_over(sub, batch), sig.bytes_per_element)
    if kind == OpKind.CONV:
        out_idx = set(i for axis in sig.variables[0] for i in axis)
        ker_idx = set(i for axis in sig.variables[2] for i in axis)
        spatial_out = sorted(out_idx - ker_idx)  # batch and output positions
        channels_out = sorted(out_idx & ker_idx)
        reduction = sorted(ker_idx - out_idx)  # input channels and kernel offsets
        return matmul_cycles(_prod_over(sub, spatial_out), _prod_over(sub, channels_out),
                             _prod_over(sub, reduction), np.ones(len(sub)), sig.bytes_per_element)
    if kind == OpKind.BINARY:
        return binary_cycles(total)
    if kind in (OpKind.UNARY, OpKind.POOL):
        return 0.5 * total + 200
    if kind == OpKind.REDUCE:
        out = _prod_over(sub, out_first)
        return reduce_cycles(ladder(out), total / out)
    if kind == OpKind.GATHER:
        idx = _prod_over(sub, [i for axis in sig.variables[-1] for i in axis])
        out = _prod_over(sub, out_first)
        return 300 + np.ceil(out / idx / 2) * idx + idx
    if kind == OpKind.SLICE:
        return None  # handled by the caller: it is a data move
    raise ValueError(f"no cost formula for operator kind {kind}")  # pragma: no cover


def replica_comm_factor(sig: OpSignature, chip: Chip, spatial: np.ndarray) -> np.ndarray:
    """(n, V) ring-step slowdown for exchanges inside each variable's replica group."""
    n_plans, n_idx = spatial.shape
    stride = np.ones_like(spatial)
    for d in range(n_idx - 2, -1, -1):
        stride[:, d] = stride[:, d + 1] * spatial[:, d + 1]
    factors = np.ones((n_plans, len(sig.variables)))
    if chip.topology.kind != "mesh":
        return factors
    big = np.iinfo(np.int64).max
    for v, axes in enumerate(sig.variables):
        inside = {i for axis in axes for i in axis}
        outside = [d for d in range(n_idx) if d not in inside]
        if not outside:
            continue
        cand = np.where(spatial[:, outside] > 1, stride[:, outside], big)
        nearest = cand.min(axis=1)
        factors[:, v] = np.where(nearest == big, 1.0, ring_step_factor(chip, np.minimum(nearest, 1 << 40)))
    return factors


@dataclass
class _Round:
    """One shift round of every plan. A plan the round does not apply to has 0 shifts (so it repeats
    nothing and moves nothing, whatever its other fields say)."""

    index: int  # the index whose temporal split it peels
    before: np.ndarray  # product of (shifts + 1) of the same index's earlier rounds: the split peeled so far
    payload: np.ndarray  # elements moved per shift
    shifts: np.ndarray
    moved: np.ndarray  # variables moved per shift
    weight: np.ndarray  # topology-weighted elements moved per shift


def shift_rounds(temporal: np.ndarray, elems: np.ndarray, factor: np.ndarray,
                 index_vars: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Total elements moved (topology-weighted) and shift events of the rotation schedule.

    Each index's temporal values are peeled by their gcd into rounds; a round
    with g - 1 shifts moves the variables whose value is still > 1. Rounds are
    nested largest payload outermost (ties keep index order), so a round
    repeats once per step of every round outside it. With at most a handful
    of rounds per plan, "outside" is decided pairwise instead of by sorting;
    an index's own earlier rounds are always outside (its payloads only
    shrink), so only rounds of different indices are compared. A round a plan
    does not take has one step, so whether it counts as outside is moot.
    Returns (weighted elements, events) per plan.
    """
    n = len(elems)
    elem_cols = [np.ascontiguousarray(elems[:, v]) for v in range(elems.shape[1])]
    factor_cols = None if np.all(factor == 1.0) else [np.ascontiguousarray(factor[:, v]) for v in range(factor.shape[1])]
    rounds = []
    for d, vars_d in enumerate(index_vars):
        if vars_d:
            t_d = [np.ascontiguousarray(temporal[:, d, v]) for v in vars_d]
            f_d = None if factor_cols is None else [factor_cols[v] for v in vars_d]
            rounds += _index_rounds(d, t_d, [elem_cols[v] for v in vars_d], f_d)
    steps = [(r.shifts + 1).astype(np.float64) for r in rounds]
    elements = np.zeros(n)
    events = np.zeros(n)
    for i, r in enumerate(rounds):
        repeats = r.before.astype(np.float64)
        for j, other in enumerate(rounds):
            if other.index == r.index:
                continue
            outside = other.payload > r.payload if j > i else other.payload >= r.payload
            np.multiply(repeats, steps[j], out=repeats, where=outside)
        elements += repeats * r.shifts * r.weight
        events += repeats * r.shifts * r.moved
    return elements, events


def _index_rounds(d: int, t_d: list[np.ndarray], elems_d: list[np.ndarray],
                  factor_d: list[np.ndarray] | None) -> list[_Round]:
    """The rounds index ``d`` peels, from its temporal values ``t_d`` (one column per variable it splits).

    Round j peels the j-th smallest value: a plan takes it when that value
    exceeds the one peeled before (``cur > prev``; values only grow, so
    otherwise ``cur == prev`` and the round has 0 shifts). Rounds come out in
    peeling order, and a round no plan takes is left out. The payload of a
    later round never exceeds an earlier one's (fewer variables still rotate),
    which is what lets ``shift_rounds`` skip comparing them. ``factor_d`` None
    means every factor is 1 (all-to-all): the weight is then the payload.
    """
    prev = np.ones(len(t_d[0]), dtype=np.int64)
    out = []
    for cur in sorted_columns(t_d):
        if not (cur > prev).any():
            continue
        mask = [c >= cur for c in t_d]  # variables still rotating in this round
        load = elems_d[0] * mask[0]
        count = mask[0].astype(np.int64)
        for v in range(1, len(t_d)):
            load += elems_d[v] * mask[v]
            count += mask[v]
        if factor_d is None:
            weight = load.astype(np.float64)  # = max(masked factors of 1, or 0 with nothing masked) * load
        else:
            slow = np.where(mask[0], factor_d[0], 0.0)
            for v in range(1, len(t_d)):
                np.maximum(slow, np.where(mask[v], factor_d[v], 0.0), out=slow)
            weight = slow * load
        out.append(_Round(d, prev, load, cur // prev - 1, count, weight))
        prev = cur
    return out


def sorted_columns(cols: list[np.ndarray]) -> list[np.ndarray]:
    """The columns ``cols`` sorted ascending within each row.

    Min/max networks for the two or three variables an index splits (a
    row-wise ``np.sort`` of such narrow arrays costs several times more).
    """
    k = len(cols)
    if k == 1:
        return [cols[0]]
    lo, hi = np.minimum(cols[0], cols[1]), np.maximum(cols[0], cols[1])
    if k == 2:
        return [lo, hi]
    if k == 3:
        c = cols[2]
        return [np.minimum(lo, c), np.maximum(lo, np.minimum(hi, c)), np.maximum(hi, c)]
    s = np.sort(np.stack(cols, axis=1), axis=1)
    return [s[:, j] for j in range(k)]


def index_vars(sig: OpSignature) -> list[list[int]]:
    """For each index, the variables that contain it (the only ones it may split)."""
    contains: list[list[int]] = [[] for _ in sig.lengths]
    for v, axes in enumerate(sig.variables):
        for d in sorted({i for axis in axes for i in axis}):
            contains[d].append(v)
    return contains


def splitting_vars(sig: OpSignature, temporal: np.ndarray) -> list[list[int]]:
    """For each index, the variables some plan of ``temporal`` splits along it: ``index_vars`` for elk's plans.

    The artifact's enumeration (``PlanEnumeration.ARTIFACT``) also splits
    variables along indices they lack; such a split rotates the variable like
    any other (shift rounds, iterations) without shrinking it, which is how
    the artifact prices it.
    """
    contains = index_vars(sig)
    out = []
    for d, vars_d in enumerate(contains):
        extra = [v for v in range(temporal.shape[2]) if v not in vars_d and len(temporal) and
                 bool((temporal[:, d, v] > 1).any())]
        out.append(sorted(vars_d + extra))
    return out


def _max_over_variables(temporal: np.ndarray) -> np.ndarray:
    """``temporal.max(axis=2)``: (n, D) largest split per index, as a chain of column maxima (a reduction
    over an axis of two to four entries is several times slower in numpy)."""
    most = temporal[:, :, 0].copy()
    for v in range(1, temporal.shape[2]):
        np.maximum(most, temporal[:, :, v], out=most)
    return most


def _splits_any_index(temporal: np.ndarray) -> np.ndarray:
    """``(temporal > 1).any(axis=1)``: (n, V) whether each variable rotates, as a chain of column tests."""
    rotating = temporal[:, 0, :] > 1
    for d in range(1, temporal.shape[1]):
        rotating |= temporal[:, d, :] > 1
    return rotating


def plan_costs(sig: OpSignature, chip: Chip, spatial: np.ndarray, temporal: np.ndarray) -> dict:
    """Memory and cycles of every plan (rows of ``spatial`` (n, D) and ``temporal`` (n, D, V))."""
    costs = unscaled_plan_costs(sig, chip, spatial, temporal)
    return {**costs, "comp": costs["comp"] / chip.compute_scale, "comm": costs["comm"] / chip.noc_scale}


def unscaled_plan_costs(sig: OpSignature, chip: Chip, spatial: np.ndarray, temporal: np.ndarray) -> dict:
    """``plan_costs`` before ``compute_scale`` divides compute and ``noc_scale`` communication.

    Nothing here reads the two scales, so chips that differ only in them share
    these arrays; dividing them afterwards is the very operation ``plan_costs``
    does, so a table re-costed from them is bit-identical to one built afresh.
    """
    bpe = sig.bytes_per_element
    byte_cycles = chip.shift_cycles_per_byte * bpe  # cycles per element moved
    sync = chip.sync_cycles
    lengths = np.array(sig.lengths, dtype=np.int64)
    per_core = -(-lengths // spatial)
    most = _max_over_variables(temporal)
    sub = -(-per_core // most)
    iters = np.prod(most.astype(np.float64), axis=1)
    elems = var_sizes(sig, per_core, temporal)
    rotating = _splits_any_index(temporal)
    hot = bpe * (elems * np.where(rotating, 2, 1)).sum(axis=1)
    offchip = np.array(sig.offchip)
    cold = bpe * elems[:, offchip].sum(axis=1) if offchip.any() else np.zeros(len(elems), dtype=np.int64)

    factor = replica_comm_factor(sig, chip, spatial)
    out_first = [axis[0] for axis in sig.variables[0]]
    out_sub = _prod_over(sub, out_first)
    if sig.kind == OpKind.SLICE:
        per_iter = out_sub * byte_cycles * factor[:, 0] + sync
    else:
        per_iter = compute_cycles_per_iter(sig, sub)
    comp = per_iter * iters

    weighted, events = shift_rounds(temporal, elems, factor, splitting_vars(sig, temporal))
    sync_shift = 2 * sync * events + weighted * byte_cycles

    if sig.kind in (OpKind.BINARY, OpKind.UNARY, OpKind.POOL):
        shuffle = np.full(len(elems), sync)
    else:
        reps = replicas_of_output(sig, spatial)
        copies = np.rint(reps / np.prod(temporal[:, :, 0], axis=1))
        f0 = factor[:, 0]
        gather = np.where(copies == 2, 2 * sync + np.floor(out_sub / 2) * byte_cycles * f0,
                          copies * sync + out_sub * byte_cycles * f0)
        reduced = out_sub / copies
        reduce = np.where(copies == 2, binary_cycles(reduced), reduce_cycles(ladder(reduced), copies))
        gather = np.where(copies == 1, 0.0, gather)
        reduce = np.where(copies == 1, 0.0, reduce)
        shuffle = elems[:, 0] * byte_cycles * f0 + 6 * sync + gather + reduce
    comm = sync_shift + shuffle
    if chip.multi_chip:
        comm = comm * chip.inter_chip_comm_factor
    return {"var_elems": elems, "hot": hot.astype(np.int64), "cold": cold.astype(np.int64), "comp": comp,
            "comm": comm, "var_comm_factor": factor}


def replicas_of_output(sig: OpSignature, spatial: np.ndarray) -> np.ndarray:
    """Copies of the output across cores: the product of splits of indices it lacks."""
    inside = {i for axis in sig.variables[0] for i in axis}
    outside = [d for d in range(spatial.shape[1]) if d not in inside]
    return np.prod(spatial[:, outside], axis=1) if outside else np.ones(len(spatial), dtype=np.int64)


def warmup_cycles(sig: OpSignature, chip: Chip, cold_temporal: np.ndarray, hot_temporal: np.ndarray,
                  cold_elems: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Cold layout -> hot layout: an all-gather of the extra temporal pieces of each variable.

    ``cold_temporal`` (n, D, V) must be an entry-wise multiple of ``hot_temporal`` (n, D, V).
    Not multiplied by the multi-chip factor, as in the artifact.
    """
    ratio = np.prod(cold_temporal // hot_temporal, axis=1)  # (n, V)
    mu = np.where(ratio > 1, ratio, 0)
    moved = (mu[:, 1:] * cold_elems[:, 1:] * factor[:, 1:]).sum(axis=1)
    cycles = moved * chip.shift_cycles_per_byte * sig.bytes_per_element + chip.sync_cycles * mu.sum(axis=1)
    return cycles / chip.noc_scale
