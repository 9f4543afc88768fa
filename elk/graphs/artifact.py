"""The Elk artifact's own model graphs (``models/original/*.json``) as elk programs.

The artifact ships its models as JSON lists of nodes in topological order,
``[id, " - einstein_v2(\\"<expression>\\", input_dict={...})", kind, [[src, port], ...]]``,
traced with placeholder sizes: batch 99, sequence 66 (``ELK_ARTIFACT_NOTES.md``
§2.1-2.4). This module reads such a file and builds an :class:`elk.ir.Program`
with elk's own rules; it never writes to the file.

What the importer does, in order:

1. **Read and check** the list: every node is a 4-list with an integer id, a known
   kind and ``[src, port]`` inputs; every expression parses (a small recursive-descent
   parser of the einstein_v2 language: index lists, ``+=!`` sums, ``>=!`` maxima,
   ``.when(...)`` concats and paddings, ``where X in N`` broadcasts, slice offsets
   ``N2 + 10240``, reshape arithmetic ``((N2) * 128 + N3)`` and ``N2 / 128 % 40``,
   ``.call(`fn`)`` functions, gathers ``a g b``). An input id that names no node is a
   graph input (weights, token ids, constants), unless the file lists its
   ``Parameter``/``Constant`` nodes, in which case it is an error. Graphs stitched from
   copied layers repeat node ids: a reference means the latest earlier node with that id.
2. **Remove layout operators** (``Reshape``, ``Convert``, ``Broadcast``, ``Concat``;
   ``Parameter``, ``Constant``, ``Result`` are not operators): a consumer reads the
   layout chain's source tensor directly, narrowed to the axes that carry data (a
   broadcast's new axes are dropped; a broadcast scalar, such as the 1/sqrt(d) of an
   attention scale, is dropped from the operator). A concat of weights is one off-chip
   tensor (the fused QKV weight); a concat with computed parts reads the part computed
   last (the adjacency rule would see that one).
3. **Map each remaining node to an einsum** of the right :class:`~elk.ir.OpKind`: matmul
   (``Dot``, ``BatchMatMul``), conv, pool (``MaxPool``), reduce (``Sum``, and the
   ``+=!``/``>=!`` steps of ``SoftmaxBasic``), binary (``Add``, ``Subtract``,
   ``Multiply``, ``Divide``, ``Power``, ``Maximum``, the other softmax steps), unary
   (``Relu``, ``Negative``, ``Sigmoid``, ``Sqrt``, ``Tanh``, ``Erf``), slice, gather.
   Lengths come from each node's own ``input_dict`` and ``where`` clauses; a node whose
   expression is not an einsum (an index that is neither a name, a constant, an offset
   window, nor a convolution or pooling window) is an error naming the node and the
   expression. A convolution ``s*HO + d*KH + c`` becomes an implicit GEMM over output
   positions (batch x HO x WO), output channels and the reduction (channels x kernel
   offsets): FLOPs, kernel and output exact; its input exact for disjoint patches (a
   kernel no wider than its stride: ViT's patch embedding, 1x1 strided convs) and
   counted once per output position for overlapping kernels (elk's plan search over a
   windowed convolution's seven indices takes minutes per operator). Pooling keeps
   sliding windows (stride 1 exactly; a strided window is modelled as stride 1).
4. **Substitute the placeholders**: 99 -> batch, k*99 -> k*batch (batch x heads),
   66 -> the sequence, 99*66 -> batch x sequence. In ``decode`` mode a matmul whose
   two operands both carry the batch and whose second operand carries the sequence is
   an attention matmul: its query index (the first operand's free index) is the one new
   token, every other sequence index is the KV length ``seq``, and its second operand
   is the layer's KV cache, a fresh off-chip tensor. Whether any other 66 is a query
   or a KV position is propagated through the graph, index by index, from the
   attention matmuls (KV wins where the two meet, as in a mask add), so the scale,
   mask and softmax between the two attention matmuls run over the KV length. In
   ``train``/``forward`` mode every 66 is the sequence. A graph with no 66 (ViT,
   ResNet) has a fixed token count and is a forward pass in every mode; a length that
   is a multiple of 66 in no recognised form cannot be resolved and is an error.
5. **Embedding lookups**: in decode mode a gather from a weight table becomes a load of
   the looked-up rows (a slice op reading ``tokens x hidden`` from HBM), as elk's own
   builders model it; other gathers, and every gather in forward mode, stay gathers.
6. **Clean up**: length-1 indices are squeezed out of every operator (an elementwise or
   reducing operator drops a one-element input, any other operand keeps one index) and
   a matmul's indices that appear in exactly the same operands are fused into one
   (batch x heads of attention, named ``X`` as elk's builders name it; batch x sequence
   of a forward pass), so plan tables stay small.
7. **Residency** is elk's rule, applied by :meth:`elk.ir.Program.from_ops` (an input is
   on chip iff the previous operator produced or read it), not the artifact's flags.
8. **Layers** are found from the operators' signatures: the period with the longest
   stretch of identical consecutive blocks (each holding 1 to 8 matmuls or convs, and
   together at least half the program), its phase chosen so that the fewest tensors
   cross a block boundary (the residual stream). Blocks are compared without the
   on/off-chip flags (``meta["layer_match"] = "structure"`` tells
   :attr:`elk.ir.Program.layers` to do the same): the Llama2-70B and Gemma2 files are
   stitched from copied layers, and a few copies read one input through a stale node id,
   from HBM. This finds all 80 and 46 layers where the artifact's name-chunk comparison
   fails, and sets ``Operator.layer`` so ELK-Full's load orders cover every layer.

The artifact parser's quirks, and the choice here (``quirks=True``, or the environment
variable ``ELK_ARTIFACT_QUIRKS=1`` for the command line, reproduces them):

- decode softmax over ``[.., 1, 1]``: the artifact resolves the KV length only inside
  the attention matmuls, so the scale, mask and softmax between them shrink to one
  element per head. Fixed by default (step 4); quirk mode reproduces it.
- slices sized by their source: the artifact gives a slice the source tensor's lengths,
  so each of Q, K, V re-reads the whole QKV output (from HBM when not adjacent). By
  default a slice reads only its window; quirk mode reproduces it.
- softmax reductions as elementwise binaries: the artifact types every ``SoftmaxBasic``
  node as binary; by default the ``+=!``/``>=!`` steps are reductions. Quirk mode: binary.
- embedding gathers deleted (in decode, or for files named llama/opt/gemma): default is
  step 5; quirk mode deletes them, so the first layer reads its input from HBM.
- ``retnet.json`` is replicated 24 times with offset ids by the artifact: quirk mode only.
- not reproduced in either mode: the artifact's ignore flags (elk's residency rule
  decides), its capacity-driven splitting of large matmuls (inert at the paper's core
  counts; elk's plan tables cover large operators, and one that cannot fit SRAM is
  reported), its Dot-only removal of length-1 indices (elk squeezes every operator, which
  changes no cost), and its in-place rewrite of the input file.
- kept in both modes, as the artifact does: in decode the K/V projections of the new
  token (rope, slices) still run although the attention reads the cache; the graphs'
  own shapes (Llama2-70B's graph has full multi-head QKV with 8-head attention and
  FFN widths that do not match the real model; Gemma2's LM head has 128,000 outputs).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np

from elk.errors import ModelConfigError
from elk.jsonsafe import loads_json
from elk.ir import OpKind, Operator, Program, einsum_op

BATCH_CODE = 99  #: the artifact's batch placeholder
SEQ_CODE = 66  #: the artifact's sequence placeholder
TOKENS_CODE = BATCH_CODE * SEQ_CODE  #: batch x sequence, flattened (OPT)
QUIRKS_ENV = "ELK_ARTIFACT_QUIRKS"

LAYOUT_KINDS = frozenset({"Reshape", "Convert", "Broadcast", "Concat"})
SOURCE_KINDS = frozenset({"Parameter", "Constant"})
SINK_KINDS = frozenset({"Result"})
BINARY_KINDS = frozenset({"Add", "Subtract", "Multiply", "Divide", "Power", "Maximum"})
UNARY_KINDS = frozenset({"Relu", "Negative", "Sigmoid", "Sqrt", "Tanh", "Erf"})
COMPUTE_KINDS = BINARY_KINDS | UNARY_KINDS | {"Dot", "BatchMatMul", "Convolution", "MaxPool", "Sum",
                                              "SoftmaxBasic", "GatherV2", "Slice"}
KNOWN_KINDS = COMPUTE_KINDS | LAYOUT_KINDS | SOURCE_KINDS | SINK_KINDS
_REDUCTIONS = ("+=!", ">=!", "<=!")
_NODE_SHAPE = '[id, " - einstein_v2(...)", kind, [[src, port], ...]]'


class _ExprError(ValueError):
    """An expression the parser or the einsum mapping cannot handle (wrapped with the node's id)."""


# ---------------------------------------------------------------------------
# the einstein_v2 expression language
# ---------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
                    r"|(?P<str>`[^`]*`)|(?P<op>\+=!|>=!|<=!|>=|<=|==|!=|[-+*/%<>=()\[\],.;]))")
_COMPARE = ("<", ">", "<=", ">=", "==", "!=")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            rest = text[pos:].strip()
            if rest:
                raise _ExprError(f"unexpected text {rest[:16]!r}")
            break
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    tokens.append(("end", ""))
    return tokens


class _Parser:
    """Recursive descent over the tokens; nodes are tuples tagged by their first item.

    ``('num', v)``, ``('idx', name)``, ``('acc', tensor, [index exprs])``, ``('bin', op, l, r)``,
    ``('neg', e)``, ``('cmp', op, l, r)``, ``('call', method, base, [args])``, ``('fn', name, [args])``,
    ``('list', [items])``, ``('str', s)``, ``('gather', table, ids)``.
    """

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def _next(self) -> tuple[str, str]:
        token = self.tokens[self.i]
        if token[0] != "end":
            self.i += 1
        return token

    def _accept(self, value: str) -> bool:
        kind, text = self.tokens[self.i]
        if kind in ("op", "name") and text == value:
            self.i += 1
            return True
        return False

    def _expect(self, value: str) -> None:
        if not self._accept(value):
            raise _ExprError(f"expected {value!r} but found {self._peek()[1] or 'the end'!r}")

    def statement(self) -> tuple[str, list, str, tuple, list[tuple[str, int]]]:
        kind, name = self._next()
        if kind != "name" or not re.fullmatch(r"output\d+", name):
            raise _ExprError("an expression must start with output0[...]")
        self._expect("[")
        out = self._items("]")
        kind, assign = self._next()
        if assign not in ("=", *_REDUCTIONS):
            raise _ExprError(f"expected '=', '+=!' or '>=!' after the output, found {assign!r}")
        value = self._arith()
        if self._accept("g"):
            value = ("gather", value, self._arith())
        where: list[tuple[str, int]] = []
        if self._accept("where"):
            while True:
                kind, index = self._next()
                if kind != "name":
                    raise _ExprError(f"expected an index name after 'where', found {index!r}")
                self._expect("in")
                kind, number = self._next()
                if kind != "num" or not number.isdigit():
                    raise _ExprError(f"expected a length after '{index} in', found {number!r}")
                where.append((index, int(number)))
                if not self._accept(","):
                    break
        self._accept(";")
        if self._peek()[0] != "end":
            raise _ExprError(f"unexpected {self._peek()[1]!r} after the expression")
        return name, out, assign, value, where

    def _items(self, close: str) -> list:
        items: list = []
        if self._accept(close):
            return items
        while True:
            items.append(self._cond())
            if self._accept(close):
                return items
            self._expect(",")

    def _cond(self) -> tuple:
        left = self._arith()
        kind, text = self._peek()
        if kind == "op" and text in _COMPARE:
            self._next()
            return ("cmp", text, left, self._arith())
        return left

    def _arith(self) -> tuple:
        left = self._term()
        while self._peek() in (("op", "+"), ("op", "-")):
            op = self._next()[1]
            left = ("bin", op, left, self._term())
        return left

    def _term(self) -> tuple:
        left = self._unary()
        while self._peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            op = self._next()[1]
            left = ("bin", op, left, self._unary())
        return left

    def _unary(self) -> tuple:
        if self._accept("-"):
            return ("neg", self._unary())
        node = self._primary()
        while self._accept("."):
            kind, method = self._next()
            if kind != "name":
                raise _ExprError(f"expected a method name after '.', found {method!r}")
            self._expect("(")
            node = ("call", method, node, self._items(")"))
        return node

    def _primary(self) -> tuple:
        kind, text = self._next()
        if kind == "num":
            number: float = float(text)
            return ("num", int(number) if number.is_integer() and re.fullmatch(r"\d+", text) else number)
        if kind == "str":
            return ("str", text[1:-1])
        if kind == "name":
            if self._accept("["):
                return ("acc", text, self._items("]"))
            if self._accept("("):
                return ("fn", text, self._items(")"))
            return ("idx", text)
        if text == "(":
            inner = self._cond()
            self._expect(")")
            return inner
        if text == "[":
            return ("list", self._items("]"))
        raise _ExprError(f"unexpected {text or 'end of expression'!r}")


@dataclass(frozen=True)
class AxisRef:
    """One axis of a tensor reference: the index names it uses and, when affine, its form."""

    names: tuple[str, ...]
    coeffs: tuple[tuple[str, int], ...] | None  # None: not affine (division, modulo)
    const: int = 0

    @property
    def bare(self) -> str | None:
        """The index name when the axis is exactly one index (``N2``)."""
        if self.coeffs is not None and len(self.coeffs) == 1 and self.coeffs[0][1] == 1 and self.const == 0:
            return self.coeffs[0][0]
        return None

    @property
    def constant(self) -> bool:
        return self.coeffs == ()


@dataclass(frozen=True)
class Access:
    """A data reference ``inputK[axes]`` inside an expression."""

    slot: int
    axes: tuple[AxisRef, ...]


@dataclass(frozen=True)
class Expression:
    """The parts of an einstein_v2 statement elk needs."""

    text: str
    output: tuple[str, ...]
    assign: str  # '=', '+=!' (sum), '>=!' (max), '<=!' (min)
    accesses: tuple[Access, ...]  # every data reference, in order of appearance
    where: tuple[tuple[str, int], ...]
    calls: frozenset[str]
    form: str  # 'product' (a * b), 'gather' (a g b) or 'expr'

    @property
    def slots(self) -> dict[int, Access]:
        """The first access of each input slot, in slot order."""
        seen: dict[int, Access] = {}
        for a in self.accesses:
            seen.setdefault(a.slot, a)
        return dict(sorted(seen.items()))


def _affine(node: tuple) -> tuple[dict[str, int], int] | None:
    tag = node[0]
    if tag == "num":
        return ({}, node[1]) if isinstance(node[1], int) else None
    if tag == "idx":
        return ({node[1]: 1}, 0)
    if tag == "neg":
        inner = _affine(node[1])
        return None if inner is None else ({k: -v for k, v in inner[0].items()}, -inner[1])
    if tag == "bin":
        a, b = _affine(node[2]), _affine(node[3])
        if a is None or b is None:
            return None
        op = node[1]
        if op in ("+", "-"):
            sign = 1 if op == "+" else -1
            coeffs = dict(a[0])
            for k, v in b[0].items():
                coeffs[k] = coeffs.get(k, 0) + sign * v
            return ({k: v for k, v in coeffs.items() if v}, a[1] + sign * b[1])
        if op == "*":
            if not a[0]:
                return ({k: v * a[1] for k, v in b[0].items() if v * a[1]}, b[1] * a[1])
            if not b[0]:
                return ({k: v * b[1] for k, v in a[0].items() if v * b[1]}, a[1] * b[1])
    return None


def _names(node: tuple, out: list[str]) -> None:
    tag = node[0]
    if tag == "idx":
        if node[1] not in out:
            out.append(node[1])
    elif tag in ("bin", "cmp"):
        _names(node[2], out)
        _names(node[3], out)
    elif tag == "neg":
        _names(node[1], out)
    elif tag == "num":
        pass
    else:
        raise _ExprError("an index expression may hold only index names, integers and + - * / %")


def _axis(node: tuple) -> AxisRef:
    names: list[str] = []
    _names(node, names)
    form = _affine(node)
    if form is None:
        return AxisRef(tuple(names), None)
    return AxisRef(tuple(names), tuple(sorted(form[0].items(), key=lambda kv: names.index(kv[0]))), form[1])


def _collect(node: tuple, accesses: list[Access], calls: set[str]) -> None:
    tag = node[0]
    if tag == "acc":
        m = re.fullmatch(r"input(\d+)", node[1])
        if m is None:
            raise _ExprError(f"unknown tensor {node[1]!r} (inputs are input0, input1, ...)")
        accesses.append(Access(int(m.group(1)), tuple(_axis(e) for e in node[2])))
    elif tag == "call":
        method, base, args = node[1], node[2], node[3]
        if method == "dtype":
            return  # x.dtype() names a type, it reads no data
        if method == "call" and args and args[0][0] == "str":
            calls.add(args[0][1])
            args = args[1:]
        _collect(base, accesses, calls)
        for arg in args:
            _collect(arg, accesses, calls)
    elif tag in ("bin", "cmp"):
        _collect(node[2], accesses, calls)
        _collect(node[3], accesses, calls)
    elif tag == "neg":
        _collect(node[1], accesses, calls)
    elif tag in ("fn", "list"):
        for arg in node[-1]:
            _collect(arg, accesses, calls)
    elif tag == "gather":
        _collect(node[1], accesses, calls)
        _collect(node[2], accesses, calls)


def _unwrap(node: tuple) -> tuple:
    """``x.when(cond, pad)`` -> ``x`` (padding of a convolution or pooling input)."""
    while node[0] == "call" and node[1] == "when":
        node = node[2]
    return node


@lru_cache(maxsize=4096)
def parse_expression(text: str) -> Expression:
    """Parse one einstein_v2 statement, e.g. ``output0[N0, N1] +=! input0[N0, N1, R2];``.

    Raises ``ValueError`` (an ``_ExprError``) with the reason when the text is not one.
    """
    _, out, assign, value, where = _Parser(text).statement()
    output = []
    for e in out:
        if e[0] != "idx":
            raise _ExprError("every output axis must be an index name")
        if e[1] in output:
            raise _ExprError(f"output index {e[1]} appears twice")
        output.append(e[1])
    accesses: list[Access] = []
    calls: set[str] = set()
    _collect(value, accesses, calls)
    if value[0] == "gather":
        form = "gather"
    elif value[0] == "bin" and value[1] == "*" and _unwrap(value[2])[0] == "acc" and _unwrap(value[3])[0] == "acc":
        form = "product"
    else:
        form = "expr"
    return Expression(text, tuple(output), assign, tuple(accesses), tuple(where), frozenset(calls), form)


# ---------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------
_IR = re.compile(r'^\s*-\s*einstein_v2\(\s*"(?P<expr>[^"]*)"\s*,\s*input_dict\s*=\s*(?P<dict>\{.*\})\s*\)\s*'
                 r'(?:##.*)?$', re.S)


@dataclass(frozen=True)
class GraphNode:
    """One entry of the file, checked and parsed."""

    pos: int  # place in the file
    id: int
    kind: str
    inputs: tuple[tuple[int, int], ...]
    expr: Expression | None  # None for Parameter / Constant / Result
    shapes: tuple[tuple[int, ...], ...]  # per input slot, from input_dict
    dtypes: tuple[str | None, ...] = ()  # per input slot, from input_dict (None: not given)


def is_artifact_graph(path: str | Path) -> bool:
    """True when ``path`` is a file whose JSON content starts as a list (an artifact graph, not a config)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def read_graph(path: str | Path) -> list[GraphNode]:
    """Read and check an artifact graph file; every problem is one ModelConfigError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelConfigError(f"{path}: graph file not found") from None
    except IsADirectoryError:
        raise ModelConfigError(f"{path}: is a directory, expected an Elk artifact graph (.json)") from None
    except OSError as exc:
        raise ModelConfigError(f"{path}: cannot read the graph ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8); an Elk artifact graph "
                               f"is a JSON list of {_NODE_SHAPE} nodes") from None
    try:
        raw = loads_json(text, ModelConfigError, str(path))
    except json.JSONDecodeError as exc:
        stripped = text.rstrip()
        hint = " (the file looks truncated)" if stripped.startswith("[") and not stripped.endswith("]") else ""
        reason = exc.msg.removesuffix(" starting at")
        raise ModelConfigError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {reason}{hint}") \
            from None
    if not isinstance(raw, list):
        raise ModelConfigError(f"{path}: not an Elk artifact graph: expected a JSON list of {_NODE_SHAPE} nodes, "
                               f"got a JSON {type(raw).__name__}")
    if not raw:
        raise ModelConfigError(f"{path}: the graph has no nodes")
    return [_read_node(path, pos, entry) for pos, entry in enumerate(raw)]


def _read_node(path: Path, pos: int, entry: Any) -> GraphNode:
    def fail(message: str) -> ModelConfigError:
        return ModelConfigError(f"{path}: entry {pos}: {message}")

    if not isinstance(entry, list) or len(entry) != 4:
        raise fail(f"not an Elk artifact graph node: expected {_NODE_SHAPE}, got {json.dumps(entry)[:80]}")
    node_id, ir, kind, inputs = entry
    if isinstance(node_id, bool) or not isinstance(node_id, int):
        raise fail(f"the node id must be an integer, got {node_id!r}")
    if not isinstance(kind, str) or kind not in KNOWN_KINDS:
        raise fail(f"node {node_id}: unknown kind {kind!r} (known: {', '.join(sorted(KNOWN_KINDS))})")
    if not isinstance(ir, str):
        raise fail(f"node {node_id}: the expression must be a string, got {type(ir).__name__}")
    if not isinstance(inputs, list) or not all(
            isinstance(i, list) and len(i) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                        for x in i) for i in inputs):
        raise fail(f"node {node_id}: inputs must be a list of [node id, output port] pairs, "
                   f"got {json.dumps(inputs)[:80]}")
    refs = tuple((int(a), int(b)) for a, b in inputs)
    if kind in SOURCE_KINDS or kind in SINK_KINDS:
        return GraphNode(pos, node_id, kind, refs, None, ())
    m = _IR.match(ir)
    if m is None:
        raise fail(f"node {node_id} ({kind}): not an einstein_v2 expression: {ir.strip()[:100]!r}")
    try:
        table = loads_json(m.group("dict"), ModelConfigError, f"{path}: entry {pos}: node {node_id}")
    except json.JSONDecodeError as exc:
        raise fail(f"node {node_id} ({kind}): malformed input_dict ({exc.msg})") from None
    shapes, dtypes = [], []
    for k in range(len(table) if isinstance(table, dict) else 0):
        spec = table.get(f"input{k}")
        shape = spec.get("shape") if isinstance(spec, dict) else None
        dtypes.append(str(spec.get("dtype")) if isinstance(spec, dict) and spec.get("dtype") is not None else None)
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                                  for n in shape):
            raise fail(f"node {node_id} ({kind}): input_dict needs input0..input{len(table) - 1}, each with a "
                       f"'shape' of positive integers")
        shapes.append(tuple(shape))
    if not isinstance(table, dict) or len(shapes) != len(refs):
        raise fail(f"node {node_id} ({kind}): {len(refs)} inputs but input_dict describes "
                   f"{len(table) if isinstance(table, dict) else 0}")
    try:
        expr = parse_expression(m.group("expr"))
    except _ExprError as exc:
        raise fail(f"node {node_id} ({kind}): cannot parse {m.group('expr').strip()!r}: {exc}") from None
    for a in expr.accesses:
        if a.slot >= len(shapes):
            raise fail(f"node {node_id} ({kind}): {m.group('expr').strip()!r} reads input{a.slot} but the node "
                       f"has {len(shapes)} inputs")
        if len(a.axes) != len(shapes[a.slot]):
            raise fail(f"node {node_id} ({kind}): {m.group('expr').strip()!r} indexes input{a.slot} with "
                       f"{len(a.axes)} axes but its shape is {list(shapes[a.slot])}")
    return GraphNode(pos, node_id, kind, refs, expr, tuple(shapes), tuple(dtypes))


# ---------------------------------------------------------------------------
# from nodes to operators
# ---------------------------------------------------------------------------
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


class _Importer:
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
    def _length(self, node: GraphNode, raw: int, tag: str | None) -> int:
        seq = self.seq if tag == "kv" and self.mode == "decode" else self.seq_query
        if self.has_seq and self.has_batch and raw % TOKENS_CODE == 0:
            return raw // TOKENS_CODE * self.batch * seq
        if self.has_batch and raw % BATCH_CODE == 0:
            return raw // BATCH_CODE * self.batch
        if self.has_seq and raw == SEQ_CODE:
            return seq
        if self.has_seq and raw % SEQ_CODE == 0:
            raise _ExprError(f"cannot resolve the placeholders: length {raw} is a multiple of the sequence "
                             f"placeholder {SEQ_CODE} but neither {SEQ_CODE} nor a multiple of batch x sequence "
                             f"({BATCH_CODE} x {SEQ_CODE} = {TOKENS_CODE})")
        return raw

    # ---- one node ---------------------------------------------------------------------
    def _kind(self, node: GraphNode, expr: Expression, slots: dict[int, Access]) -> OpKind:
        kind, assign, n = node.kind, expr.assign, len(slots)
        if kind in ("Dot", "BatchMatMul", "Convolution"):
            if assign == "+=!" and expr.form == "product" and set(slots) == {0, 1}:
                return OpKind.CONV if kind == "Convolution" else OpKind.MATMUL
            raise _ExprError("a matmul/convolution must be 'output0[..] +=! input0[..] * input1[..]'")
        if kind == "MaxPool":
            if assign in _REDUCTIONS and n == 1:
                return OpKind.POOL
            raise _ExprError("a pooling must reduce one input with '>=!'")
        if kind == "Sum":
            if assign in _REDUCTIONS and n == 1:
                return OpKind.REDUCE
            raise _ExprError("a Sum must reduce one input with '+=!'")
        if kind == "SoftmaxBasic":
            if assign in _REDUCTIONS and n == 1:
                return OpKind.BINARY if self.quirks else OpKind.REDUCE
            if assign == "=" and n >= 1:
                return OpKind.BINARY
            raise _ExprError("a softmax step must be an elementwise expression or a one-input reduction")
        if kind in BINARY_KINDS:
            if assign == "=" and n >= 1:
                return OpKind.BINARY
            raise _ExprError(f"a {kind} must be an elementwise '=' expression of its inputs")
        if kind in UNARY_KINDS:
            if assign == "=" and n == 1:
                return OpKind.UNARY
            raise _ExprError(f"a {kind} must be an elementwise '=' expression of one input")
        if kind == "Slice":
            if assign == "=" and n == 1:
                return OpKind.SLICE
            raise _ExprError("a Slice must be 'output0[..] = input0[..]'")
        if kind == "GatherV2":
            if expr.form == "gather" and set(slots) == {0, 1}:
                return OpKind.GATHER
            raise _ExprError("a gather must be 'output0[..] = input0[..] g input1[..]'")
        raise _ExprError(f"no einsum for kind {kind}")  # pragma: no cover - kinds are checked on reading

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
        raise _ExprError(f"the index expression over {', '.join(ax.names) or 'nothing'} cannot be an einsum axis")

    def convert(self, node: GraphNode) -> Operator | None:
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
                    raise _ExprError(f"index {index} has length {raw[index]} and length {n}")
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
                raise _ExprError(f"input{s} is a broadcast scalar, which a {kind.value} cannot take")
            if axes:
                operands.append((v.tensor, axes))
        if not operands:
            raise _ExprError("every input is a broadcast scalar")
        used = [i for _, axes in operands for ax in axes for i in ax] + list(expr.output)
        missing = sorted({i for i in used if i not in raw})
        if missing:
            raise _ExprError(f"no length for index {', '.join(missing)}")

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
            raise _ExprError("a convolution kernel must be indexed by plain index names")
        positions, disjoint = [], True
        for ax in data.axes:
            if ax.bare is not None:
                continue
            if ax.coeffs is None or len(ax.coeffs) != 2:
                raise _ExprError(f"the index expression over {', '.join(ax.names)} is not a convolution window")
            (a, ca), (b, cb) = ax.coeffs
            if a not in out:
                (a, ca), (b, cb) = (b, cb), (a, ca)
            if a not in out or b not in offsets or ca <= 0 or cb <= 0:
                raise _ExprError(f"the index expression over {', '.join(ax.names)} is not a convolution window")
            positions.append(a)
            disjoint = disjoint and cb == 1 and raw.get(b, ca + 1) <= ca
        if sorted(batch + channels_out + positions) != sorted(out):
            raise _ExprError("not a convolution: the output must be batch, output channels and window positions")
        missing = sorted(i for i in batch + channels_out + channels_in + offsets + positions if i not in raw)
        if missing:
            raise _ExprError(f"no length for index {', '.join(missing)}")
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
            raise _ExprError(f"{len(plain)} indices, more than an einsum spec can name")
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
            except _ExprError as exc:
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


# ---------------------------------------------------------------------------
# repeated layers
# ---------------------------------------------------------------------------
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


def _with_layers(program: Program) -> tuple[Program, tuple[int, int, int] | None]:
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
    return Program(program.name, tuple(labelled), meta), found  # residency is already resolved


# ---------------------------------------------------------------------------
# the front door
# ---------------------------------------------------------------------------
def quirks_from_env() -> bool:
    value = os.environ.get(QUIRKS_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ModelConfigError(f"{QUIRKS_ENV}={value!r}: expected 1/0, true/false, yes/no or on/off")


def load_artifact_graph(path: str | Path, *, batch: int = 32, seq: int = 2048, mode: str = "decode",
                        bytes_per_element: int = 2, quirks: bool | None = None) -> Program:
    """Import one of the Elk artifact's graph files as a program (see the module notes).

    ``batch`` replaces the batch placeholder; ``seq`` is the KV length in decode
    mode (one new token per sequence) and the sequence length in train/forward
    mode. ``quirks`` (default: the ``ELK_ARTIFACT_QUIRKS`` environment variable)
    reproduces the artifact parser's quirks.
    """
    path = Path(path)
    if mode not in ("decode", "train", "forward"):
        raise ModelConfigError(f"unknown mode {mode!r} (known: decode, train, forward)")
    for value, what in ((batch, "batch"), (seq, "seq")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"{what} must be a positive integer, got {value!r}")
    quirks = quirks_from_env() if quirks is None else bool(quirks)
    nodes = read_graph(path)
    if quirks and path.stem == "retnet":  # the artifact's parser replicates RetNet's one layer 24 times
        nodes = _replicate(nodes, 24)
    importer = _Importer(path, nodes, batch, seq, mode, quirks, bytes_per_element)
    # the artifact deletes every gather of a decode step, and of any model whose file is named like an LLM
    importer.drop_gathers = quirks and (mode == "decode" or path.stem.startswith(("llam", "opt-", "gemm")))
    ops = importer.run()
    meta = {"model": path.stem, "display_name": path.stem, "family": "artifact", "mode": importer.mode,
            "batch": batch if importer.has_batch else 1, "seq": seq if importer.has_seq else None,
            "bytes_per_element": bytes_per_element, "source": str(path), "format": "elk-artifact",
            "artifact_quirks": quirks, "layer_match": "structure", **importer.stats, "layers_found": None}
    program, _ = _with_layers(Program.from_ops(path.stem, ops, meta))
    program.meta["graph_inputs"] = _graph_input_summary(program.ops, importer)
    return program


def _graph_input_summary(ops: Sequence[Operator], importer: "_Importer") -> dict[str, int]:
    """How many graph inputs (ids no node has) the operators read from HBM, and their bytes: shown in the
    report, so a reference to a wrong id (one more input, and its bytes) is visible."""
    names = {f"in{src}" for src in importer.graph_inputs}
    sizes: dict[str, int] = {}
    for op in ops:
        for t in op.inputs:
            if t.tensor in names and t.offchip:
                sizes[t.tensor] = max(sizes.get(t.tensor, 0), op.tensor_elements(t) * op.bytes_per_element)
    return {"count": len(importer.graph_inputs), "read_from_hbm": len(sizes), "bytes": sum(sizes.values())}


def _replicate(nodes: list[GraphNode], copies: int) -> list[GraphNode]:
    span = max(max(n.id for n in nodes), max((s for n in nodes for s, _ in n.inputs), default=0)) + 1
    out = []
    for c in range(copies):
        for node in nodes:
            out.append(replace(node, pos=len(out), id=node.id + c * span,
                               inputs=tuple((s + c * span, p) for s, p in node.inputs)))
    return out


__all__ = ["AxisRef", "Access", "Expression", "GraphNode", "find_layers", "is_artifact_graph",
           "load_artifact_graph", "parse_expression", "quirks_from_env", "read_graph"]
