"""Reading an Elk artifact graph file: the JSON list of nodes, each checked and its expression parsed.

Every problem is one :class:`elk.errors.ModelConfigError` naming the file and the entry."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elk.errors import ModelConfigError
from elk.graphs.artifact.expr import Expression, ExprError, parse_expression

BATCH_CODE = 99  #: the artifact's batch placeholder
SEQ_CODE = 66  #: the artifact's sequence placeholder
TOKENS_CODE = BATCH_CODE * SEQ_CODE  #: batch x sequence, flattened (OPT)

LAYOUT_KINDS = frozenset({"Reshape", "Convert", "Broadcast", "Concat"})
SOURCE_KINDS = frozenset({"Parameter", "Constant"})
SINK_KINDS = frozenset({"Result"})
BINARY_KINDS = frozenset({"Add", "Subtract", "Multiply", "Divide", "Power", "Maximum"})
UNARY_KINDS = frozenset({"Relu", "Negative", "Sigmoid", "Sqrt", "Tanh", "Erf"})
COMPUTE_KINDS = BINARY_KINDS | UNARY_KINDS | {"Dot", "BatchMatMul", "Convolution", "MaxPool", "Sum",
                                              "SoftmaxBasic", "GatherV2", "Slice"}
KNOWN_KINDS = COMPUTE_KINDS | LAYOUT_KINDS | SOURCE_KINDS | SINK_KINDS
_NODE_SHAPE = '[id, " - einstein_v2(...)", kind, [[src, port], ...]]'

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
        raw = json.loads(text)
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
        table = json.loads(m.group("dict"))
    except json.JSONDecodeError as exc:
        raise fail(f"node {node_id} ({kind}): malformed input_dict ({exc.msg})") from None
    shapes = []
    for k in range(len(table) if isinstance(table, dict) else 0):
        spec = table.get(f"input{k}")
        shape = spec.get("shape") if isinstance(spec, dict) else None
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
    except ExprError as exc:
        raise fail(f"node {node_id} ({kind}): cannot parse {m.group('expr').strip()!r}: {exc}") from None
    for a in expr.accesses:
        if a.slot >= len(shapes):
            raise fail(f"node {node_id} ({kind}): {m.group('expr').strip()!r} reads input{a.slot} but the node "
                       f"has {len(shapes)} inputs")
        if len(a.axes) != len(shapes[a.slot]):
            raise fail(f"node {node_id} ({kind}): {m.group('expr').strip()!r} indexes input{a.slot} with "
                       f"{len(a.axes)} axes but its shape is {list(shapes[a.slot])}")
    return GraphNode(pos, node_id, kind, refs, expr, tuple(shapes))


