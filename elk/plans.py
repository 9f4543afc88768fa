"""Enumerate an operator's intra-operator plans, vectorized over plans.

A plan is a spatial split ``p[d]`` of every index over the cores and a
temporal split ``t[d][v]`` of every variable inside its replica group (T10's
rotating tensors). The plan space, its filters and its enumeration bounds are
the Elk artifact's, with one deliberate fix: ``t[d][v] > 1`` only when
variable ``v`` is indexed by ``d`` (the artifact scrambles index lists by
sorting them and so splits tensors along indices they do not have).

Enumeration never loops over plans in Python: partial plans are rows of numpy
arrays, and each index (spatial) or (index, variable) slot (temporal) expands
every row by its candidates with ``np.repeat``, pruning as soon as a rule
can be checked. The QKV matmul of Llama2-13B (1.13 M plans) takes well under a
second this way; the artifact needs 255 s.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from elk.chip import Chip, PlanEnumeration
from elk.costmodel import index_vars, plan_costs, unscaled_plan_costs
from elk.ir import OpKind, OpSignature


@dataclass(frozen=True)
class Thresholds:
    """Minimum core utilisation ``util`` and padding efficiency ``pad`` a plan must reach."""

    util: float
    pad: float


def thresholds(sig: OpSignature, cores: int) -> Thresholds:
    """The artifact's plan filters for this operator on ``cores`` cores: least core utilisation and padding efficiency."""
    volume = float(math.prod(sig.lengths))
    clamp = max(sig.lengths) * len(sig.lengths) / 220.0
    util = min(volume / (volume + 2 * cores), clamp)
    pad = min(volume / (volume + cores), clamp)
    if sig.kind == OpKind.GATHER:
        return Thresholds(0.951 * util, 0.951)
    return Thresholds(0.9 * util, 0.9 * pad)


@dataclass
class PlanSet:
    """Every valid plan of one operator, as parallel arrays (rows grouped by spatial plan)."""

    sig: OpSignature
    spatial: np.ndarray  # (S, D) spatial splits, one row per spatial plan
    spatial_id: np.ndarray  # (n,) row of ``spatial`` each plan uses (non-decreasing)
    temporal: np.ndarray  # (n, D, V) temporal splits
    var_elems: np.ndarray  # (n, V) per-core, per-iteration elements of each variable
    hot: np.ndarray  # (n,) bytes per core while executing
    cold: np.ndarray  # (n,) bytes per core while preloaded
    comp: np.ndarray  # (n,) cycles
    comm: np.ndarray  # (n,) cycles: sync + shift + output shuffle
    var_comm_factor: np.ndarray  # (n, V) topology slowdown of moving each variable

    @property
    def time(self) -> np.ndarray:
        """Plan time in cycles: computation plus communication."""
        return self.comp + self.comm

    def __len__(self) -> int:
        return len(self.spatial_id)


# ---------------------------------------------------------------------------
# spatial plans
# ---------------------------------------------------------------------------
def spatial_plans(lengths: tuple[int, ...], cores: int, th: Thresholds) -> np.ndarray:
    """All p with prod(p) <= cores, prod(p) >= util * cores and enough padding efficiency."""
    caps = [min(cores, n) for n in lengths]
    suffix = [float(math.prod(caps[d + 1:])) for d in range(len(caps))]
    target = cores * th.util
    rows = np.zeros((1, 0), dtype=np.int64)
    prod = np.ones(1, dtype=np.int64)
    for d, cap in enumerate(caps):
        lo = np.maximum(1, np.floor(target / (prod * suffix[d]))).astype(np.int64)
        hi = np.minimum(cap, cores // prod)
        counts = np.maximum(0, hi - lo + 1)
        parent = np.repeat(np.arange(len(prod)), counts)
        offset = np.arange(len(parent)) - np.repeat(np.cumsum(counts) - counts, counts)
        value = lo[parent] + offset
        rows = np.column_stack([rows[parent], value])
        prod = prod[parent] * value
    keep = prod >= target
    rows, prod = rows[keep], prod[keep]
    lengths_arr = np.array(lengths, dtype=np.int64)
    per_core = -(-lengths_arr // rows)
    pad = np.prod(lengths_arr / (per_core * rows), axis=1)
    return rows[pad >= th.pad]


# ---------------------------------------------------------------------------
# temporal plans
# ---------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _divisors(limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR table of the divisors of 0..limit, ascending: (flat, start, count)."""
    count = np.zeros(limit + 1, dtype=np.int64)
    pairs_k, pairs_m = [], []
    for k in range(1, limit + 1):
        multiples = np.arange(k, limit + 1, k)
        pairs_k.append(np.full(len(multiples), k))
        pairs_m.append(multiples)
    ks = np.concatenate(pairs_k)
    ms = np.concatenate(pairs_m)
    order = np.lexsort((ks, ms))
    ks, ms = ks[order], ms[order]
    np.add.at(count, ms, 1)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return ks, start, count


def replicas(sig: OpSignature, spatial: np.ndarray) -> np.ndarray:
    """(S, V) copies of each variable across the cores of each spatial plan."""
    lengths = np.array(sig.lengths, dtype=np.int64)
    per_core = -(-lengths // spatial)
    padded = per_core * spatial
    used = np.prod(spatial, axis=1)
    out = np.empty((len(spatial), len(sig.variables)), dtype=np.int64)
    for v, axes in enumerate(sig.variables):
        size = np.ones(len(spatial), dtype=np.int64)
        psize = np.ones(len(spatial), dtype=np.int64)
        for axis in axes:
            size *= per_core[:, list(axis)].max(axis=1)
            psize *= padded[:, list(axis)].max(axis=1)
        out[:, v] = -(-(size * used) // psize)
    return out


def temporal_plans(sig: OpSignature, spatial: np.ndarray, th: Thresholds,
                   enumeration: PlanEnumeration = PlanEnumeration.ELK) -> tuple[np.ndarray, np.ndarray]:
    """Expand spatial plans into (spatial_id, temporal) rows satisfying every rule.

    ``enumeration`` ``artifact`` reproduces the Elk artifact's plan space
    instead (``artifact_temporal_plans``): only for reproducing its numbers.
    """
    if enumeration == PlanEnumeration.ARTIFACT:
        return artifact_temporal_plans(sig, spatial, th)
    contains = index_vars(sig)
    return _expand_temporal(sig, spatial, th, contains, list(range(len(sig.lengths))))


def _expand_temporal(sig: OpSignature, spatial: np.ndarray, th: Thresholds, slot_vars: list[list[int]],
                     bound_index: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Temporal plans whose position ``d`` splits only ``slot_vars[d]``, bounded by index ``bound_index[d]``.

    elk's enumeration gives each index its own variables and bounds. The
    artifact's hands position ``d`` the candidates it built for another index
    ``bound_index[d]``: that index's variables, length cap and padding test.

    Partial plans are kept as one narrow column per (index, variable) slot
    chosen so far, with the spatial id and the replica quota each variable has
    left: every expansion step copies a few bytes per row instead of whole
    (D, V) plans of int64 (the copies were most of the enumeration's time).
    """
    n_idx, n_var = len(sig.lengths), len(sig.variables)
    if len(spatial) == 0:
        return np.zeros(0, dtype=np.int64), np.ones((0, n_idx, n_var), dtype=np.int32)
    lengths = np.array(sig.lengths, dtype=np.int64)
    per_core = -(-lengths // spatial)  # (S, D)
    rep = replicas(sig, spatial)
    narrow = np.int16 if rep.max() < 2 ** 15 else np.int32  # a temporal split never exceeds the replicas
    flat, start, count = _divisors(int(max(1, rep.max())))
    last_index = {v: max(d for d, vs in enumerate(slot_vars) if v in vs) for v in range(n_var) if
                  any(v in vs for vs in slot_vars)}
    rows = _PartialPlans(np.arange(len(spatial)), {v: rep[:, v].astype(narrow) for v in last_index}, {})
    for d, vars_d in enumerate(slot_vars):
        b = bound_index[d]
        for v in vars_d:
            q = rows.quota[v]
            n_cand = count[q]
            parent = np.repeat(np.arange(len(q)), n_cand)
            pos = np.arange(len(parent)) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand)
            value = flat[start[q[parent]] + pos]
            ok = value <= per_core[rows.sid[parent], b]
            rows.take(parent[ok])
            chosen = value[ok].astype(narrow)
            rows.slots[(d, v)] = chosen
            if last_index[v] == d:
                del rows.quota[v]  # no later index splits v
            else:
                rows.quota[v] = rows.quota[v] // chosen
        if len(vars_d) > 1:
            ok = np.ones(len(rows.sid), dtype=bool)
            for a in range(len(vars_d)):  # values along one index must form a divisibility chain
                for c in range(a + 1, len(vars_d)):
                    x, y = rows.slots[(d, vars_d[a])], rows.slots[(d, vars_d[c])]
                    ok &= np.maximum(x, y) % np.minimum(x, y) == 0
            rows.take(ok)
        most = rows.most(d, vars_d)
        ell = per_core[rows.sid, b]
        rows.take((most == 1) | (ell / (most * -(-ell // most)) >= th.pad))
    most = np.ones((len(rows.sid), n_idx), dtype=np.int64)
    for d, vars_d in enumerate(slot_vars):
        most[:, d] = rows.most(d, vars_d)
    ell = per_core[rows.sid]
    sub = -(-ell // most)
    ok = np.prod(ell / (sub * most), axis=1) >= th.pad
    temporal = np.ones((int(ok.sum()), n_idx, n_var), dtype=np.int32)
    for (d, v), col in rows.slots.items():
        temporal[:, d, v] = col[ok]
    return rows.sid[ok], temporal


def artifact_temporal_plans(sig: OpSignature, spatial: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """The Elk artifact's temporal plans of each spatial plan (ELK_ARTIFACT_NOTES.md §3.3, §3.8).

    The artifact builds, for every index, the list of its valid per-variable
    split vectors (variables it indexes only, at most the index's per-core
    length, padding), then sorts the list of lists before its search tree
    takes "the list of index d" for index d. The sort is lexicographic on the
    lists' contents, so index d gets the list of index ``order[d]``: it may
    split a variable along an index the variable lacks, which the cost model
    then prices at face value (iterations and shifts, no shrinking). The final
    padding test uses the real indices' lengths. The order depends on the
    spatial plan; plans sharing one are expanded together and the rows are
    put back in spatial-plan order (within a spatial plan, the artifact's tree
    order, which the expansion keeps).
    """
    n_idx, n_var = len(sig.lengths), len(sig.variables)
    if len(spatial) == 0:
        return np.zeros(0, dtype=np.int64), np.ones((0, n_idx, n_var), dtype=np.int32)
    contains = index_vars(sig)
    lengths = np.array(sig.lengths, dtype=np.int64)
    per_core = -(-lengths // spatial)
    rep = replicas(sig, spatial)
    key_contains = tuple(tuple(vs) for vs in contains)
    orders = [_artifact_index_order(tuple(int(x) for x in r), tuple(int(x) for x in ell), key_contains, th.pad)
              for r, ell in zip(rep, per_core)]
    sids, temporals = [], []
    for order in dict.fromkeys(orders):
        members = np.flatnonzero(np.array([o == order for o in orders]))
        sid, temporal = _expand_temporal(sig, spatial[members], th, [contains[e] for e in order], list(order))
        sids.append(members[sid])
        temporals.append(temporal)
    sid = np.concatenate(sids)
    back = np.argsort(sid, kind="stable")
    return sid[back], np.concatenate(temporals)[back]


@lru_cache(maxsize=1 << 16)
def _artifact_index_order(rep: tuple[int, ...], ell: tuple[int, ...], contains: tuple[tuple[int, ...], ...],
                          pad: float) -> tuple[int, ...]:
    """Whose candidate list each index receives after the artifact sorts its per-index lists.

    A list holds, in the lexicographic order of a product over ascending
    divisor lists, the per-variable split vectors (each entry a divisor of the
    variable's replica count, the entries a divisibility chain) valid for its
    index: entries above 1 only for variables with the index, at most the
    index's per-core length, and enough padding efficiency. Python's list sort
    of these lists gives the order (stable, so equal lists keep index order).
    """
    def divisors(n: int) -> list[int]:
        return [k for k in range(1, n + 1) if n % k == 0]

    lists = []
    for d, vars_d in enumerate(contains):
        choices = [divisors(rep[v]) if v in vars_d else [1] for v in range(len(rep))]
        valid = []
        for vec in itertools.product(*choices):
            top = max(vec)
            if top > 1:
                if top > ell[d] or ell[d] / (top * -(-ell[d] // top)) < pad:
                    continue
                ordered = sorted(vec)
                if any(b % a for a, b in zip(ordered, ordered[1:])):
                    continue
            valid.append(vec)
        lists.append(valid)
    return tuple(sorted(range(len(lists)), key=lambda d: lists[d]))


@dataclass
class _PartialPlans:
    """Rows of partial temporal plans: spatial id, remaining replica quota per variable, chosen slots."""

    sid: np.ndarray
    quota: dict[int, np.ndarray]
    slots: dict[tuple[int, int], np.ndarray]

    def take(self, rows: np.ndarray) -> None:
        """Keep (or repeat) ``rows``: an index array or a boolean mask."""
        self.sid = self.sid[rows]
        self.quota = {v: q[rows] for v, q in self.quota.items()}
        self.slots = {k: c[rows] for k, c in self.slots.items()}

    def most(self, d: int, vars_d: list[int]) -> np.ndarray:
        """Largest temporal split along index ``d`` (int64, 1 where nothing splits it)."""
        if not vars_d:
            return np.ones(len(self.sid), dtype=np.int64)
        top = self.slots[(d, vars_d[0])]
        for v in vars_d[1:]:
            top = np.maximum(top, self.slots[(d, v)])
        return top.astype(np.int64)


#: Spatial plans expanded at once: bounds the temporary arrays of the temporal expansion
#: (a few hundred thousand partial plans) whatever the operator.
SPATIAL_CHUNK = 1500


def enumerate_plans(sig: OpSignature, chip: Chip, spatial: np.ndarray | None = None) -> PlanSet:
    """Every valid plan with all its costs (of ``spatial`` plans only, if given)."""
    th = thresholds(sig, chip.cores)
    if spatial is None:
        spatial = spatial_plans(sig.lengths, chip.cores, th)
    parts: list[dict] = []
    for lo in range(0, max(len(spatial), 1), SPATIAL_CHUNK):
        chunk = spatial[lo: lo + SPATIAL_CHUNK]
        sid, temporal = temporal_plans(sig, chunk, th, chip.plan_enumeration)
        costs = plan_costs(sig, chip, chunk[sid], temporal)
        parts.append({"spatial_id": (sid + lo).astype(np.int32), "temporal": temporal, **costs})
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return PlanSet(sig=sig, spatial=spatial, **merged)


@dataclass
class PlanChunk:
    """Plans of a run of whole spatial plans, costed before the chip's compute and NoC scales.

    ``spatial_id`` indexes the operator's spatial plans (non-decreasing); a
    spatial plan's plans all fall in one chunk, in enumeration order.
    """

    spatial_id: np.ndarray
    hot: np.ndarray
    comp: np.ndarray  # cycles before ``compute_scale`` divides them
    comm: np.ndarray  # cycles before ``noc_scale`` divides them

    def __len__(self) -> int:
        return len(self.spatial_id)

    def time(self, chip: Chip, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Plan times on ``chip`` (of ``rows``), computed exactly as ``plan_costs`` computes them."""
        return self.comp[rows] / chip.compute_scale + self.comm[rows] / chip.noc_scale


def stream_plans(sig: OpSignature, chip: Chip) -> tuple[np.ndarray, Iterator[PlanChunk]]:
    """(spatial plans, chunks of their plans): one pass over every plan, a bounded chunk at a time.

    Nothing in it depends on ``chip``'s compute or NoC scale, so one stream
    serves every chip with the same ``Chip.enumeration_key()``.
    """
    th = thresholds(sig, chip.cores)
    spatial = spatial_plans(sig.lengths, chip.cores, th)

    def chunks() -> Iterator[PlanChunk]:
        for lo in range(0, len(spatial), SPATIAL_CHUNK):
            chunk = spatial[lo: lo + SPATIAL_CHUNK]
            sid, temporal = temporal_plans(sig, chunk, th, chip.plan_enumeration)
            costs = unscaled_plan_costs(sig, chip, chunk[sid], temporal)
            yield PlanChunk((sid + lo).astype(np.int32), costs["hot"], costs["comp"], costs["comm"])
    return spatial, chunks()
