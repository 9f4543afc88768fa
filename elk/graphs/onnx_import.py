"""ONNX models as elk programs: the front door for a model a user exports from PyTorch.

:func:`load_onnx` reads a ``.onnx`` file (:mod:`elk.graphs.onnx_read`: checks, symbolic
dimensions bound from ``--batch``/``--seq``/``--dim``, concrete shapes, folded
constants) and maps its runtime nodes to elk's einsum operators. Weights are never
needed: an initializer's name, type and dims are enough, so a file whose external
``.data`` file is absent compiles like one with its weights inline.

What becomes what (every node is one of these; any other operator type is one error
line naming the node):

- **folded** (computed at compile time, no operator): every node all of whose inputs are
  constants: shape arithmetic (``Shape``, ``Gather``/``Slice``/``Concat`` of shapes,
  ``Constant``, ``ConstantOfShape``, ``Range``, ``Cast`` of constants, ...), and the
  input-independent tensors exporters build at run time (causal masks from
  ``Range``/``CumSum``/``Where``, rotary ``cos``/``sin`` tables). A folded tensor that
  an operator reads is an HBM input of it, like a weight (elk's builders read their
  masks and rotary tables from HBM too), counted only along the axes it varies on:
  exporters expand the causal mask over the batch (``[batch, 1, seq, seq]``, every row
  the same), which is one ``seq x seq`` table, as the builders read it
  (:meth:`_Mapper.data_axes`: from the value when the reader evaluated it, else from
  the nodes that compute it; anything it cannot follow counts whole). A folded scalar
  (an epsilon, a scale) is dropped from the operator that reads it.
- **layout only** (removed; a consumer reads the source tensor): ``Reshape``,
  ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Flatten``, ``Identity``, ``Dropout``
  (inference), ``Cast``, and ``Expand`` (its new axes carry no data, so a consumer's
  operand leaves them out: a grouped-query attention's repeated K/V heads are read once).
- **folded into a matmul**: a ``Mul``/``Div`` by a constant scalar whose only readers
  (through layout nodes) are matmuls: the scale is part of the matmul, as of its weights
  (exporters scale Q and K by the square root of 1/sqrt(d) each before the scores).
- **matmul**: ``MatMul``, ``Gemm`` (plus a ``binary`` bias add when it has a bias),
  ``Einsum`` with two inputs.
- **conv**: ``Conv`` (groups, strides, dilations, padding) as an implicit GEMM over
  output positions, groups, output channels and the reduction (channels x kernel
  offsets), plus a ``binary`` bias add; the input is exact for disjoint patches (a kernel
  no wider than its stride) and counted once per output position otherwise, as the
  artifact importer does.
- **pool**: ``MaxPool``, ``AveragePool``, ``LpPool`` (sliding windows);
  ``GlobalAveragePool``/``GlobalMaxPool`` are **reduce**.
- **reduce**: ``ReduceMean``/``Sum``/``Max``/``Min``/``Prod``/``L1``/``L2``/``SumSquare``/
  ``LogSum``/``LogSumExp``, ``ArgMax``/``ArgMin``.
- **softmax** (``Softmax``, ``LogSoftmax``): max, subtract, exp, sum, divide, as elk's
  builders emit it. **LayerNormalization**: mean, centre, square, variance, rsqrt,
  normalise, scale, shift (elk's ``layer_norm``). **BatchNormalization** (inference):
  a per-channel scale and shift. The RMS norm exporters emit
  (``Pow``/``ReduceMean``/``Add``/``Sqrt``/``Reciprocal``/``Mul``) maps node by node.
- **binary** / **unary**: elementwise operators (``Add``, ``Sub``, ``Mul``, ``Div``,
  ``Pow``, ``Max``, ``Min``, ``Sum``, ``Mean``, ``Where``, comparisons, ``Relu``,
  ``Gelu``, ``Sigmoid``, ``Tanh``, ``Erf``, ``Exp``, ``Sqrt``, ``Reciprocal``, ``Neg``,
  ``Sin``, ``Cos``, ``IsNaN``, ``Clip``, ``LRN``, ...): binary when two or more
  non-scalar operands remain, unary otherwise.
- **slice**: ``Slice``, ``Split`` (one per output), ``Concat`` and ``Pad`` of runtime
  tensors, ``Gather``/``GatherElements``/``GatherND`` of runtime data. An embedding
  lookup (``Gather`` from a constant table by runtime ids) is a load of the looked-up
  rows from HBM, as elk's builders model it. A ``Concat`` that reassembles one tensor
  from its own windows (a rotary embedding's ``rotate_half``:
  ``Concat(Neg(Slice(x)), Slice(x))``) is what it computes, ``x`` rearranged: one slice
  reading ``x`` and the negation over the result, as elk's builders emit it
  (:meth:`_Mapper.find_permutations`).

Sibling matmuls (the Q/K/V projections, a gated FFN's gate and up: matmuls reading the
same activation with different weights) are merged into one matmul followed by slices,
elk's builders' and the Elk artifact's layout (:func:`merge_sibling_matmuls`). One wide
matmul runs faster than three narrow ones (the README's comparison with
``merge_matmuls=False``). When each member's only reader adds a per-feature bias (OPT's
Q, K and V), the adds merge too: one add over the merged output with the concatenated
biases, then the splits, which is ``x @ [Wq Wk Wv] + [bq bk bv]`` split, as the builders
lay it out.

The operators are then put in a producer-adjacent order
(:func:`producer_adjacent_order`): a depth-first walk from the results that emits each
operator right after the producer of its largest operand, which is how elk's builders
emit and what elk's residency rule rewards (an input stays on chip only when the
operator just before produced or read it). The exporter's trace order lists, say, the
Q, K and V splits side by side and reads Q back from HBM after K and V; any
topological order computes the same thing, only which inputs come from HBM changes.

Then, as the artifact importer does: length-1 indices are squeezed; indices that
appear in exactly the same operands are fused into one (batch x heads, batch x
sequence), so plan tables stay small; residency is elk's rule
(:meth:`elk.ir.Program.from_ops`); repeated layers are found from operator signatures
(:func:`elk.graphs.artifact.find_layers`) and numbered for ELK-Full's load orders,
window reuse and the periodic design. Each operator's bytes per element come from the
file's element types: the widest float type its runtime inputs are stored in (fp32 4,
fp16/bf16 2, fp8 1; wider types count 4), or its output's type when no runtime input
is a float (an embedding lookup; int8 and bool count 1). A ``Cast`` is layout, so a
value keeps its source's type: an fp16 model whose exporter upcasts its norms to fp32
is costed in fp16 throughout, as its stored tensors are.

A file with past key/value inputs (a decode graph) is read like any other: the cache
tensors are runtime inputs, read from HBM by the residency rule, and their symbolic
length binds from ``--seq`` (``past_sequence_length``, ...) or ``--dim``; no file elk
is tested on has such inputs, so this path is untested.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from elk.errors import ModelConfigError
from elk.graphs.artifact.layers import with_layers
from elk.graphs.onnx_read import (BOOL_UNARY, COMPARE, DTYPES, ELEMENTWISE, POOL, REDUCE, UNARY, Node,
                                  OnnxGraph, Value, conv_geometry, parse_einsum, read_onnx, reduce_axes)
from elk.ir import OpKind, Operator, Program, einsum_op

#: most matmuls/convs one repeated block may hold (a layer with the file's own Q, K, V, gate and up
#: matmuls has 9, more than the artifact importer's 8), and least share of the program the blocks cover
MAX_LARGE_PER_BLOCK = 12
MIN_LAYER_COVERAGE = 0.5

LAYOUT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "Cast",
                    "CastLike", "Expand"})
NORMS = frozenset({"LayerNormalization", "BatchNormalization"})
MOVES = frozenset({"Slice", "Split", "Concat", "Pad", "Gather", "GatherElements", "GatherND", "Tile"})
MATMULS = frozenset({"MatMul", "Gemm", "Einsum"})
FOLD_ONLY = frozenset({"Constant", "Shape", "Size", "ConstantOfShape", "Range", "CumSum", "Trilu"})
GLOBAL_POOL = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
#: every operator type elk maps (the README's table lists the same)
SUPPORTED = (LAYOUT | NORMS | MOVES | MATMULS | FOLD_ONLY | GLOBAL_POOL | ELEMENTWISE | COMPARE | UNARY
             | BOOL_UNARY | POOL | REDUCE | {"Conv", "Softmax", "LogSoftmax"})

#: float element types (fp32, fp16, fp64, bf16, fp8s)
FLOAT_TYPES = frozenset({1, 10, 11, 16, 17, 18, 19, 20})

Atom = tuple[int, bool]  # (length, carries data)


@dataclass(frozen=True)
class View:
    """What a consumer sees of a value: the elk tensor holding its data, and per axis its atoms.

    An axis of length 1 has no atoms; a longer one is a row-major product of atoms,
    each with a flag saying whether it carries data (False: an axis ``Expand``
    broadcast). Reshapes split and merge atoms, so a consumer knows which parts of
    its axes are real data (a grouped-query attention's K heads x repeat).
    """

    tensor: str
    axes: tuple[tuple[Atom, ...], ...]

    @property
    def elements(self) -> int:
        return math.prod(n for ax in self.axes for n, d in ax if d)


def _plain(tensor: str, shape: Sequence[int]) -> View:
    return View(tensor, tuple(((n, True),) if n > 1 else () for n in shape))


def _reshape(view: View, shape: Sequence[int]) -> View:
    """Re-factor the atoms to ``shape`` (row-major); atoms split where an axis boundary falls inside one."""
    atoms = [a for ax in view.axes for a in ax]
    out: list[tuple[Atom, ...]] = []
    k = 0
    for n in shape:
        axis: list[Atom] = []
        need = n
        while need > 1:
            if k >= len(atoms):
                return _fallback(view, shape)
            size, data = atoms[k]
            if need % size == 0:
                axis.append((size, data))
                need //= size
                k += 1
            elif size % need == 0:
                axis.append((need, data))
                atoms[k] = (size // need, data)
                need = 1
            else:
                return _fallback(view, shape)
        out.append(tuple(axis))
    if k != len(atoms):
        return _fallback(view, shape)
    return View(view.tensor, tuple(out))


def _fallback(view: View, shape: Sequence[int]) -> View:
    """A reshape the atoms cannot follow: every axis carries data (may overcount a broadcast view)."""
    return _plain(view.tensor, shape)


def _expand(view: View, in_shape: Sequence[int], out_shape: Sequence[int]) -> View:
    lead = len(out_shape) - len(in_shape)
    axes: list[tuple[Atom, ...]] = []
    for i, n in enumerate(out_shape):
        j = i - lead
        if j >= 0 and in_shape[j] == n:
            axes.append(view.axes[j])
        else:
            axes.append(((n, False),) if n > 1 else ())
    return View(view.tensor, tuple(axes))


class _Emit:
    """Builds elk operators from operands given as views and axis ids; see :meth:`op`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ops: list[Operator] = []
        self.names: set[str] = set()

    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            k += 1
            name = f"{base}#{k}"
        self.names.add(name)
        return name

    def op(self, name: str, kind: OpKind, lengths: Mapping[str, int],
           operands: Sequence[tuple[View, Sequence[str | None]]], out: Sequence[str | None],
           bpe: int, role: str = "") -> tuple[str, tuple[tuple[Atom, ...], ...]]:
        """Emit one operator; return its tensor name and the atoms of each ``out`` axis.

        ``lengths``: op axis id -> length. Each operand maps its view's axes to op axis
        ids (None: an axis the operand does not index, e.g. a broadcast one of length 1).
        An op axis becomes the common refinement of the atoms every operand sees on it;
        an operand leaves out the refined parts that carry no data for it.
        """
        name = self.unique(name)
        # common refinement of each op axis: boundaries are the inner strides of each factorisation
        bounds: dict[str, set[int]] = {a: {n} for a, n in lengths.items()}
        for view, ids in operands:
            for ax, a in zip(view.axes, ids):
                if a is None or not ax or math.prod(n for n, _ in ax) != lengths[a]:
                    continue
                stride = 1
                for n, _ in reversed(ax):
                    stride *= n
                    bounds[a].add(stride)
        parts: dict[str, list[int]] = {}  # op axis -> refined lengths, outer to inner
        for a, bs in bounds.items():
            chain = sorted(b for b in bs if b > 1)
            if lengths[a] <= 1:
                parts[a] = []
            elif all(chain[i + 1] % chain[i] == 0 for i in range(len(chain) - 1)):
                inner = [chain[0]] + [chain[i + 1] // chain[i] for i in range(len(chain) - 1)]
                parts[a] = inner[::-1]
            else:
                parts[a] = [lengths[a]]
        sizes: dict[str, int] = {}
        for a, ps in parts.items():
            for j, n in enumerate(ps):
                sizes[f"{a}.{j}"] = n

        def operand_axes(view: View, ids: Sequence[str | None]) -> list[str]:
            idx: list[str] = []
            for ax, a in zip(view.axes, ids):
                if a is None or not parts.get(a):
                    continue
                ps = parts[a]
                if not ax or math.prod(n for n, _ in ax) != lengths[a]:
                    idx += [f"{a}.{j}" for j in range(len(ps))]
                    continue
                # which atom of this view each refined part falls in (by inner stride)
                flags: list[bool] = []
                atom_bounds = []
                stride = 1
                for n, d in reversed(ax):
                    atom_bounds.append((stride, stride * n, d))
                    stride *= n
                stride = 1
                for n in reversed(ps):
                    lo = stride
                    flags.append(next(d for s0, s1, d in atom_bounds if s0 <= lo < s1))
                    stride *= n
                flags.reverse()
                idx += [f"{a}.{j}" for j, f in enumerate(flags) if f]
            return idx

        ins = [(view.tensor, operand_axes(view, ids)) for view, ids in operands]
        out_idx = [f"{a}.{j}" for a in out if a is not None for j in range(len(parts.get(a, [])))]
        if kind not in (OpKind.MATMUL, OpKind.CONV):
            kept = [(t, ix) for t, ix in ins if ix]
            ins = kept or ins[:1]
        if kind == OpKind.MATMUL and len(ins) != 2:
            raise ModelConfigError(f"{self.path}: {name}: a matmul needs two operands")
        if not out_idx:  # a scalar result keeps one index of length 1
            out_idx = ["@one"]
            sizes["@one"] = 1
        for k, (t, ix) in enumerate(ins):
            if not ix:
                ins[k] = (t, [out_idx[0]])
        # fuse the indices that appear in exactly the same operands (batch x heads, batch x sequence)
        if kind != OpKind.CONV:
            variables = [out_idx] + [ix for _, ix in ins]
            member: dict[str, tuple[int, ...]] = {}
            for v, ix in enumerate(variables):
                for i in ix:
                    member[i] = member.get(i, ()) + (v,)
            groups: dict[tuple[int, ...], list[str]] = {}
            for i in dict.fromkeys(i for ix in variables for i in ix):
                groups.setdefault(member[i], []).append(i)
            rename: dict[str, str] = {}
            for g in groups.values():
                if len(g) > 1:
                    fused = "+".join(g)
                    sizes[fused] = math.prod(sizes[i] for i in g)
                    for i in g:
                        rename[i] = fused

            def merge(ix: list[str]) -> list[str]:
                return list(dict.fromkeys(rename.get(i, i) for i in ix))
            out_idx = merge(out_idx)
            ins = [(t, merge(ix)) for t, ix in ins]
        order = list(dict.fromkeys(i for ix in [out_idx] + [ix for _, ix in ins] for i in ix))
        if len(order) > 26:
            raise ModelConfigError(f"{self.path}: {name}: {len(order)} indices, more than an einsum can name")
        letter = {i: chr(ord("a") + k) for k, i in enumerate(order)}
        spec = ",".join("".join(letter[i] for i in ix) for _, ix in ins) + "->" + "".join(letter[i] for i in out_idx)
        self.ops.append(einsum_op(name, kind, spec, {letter[i]: sizes[i] for i in order}, [t for t, _ in ins], name,
                                  bytes_per_element=bpe, role=role))
        atoms = tuple(tuple((n, True) for n in parts.get(a, [])) if a is not None else () for a in out)
        return name, atoms

    def window_op(self, name: str, kind: OpKind, spec: str, sizes: Mapping[str, int], inputs: Sequence[str],
                  bpe: int, role: str) -> str:
        """Emit an operator whose spec is written out (convolutions and pooling windows)."""
        name = self.unique(name)
        lhs, rhs = spec.split("->")
        ones = {c for c, n in sizes.items() if n == 1}
        keep_out = [c for c in rhs if c not in ones] or [rhs[0]]

        def strip(term: str) -> str:
            out, k = "", 0
            while k < len(term):
                if term[k] == "(":
                    end = term.index(")", k)
                    inner = "".join(c for c in term[k + 1:end] if c not in ones)
                    out += inner if len(inner) < 2 else f"({inner})"
                    k = end + 1
                else:
                    if term[k] not in ones or term[k] in keep_out:
                        out += term[k]
                    k += 1
            return out
        terms = [strip(t) for t in lhs.split(",")]
        terms = [t or keep_out[0] for t in terms]
        spec = ",".join(terms) + "->" + "".join(keep_out)
        used = {c for c in spec if c.isalpha()}
        self.ops.append(einsum_op(name, kind, spec, {c: n for c, n in sizes.items() if c in used}, inputs, name,
                                  bytes_per_element=bpe, role=role))
        return name


def _bpe(dtype: int) -> int:
    n = DTYPES.get(dtype, ("?", 4))[1]
    return n if n in (1, 2, 4) else 4


class _Mapper:
    def __init__(self, graph: OnnxGraph) -> None:
        self.g = graph
        self.views: dict[str, View] = {}
        self.emit = _Emit(graph.path)
        self.stats = {"layout_removed": 0, "folded": 0, "embedding_loads": 0}
        self.stored: dict[str, int] = {}  # value -> the element type elk stores it in
        self.readers: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for name in node.inputs:
                if name:
                    self.readers.setdefault(name, []).append(node)
        self.producer: dict[str, Node] = {o: node for node in graph.nodes for o in node.outputs if o}
        self.data_memo: dict[str, tuple[bool, ...]] = {}
        self.stats["scales_folded"] = 0
        self.stats["permutation_parts"] = 0
        self.permutes: dict[str, tuple[str, list[Node]]] = {}  # concat node -> (source tensor, unary chain)
        self.skip: set[str] = set()
        self.stats["matmuls_merged"] = 0
        for name in graph.inputs:
            self.views[name] = _plain(name, graph.values[name].shape)

    def fail(self, node: Node, message: str) -> ModelConfigError:
        return ModelConfigError(f"{self.g.describe(node)}: {message}")

    def val(self, name: str) -> Value:
        return self.g.values[name]

    def view(self, name: str) -> View:
        """The view of a value; a constant is an HBM tensor of its own name (a weight, a mask, a table).

        A constant the graph computes (not an initializer) carries data only on the
        axes along which it varies (:meth:`data_axes`): a causal mask the exporter
        expands over the batch is one ``seq x seq`` table, read once, as elk's
        builders read theirs.
        """
        if name not in self.views:
            v = self.val(name)
            if v.const and not v.initializer:
                data = self.data_axes(name)
                self.views[name] = View(name, tuple(((n, d),) if n > 1 else () for n, d in zip(v.shape, data)))
            else:
                self.views[name] = _plain(name, v.shape)
        return self.views[name]

    def data_axes(self, name: str) -> tuple[bool, ...]:
        """Per axis of a constant: False when the value provably repeats along it (a broadcast axis).

        From the value itself when the reader evaluated it; else from the node that
        computes it: an elementwise node (or ``Expand``) varies only where an input
        varies (broadcasting copies the rest), layout nodes carry their input's flags,
        a ``GatherND`` varies along an index axis only where an index component that
        addresses a varying data axis varies. Anything else varies on every axis longer
        than 1, which is the safe answer (the tensor counts whole).
        """
        if name in self.data_memo:
            return self.data_memo[name]
        v = self.val(name)
        full = tuple(n > 1 for n in v.shape)
        flags = full
        node = self.producer.get(name)
        if v.value is not None and tuple(np.shape(v.value)) == v.shape:
            arr = np.asarray(v.value)
            flags = tuple(n > 1 and not bool(np.all(arr == arr.take([0], axis=i))) for i, n in enumerate(v.shape))
        elif node is not None and all(self.val(i).const for i in node.inputs if i):
            flags = self.derived_data_axes(node, name) or full
        self.data_memo[name] = flags
        return flags

    def derived_data_axes(self, node: Node, name: str) -> tuple[bool, ...] | None:
        """:meth:`data_axes` of a computed constant from its inputs' flags; None: not derivable."""
        op = node.op_type
        shape = self.val(name).shape
        ins = [i for i in node.inputs if i]
        if op in ELEMENTWISE or op in COMPARE or op in UNARY or op in BOOL_UNARY or op in (
                "Expand", "Cast", "CastLike", "Identity"):
            sources = ins[:1] if op in ("Expand", "Cast", "CastLike") else ins
            out = [False] * len(shape)
            for i in sources:
                s, d = self.val(i).shape, self.data_axes(i)
                lead = len(shape) - len(s)
                if lead < 0:
                    return None
                for j, flag in enumerate(d):
                    out[lead + j] = out[lead + j] or flag
            return tuple(f and n > 1 for f, n in zip(out, shape))
        if op in ("Unsqueeze", "Squeeze", "Reshape", "Flatten"):
            src, d = self.val(ins[0]).shape, self.data_axes(ins[0])
            long_axes = [(n, f) for n, f in zip(src, d) if n > 1]
            if [n for n, _ in long_axes] != [n for n in shape if n > 1]:
                return None  # a reshape that merges or splits axes: not followed
            it = iter(f for _, f in long_axes)
            return tuple(next(it) if n > 1 else False for n in shape)
        if op == "Transpose":
            d = self.data_axes(ins[0])
            perm = node.attrs.get("perm") or list(range(len(d)))[::-1]
            return tuple(d[p] for p in perm)
        if op == "GatherND" and not node.attrs.get("batch_dims", 0) and len(ins) == 2:
            iv = self.val(ins[1])
            if iv.value is None or tuple(np.shape(iv.value)) != iv.shape:
                return None
            idx = np.asarray(iv.value)
            data = self.data_axes(ins[0])
            k = iv.shape[-1]
            if k > len(data):
                return None
            out = []
            for i, n in enumerate(iv.shape[:-1]):
                out.append(n > 1 and any(data[c] and not bool(np.all(idx[..., c] == idx[..., c].take([0], axis=i)))
                                         for c in range(k)))
            out += list(data[k:])
            return tuple(out) if len(out) == len(shape) else None
        return None

    def scalar(self, name: str) -> bool:
        v = self.val(name)
        return v.const and v.size <= 1

    # ---- generic elementwise ---------------------------------------------------------
    def elementwise(self, node: Node, names: Sequence[str], out_name: str, out_shape: Sequence[int], bpe: int,
                    label: str, role: str = "", force_kind: OpKind | None = None) -> None:
        r = len(out_shape)
        lengths = {f"e{i}": n for i, n in enumerate(out_shape)}
        operands = []
        for nm in names:
            if self.scalar(nm):
                continue
            v = self.val(nm)
            lead = r - len(v.shape)
            ids = [f"e{lead + j}" if n == out_shape[lead + j] and n > 1 else None for j, n in enumerate(v.shape)]
            operands.append((self.view(nm), ids))
        if not operands:  # every input a scalar constant: read the first
            operands = [(self.view(names[0]), [None] * len(self.val(names[0]).shape))]
        kind = force_kind or (OpKind.BINARY if len(operands) > 1 else OpKind.UNARY)
        out = [f"e{i}" if n > 1 else None for i, n in enumerate(out_shape)]
        tensor, atoms = self.emit.op(label, kind, lengths, operands, out, bpe, role)
        self.views[out_name] = View(tensor, atoms)

    def reduce(self, src: str, src_shape: Sequence[int], axes: Sequence[int], out_name: str, out_shape: Sequence[int],
               bpe: int, label: str, role: str = "") -> None:
        lengths = {f"e{i}": n for i, n in enumerate(src_shape)}
        ids = [f"e{i}" if n > 1 else None for i, n in enumerate(src_shape)]
        kept = [i for i in range(len(src_shape)) if i not in axes]
        out: list[str | None] = []
        if len(out_shape) == len(src_shape):  # keepdims
            out = [None if i in axes else ids[i] for i in range(len(src_shape))]
        else:
            out = [ids[i] for i in kept]
        tensor, atoms = self.emit.op(label, OpKind.REDUCE, lengths, [(self.view(src), ids)], out, bpe, role)
        self.views[out_name] = View(tensor, atoms)

    def find_permutations(self) -> None:
        """Concats that reassemble one tensor from its own windows: a permutation of that tensor.

        Why: a rotary embedding's ``rotate_half(x)`` is exported as
        ``Concat(Neg(Slice(x, upper half)), Slice(x, lower half))``: two slices, a
        negation and a concat, whose concat reads two tensors (one of which elk's
        residency rule must then load from HBM). What it computes is ``x`` with its
        halves swapped and one of them negated: elk's builders model it as one slice
        (``x`` rearranged) and the negation over the result, and so does the importer.
        A Concat qualifies when every runtime input is a ``Slice`` of the same tensor
        ``x`` along the concat axis (optionally through a chain of unary elementwise
        nodes, on at most one input), no window is read by anything else, and the result
        has ``x``'s shape. The unary chain then runs over the whole result (the
        builders' count; the FLOPs of a negation are the only thing that grows).
        """
        for node in self.g.nodes:
            if node.op_type != "Concat" or not node.outputs or self.val(node.outputs[0]).const:
                continue
            try:
                found = self.permutation(node)
            except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError):
                found = None  # a node the pattern cannot read is mapped as it is, and checked there
            if found is not None:
                src, chain, parts = found
                self.permutes[node.name] = (src, chain)
                self.skip.update(parts)
                self.skip.update(c.name for c in chain)

    def permutation(self, node: Node) -> tuple[str, list[Node], list[str]] | None:
        """(source, unary chain, slice nodes) when the Concat ``node`` is a permutation (:meth:`find_permutations`)."""
        ins = [i for i in node.inputs if i and self.val(i).size > 0]
        out_shape = self.val(node.outputs[0]).shape
        axis = node.attrs.get("axis", 0) % max(len(out_shape), 1)
        sources: set[str] = set()
        chains: list[list[Node]] = []
        parts: list[str] = []
        for i in ins:
            chain: list[Node] = []
            x = i
            while True:
                prod = self.producer.get(x)
                if prod is None or len(self.readers.get(x, [])) != 1 or x in self.g.outputs:
                    prod = None
                    break
                runtime = [j for j in prod.inputs if j and not self.val(j).const]
                if prod.op_type in UNARY and len(runtime) == 1 and len(prod.outputs) == 1:
                    chain.insert(0, prod)
                    x = runtime[0]
                    continue
                break
            if prod is None or prod.op_type != "Slice" or self.val(prod.inputs[0]).const:
                break
            src = prod.inputs[0]
            src_shape, cut = self.val(src).shape, self.val(x).shape
            if len(src_shape) != len(cut) or any(a != b for k, (a, b) in enumerate(zip(src_shape, cut))
                                                 if k != axis):
                break
            sources.add(src)
            parts.append(prod.name)
            if chain:
                chains.append(chain)
        else:
            if (len(ins) >= 2 and len(sources) == 1 and len(chains) <= 1
                    and self.val(next(iter(sources))).shape == out_shape):
                return next(iter(sources)), (chains[0] if chains else []), parts
        return None

    # ---- one node ---------------------------------------------------------------------
    def run(self) -> list[Operator]:
        self.find_permutations()
        for node in self.g.nodes:
            outs = [self.val(o) for o in node.outputs if o]
            if not outs:
                continue
            if node.name in self.skip:
                self.stats["permutation_parts"] += 1
                continue
            if all(v.const for v in outs):
                self.stats["folded"] += 1
                continue
            try:
                self.map(node)
            except ModelConfigError:
                raise
            except (KeyError, IndexError, ValueError, TypeError, StopIteration, AssertionError) as exc:
                raise self.fail(node, f"cannot map it to an einsum ({type(exc).__name__}: {exc})") from None
        if not self.emit.ops:
            raise ModelConfigError(f"{self.g.path}: the graph has no compute operators (every node is layout or "
                                   f"folded constant arithmetic)")
        return self.emit.ops

    def element_type(self, node: Node) -> int:
        """The element type an operator computes in: the widest float type its runtime inputs are stored in.

        Why not the output's type: a ``Cast`` is layout (removed), so a value keeps its
        source's type; an fp16 model whose exporter upcasts the RMS norm to fp32 is
        costed in fp16, as the tensors it stores are. Constants (weights) do not decide;
        an operator with no float runtime input (an embedding lookup by token ids)
        takes its output's type.
        """
        codes = [self.stored.get(i, self.val(i).dtype) for i in node.inputs if i and not self.val(i).const]
        codes = [c for c in codes if c in FLOAT_TYPES]
        if not codes:
            return self.val(node.outputs[0]).dtype
        return max(codes, key=lambda c: DTYPES[c][1])

    def map(self, node: Node) -> None:
        code = self.element_type(node)
        self._map(node, _bpe(code))
        for o in node.outputs:
            if o:
                self.stored.setdefault(o, code)

    def _map(self, node: Node, bpe: int) -> None:
        op = node.op_type
        x_name = node.inputs[0]
        out = node.outputs[0]
        ov = self.val(out)
        label = node.name
        if op in LAYOUT:
            self.stored[out] = self.stored.get(x_name, self.val(x_name).dtype)
            self.stats["layout_removed"] += 1
            xv = self.val(x_name)
            view = self.view(x_name)
            if op == "Transpose":
                perm = node.attrs.get("perm") or list(range(len(xv.shape)))[::-1]
                self.views[out] = View(view.tensor, tuple(view.axes[p] for p in perm))
            elif op == "Expand":
                self.views[out] = _expand(view, xv.shape, ov.shape)
            elif op in ("Identity", "Dropout", "Cast", "CastLike"):
                self.views[out] = view
            else:
                self.views[out] = _reshape(view, ov.shape)
            return
        if op in MATMULS:
            return self.matmul(node, bpe)
        if op == "Conv":
            return self.conv(node, bpe)
        if op in POOL:
            return self.pool(node, bpe)
        if op in GLOBAL_POOL:
            xv = self.val(x_name)
            return self.reduce(x_name, xv.shape, list(range(2, len(xv.shape))), out, ov.shape, bpe, label, "pool")
        if op in REDUCE:
            xv = self.val(x_name)
            axes = reduce_axes(node, [self.val(i) if i else None for i in node.inputs], len(xv.shape))
            if not axes:
                self.views[out] = self.view(x_name)
                return
            return self.reduce(x_name, xv.shape, axes, out, ov.shape, bpe, label, "reduce")
        if op in ("Softmax", "LogSoftmax"):
            return self.softmax(node, bpe)
        if op == "LayerNormalization":
            return self.layer_norm(node, bpe)
        if op == "BatchNormalization":
            return self.batch_norm(node, bpe)
        if op in MOVES:
            return self.move(node, bpe)
        if self.folds_into_matmul(node):
            self.stats["scales_folded"] += 1
            self.stored[out] = self.stored.get(x_name, self.val(x_name).dtype)
            runtime = next(i for i in node.inputs if i and not self.val(i).const)
            self.views[out] = self.view(runtime)
            return
        if op in ELEMENTWISE or op in COMPARE or op in UNARY or op in BOOL_UNARY:
            names = [i for i in node.inputs if i]
            if op == "Clip":
                names = names[:1]
            return self.elementwise(node, names, out, ov.shape, bpe, label, op.lower())
        raise self.fail(node, f"elk cannot map operator type {op} here (its inputs are not all constants); the "
                              f"supported operator types are listed in the README (\"ONNX models as input\") and in "
                              f"elk/graphs/onnx_import.py")

    def folds_into_matmul(self, node: Node) -> bool:
        """A multiplication or division by a constant scalar whose only readers are matmuls.

        Why: a matmul is linear, so the scale is folded into it at compile time (as into
        its weights); exporters decompose attention as ``(q * s) @ (k * s)^T`` with two
        such scales, each of which would be a pass over Q or K.
        """
        if node.op_type not in ("Mul", "Div") or len([i for i in node.inputs if i]) != 2:
            return False
        a, b = node.inputs[0], node.inputs[1]
        if node.op_type == "Div" and not self.scalar(b):
            return False
        if not (self.scalar(a) or self.scalar(b)) or (self.scalar(a) and self.scalar(b)):
            return False
        runtime = b if self.scalar(a) else a
        if self.val(runtime).shape != self.val(node.outputs[0]).shape:
            return False
        seen: set[str] = set()
        todo = [node.outputs[0]]
        while todo:  # through layout nodes, every reader must be a matmul
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            readers = self.readers.get(name, [])
            if not readers or name in self.g.outputs:
                return False
            for r in readers:
                if r.op_type in ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"):
                    todo.extend(o for o in r.outputs if o)
                elif r.op_type not in ("MatMul", "Einsum"):
                    return False
        return True

    def matmul(self, node: Node, bpe: int) -> None:
        op = node.op_type
        out = node.outputs[0]
        if op == "Einsum":
            names = [i for i in node.inputs if i]
            if len(names) == 1:
                terms, o = parse_einsum(node.attrs["equation"], [self.val(names[0]).shape])
                if sorted(terms[0]) == sorted(o):  # a transpose written as an einsum: layout
                    view = self.view(names[0])
                    self.views[out] = View(view.tensor, tuple(view.axes[terms[0].index(c)] for c in o))
                    return
                xv = self.val(names[0])
                axes = [k for k, c in enumerate(terms[0]) if c not in o]
                return self.reduce(names[0], xv.shape, axes, out, self.val(out).shape, bpe, node.name, "reduce")
            if len(names) != 2:
                raise self.fail(node, f"an Einsum with {len(names)} inputs; elk maps one or two")
            terms, o = parse_einsum(node.attrs["equation"], [self.val(n).shape for n in names])
            lengths: dict[str, int] = {}
            for t, n in zip(terms, names):
                for c, k in zip(t, self.val(n).shape):
                    lengths[c] = max(lengths.get(c, 1), k)
            operands = [(self.view(n), [c if k > 1 else None for c, k in zip(t, self.val(n).shape)])
                        for t, n in zip(terms, names)]
            tensor, atoms = self.emit.op(node.name, OpKind.MATMUL, lengths, operands, list(o), bpe, "matmul")
            self.views[out] = View(tensor, atoms)
            return
        a_name, b_name = node.inputs[0], node.inputs[1]
        a, b = self.val(a_name), self.val(b_name)
        if op == "Gemm":
            ta, tb = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
            ids_a = ["k", "m"] if ta else ["m", "k"]
            ids_b = ["n", "k"] if tb else ["k", "n"]
            m, n = self.val(out).shape
            k = a.shape[0] if ta else a.shape[1]
            lengths = {"m": m, "k": k, "n": n}
            operands = [(self.view(a_name), [i if s > 1 else None for i, s in zip(ids_a, a.shape)]),
                        (self.view(b_name), [i if s > 1 else None for i, s in zip(ids_b, b.shape)])]
            tensor, atoms = self.emit.op(node.name, OpKind.MATMUL, lengths, operands,
                                         ["m" if m > 1 else None, "n" if n > 1 else None], bpe, "matmul")
            c = node.inputs[2] if len(node.inputs) > 2 else ""
            if c and not self.scalar(c):
                self.views[out + "@mm"] = View(tensor, atoms)
                self.g.values[out + "@mm"] = replace(self.val(out), name=out + "@mm")
                self.elementwise(node, [out + "@mm", c], out, self.val(out).shape, bpe, node.name + ".bias", "bias")
            else:
                self.views[out] = View(tensor, atoms)
            return
        sa, sb = list(a.shape), list(b.shape)
        va, vb = len(sa) == 1, len(sb) == 1
        if va:
            sa = [1] + sa
        if vb:
            sb = sb + [1]
        batch = np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
        r = len(batch)
        lengths = {f"b{i}": n for i, n in enumerate(batch)}
        lengths.update({"m": sa[-2], "k": sa[-1], "n": sb[-1]})

        def ids(shape: list[int], tail: list[str], drop: int) -> list[str | None]:
            lead = r - (len(shape) - 2)
            out_ids: list[str | None] = [f"b{lead + j}" if n > 1 and n == batch[lead + j] else None
                                         for j, n in enumerate(shape[:-2])]
            full = out_ids + [t if n > 1 else None for t, n in zip(tail, shape[-2:])]
            return full[1:] if drop == 0 else (full[:-1] if drop == 1 else full)
        ids_a = ids(sa, ["m", "k"], 0 if va else 2)
        ids_b = ids(sb, ["k", "n"], 1 if vb else 2)
        out_ids: list[str | None] = [f"b{i}" if n > 1 else None for i, n in enumerate(batch)]
        if not va:
            out_ids.append("m" if sa[-2] > 1 else None)
        if not vb:
            out_ids.append("n" if sb[-1] > 1 else None)
        tensor, atoms = self.emit.op(node.name, OpKind.MATMUL, lengths,
                                     [(self.view(a_name), ids_a), (self.view(b_name), ids_b)], out_ids, bpe, "matmul")
        self.views[out] = View(tensor, atoms)

    def conv(self, node: Node, bpe: int) -> None:
        x, w = self.val(node.inputs[0]), self.val(node.inputs[1])
        out = self.val(node.outputs[0])
        group = int(node.attrs.get("group", 1))
        kernel = list(node.attrs.get("kernel_shape") or w.shape[2:])
        spatial, strides, dil = conv_geometry(node.attrs, x.shape[2:], kernel)
        sizes = {"m": x.shape[0] * math.prod(spatial), "g": group, "f": w.shape[0] // group, "c": w.shape[1],
                 "k": math.prod(kernel)}
        disjoint = all(k <= s and d == 1 for k, s, d in zip(kernel, strides, dil))
        data = "mgck" if disjoint else "mgc"
        name = self.emit.window_op(node.name, OpKind.CONV, f"{data},fgck->mgf", sizes,
                                   [self.view(node.inputs[0]).tensor, self.view(node.inputs[1]).tensor], bpe, "conv")
        self.views[node.outputs[0]] = _plain(name, out.shape)
        bias = node.inputs[2] if len(node.inputs) > 2 else ""
        if bias:  # a per-channel add: the 1-D bias broadcasts over axis 1
            tmp, per_channel = node.outputs[0] + "@conv", bias + "@channels"
            self.g.values[tmp] = replace(out, name=tmp)
            self.views[tmp] = self.views[node.outputs[0]]
            shape = (1, out.shape[1]) + (1,) * (len(out.shape) - 2)
            self.g.values[per_channel] = Value(per_channel, shape, self.val(bias).dtype, True)
            self.views[per_channel] = _plain(self.view(bias).tensor, shape)
            self.elementwise(node, [tmp, per_channel], node.outputs[0], out.shape, bpe, node.name + ".bias", "bias")

    def pool(self, node: Node, bpe: int) -> None:
        x = self.val(node.inputs[0])
        out = self.val(node.outputs[0])
        kernel = list(node.attrs.get("kernel_shape"))
        spatial, strides, dil = conv_geometry(node.attrs, x.shape[2:], kernel, bool(node.attrs.get("ceil_mode", 0)))
        letters = iter("hijkuvwxyz")
        sizes = {"n": x.shape[0], "c": x.shape[1]}
        src, dst = "nc", "nc"
        for o, k, s in zip(spatial, kernel, strides):
            a, b = next(letters), next(letters)
            sizes[a], sizes[b] = o, k
            dst += a
            if k == 1:
                src += a
            elif s > 1 and k <= s:
                src += a + b  # disjoint patches: separate axes, exact
            else:
                src += f"({a}{b})"  # a sliding window (a strided one is modelled as stride 1)
        name = self.emit.window_op(node.name, OpKind.POOL, f"{src}->{dst}", sizes,
                                   [self.view(node.inputs[0]).tensor], bpe, "pool")
        self.views[node.outputs[0]] = _plain(name, out.shape)

    def softmax(self, node: Node, bpe: int) -> None:
        x_name, out = node.inputs[0], node.outputs[0]
        xv = self.val(x_name)
        r = len(xv.shape)
        axis = node.attrs.get("axis", -1 if self.g.opset >= 13 else 1) % max(r, 1)
        axes = [axis] if self.g.opset >= 13 else list(range(axis, r))
        stat = tuple(1 if i in axes else n for i, n in enumerate(xv.shape))
        base = node.name
        mx, sub, ex, sm = (f"{out}@{s}" for s in ("max", "sub", "exp", "sum"))
        for nm, shape in ((mx, stat), (sub, xv.shape), (ex, xv.shape), (sm, stat)):
            self.g.values[nm] = Value(nm, tuple(shape), xv.dtype, False)
        self.reduce(x_name, xv.shape, axes, mx, stat, bpe, f"{base}.max", "softmax")
        self.elementwise(node, [x_name, mx], sub, xv.shape, bpe, f"{base}.sub", "softmax")
        self.elementwise(node, [sub], ex, xv.shape, bpe, f"{base}.exp", "softmax")
        self.reduce(ex, xv.shape, axes, sm, stat, bpe, f"{base}.sum", "softmax")
        self.elementwise(node, [ex, sm], out, xv.shape, bpe, f"{base}.div", "softmax")

    def layer_norm(self, node: Node, bpe: int) -> None:
        x_name, out = node.inputs[0], node.outputs[0]
        xv = self.val(x_name)
        r = len(xv.shape)
        axis = node.attrs.get("axis", -1) % r
        axes = list(range(axis, r))
        stat = tuple(1 if i in axes else n for i, n in enumerate(xv.shape))
        base = node.name
        tmp = {s: f"{out}@{s}" for s in ("mean", "xc", "sq", "var", "rs", "xn", "scale")}
        for s, nm in tmp.items():
            self.g.values[nm] = Value(nm, stat if s in ("mean", "var", "rs") else xv.shape, xv.dtype, False)
        self.reduce(x_name, xv.shape, axes, tmp["mean"], stat, bpe, f"{base}.mean", "norm")
        self.elementwise(node, [x_name, tmp["mean"]], tmp["xc"], xv.shape, bpe, f"{base}.xc", "norm")
        self.elementwise(node, [tmp["xc"], tmp["xc"]], tmp["sq"], xv.shape, bpe, f"{base}.sq", "norm",
                         OpKind.BINARY)
        self.reduce(tmp["sq"], xv.shape, axes, tmp["var"], stat, bpe, f"{base}.var", "norm")
        self.elementwise(node, [tmp["var"]], tmp["rs"], stat, bpe, f"{base}.rs", "norm")
        scale = node.inputs[1] if len(node.inputs) > 1 else ""
        bias = node.inputs[2] if len(node.inputs) > 2 else ""
        y = tmp["xn"] if scale or bias else out
        self.elementwise(node, [tmp["xc"], tmp["rs"]], y, xv.shape, bpe, f"{base}.xn", "norm")
        if scale:
            nxt = tmp["scale"] if bias else out
            self.elementwise(node, [y, scale], nxt, xv.shape, bpe, f"{base}.scale", "norm")
            y = nxt
        if bias:
            self.elementwise(node, [y, bias], out, xv.shape, bpe, f"{base}.shift", "norm")

    def batch_norm(self, node: Node, bpe: int) -> None:
        """Inference batch norm: y = x * s + t with per-channel s, t folded from scale, bias, mean, variance."""
        x_name, out = node.inputs[0], node.outputs[0]
        xv = self.val(x_name)
        c = xv.shape[1] if len(xv.shape) > 1 else 1
        lead = (1,) * (len(xv.shape) - 2)
        base = node.name
        s_name, t_name, mid = f"{base}.s", f"{base}.t", f"{out}@scaled"
        for nm in (s_name, t_name):
            self.g.values[nm] = Value(nm, (1, c) + lead, xv.dtype, True)
        self.g.values[mid] = Value(mid, xv.shape, xv.dtype, False)
        self.elementwise(node, [x_name, s_name], mid, xv.shape, bpe, f"{base}.scale", "norm")
        self.elementwise(node, [mid, t_name], out, xv.shape, bpe, f"{base}.shift", "norm")

    def move(self, node: Node, bpe: int) -> None:
        """Data movement of runtime tensors: a slice op that reads the window it writes."""
        op = node.op_type
        base = node.name
        if op == "Gather" and self.val(node.inputs[0]).const and node.attrs.get("axis", 0) == 0:
            # an embedding lookup: a load of the looked-up rows, as elk's builders model it
            ov = self.val(node.outputs[0])
            rows = f"{self.view(node.inputs[0]).tensor}.rows"
            self.stats["embedding_loads"] += 1
            lengths = {f"e{i}": n for i, n in enumerate(ov.shape)}
            ids = [f"e{i}" if n > 1 else None for i, n in enumerate(ov.shape)]
            tensor, atoms = self.emit.op(base, OpKind.SLICE, lengths, [(_plain(rows, ov.shape), ids)], ids, bpe,
                                         "embedding")
            self.views[node.outputs[0]] = View(tensor, atoms)
            return
        if op == "Concat" and base in self.permutes:  # see find_permutations
            src, chain = self.permutes[base]
            ov = self.val(node.outputs[0])
            lengths = {f"e{i}": n for i, n in enumerate(ov.shape)}
            ids = [f"e{i}" if n > 1 else None for i, n in enumerate(ov.shape)]
            prev = node.outputs[0] + "@perm" if chain else node.outputs[0]
            self.g.values[prev] = Value(prev, ov.shape, ov.dtype, False)
            tensor, atoms = self.emit.op(base, OpKind.SLICE, lengths, [(self.view(src), ids)], ids, bpe, "concat")
            self.views[prev] = View(tensor, atoms)
            for k, c in enumerate(chain):
                nxt = node.outputs[0] if k == len(chain) - 1 else f"{node.outputs[0]}@{c.name}"
                self.g.values[nxt] = Value(nxt, ov.shape, ov.dtype, False)
                self.elementwise(c, [prev], nxt, ov.shape, bpe, c.name, c.op_type.lower())
                prev = nxt
            return
        if op == "Concat":
            names = [i for i in node.inputs if i and self.val(i).size > 0]
            ov = self.val(node.outputs[0])
            axis = node.attrs.get("axis", 0) % len(ov.shape)
            lengths = {f"e{i}": n for i, n in enumerate(ov.shape)}
            parts = {self.val(n).shape[axis] for n in names}
            operands = []
            if len(parts) == 1 and len(names) > 1:  # equal parts: the axis is (part, offset)
                lengths[f"e{axis}"] = ov.shape[axis]
                part = parts.pop()
                for n in names:
                    v = self.val(n)
                    ids = [f"e{i}" if s > 1 and s == ov.shape[i] else None for i, s in enumerate(v.shape)]
                    view = self.view(n)
                    ax = list(view.axes)
                    ax[axis] = ((len(names), False),) + (view.axes[axis] or ((part, True),))
                    ids[axis] = f"e{axis}"
                    operands.append((View(view.tensor, tuple(ax)), ids))
            else:
                for n in names:
                    v = self.val(n)
                    ids = [f"e{i}" if s > 1 and (s == ov.shape[i] or i == axis) else None
                           for i, s in enumerate(v.shape)]
                    view = self.view(n)
                    ax = list(view.axes)
                    if ids[axis] is not None:
                        ax[axis] = ((ov.shape[axis], True),)
                    operands.append((View(view.tensor, tuple(ax)), ids))
            out_ids = [f"e{i}" if n > 1 else None for i, n in enumerate(ov.shape)]
            tensor, atoms = self.emit.op(base, OpKind.SLICE, lengths, operands, out_ids, bpe, "concat")
            self.views[node.outputs[0]] = View(tensor, atoms)
            return
        # Slice, Split, Pad, Tile, gathers of runtime data: each output reads its own window of the source
        src = node.inputs[0]
        view = self.view(src)
        for k, o in enumerate(node.outputs):
            if not o:
                continue
            ov = self.val(o)
            lengths = {f"e{i}": n for i, n in enumerate(ov.shape)}
            ids = [f"e{i}" if n > 1 else None for i, n in enumerate(ov.shape)]
            window = _plain(view.tensor, ov.shape)
            if op in ("Pad", "Tile"):
                window = _plain(view.tensor, self.val(src).shape) if len(self.val(src).shape) == len(ov.shape) \
                    else window
            label = base if len(node.outputs) == 1 else f"{base}.{k}"
            tensor, atoms = self.emit.op(label, OpKind.SLICE, lengths, [(window, ids)], ids, bpe, op.lower())
            self.views[o] = View(tensor, atoms)


def merge_sibling_matmuls(ops: Sequence[Operator]) -> tuple[list[Operator], int]:
    """Merge matmuls that read the same activation with different weights into one; return (ops, merged).

    Why: exporters emit the Q, K and V projections (and a gated FFN's gate and up) as
    separate matmuls, each reading the normed activation; elk's builders and the Elk
    artifact's graphs have one matmul over the concatenated weights, which reads the
    activation once and keeps one large operator. The merged matmul sits where the
    first member was (its inputs are the first member's activation and weights,
    available there); each member's output becomes a slice of the merged output at the
    member's own position, so every consumer still finds its tensor.

    Members must share the activation operand (same tensor and axes), read a weight no
    operator produces, and differ only in the one weight index that is not contracted
    (the output features), with equal lengths everywhere else.

    When every member's only reader is a binary add of a per-feature constant (a bias:
    OPT's, BERT's and ViT's Q, K and V), the adds merge as well: one add of the
    concatenated biases over the merged output, and each member's add becomes the slice
    of it. ``x @ [Wq Wk Wv] + [bq bk bv]`` split is what the separate adds compute, and
    it is the builders' ``qkv`` then ``qkv.bias``; without it the adds sit between the
    splits and keep each split away from the operator that produced its source.
    """
    produced = {op.output.tensor for op in ops}

    def key(op: Operator) -> tuple | None:
        if op.kind != OpKind.MATMUL or len(op.inputs) != 2:
            return None
        act, w = op.inputs
        if w.tensor in produced or act.tensor not in produced:
            return None
        feature = [i for i in w.indices if i in op.output.indices and i not in act.indices]
        if len(feature) != 1:
            return None
        f = feature[0]
        shape = tuple((i, n) for i, n in op.sizes if i != f)
        return (act.tensor, act.axes, w.axes, op.output.axes, f, shape, op.bytes_per_element)

    readers: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for x in op.inputs:
            readers.setdefault(x.tensor, []).append(i)

    def bias_add(mm: Operator, f: str) -> tuple[int, int, str] | None:
        """(index, act operand position, feature index) of the one per-feature bias add reading ``mm``, if so."""
        rs = list(dict.fromkeys(readers.get(mm.output.tensor, [])))
        if len(rs) != 1:
            return None
        b = ops[rs[0]]
        pos = [k for k, x in enumerate(b.inputs) if x.tensor == mm.output.tensor]
        if b.kind != OpKind.BINARY or len(b.inputs) != 2 or len(pos) != 1 or b.bytes_per_element != \
                mm.bytes_per_element:
            return None
        act, bias = b.inputs[pos[0]], b.inputs[1 - pos[0]]
        if bias.tensor in produced or len(act.axes) != len(mm.output.axes) or b.output.axes != act.axes:
            return None
        feature = None
        for ax_b, ax_m in zip(act.axes, mm.output.axes):
            if len(ax_b) != 1 or len(ax_m) != 1 or b.lengths[ax_b[0]] != mm.lengths[ax_m[0]]:
                return None
            if ax_m[0] == f:
                feature = ax_b[0]
        if feature is None or bias.indices != (feature,):
            return None
        return rs[0], pos[0], feature

    groups: dict[tuple, list[int]] = {}
    for i, op in enumerate(ops):
        k = key(op)
        if k is not None:
            groups.setdefault(k, []).append(i)
    out: list[Operator | None] = list(ops)
    merged = 0
    replaced: dict[int, list[Operator]] = {}
    for k, members in groups.items():
        if len(members) < 2:
            continue
        f = k[4]
        first = ops[members[0]]
        total = sum(ops[i].lengths[f] for i in members)
        name = first.name + "+" + str(len(members) - 1)
        weights = "+".join(ops[i].inputs[1].tensor for i in members)
        sizes = tuple((i, total if i == f else n) for i, n in first.sizes)
        fused = replace(first, name=name, sizes=sizes, output=replace(first.output, tensor=name),
                        inputs=(first.inputs[0], replace(first.inputs[1], tensor=weights)), role="matmul",
                        layer=None)
        fused.__dict__.pop("signature", None)
        replaced[members[0]] = [fused]
        biases = [bias_add(ops[i], f) for i in members]
        if all(biases):  # each member's only reader adds a per-feature bias: one add over the merged output
            b0_index, b0_pos, b0_f = biases[0]  # type: ignore[misc]
            b0 = ops[b0_index]
            bias_name = name + ".bias"
            inputs = list(b0.inputs)
            inputs[b0_pos] = replace(inputs[b0_pos], tensor=name)
            inputs[1 - b0_pos] = replace(inputs[1 - b0_pos], tensor="+".join(
                ops[bi].inputs[1 - bp].tensor for bi, bp, _ in biases))  # type: ignore[misc]
            fused_bias = replace(b0, name=bias_name, sizes=tuple((i, total if i == b0_f else n) for i, n in b0.sizes),
                                 output=replace(b0.output, tensor=bias_name), inputs=tuple(inputs), layer=None)
            fused_bias.__dict__.pop("signature", None)
            replaced[members[0]].append(fused_bias)
            for i, (bi, _, _) in zip(members, biases):  # type: ignore[misc]
                b = ops[bi]
                out[i] = None
                out[bi] = Operator(name=b.name, kind=OpKind.SLICE, sizes=b.sizes, output=b.output,
                                   inputs=(replace(b.output, tensor=bias_name),),
                                   bytes_per_element=b.bytes_per_element, role="split")
            merged += len(members)
            continue
        for i in members:
            op = ops[i]
            spec_out = op.output
            keep = set(spec_out.indices)
            out[i] = Operator(name=op.name, kind=OpKind.SLICE, sizes=tuple((j, n) for j, n in op.sizes if j in keep),
                              output=spec_out,
                              inputs=(replace(spec_out, tensor=name),), bytes_per_element=op.bytes_per_element,
                              role="split")
        merged += len(members)
    result: list[Operator] = []
    for i, op in enumerate(out):
        result.extend(replaced.get(i, []))
        if op is not None:
            result.append(op)
    return result, merged


def producer_adjacent_order(ops: Sequence[Operator]) -> list[Operator]:
    """The operators in a topological order that puts each consumer right after a producer it reads.

    Why: elk's residency rule keeps an input on chip only when the operator just
    before produced or read it (:meth:`elk.ir.Program.from_ops`), so the order is
    part of the cost. An exporter lists nodes in its trace order (the Q, K and V
    projections' splits side by side, each read much later); elk's builders emit
    each value just before the operator that needs it. This order is the builders':
    a depth-first walk from the program's results that emits an operator's
    producers before it, the producer of its largest operand last (so that operand
    is the one left on chip), ties in operand order. Every order it returns is a
    valid schedule of the same operators: only which inputs come from HBM changes.
    """
    producer = {op.output.tensor: i for i, op in enumerate(ops)}
    read = {x.tensor for op in ops for x in op.inputs}

    def deps(i: int) -> list[int]:
        op = ops[i]
        ranked = sorted(range(len(op.inputs)), key=lambda k: op.tensor_elements(op.inputs[k]))
        out = []
        for k in ranked:
            j = producer.get(op.inputs[k].tensor)
            if j is not None and j != i and j not in out:
                out.append(j)
        return out

    done = [False] * len(ops)
    order: list[Operator] = []
    roots = [i for i, op in enumerate(ops) if op.output.tensor not in read]
    for root in roots + list(range(len(ops))):  # every operator, even one in a cycle-free dead end
        if done[root]:
            continue
        stack = [(root, iter(deps(root)))]
        done[root] = True
        while stack:
            i, pending = stack[-1]
            j = next((j for j in pending if not done[j]), None)
            if j is None:
                stack.pop()
                order.append(ops[i])
            else:
                done[j] = True
                stack.append((j, iter(deps(j))))
    return order


def load_onnx(path: str | Path, *, batch: int = 32, seq: int = 2048, dims: Mapping[str, int] | None = None,
              mode: str = "forward", merge_matmuls: bool = True) -> Program:
    """Import an ONNX model as a program (see the module notes).

    ``batch``/``seq`` bind the usual symbolic dimension names (``batch``,
    ``batch_size``, ``seq``, ``sequence_length``, ...), ``dims`` any other (it
    wins over both). ``merge_matmuls`` (default) merges sibling projections into one
    matmul (:func:`merge_sibling_matmuls`); False keeps the file's own matmuls. The
    program is the file's own computation: a forward graph
    is a forward pass whatever ``mode`` says (``meta["mode"]`` reports
    "forward"); a graph with past key/value inputs is a decode step.
    """
    path = Path(path)
    for value, what in ((batch, "batch"), (seq, "seq")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"{what} must be a positive integer, got {value!r}")
    graph = read_onnx(path, batch=batch, seq=seq, dims=dims, supported=SUPPORTED)
    mapper = _Mapper(graph)
    ops = mapper.run()
    if merge_matmuls:
        ops, merged = merge_sibling_matmuls(ops)
        mapper.stats["matmuls_merged"] = merged
    ops = producer_adjacent_order(ops)
    past = [n for n in graph.inputs if "past" in n.lower() or "cache" in n.lower()]
    meta = {"model": path.stem, "display_name": path.stem, "family": "onnx",
            "mode": "decode" if past else "forward",
            "batch": next((v for k, v in graph.dims.items() if k.lower().replace("_", "") in ("batch", "batchsize")),
                          1),
            "seq": next((v for k, v in graph.dims.items() if "seq" in k.lower()), None),
            "dims": dict(graph.dims), "bytes_per_element": max((op.bytes_per_element for op in ops), default=2),
            "source": str(path), "format": "onnx", "opset": graph.opset, "producer": graph.producer,
            "past_kv_inputs": past, "layer_match": "structure", "layers_found": None,
            **graph.stats, **mapper.stats}
    return with_layers(Program.from_ops(path.stem, ops, meta, weights=_trainable(ops, graph)))[0]


#: ONNX element types that hold trainable values: float, float16, double, bfloat16, the float8 types
_FLOAT_TYPES = frozenset({1, 10, 11, 16, 17, 18, 19, 20})


def _trainable(ops: Sequence[Operator], graph: OnnxGraph) -> frozenset[str]:
    """The trainable weights (docs/design.md §9.1): HBM inputs that are float initializers of more than one
    element (a merged projection's ``a+b+c`` when each part is), and the constants or runtime graph inputs a
    matmul or convolution reads as its second operand (files exported without their weights list or compute
    them so), the first graph input (the data) excepted. Folded tensors (masks, rotary tables) are computed by
    nodes, not initializers, and an embedding lookup reads ``<table>.rows``, which stays an input as in elk's
    builders."""
    produced = {op.output.tensor for op in ops}
    kernels = {op.inputs[1].tensor for op in ops if op.kind in (OpKind.MATMUL, OpKind.CONV)}
    data = set(graph.inputs[:1])

    def trainable(name: str, kernel: bool) -> bool:
        v = graph.values.get(name)
        if v is None or v.dtype not in _FLOAT_TYPES or v.size <= 1:
            return False
        return v.initializer or (kernel and (v.const or name in graph.inputs) and name not in data)
    return frozenset(o.tensor for op in ops for o in op.inputs if o.tensor not in produced
                     and all(trainable(n, o.tensor in kernels) for n in o.tensor.split("+")))


__all__ = ["SUPPORTED", "View", "load_onnx"]
