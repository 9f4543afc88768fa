"""From checked graph nodes to elk operators: layout nodes removed, each compute node mapped to an einsum,
placeholders substituted (steps 2-6 of :mod:`elk.graphs.artifact`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from elk.errors import ModelConfigError
from elk.graphs.artifact.expr import REDUCTIONS, Access, AxisRef, Expression, ExprError
from elk.graphs.artifact.read import (BATCH_CODE, BINARY_KINDS, LAYOUT_KINDS, SEQ_CODE, SINK_KINDS, SOURCE_KINDS,
                                      TOKENS_CODE, UNARY_KINDS, GraphNode)
from elk.ir import OpKind, Operator, einsum_op


@dataclass(frozen=True)
class _View:
    """What a consumer sees through a chain of layout nodes.

    ``data[i]``: axis i of the viewed value carries data (False: a broadcast axis);
    ``tags[i]``: 'q' or 'kv' for an axis sized by the sequence placeholder. ``None``:
    a graph input, whose every axis carries data. ``producer``: file position of the
    node that computed the tensor (None: it comes from HBM by nature).
    """

    tensor: str
    data: tuple[bool, ...] | None
    tags: tuple[str | None, ...] | None
    producer: int | None


def _merge(a: str | None, b: str | None) -> str | None:
    return "kv" if "kv" in (a, b) else (a or b)


def _is_seq_length(n: int) -> bool:
    return n == SEQ_CODE or n % TOKENS_CODE == 0


class GraphImporter:
    """One import of one graph: the checked nodes in, :meth:`run` returns the operators in program order.

    Keeps what the passes learn about the graph (placeholders present, sequence tags per axis, the views
    through layout chains) and ``stats`` for the program's metadata.
    """

    def __init__(self, path: Path, nodes: list[GraphNode], batch: int, seq: int, mode: str, quirks: bool,
                 bytes_per_element: int) -> None:
        self.path, self.nodes, self.quirks, self.bpe = path, nodes, quirks, bytes_per_element
        lengths = {n for node in nodes for shape in node.shapes for n in shape}
        lengths |= {n for node in nodes if node.expr for _, n in node.expr.where}
        self.has_batch = any(n % BATCH_CODE == 0 for n in lengths)
        self.has_seq = SEQ_CODE in lengths or TOKENS_CODE in lengths
        self.mode = mode if self.has_seq else "forward"
        self.batch, self.seq = batch, seq
        self.seq_query = 1 if self.mode == "decode" else seq
        self.names = self._names()
        self.by_id: dict[int, list[int]] = {}
        for n in nodes:
            self.by_id.setdefault(n.id, []).append(n.pos)
        self.declares_inputs = any(n.kind in SOURCE_KINDS for n in nodes)
        self.refs = [self._resolve_refs(node) for node in nodes]
        self.graph_inputs = self._check_graph_inputs()
        self.views: dict[int, _View] = {}
        self.visiting: set[int] = set()
        self.drop_gathers = False
        #: trainable weights: HBM inputs (no node computes them) with no batch or sequence placeholder in
        #: their shape, except a convolution's data input (docs/design.md §9.1)
        self.weights: set[str] = set()
        self.stats = {"graph_nodes": len(nodes), "layout_removed": 0, "attention_matmuls": 0,
                      "embedding_loads": 0, "gathers_dropped": 0}

    # ---- naming and references --------------------------------------------------
    def _names(self) -> list[str]:
        seen: dict[int, int] = {}
        names = []
        for node in self.nodes:
            k = seen[node.id] = seen.get(node.id, 0) + 1
            names.append(f"{node.kind}.{node.id}" + (f"#{k}" if k > 1 else ""))
        return names

    def fail(self, node: GraphNode, message: str) -> ModelConfigError:
        """A :class:`ModelConfigError` naming the file, the node, its kind and its entry."""
        return ModelConfigError(f"{self.path}: node {node.id} ({node.kind}, entry {node.pos}): {message}")

    def _resolve_refs(self, node: GraphNode) -> list[tuple]:
        refs = []
        for src, port in node.inputs:
            where = self.by_id.get(src)
            if not where:
                if self.declares_inputs:
                    raise self.fail(node, f"reads node {src}, which is not in the graph (the file lists its "
                                          f"Parameter and Constant nodes, and none has id {src})")
                refs.append(("input", src, port))
                continue
            earlier = [p for p in where if p < node.pos]
            target = self.nodes[earlier[-1] if earlier else where[0]]
            if target.kind in SINK_KINDS:
                raise self.fail(node, f"reads node {src}, a Result, which produces nothing")
            if target.kind in SOURCE_KINDS:
                refs.append(("input", src, port))
                continue
            if port != 0:
                raise self.fail(node, f"reads output {port} of node {src}, which has only output 0")
            if target.pos > node.pos and target.kind not in LAYOUT_KINDS:
                raise self.fail(node, f"reads node {src} ({target.kind}), which comes later in the file "
                                      f"(nodes must be in topological order)")
            refs.append(("node", target.pos))
        return refs

    def _check_graph_inputs(self) -> dict[int, tuple[int, ...]]:
        """The graph's inputs (id -> shape as read), refusing what cannot be one.

        In a file that lists no Parameter or Constant nodes (most of the artifact's), an id that
        no node has is a graph input: a tensor that comes from HBM, with one output (0), read
        with one shape and dtype by every node that reads it. An id read at another output, or
        with two shapes or dtypes, is a wrong reference, not an input: refused, naming both readers.
        """
        seen: dict[int, tuple[GraphNode, int]] = {}
        for node in self.nodes:
            for slot, ref in enumerate(self.refs[node.pos]):
                if ref[0] != "input" or self.by_id.get(ref[1]):
                    continue  # a node's output, or a declared Parameter/Constant
                src, port = ref[1], ref[2]
                if port != 0:
                    raise self.fail(node, f"reads output {port} of id {src}, which no node has: an id that is "
                                          f"not a node is a graph input, and a graph input has only output 0")
                shape = node.shapes[slot] if slot < len(node.shapes) else None
                dtype = node.dtypes[slot] if slot < len(node.dtypes) else None
                if src not in seen:
                    seen[src] = (node, slot)
                    continue
                first, first_slot = seen[src]
                was = first.shapes[first_slot] if first_slot < len(first.shapes) else None
                was_dtype = first.dtypes[first_slot] if first_slot < len(first.dtypes) else None
                if shape is not None and was is not None and shape != was:
                    raise self.fail(node, f"reads graph input {src} (an id no node has) with shape {list(shape)}, "
                                          f"but node {first.id} reads it with shape {list(was)}: one of them "
                                          f"refers to a wrong id")
                if dtype is not None and was_dtype is not None and dtype != was_dtype:
                    raise self.fail(node, f"reads graph input {src} (an id no node has) as {dtype}, but node "
                                          f"{first.id} reads it as {was_dtype}: one of them refers to a wrong id")
        return {src: (n.shapes[s] if s < len(n.shapes) else ()) for src, (n, s) in seen.items()}

    # ---- views through layout chains ----------------------------------------------
    def _input_view(self, node: GraphNode, slot: int) -> _View:
        ref = self.refs[node.pos][slot]
        if ref[0] == "input":
            return _View(f"in{ref[1]}" + (f":{ref[2]}" if ref[2] else ""), None, None, None)
        target = self.nodes[ref[1]]
        view = self._layout_view(target) if target.kind in LAYOUT_KINDS else self.views.get(target.pos)
        if view is None or (view.producer is not None and view.producer > node.pos):
            raise self.fail(node, f"reads node {target.id} ({target.kind}), whose value is computed later "
                                  f"in the file (nodes must be in topological order)")
        if view.data is not None and len(view.data) != len(node.shapes[slot]):
            raise self.fail(node, f"input{slot} has shape {list(node.shapes[slot])} but node {target.id} "
                                  f"produces {len(view.data)} axes")
        return view

    def _layout_view(self, node: GraphNode) -> _View:
        if node.pos in self.views:
            return self.views[node.pos]
        if node.pos in self.visiting:
            raise self.fail(node, "is part of a reference cycle")
        self.visiting.add(node.pos)
        assert node.expr is not None
        inputs = [self._input_view(node, k) for k in range(len(node.inputs))]
        lengths = dict(node.expr.where)
        for a in node.expr.accesses:
            for ax, n in zip(a.axes, node.shapes[a.slot]):
                if ax.bare is not None:
                    lengths.setdefault(ax.bare, n)
        data, tags = [], []
        for name in node.expr.output:
            # an axis no input axis feeds is a broadcast axis, or (in a reshape) a new axis of length 1
            fed, t = [], None
            for a in node.expr.accesses:
                v = inputs[a.slot]
                for i, ax in enumerate(a.axes):
                    if name in ax.names:
                        fed.append(v.data is None or v.data[i])
                        t = _merge(t, v.tags[i] if v.tags else None)
            data.append(any(fed) if fed else node.kind != "Broadcast")
            tags.append(t if _is_seq_length(lengths.get(name, SEQ_CODE)) else None)
        used = [inputs[s] for s in node.expr.slots] or inputs
        if node.kind == "Concat":
            computed = [v for v in used if v.producer is not None]
            if computed:  # the adjacency rule would see the part computed last
                last = max(computed, key=lambda v: v.producer or 0)
                tensor, producer = last.tensor, last.producer
            else:  # a concat of weights is one weight tensor (the fused QKV weight)
                tensor, producer = self.names[node.pos], None
        else:
            if not used:
                raise self.fail(node, f"{node.expr.text.strip()!r} reads no input")
            tensor, producer = used[0].tensor, used[0].producer
        view = _View(tensor, tuple(data), tuple(tags), producer)
        self.visiting.discard(node.pos)
        self.views[node.pos] = view
        return view

    # ---- placeholders ---------------------------------------------------------------
    def _placeholder(self, raw: int) -> bool:
        """A raw length that is (a multiple of) the batch or sequence placeholder: a per-token axis."""
        return (self.has_batch and raw % BATCH_CODE == 0) or (self.has_seq and _is_seq_length(raw))

    def _length(self, node: GraphNode, raw: int, tag: str | None) -> int:
        seq = self.seq if tag == "kv" and self.mode == "decode" else self.seq_query
        if self.has_seq and self.has_batch and raw % TOKENS_CODE == 0:
            return raw // TOKENS_CODE * self.batch * seq
        if self.has_batch and raw % BATCH_CODE == 0:
            return raw // BATCH_CODE * self.batch
        if self.has_seq and raw == SEQ_CODE:
            return seq
        if self.has_seq and raw % SEQ_CODE == 0:
            raise ExprError(f"cannot resolve the placeholders: length {raw} is a multiple of the sequence "
                             f"placeholder {SEQ_CODE} but neither {SEQ_CODE} nor a multiple of batch x sequence "
                             f"({BATCH_CODE} x {SEQ_CODE} = {TOKENS_CODE})")
        return raw

    # ---- one node ---------------------------------------------------------------------
    def _kind(self, node: GraphNode, expr: Expression, slots: dict[int, Access]) -> OpKind:
        kind, assign, n = node.kind, expr.assign, len(slots)
        if kind in ("Dot", "BatchMatMul", "Convolution"):
            if assign == "+=!" and expr.form == "product" and set(slots) == {0, 1}:
                return OpKind.CONV if kind == "Convolution" else OpKind.MATMUL
            raise ExprError("a matmul/convolution must be 'output0[..] +=! input0[..] * input1[..]'")
        if kind == "MaxPool":
            if assign in REDUCTIONS and n == 1:
                return OpKind.POOL
            raise ExprError("a pooling must reduce one input with '>=!'")
        if kind == "Sum":
            if assign in REDUCTIONS and n == 1:
                return OpKind.REDUCE
            raise ExprError("a Sum must reduce one input with '+=!'")
        if kind == "SoftmaxBasic":
            if assign in REDUCTIONS and n == 1:
                return OpKind.BINARY if self.quirks else OpKind.REDUCE
            if assign == "=" and n >= 1:
                return OpKind.BINARY
            raise ExprError("a softmax step must be an elementwise expression or a one-input reduction")
        if kind in BINARY_KINDS:
            if assign == "=" and n >= 1:
                return OpKind.BINARY
            raise ExprError(f"a {kind} must be an elementwise '=' expression of its inputs")
        if kind in UNARY_KINDS:
            if assign == "=" and n == 1:
                return OpKind.UNARY
            raise ExprError(f"a {kind} must be an elementwise '=' expression of one input")
        if kind == "Slice":
            if assign == "=" and n == 1:
                return OpKind.SLICE
            raise ExprError("a Slice must be 'output0[..] = input0[..]'")
        if kind == "GatherV2":
            if expr.form == "gather" and set(slots) == {0, 1}:
                return OpKind.GATHER
            raise ExprError("a gather must be 'output0[..] = input0[..] g input1[..]'")
        raise ExprError(f"no einsum for kind {kind}")  # pragma: no cover - kinds are checked on reading

    def _operand_axes(self, kind: OpKind, ax: AxisRef, output: Sequence[str],
                      raw: dict[str, int]) -> list[tuple[str, ...]]:
        """The einsum axes one input axis becomes: [] for a constant index (it selects one element)."""
        if ax.bare is not None:
            return [(ax.bare,)]
        if ax.constant:
            return []
        if ax.coeffs is not None and len(ax.coeffs) == 1 and kind == OpKind.SLICE and ax.coeffs[0][1] > 0:
            return [(ax.coeffs[0][0],)]  # an offset or strided window of the source
        if ax.coeffs is not None and len(ax.coeffs) == 2 and kind == OpKind.POOL:
            (a, ca), (b, cb) = ax.coeffs
            if a not in output:
                (a, ca), (b, cb) = (b, cb), (a, ca)
            if a in output and b not in output and ca > 0 and cb > 0:
                if ca == 1 and cb == 1:
                    return [(a, b)]  # stride-1 sliding window
                if cb == 1 and raw.get(b, ca + 1) <= ca:
                    return [(a,), (b,)]  # kernel no wider than the stride: disjoint patches
                return [(a, b)]  # overlapping strided window, modelled as stride 1 (see the module notes)
        raise ExprError(f"the index expression over {', '.join(ax.names) or 'nothing'} cannot be an einsum axis")

    def convert(self, node: GraphNode) -> Operator | None:
        """The operator a compute node becomes (None when it maps to nothing, e.g. a deleted gather)."""
        expr = node.expr
        assert expr is not None
        name = self.names[node.pos]
        slots = expr.slots
        kind = self._kind(node, expr, slots)
        views = {s: self._input_view(node, s) for s in slots}
        for s in range(len(node.inputs)):
            if s not in views:
                self._input_view(node, s)  # a reference check even for inputs the expression ignores

        # raw lengths: the node's where clause, then its inputs' shapes on plain axes
        raw: dict[str, int] = {}
        for index, n in expr.where:
            raw[index] = n
        windows = {i for i, _ in expr.where} if kind == OpKind.SLICE else set()
        for s, a in slots.items():
            for ax, n in zip(a.axes, node.shapes[s]):
                if kind == OpKind.SLICE and ax.coeffs and len(ax.coeffs) == 1:
                    if self.quirks:  # quirk: a slice takes its source's lengths
                        raw[ax.coeffs[0][0]] = n
                        continue
                    if ax.coeffs[0][0] in windows:
                        continue  # a window of the source: its length is the where clause's
                index = ax.bare
                if index is None:
                    continue
                if index in raw and raw[index] != n:
                    raise ExprError(f"index {index} has length {raw[index]} and length {n}")
                raw.setdefault(index, n)

        if kind == OpKind.CONV:
            return self._conv(node, name, slots, views, raw)

        # the einsum's operands, narrowed to the axes that carry data
        operands: list[tuple[str, list[tuple[str, ...]]]] = []
        for s, a in slots.items():
            v = views[s]
            axes: list[tuple[str, ...]] = []
            for i, ax in enumerate(a.axes):
                if v.data is not None and not v.data[i]:
                    continue  # a broadcast axis
                axes.extend(self._operand_axes(kind, ax, expr.output, raw))
            if not axes and kind in (OpKind.MATMUL, OpKind.CONV, OpKind.GATHER):
                raise ExprError(f"input{s} is a broadcast scalar, which a {kind.value} cannot take")
            if axes:
                operands.append((v.tensor, axes))
                if v.producer is None and not any(self._placeholder(raw.get(i, 1)) for ax in axes for i in ax):
                    self.weights.add(v.tensor)
        if not operands:
            raise ExprError("every input is a broadcast scalar")
        used = [i for _, axes in operands for ax in axes for i in ax] + list(expr.output)
        missing = sorted({i for i in used if i not in raw})
        if missing:
            raise ExprError(f"no length for index {', '.join(missing)}")

        # which sequence placeholders are queries and which are KV positions
        attention = (self.mode == "decode" and kind == OpKind.MATMUL
                     and all(any(n % BATCH_CODE == 0 for n in node.shapes[s]) for s in (0, 1))
                     and any(_is_seq_length(n) for n in node.shapes[1]))
        tags: dict[str, str | None] = {}
        if attention:
            first = {i for ax in slots[0].axes for i in ax.names}
            second = {i for ax in slots[1].axes for i in ax.names}
            for index, n in raw.items():
                if _is_seq_length(n):
                    tags[index] = "q" if index in first and index not in second and index in expr.output else "kv"
            operands[1] = (f"{name}.kv", operands[1][1])  # the layer's KV cache, read from HBM
            self.stats["attention_matmuls"] += 1
        elif not self.quirks:
            for s, a in slots.items():
                v = views[s]
                for i, ax in enumerate(a.axes):
                    for index in ax.names:
                        if _is_seq_length(raw.get(index, SEQ_CODE)):
                            tags[index] = _merge(tags.get(index), v.tags[i] if v.tags else None)
        out_tags = tuple(tags.get(i) for i in expr.output)
        size = {index: self._length(node, n, tags.get(index)) for index, n in raw.items()}
        out_axes = [(i,) for i in expr.output]
        role = "attention" if attention else node.kind

        if kind == OpKind.GATHER and self.drop_gathers:
            # the artifact deletes the gather; its consumers read its output from HBM
            self.stats["gathers_dropped"] += 1
            self.views[node.pos] = _View(name, None, None, None)
            return None
        if kind == OpKind.GATHER and self.mode == "decode" and views[0].producer is None and not self.quirks:
            # the lookup reads B rows of the table: a load of those rows, as elk's builders model it
            kind, operands, role = OpKind.SLICE, [(f"{name}.rows", list(out_axes))], "embedding"
            self.stats["embedding_loads"] += 1

        op = self._operator(name, kind, out_axes, operands, size, role)
        self.views[node.pos] = _View(name, (True,) * len(expr.output), out_tags, node.pos)
        return op

    def _conv(self, node: GraphNode, name: str, slots: dict[int, Access], views: dict[int, _View],
              raw: dict[str, int]) -> Operator:
        """A convolution as an implicit GEMM over output positions, output channels and the reduction.

        ``output[N, F, HO, WO] += input[N, C, s*HO + d*KH + p, ..] * kernel[F, C, KH, KW]``
        becomes ``m = N*HO*WO`` positions, ``f = F`` channels and the reduction over
        ``C`` and the kernel offsets ``k = KH*KW``, so FLOPs, kernel and output are exact.
        A kernel no wider than its stride reads disjoint patches: the input is
        ``m x (C*k)``, exactly its elements (ViT's patch embedding, like elk's DiT). An
        overlapping kernel reads each input element up to ``k`` times: the input is
        counted once per output position, ``m x C`` (elk's plan search over the seven
        indices of a windowed convolution takes minutes per operator).
        """
        expr = node.expr
        assert expr is not None
        data, kernel = slots[0], slots[1]
        out = set(expr.output)
        bare_in = {ax.bare for ax in data.axes if ax.bare is not None}
        kernel_names = [i for ax in kernel.axes for i in ax.names]
        batch = [i for i in expr.output if i in bare_in and i not in kernel_names]
        channels_out = [i for i in expr.output if i in kernel_names]
        channels_in = [i for i in kernel_names if i in bare_in and i not in out]
        offsets = [i for i in kernel_names if i not in out and i not in bare_in]
        if any(ax.bare is None for ax in kernel.axes):
            raise ExprError("a convolution kernel must be indexed by plain index names")
        positions, disjoint = [], True
        for ax in data.axes:
            if ax.bare is not None:
                continue
            if ax.coeffs is None or len(ax.coeffs) != 2:
                raise ExprError(f"the index expression over {', '.join(ax.names)} is not a convolution window")
            (a, ca), (b, cb) = ax.coeffs
            if a not in out:
                (a, ca), (b, cb) = (b, cb), (a, ca)
            if a not in out or b not in offsets or ca <= 0 or cb <= 0:
                raise ExprError(f"the index expression over {', '.join(ax.names)} is not a convolution window")
            positions.append(a)
            disjoint = disjoint and cb == 1 and raw.get(b, ca + 1) <= ca
        if sorted(batch + channels_out + positions) != sorted(out):
            raise ExprError("not a convolution: the output must be batch, output channels and window positions")
        missing = sorted(i for i in batch + channels_out + channels_in + offsets + positions if i not in raw)
        if missing:
            raise ExprError(f"no length for index {', '.join(missing)}")
        size = {i: self._length(node, n, None) for i, n in raw.items()}

        def prod(names: list[str]) -> int:
            total = 1
            for i in names:
                total *= size[i]
            return total
        sizes = {"m": prod(batch + positions), "f": prod(channels_out)}
        if disjoint:
            sizes["r"] = prod(channels_in + offsets)
            inputs = [(views[0].tensor, [("m",), ("r",)]), (views[1].tensor, [("f",), ("r",)])]
        else:
            sizes["c"], sizes["k"] = prod(channels_in), prod(offsets)
            inputs = [(views[0].tensor, [("m",), ("c",)]), (views[1].tensor, [("f",), ("c",), ("k",)])]
        if views[1].producer is None:  # the kernel; the data input (an image) is never trained
            self.weights.add(views[1].tensor)
        op = self._operator(name, OpKind.CONV, [("m",), ("f",)], inputs, sizes, node.kind)
        self.views[node.pos] = _View(name, (True,) * len(expr.output), None, node.pos)
        return op

    def _operator(self, name: str, kind: OpKind, out_axes: list[tuple[str, ...]],
                  operands: list[tuple[str, list[tuple[str, ...]]]], size: dict[str, int], role: str) -> Operator:
        # squeeze length-1 indices: an elementwise or reducing operator drops an input that is a
        # single element (an epsilon, a scale); any other operand keeps one index rather than vanish
        ones = {i for i, n in size.items() if n == 1}

        def scalar(axes: list[tuple[str, ...]]) -> bool:
            return all(i in ones for ax in axes for i in ax)
        if kind not in (OpKind.MATMUL, OpKind.CONV, OpKind.GATHER):
            kept = [(t, axes) for t, axes in operands if not scalar(axes)]
            operands = kept or operands[:1]
        keep: set[str] = set()
        for axes in [out_axes] + [axes for _, axes in operands]:
            flat = [i for ax in axes for i in ax]
            if flat and all(i in ones for i in flat):
                keep.add(flat[0])
        drop = ones - keep

        def squeeze(axes: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
            return [t for t in (tuple(i for i in ax if i not in drop) for ax in axes) if t]

        out_axes = squeeze(out_axes)
        operands = [(t, squeeze(axes)) for t, axes in operands]
        if kind == OpKind.MATMUL:
            out_axes, operands, size = _fuse_matmul(out_axes, operands, size)
        order: list[str] = []
        for axes in [out_axes] + [axes for _, axes in operands]:
            for ax in axes:
                for i in ax:
                    if i not in order:
                        order.append(i)
        plain = [i for i in order if not i.startswith("@")]
        if len(plain) > 26:
            raise ExprError(f"{len(plain)} indices, more than an einsum spec can name")
        letter = {i: chr(ord("a") + k) for k, i in enumerate(plain)}
        letter.update({i: i[1:] for i in order if i.startswith("@")})  # fused: X (batch x heads), Y, Z

        def render(axes: list[tuple[str, ...]]) -> str:
            return "".join(letter[ax[0]] if len(ax) == 1 else "(" + "".join(letter[i] for i in ax) + ")"
                           for ax in axes)
        spec = ",".join(render(axes) for _, axes in operands) + "->" + render(out_axes)
        sizes = {letter[i]: size[i] for i in order}
        return einsum_op(name, kind, spec, sizes, [t for t, _ in operands], name,
                         bytes_per_element=self.bpe, role=role)

    def run(self) -> list[Operator]:
        """Every compute node as an operator, in file order (layout, source and sink nodes removed)."""
        ops: list[Operator] = []
        for node in self.nodes:
            if node.kind in SOURCE_KINDS or node.kind in SINK_KINDS:
                continue
            if node.kind in LAYOUT_KINDS:
                self.stats["layout_removed"] += 1
                continue
            assert node.expr is not None
            try:
                op = self.convert(node)
            except ExprError as exc:
                raise self.fail(node, f"cannot map {node.expr.text.strip()!r} to an einsum: {exc}") from None
            except (LookupError, ArithmeticError, ValueError, TypeError) as exc:  # a shape elk did not foresee
                raise self.fail(node, f"cannot map {node.expr.text.strip()!r} to an einsum "
                                      f"({type(exc).__name__}: {exc})") from None
            if op is not None:
                ops.append(op)
        if not ops:
            raise ModelConfigError(f"{self.path}: the graph has no compute operators (only layout, "
                                   f"parameter and result nodes)")
        return ops


def _fuse_matmul(out_axes: list[tuple[str, ...]], operands: list[tuple[str, list[tuple[str, ...]]]],
                 size: dict[str, int]) -> tuple[list, list, dict[str, int]]:
    """Merge a matmul's indices that appear in exactly the same operands into one.

    Why: an index pair that always travels together (batch x heads in all three
    operands, batch x sequence of a forward pass's activations) only multiplies the
    plan space; splitting the merged index covers the products of separate splits.
    The group in all three operands is named ``X``, as elk's builders name it.
    """
    members: dict[str, frozenset[int]] = {}
    for k, axes in enumerate([out_axes] + [axes for _, axes in operands]):
        for ax in axes:
            for i in ax:
                members[i] = members.get(i, frozenset()) | {k}
    groups: dict[frozenset[int], list[str]] = {}
    for i, m in members.items():
        groups.setdefault(m, []).append(i)
    rename: dict[str, str] = {}
    size = dict(size)
    spare = iter("YZWV")
    for m, names in groups.items():
        if len(names) < 2:
            continue
        fused = "@X" if m == frozenset({0, 1, 2}) else "@" + next(spare)
        total = 1
        for i in names:
            total *= size[i]
            rename[i] = fused
        size[fused] = total

    def merge(axes: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for ax in axes:
            new = tuple(dict.fromkeys(rename.get(i, i) for i in ax))
            if new not in out:
                out.append(new)
        return out
    return merge(out_axes), [(t, merge(axes)) for t, axes in operands], size


