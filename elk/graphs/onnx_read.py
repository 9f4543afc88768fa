"""Reading an ONNX file: checks, symbolic dimensions, concrete shapes and folded constants.

This is the first half of elk's ONNX front door (:mod:`elk.graphs.onnx_import` is the
second: from values to elk operators). It answers, for every value of the graph:
its concrete shape once the symbolic dimensions are bound, its element type, whether
it is a *constant* (computable from initializers and shapes alone, with no runtime
input: weights, shape arithmetic, masks and rotary tables built from ``Range``) and,
for small constants, its value (numpy), which is what shape arithmetic needs
(``Shape -> Gather -> Concat -> Reshape``).

Why elk propagates shapes itself rather than only calling
``onnx.shape_inference``: the exporters' graphs compute reshape targets, slice
bounds and ranges from ``Shape`` of the runtime input, and a shape depends on
those values; ONNX's inference leaves such dimensions symbolic (``seq + 1``,
``Min(512, seq)``), while elk needs every length as an integer. The tests check
elk's shapes against ``onnx.shape_inference`` on the files with static shapes.

Weights are never read: ``onnx.load(..., load_external_data=False)`` keeps every
initializer's name, type and dims, so a file whose external ``.data`` file is absent
reads as well as one with inline weights. Only small inline initializers (shape
constants) are converted to numpy.

Every problem is one :class:`~elk.errors.ModelConfigError` naming the file and,
where there is one, the node: not a protobuf, truncated, not a model, an opset elk
does not know, a node reading a value nothing produces, a cycle, a dimension left
unbound, an operator type elk cannot map.

``onnx`` is imported lazily, inside :func:`read_onnx`, so ``import elk`` stays light.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from elk.errors import ModelConfigError

#: oldest default-domain opset elk reads (the operator semantics below are written from opset 7 on)
MIN_OPSET = 7
#: a constant with more elements than this keeps its shape only (masks, rotary tables, weights)
VALUE_LIMIT = 1 << 16
#: symbolic dimension names ``--batch`` binds (compared case-insensitively, ignoring ``-`` and ``_``)
BATCH_NAMES = ("batch", "batchsize", "bs", "nbatch", "numbatch", "batchdim", "n")
#: symbolic dimension names ``--seq`` binds
SEQ_NAMES = ("seq", "seqlen", "seqlength", "sequence", "sequencelength", "sequencelen", "numtokens",
             "tokens", "totalsequencelength", "pastsequencelength", "pastseqlen", "kvlen", "kvlength",
             "pastkvlength", "cachelength", "pastsequencelengthplus1")

#: ONNX TensorProto element type -> (name, bytes per element)
DTYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 4), 2: ("uint8", 1), 3: ("int8", 1), 4: ("uint16", 2), 5: ("int16", 2), 6: ("int32", 4),
    7: ("int64", 8), 9: ("bool", 1), 10: ("float16", 2), 11: ("float64", 8), 12: ("uint32", 4),
    13: ("uint64", 8), 16: ("bfloat16", 2), 17: ("float8e4m3fn", 1), 18: ("float8e4m3fnuz", 1),
    19: ("float8e5m2", 1), 20: ("float8e5m2fnuz", 1), 21: ("uint4", 1), 22: ("int4", 1)}
FLOAT, INT64, BOOL = 1, 7, 9
_NUMPY = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
          9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64, 16: np.float32}


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class Value:
    """One value of the graph once dimensions are bound.

    ``const``: computable without any runtime input (an initializer, a Constant, or
    a node whose inputs are all constants). ``value``: the numpy array of a small
    constant, else None. ``initializer``: an initializer or Constant (a root
    constant, as opposed to one a node computes).
    """

    name: str
    shape: tuple[int, ...]
    dtype: int
    const: bool
    value: np.ndarray | None = None
    initializer: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return DTYPES.get(self.dtype, ("?", 4))[1]


@dataclass
class Node:
    """One node, in topological order, with its attributes as Python values."""

    index: int
    name: str  # unique: the file's name, or OpType_index when it has none or repeats one
    op_type: str
    domain: str
    inputs: tuple[str, ...]  # "" for an omitted optional input
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


@dataclass
class OnnxGraph:
    """A read, checked and shape-resolved ONNX model."""

    path: Path
    opset: int
    nodes: list[Node]
    values: dict[str, Value]
    inputs: list[str]  # runtime graph inputs (not initializers)
    outputs: list[str]
    dims: dict[str, int]  # symbolic dimension -> the value bound
    producer: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    def describe(self, node: Node) -> str:
        return f"{self.path}: node {node.name!r} ({node.op_type})"


def _fail(path: Path, message: str) -> ModelConfigError:
    return ModelConfigError(f"{path}: {message}")


def is_onnx_path(model: object) -> bool:
    """True when ``model`` is a path (str or Path) whose name ends in ``.onnx``."""
    return isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx")


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------
def _load(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "ONNX file not found") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, expected an ONNX model file") from None
    except OSError as exc:
        raise _fail(path, f"cannot read the file ({exc.strerror or exc})") from None
    if not data:
        raise _fail(path, "the file is empty, not an ONNX model")
    head = data[:64].lstrip()
    if head[:1] in (b"{", b"[") or head[:5].lower() in (b"<?xml", b"<html") or head.startswith(b"ir_version"):
        raise _fail(path, "not an ONNX model: the file is text (JSON, XML or protobuf text format), an ONNX "
                          "model is a binary protobuf ModelProto")
    import onnx  # lazily: `import elk` must not pay for it
    from google.protobuf.message import DecodeError
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise _fail(path, f"not an ONNX model or a truncated one: the protobuf does not decode "
                          f"({str(exc) or 'DecodeError'})") from None
    except RecursionError:
        raise _fail(path, "not an ONNX model: the protobuf nests deeper than the reader allows") from None
    if model.ir_version < 1 or not model.HasField("graph") or not model.graph.node:
        raise _fail(path, "not an ONNX model: the protobuf decodes but holds no graph with nodes "
                          f"(ir_version {model.ir_version}, {len(model.graph.node)} nodes)")
    return model


def _opset(path: Path, model: Any) -> int:
    import onnx.defs
    latest = onnx.defs.onnx_opset_version()
    version = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            version = int(imp.version)
    if version is None:
        if model.ir_version < 3:
            version = 1
        else:
            raise _fail(path, "the model imports no default ONNX opset (opset_import has no '' or 'ai.onnx' "
                              "domain)")
    if not MIN_OPSET <= version <= latest:
        raise _fail(path, f"unsupported opset {version}: elk reads default-domain opsets {MIN_OPSET} to {latest} "
                          f"(onnx {onnx.__version__})")
    return version


def _attrs(node: Any, path: Path, name: str) -> dict[str, Any]:
    from onnx import AttributeProto
    out: dict[str, Any] = {}
    for a in node.attribute:
        t = a.type
        if t == AttributeProto.FLOAT:
            out[a.name] = float(a.f)
        elif t == AttributeProto.INT:
            out[a.name] = int(a.i)
        elif t == AttributeProto.STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif t == AttributeProto.FLOATS:
            out[a.name] = [float(x) for x in a.floats]
        elif t == AttributeProto.INTS:
            out[a.name] = [int(x) for x in a.ints]
        elif t == AttributeProto.STRINGS:
            out[a.name] = [s.decode("utf-8", "replace") for s in a.strings]
        elif t == AttributeProto.TENSOR:
            out[a.name] = _tensor(a.t, path, f"attribute {a.name} of node {name!r}", want_value=True)
        elif t in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            out[a.name] = "<graph>"
        else:
            out[a.name] = None
    return out


def _tensor(t: Any, path: Path, what: str, want_value: bool) -> tuple[tuple[int, ...], int, np.ndarray | None]:
    """(dims, element type, value or None) of a TensorProto, never touching external data."""
    from onnx import TensorProto, numpy_helper
    dims = tuple(int(d) for d in t.dims)
    if any(d < 0 for d in dims):
        raise _fail(path, f"{what} has a negative dimension {list(dims)}")
    value = None
    external = t.data_location == TensorProto.EXTERNAL
    if want_value and not external and math.prod(dims) <= VALUE_LIMIT and t.data_type in _NUMPY:
        try:
            value = numpy_helper.to_array(t)
        except Exception as exc:  # a malformed tensor: its bytes do not match its dims
            raise _fail(path, f"{what}: malformed tensor data ({type(exc).__name__}: {exc})") from None
        if t.data_type == 16:  # bfloat16 as float32 values
            value = value.astype(np.float32)
    return dims, int(t.data_type), value


# ---------------------------------------------------------------------------
# dimensions
# ---------------------------------------------------------------------------
def bind_dims(path: Path, symbols: Mapping[str, str], batch: int | None, seq: int | None,
              dims: Mapping[str, int]) -> dict[str, int]:
    """Value of every symbolic dimension (``symbols``: name -> the input that has it).

    ``dims`` (from ``--dim NAME=VALUE``) wins over the ``--batch``/``--seq`` names.
    A dimension nothing binds is an error naming it and the input it belongs to.
    """
    bound: dict[str, int] = {}
    for name, where in symbols.items():
        if name in dims:
            bound[name] = dims[name]
        elif _norm_name(name) in BATCH_NAMES and batch is not None:
            bound[name] = batch
        elif _norm_name(name) in SEQ_NAMES and seq is not None:
            bound[name] = seq
        else:
            raise _fail(path, f"symbolic dimension {name!r} (of input {where!r}) is not bound: give it with "
                              f"--dim {name}=VALUE (--batch binds {', '.join(BATCH_NAMES[:3])}..., --seq binds "
                              f"{', '.join(SEQ_NAMES[:5])}...)")
    unknown = sorted(set(dims) - set(symbols))
    if unknown:
        known = ", ".join(sorted(symbols)) or "none"
        raise _fail(path, f"--dim {unknown[0]}: the model has no symbolic dimension of that name (its symbolic "
                          f"dimensions: {known})")
    return bound


# ---------------------------------------------------------------------------
# shape rules
# ---------------------------------------------------------------------------
class ShapeError(ValueError):
    """A node whose output shape elk cannot work out (wrapped with the node's name)."""


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _ints(v: Value | None, what: str) -> list[int]:
    if v is None:
        raise ShapeError(f"{what} is missing")
    if v.value is None:
        raise ShapeError(f"{what} ({v.name!r}) is not a constant elk can evaluate, so the shape cannot be resolved")
    return [int(x) for x in np.asarray(v.value).reshape(-1)]


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"shapes {', '.join(str(list(s)) for s in shapes)} do not broadcast") from None


def _reshape_target(shape: tuple[int, ...], target: list[int], allowzero: bool) -> tuple[int, ...]:
    out = [shape[i] if (n == 0 and not allowzero and i < len(shape)) else n for i, n in enumerate(target)]
    total = math.prod(shape)
    if out.count(-1) > 1:
        raise ShapeError(f"reshape target {target} has more than one -1")
    if -1 in out:
        rest = math.prod(n for n in out if n != -1)
        if rest == 0 or total % rest:
            raise ShapeError(f"cannot reshape {list(shape)} to {target}")
        out[out.index(-1)] = total // rest
    if math.prod(out) != total:
        raise ShapeError(f"cannot reshape {list(shape)} ({total} elements) to {target}")
    return tuple(out)


def _slice_bounds(n: int, start: int, end: int, step: int) -> range:
    return range(n)[slice(start, end, step)]


def conv_geometry(attrs: Mapping[str, Any], spatial: Sequence[int], kernel: Sequence[int],
                  ceil_mode: bool = False) -> tuple[list[int], list[int], list[int]]:
    """(output sizes, strides, dilations) of a convolution or pooling window over ``spatial``."""
    r = len(spatial)
    strides = list(attrs.get("strides") or [1] * r)
    dil = list(attrs.get("dilations") or [1] * r)
    pads = list(attrs.get("pads") or [0] * (2 * r))
    auto = attrs.get("auto_pad", "NOTSET")
    out = []
    for i in range(r):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-spatial[i] // strides[i]))
        elif auto == "VALID":
            out.append((spatial[i] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1)
        else:
            total = spatial[i] + pads[i] + pads[i + r] - dil[i] * (kernel[i] - 1) - 1
            out.append((-(-total // strides[i]) if ceil_mode else total // strides[i]) + 1)
    if any(n < 1 for n in out):
        raise ShapeError(f"the window leaves no output (input {list(spatial)}, kernel {list(kernel)})")
    return out, strides, dil


Rule = Callable[[Node, list["Value | None"], int], list[tuple[tuple[int, ...], int]]]
_RULES: dict[str, Rule] = {}


def _rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            _RULES[op] = fn
        return fn
    return deco


ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Mod", "PRelu", "BitShift",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Where"})
COMPARE = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"})
UNARY = frozenset({
    "Relu", "Sigmoid", "Tanh", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Sin", "Cos",
    "Tan", "Softplus", "Softsign", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Mish",
    "ThresholdedRelu", "Clip", "Floor", "Ceil", "Round", "Sign", "Identity", "Dropout", "LRN", "Asin",
    "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BitwiseNot", "Shrink"})
BOOL_UNARY = frozenset({"IsNaN", "IsInf", "Not"})


@_rule(*ELEMENTWISE, *COMPARE)
def _r_elementwise(node: Node, ins: list[Value | None], opset: int) -> list:
    present = [v for v in ins if v is not None]
    shape = _broadcast(*(v.shape for v in present))
    if node.op_type in COMPARE:
        return [(shape, BOOL)]
    dtype = (ins[1] or present[0]).dtype if node.op_type == "Where" and len(ins) > 1 else present[0].dtype
    return [(shape, dtype)]


@_rule(*UNARY, *BOOL_UNARY)
def _r_unary(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    out = [(x.shape, BOOL if node.op_type in BOOL_UNARY else x.dtype)]
    if node.op_type == "Dropout" and len(node.outputs) > 1:
        out.append((x.shape, BOOL))
    return out


@_rule("Cast", "CastLike")
def _r_cast(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    to = int(node.attrs.get("to", 1)) if node.op_type == "Cast" else (ins[1].dtype if ins[1] else x.dtype)
    return [(x.shape, to)]


@_rule("Shape")
def _r_shape(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    r = len(x.shape)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", r)
    return [((len(range(r)[slice(start, end)]),), INT64)]


@_rule("Size")
def _r_size(node: Node, ins: list[Value | None], opset: int) -> list:
    return [((), INT64)]


@_rule("Constant")
def _r_constant(node: Node, ins: list[Value | None], opset: int) -> list:
    raise AssertionError("Constant is read directly")  # pragma: no cover


@_rule("ConstantOfShape")
def _r_cos(node: Node, ins: list[Value | None], opset: int) -> list:
    shape = tuple(_ints(ins[0], "the shape input"))
    value = node.attrs.get("value")
    return [(shape, value[1] if value else FLOAT)]


@_rule("Range")
def _r_range(node: Node, ins: list[Value | None], opset: int) -> list:
    start, limit, delta = (float(np.asarray(_value(v, what)).reshape(-1)[0])
                           for v, what in zip(ins, ("the start", "the limit", "the delta")))
    if delta == 0:
        raise ShapeError("Range with delta 0")
    n = max(int(math.ceil((limit - start) / delta)), 0)
    return [((n,), ins[0].dtype if ins[0] else INT64)]


def _value(v: Value | None, what: str) -> np.ndarray:
    if v is None or v.value is None:
        raise ShapeError(f"{what} is not a constant elk can evaluate, so the shape cannot be resolved")
    return v.value


@_rule("Reshape")
def _r_reshape(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    target = list(node.attrs["shape"]) if opset < 5 and "shape" in node.attrs else _ints(ins[1], "the target shape")
    return [(_reshape_target(x.shape, target, bool(node.attrs.get("allowzero", 0))), x.dtype)]


@_rule("Flatten")
def _r_flatten(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    r = len(x.shape)
    axis = node.attrs.get("axis", 1)
    axis = axis + r if axis < 0 else axis
    return [((math.prod(x.shape[:axis]), math.prod(x.shape[axis:])), x.dtype)]


def _axes_arg(node: Node, ins: list[Value | None]) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute before opset 13, an input from 13 on."""
    if "axes" in node.attrs:
        return list(node.attrs["axes"])
    if len(ins) > 1 and ins[1] is not None:
        return _ints(ins[1], "the axes input")
    return None


@_rule("Squeeze")
def _r_squeeze(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    axes = _axes_arg(node, ins)
    r = len(x.shape)
    if axes is None:
        keep = [n for n in x.shape if n != 1]
    else:
        drop = {_axis(a, r) for a in axes}
        if any(x.shape[a] != 1 for a in drop):
            raise ShapeError(f"cannot squeeze axes {axes} of {list(x.shape)}")
        keep = [n for i, n in enumerate(x.shape) if i not in drop]
    return [(tuple(keep), x.dtype)]


@_rule("Unsqueeze")
def _r_unsqueeze(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    axes = _axes_arg(node, ins)
    if axes is None:
        raise ShapeError("Unsqueeze without axes")
    r = len(x.shape) + len(axes)
    new = {_axis(a, r) for a in axes}
    it = iter(x.shape)
    return [(tuple(1 if i in new else next(it) for i in range(r)), x.dtype)]


@_rule("Transpose")
def _r_transpose(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    perm = node.attrs.get("perm") or list(range(len(x.shape)))[::-1]
    if sorted(perm) != list(range(len(x.shape))):
        raise ShapeError(f"perm {perm} does not permute {len(x.shape)} axes")
    return [(tuple(x.shape[p] for p in perm), x.dtype)]


@_rule("Expand")
def _r_expand(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    return [(_broadcast(x.shape, tuple(_ints(ins[1], "the target shape"))), x.dtype)]


@_rule("Tile")
def _r_tile(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    reps = _ints(ins[1], "the repeats")
    return [(tuple(n * k for n, k in zip(x.shape, reps)), x.dtype)]


@_rule("Concat")
def _r_concat(node: Node, ins: list[Value | None], opset: int) -> list:
    present = [v for v in ins if v is not None]
    r = len(present[0].shape)
    axis = _axis(node.attrs.get("axis", 0), r)
    shape = list(present[0].shape)
    shape[axis] = sum(v.shape[axis] for v in present)
    return [(tuple(shape), present[0].dtype)]


@_rule("Slice")
def _r_slice(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    r = len(x.shape)
    if opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(ins[1], "the starts"), _ints(ins[2], "the ends")
        axes = _ints(ins[3], "the axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = _ints(ins[4], "the steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    shape = list(x.shape)
    for a, s, e, k in zip(axes, starts, ends, steps):
        if k == 0:
            raise ShapeError("Slice with step 0")
        a = _axis(a, r)
        shape[a] = len(_slice_bounds(shape[a], s, e, k))
    return [(tuple(shape), x.dtype)]


@_rule("Split")
def _r_split(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    axis = _axis(node.attrs.get("axis", 0), len(x.shape))
    n = len(node.outputs)
    if "split" in node.attrs:
        sizes = list(node.attrs["split"])
    elif len(ins) > 1 and ins[1] is not None:
        sizes = _ints(ins[1], "the split sizes")
    else:
        total, parts = x.shape[axis], int(node.attrs.get("num_outputs", n))
        each = -(-total // parts)
        sizes = [min(each, total - each * i) for i in range(parts)]
    if len(sizes) != n or sum(sizes) != x.shape[axis]:
        raise ShapeError(f"split sizes {sizes} do not cover axis {axis} ({x.shape[axis]}) in {n} parts")
    out = []
    for s in sizes:
        shape = list(x.shape)
        shape[axis] = s
        out.append((tuple(shape), x.dtype))
    return out


@_rule("Gather")
def _r_gather(node: Node, ins: list[Value | None], opset: int) -> list:
    x, idx = ins[0], ins[1]
    assert x is not None and idx is not None
    axis = _axis(node.attrs.get("axis", 0), len(x.shape))
    return [(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)]


@_rule("GatherElements")
def _r_gather_elements(node: Node, ins: list[Value | None], opset: int) -> list:
    assert ins[0] is not None and ins[1] is not None
    return [(ins[1].shape, ins[0].dtype)]


@_rule("GatherND")
def _r_gather_nd(node: Node, ins: list[Value | None], opset: int) -> list:
    x, idx = ins[0], ins[1]
    assert x is not None and idx is not None
    b = int(node.attrs.get("batch_dims", 0))
    k = idx.shape[-1]
    return [(idx.shape[:-1] + x.shape[b + k:], x.dtype)]


@_rule("CumSum")
def _r_cumsum(node: Node, ins: list[Value | None], opset: int) -> list:
    assert ins[0] is not None
    return [(ins[0].shape, ins[0].dtype)]


@_rule("Trilu")
def _r_trilu(node: Node, ins: list[Value | None], opset: int) -> list:
    assert ins[0] is not None
    return [(ins[0].shape, ins[0].dtype)]


REDUCE = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                    "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin"})


def reduce_axes(node: Node, ins: list[Value | None], rank: int) -> list[int]:
    """The axes a Reduce* or Arg* node reduces (attribute before opset 18, input from 18; ReduceSum from 13)."""
    if node.op_type in ("ArgMax", "ArgMin"):
        return [_axis(node.attrs.get("axis", 0), rank)]
    axes = node.attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = _ints(ins[1], "the axes input")
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted({_axis(a, rank) for a in axes})


@_rule(*REDUCE)
def _r_reduce(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    axes = set(reduce_axes(node, ins, len(x.shape)))
    keep = node.attrs.get("keepdims", 1)
    shape = tuple((1 if i in axes else n) for i, n in enumerate(x.shape) if keep or i not in axes)
    return [(shape, INT64 if node.op_type.startswith("Arg") else x.dtype)]


@_rule("Softmax", "LogSoftmax", "Hardmax")
def _r_softmax(node: Node, ins: list[Value | None], opset: int) -> list:
    assert ins[0] is not None
    return [(ins[0].shape, ins[0].dtype)]


@_rule("LayerNormalization", "BatchNormalization", "InstanceNormalization", "RMSNormalization",
       "SimplifiedLayerNormalization", "GroupNormalization")
def _r_norm(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    out = [(x.shape, x.dtype)]
    if node.op_type == "LayerNormalization":
        axis = _axis(node.attrs.get("axis", -1), len(x.shape))
        stat = tuple(n if i < axis else 1 for i, n in enumerate(x.shape))
        out += [(stat, FLOAT), (stat, FLOAT)]
    elif node.op_type == "BatchNormalization":
        c = (x.shape[1],) if len(x.shape) > 1 else (1,)
        out += [(c, x.dtype)] * 4
    return out[:max(len(node.outputs), 1)]


@_rule("MatMul", "MatMulInteger", "QLinearMatMul")
def _r_matmul(node: Node, ins: list[Value | None], opset: int) -> list:
    a, b = (ins[0], ins[3]) if node.op_type == "QLinearMatMul" else (ins[0], ins[1])
    assert a is not None and b is not None
    sa, sb = list(a.shape), list(b.shape)
    if not sa or not sb:
        raise ShapeError("MatMul of a scalar")
    va, vb = len(sa) == 1, len(sb) == 1
    if va:
        sa = [1] + sa
    if vb:
        sb = sb + [1]
    if sa[-1] != sb[-2]:
        raise ShapeError(f"MatMul of {list(a.shape)} and {list(b.shape)}: inner lengths differ")
    batch = _broadcast(tuple(sa[:-2]), tuple(sb[:-2]))
    shape = list(batch) + ([] if va else [sa[-2]]) + ([] if vb else [sb[-1]])
    dtype = 6 if node.op_type == "MatMulInteger" else a.dtype
    return [(tuple(shape), dtype)]


@_rule("Gemm")
def _r_gemm(node: Node, ins: list[Value | None], opset: int) -> list:
    a, b = ins[0], ins[1]
    assert a is not None and b is not None
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ShapeError(f"Gemm needs 2-D inputs, got {list(a.shape)} and {list(b.shape)}")
    m, k = a.shape[::-1] if node.attrs.get("transA", 0) else a.shape
    k2, n = b.shape[::-1] if node.attrs.get("transB", 0) else b.shape
    if k != k2:
        raise ShapeError(f"Gemm of {list(a.shape)} and {list(b.shape)}: inner lengths differ")
    return [((m, n), a.dtype)]


@_rule("Einsum")
def _r_einsum(node: Node, ins: list[Value | None], opset: int) -> list:
    terms, out = parse_einsum(str(node.attrs.get("equation", "")), [v.shape if v else () for v in ins])
    sizes: dict[str, int] = {}
    for term, v in zip(terms, ins):
        assert v is not None
        for c, n in zip(term, v.shape):
            if sizes.get(c, 1) not in (1, n) and n != 1:
                raise ShapeError(f"einsum index {c} has lengths {sizes[c]} and {n}")
            sizes[c] = max(sizes.get(c, 1), n)
    return [(tuple(sizes[c] for c in out), ins[0].dtype if ins[0] else FLOAT)]


def parse_einsum(equation: str, shapes: Sequence[tuple[int, ...]]) -> tuple[list[str], str]:
    """The input terms and output term of an ONNX Einsum equation, ``...`` expanded to letters."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ShapeError(f"equation {equation!r} has {len(terms)} inputs, the node {len(shapes)}")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    ell = 0
    for t, s in zip(terms, shapes):
        if "..." in t:
            ell = max(ell, len(s) - (len(t) - 3))
    fill = "".join(spare[:ell])
    out_terms = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            n = len(s) - (len(t) - 3)
            t = t.replace("...", fill[ell - n:])
        if len(t) != len(s) or not all(c.isalpha() for c in t):
            raise ShapeError(f"equation {equation!r}: term {t!r} does not match an input of rank {len(s)}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", fill)
    else:
        counts: dict[str, int] = {}
        for t in out_terms:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = fill + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in fill))
    return out_terms, out


@_rule("Conv", "ConvTranspose")
def _r_conv(node: Node, ins: list[Value | None], opset: int) -> list:
    x, w = ins[0], ins[1]
    assert x is not None and w is not None
    if len(x.shape) < 3 or len(w.shape) != len(x.shape):
        raise ShapeError(f"{node.op_type} of {list(x.shape)} with kernel {list(w.shape)}")
    group = int(node.attrs.get("group", 1))
    kernel = list(node.attrs.get("kernel_shape") or w.shape[2:])
    if node.op_type == "Conv":
        if x.shape[1] != w.shape[1] * group:
            raise ShapeError(f"Conv: input has {x.shape[1]} channels, kernel {w.shape[1]} x group {group}")
        out, _, _ = conv_geometry(node.attrs, x.shape[2:], kernel)
        return [((x.shape[0], w.shape[0]) + tuple(out), x.dtype)]
    strides = list(node.attrs.get("strides") or [1] * len(kernel))
    pads = list(node.attrs.get("pads") or [0] * (2 * len(kernel)))
    outpad = list(node.attrs.get("output_padding") or [0] * len(kernel))
    dil = list(node.attrs.get("dilations") or [1] * len(kernel))
    r = len(kernel)
    if node.attrs.get("output_shape"):
        out = list(node.attrs["output_shape"])[-r:]
    else:
        out = [strides[i] * (x.shape[2 + i] - 1) + outpad[i] + (kernel[i] - 1) * dil[i] + 1 - pads[i] - pads[i + r]
               for i in range(r)]
    return [((x.shape[0], w.shape[1] * group) + tuple(out), x.dtype)]


POOL = frozenset({"MaxPool", "AveragePool", "LpPool"})


@_rule(*POOL)
def _r_pool(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    kernel = list(node.attrs.get("kernel_shape") or [])
    if len(kernel) != len(x.shape) - 2:
        raise ShapeError(f"kernel_shape {kernel} does not match input {list(x.shape)}")
    out, _, _ = conv_geometry(node.attrs, x.shape[2:], kernel, bool(node.attrs.get("ceil_mode", 0)))
    shape = x.shape[:2] + tuple(out)
    return [(shape, x.dtype)] + ([(shape, INT64)] if len(node.outputs) > 1 else [])


@_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _r_global_pool(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    return [(x.shape[:2] + (1,) * (len(x.shape) - 2), x.dtype)]


@_rule("Pad")
def _r_pad(node: Node, ins: list[Value | None], opset: int) -> list:
    x = ins[0]
    assert x is not None
    pads = list(node.attrs["pads"]) if "pads" in node.attrs else _ints(ins[1], "the pads")
    r = len(x.shape)
    axes = _ints(ins[3], "the axes") if len(ins) > 3 and ins[3] is not None else list(range(r))
    shape = list(x.shape)
    for j, a in enumerate(axes):
        a = _axis(a, r)
        shape[a] += pads[j] + pads[j + len(axes)]
    return [(tuple(shape), x.dtype)]


# ---------------------------------------------------------------------------
# constant evaluation (small values only)
# ---------------------------------------------------------------------------
def _np_dtype(code: int) -> Any:
    return _NUMPY.get(code, np.float32)


def _evaluate(node: Node, ins: list[Value | None], shapes: list[tuple[tuple[int, ...], int]],
              opset: int) -> list[np.ndarray | None]:
    """numpy values of a node whose inputs are all small constants; None where elk does not evaluate."""
    op, a = node.op_type, node.attrs
    if op == "Shape":  # needs the input's shape only, never its value
        return [np.array(ins[0].shape[slice(a.get("start", 0), a.get("end"))], dtype=np.int64)]
    if op == "Size":
        return [np.array(ins[0].size, dtype=np.int64)]
    if any(v is not None and v.value is None for v in ins):
        return [None] * len(shapes)
    if any(math.prod(s) > VALUE_LIMIT for s, _ in shapes):
        return [None] * len(shapes)
    x = [None if v is None else np.asarray(v.value) for v in ins]
    out_dtype = _np_dtype(shapes[0][1])
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum, "Min": np.minimum,
              "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
              "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
              "Xor": np.logical_xor, "Pow": np.power, "Mod": np.fmod if a.get("fmod") else np.mod}
    unary = {"Neg": np.negative, "Abs": np.abs, "Not": np.logical_not, "Sqrt": np.sqrt, "Exp": np.exp,
             "Log": np.log, "Reciprocal": np.reciprocal, "Floor": np.floor, "Ceil": np.ceil, "Sign": np.sign,
             "Sin": np.sin, "Cos": np.cos, "Tanh": np.tanh, "Relu": lambda v: np.maximum(v, 0),
             "IsNaN": np.isnan, "IsInf": np.isinf, "Identity": lambda v: v, "Dropout": lambda v: v,
             "Round": np.round}
    try:
        if op in binary and len(x) == 2:
            vals = [binary[op](x[0], x[1])]
        elif op == "Div":
            if np.issubdtype(x[0].dtype, np.integer):
                vals = [np.trunc(x[0] / x[1]).astype(x[0].dtype)]
            else:
                vals = [x[0] / x[1]]
        elif op in ("Max", "Min", "Sum", "Mean") and x:
            fn = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[op]
            acc = x[0]
            for v in x[1:]:
                acc = fn(acc, v)
            vals = [acc / len(x) if op == "Mean" else acc]
        elif op in unary:
            vals = [unary[op](x[0])] + ([np.ones(x[0].shape, bool)] if op == "Dropout" and len(shapes) > 1 else [])
        elif op == "Where":
            vals = [np.where(x[0], x[1], x[2])]
        elif op == "Cast":
            vals = [x[0].astype(out_dtype)]
        elif op == "CastLike":
            vals = [x[0].astype(x[1].dtype)]
        elif op == "ConstantOfShape":
            fill = a.get("value")
            v = fill[2].reshape(-1)[0] if fill and fill[2] is not None else 0
            vals = [np.full(shapes[0][0], v, dtype=out_dtype)]
        elif op == "Range":
            vals = [np.arange(x[0].reshape(-1)[0], x[1].reshape(-1)[0], x[2].reshape(-1)[0]).astype(x[0].dtype)]
        elif op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"):
            vals = [np.broadcast_to(x[0], shapes[0][0]).copy() if op == "Expand" else x[0].reshape(shapes[0][0])]
        elif op == "Transpose":
            vals = [np.transpose(x[0], a.get("perm"))]
        elif op == "Tile":
            vals = [np.tile(x[0], x[1])]
        elif op == "Concat":
            vals = [np.concatenate([v for v in x if v is not None], axis=a.get("axis", 0))]
        elif op == "Gather":
            vals = [np.take(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))]
        elif op == "GatherElements":
            vals = [np.take_along_axis(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))]
        elif op == "Slice":
            starts, ends = (a["starts"], a["ends"]) if opset < 10 else (list(x[1]), list(x[2]))
            axes = (a.get("axes") if opset < 10 else (list(x[3]) if len(x) > 3 and x[3] is not None else None)) \
                or list(range(len(starts)))
            steps = list(x[4]) if opset >= 10 and len(x) > 4 and x[4] is not None else [1] * len(starts)
            idx = [slice(None)] * x[0].ndim
            for ax, s, e, k in zip(axes, starts, ends, steps):
                idx[int(ax)] = slice(int(s), int(e), int(k))
            vals = [x[0][tuple(idx)]]
        elif op == "CumSum":
            axis = int(x[1].reshape(-1)[0])
            v = np.flip(x[0], axis) if a.get("reverse") else x[0]
            c = np.cumsum(v, axis=axis)
            if a.get("exclusive"):
                c = c - v
            vals = [np.flip(c, axis) if a.get("reverse") else c]
        elif op in ("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean"):
            axes = tuple(reduce_axes(node, ins, x[0].ndim))
            fn = {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min,
                  "ReduceMean": np.mean}[op]
            vals = [fn(x[0], axis=axes, keepdims=bool(a.get("keepdims", 1))) if axes else x[0]]
        elif op == "Split":
            outs, start = [], 0
            axis = a.get("axis", 0) % x[0].ndim
            for s, _ in shapes:
                n = s[axis]
                outs.append(np.take(x[0], range(start, start + n), axis=axis))
                start += n
            vals = outs
        elif op == "Trilu":
            k = int(x[1].reshape(-1)[0]) if len(x) > 1 and x[1] is not None else 0
            vals = [np.triu(x[0], k) if a.get("upper", 1) else np.tril(x[0], k)]
        elif op == "MatMul":
            vals = [np.matmul(x[0], x[1])]
        else:
            return [None] * len(shapes)
    except (ValueError, TypeError, IndexError, ArithmeticError):
        return [None] * len(shapes)
    out = []
    for v, (shape, dtype) in zip(vals, shapes):
        v = np.asarray(v)
        out.append(v.astype(_np_dtype(dtype)).reshape(shape) if v.size == math.prod(shape) else None)
    return out + [None] * (len(shapes) - len(out))


#: operator types with a shape rule (the mapping in onnx_import decides which of them elk can compile)
SHAPE_OPS = frozenset(_RULES) | {"Constant"}


# ---------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------
def _topological(path: Path, nodes: list[Any], available: set[str]) -> list[int]:
    """Node indices in an order where every input is produced before it is read (the file's, when it is one)."""
    produced_by: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                if o in produced_by or o in available:
                    raise _fail(path, f"node {n.name or n.op_type!r} ({n.op_type}): output {o!r} is produced twice")
                produced_by[o] = i
    for i, n in enumerate(nodes):
        for name in n.input:
            if name and name not in produced_by and name not in available:
                raise _fail(path, f"node {n.name or n.op_type!r} ({n.op_type}): input {name!r} is dangling (no "
                                  f"node, graph input or initializer produces it)")
    seen = set(available)
    in_order = True
    for n in nodes:
        if any(x and x not in seen for x in n.input):
            in_order = False
            break
        seen.update(o for o in n.output if o)
    if in_order:
        return list(range(len(nodes)))
    # Kahn's algorithm over the producer -> consumer edges; what is left is on a cycle
    deps = [{produced_by[x] for x in n.input if x and x in produced_by} for n in nodes]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    remaining = [len(d) for d in deps]
    ready = [i for i, k in enumerate(remaining) if k == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users.get(i, []):
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) < len(nodes):
        stuck = next(i for i, k in enumerate(remaining) if k > 0)
        n = nodes[stuck]
        raise _fail(path, f"node {n.name or n.op_type!r} ({n.op_type}) is on a cycle (the graph is not acyclic)")
    return order


def read_onnx(path: str | Path, *, batch: int | None = None, seq: int | None = None,
              dims: Mapping[str, int] | None = None, supported: frozenset[str] | None = None) -> OnnxGraph:
    """Load ``path`` and resolve every value's shape, type and constness (see the module notes).

    ``supported``: operator types the caller can map; a node of another type (or of
    a non-default domain) is an error naming it, raised before any shape work.
    """
    path = Path(path)
    dims = dict(dims or {})
    for k, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _fail(path, f"--dim {k}={v!r}: a dimension must be a positive integer")
    model = _load(path)
    opset = _opset(path, model)
    g = model.graph

    # unique node names
    raw_names = [n.name for n in g.node]
    counts: dict[str, int] = {}
    for nm in raw_names:
        counts[nm] = counts.get(nm, 0) + 1
    names = [nm if nm and counts[nm] == 1 else f"{n.op_type}_{i}" for i, (nm, n) in enumerate(zip(raw_names, g.node))]

    if supported is not None:
        for n, nm in zip(g.node, names):
            if n.domain not in ("", "ai.onnx") or n.op_type not in supported:
                dom = f" of domain {n.domain!r}" if n.domain not in ("", "ai.onnx") else ""
                raise _fail(path, f"node {nm!r} ({n.op_type}): elk cannot map operator type "
                                  f"{n.op_type}{dom}; the supported operator types are listed in the README "
                                  f"(\"ONNX models as input\") and in elk/graphs/onnx_import.py")

    values: dict[str, Value] = {}
    for t in g.initializer:
        shape, dtype, value = _tensor(t, path, f"initializer {t.name!r}", want_value=True)
        values[t.name] = Value(t.name, shape, dtype, True, value, initializer=True)
    for t in g.sparse_initializer:
        raise _fail(path, f"sparse initializer {t.values.name!r}: elk does not read sparse initializers")

    symbols: dict[str, str] = {}
    runtime: list[str] = []
    for inp in g.input:
        if inp.name in values:
            continue  # an initializer listed as an input (IR < 4): a constant
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise _fail(path, f"input {inp.name!r} is not a tensor (sequences and maps are not supported)")
        for d in tt.shape.dim:
            if d.HasField("dim_param") and d.dim_param:
                symbols.setdefault(d.dim_param, inp.name)
            elif not d.HasField("dim_value"):
                raise _fail(path, f"input {inp.name!r} has a dimension with neither a length nor a name; name it in "
                                  f"the file to bind it with --dim")
        runtime.append(inp.name)
    bound = bind_dims(path, symbols, batch, seq, dims)
    for inp in g.input:
        if inp.name in values:
            continue
        tt = inp.type.tensor_type
        shape = tuple(bound[d.dim_param] if d.dim_param else int(d.dim_value) for d in tt.shape.dim)
        values[inp.name] = Value(inp.name, shape, int(tt.elem_type) or FLOAT, False)

    order = _topological(path, list(g.node), set(values))
    nodes: list[Node] = []
    for i in order:
        n = g.node[i]
        nodes.append(Node(len(nodes), names[i], n.op_type, n.domain, tuple(n.input), tuple(n.output),
                          _attrs(n, path, names[i])))

    for node in nodes:
        where = f"node {node.name!r} ({node.op_type})"
        if node.op_type == "Constant":
            attr = next(((k, v) for k, v in node.attrs.items() if k.startswith("value")), None)
            if attr is None:
                raise _fail(path, f"{where}: a Constant without a value")
            key, v = attr
            if key == "value":
                shape, dtype, value = v
            else:
                arr = np.asarray(v, dtype=np.float32 if "float" in key else np.int64)
                shape, dtype, value = arr.shape, FLOAT if "float" in key else INT64, arr
            values[node.outputs[0]] = Value(node.outputs[0], tuple(shape), dtype, True, value, initializer=True)
            continue
        rule = _RULES.get(node.op_type)
        if rule is None:
            raise _fail(path, f"{where}: elk has no shape rule for operator type {node.op_type}; the supported "
                              f"operator types are listed in the README (\"ONNX models as input\") and in "
                              f"elk/graphs/onnx_import.py")
        ins = [values[x] if x else None for x in node.inputs]
        if not ins or ins[0] is None:
            raise _fail(path, f"{where}: the first input is missing")
        try:
            outs = rule(node, ins, opset)
        except ShapeError as exc:
            raise _fail(path, f"{where}: {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError, AssertionError, ArithmeticError) as exc:
            raise _fail(path, f"{where}: cannot work out the output shape ({type(exc).__name__}: {exc})") from None
        for shape, _ in outs:
            if any(d < 0 for d in shape):
                raise _fail(path, f"{where}: negative output dimension {list(shape)}")
        # a shape is known once the dimensions are bound: Shape and Size of a runtime value are constants
        const = node.op_type in ("Shape", "Size") or all(v is None or v.const for v in ins)
        evaluated = _evaluate(node, ins, outs, opset) if const else [None] * len(outs)
        for k, name in enumerate(node.outputs):
            if not name or k >= len(outs):
                continue
            shape, dtype = outs[k]
            values[name] = Value(name, tuple(shape), dtype, const, evaluated[k])
    for o in g.output:
        if o.name not in values:
            raise _fail(path, f"graph output {o.name!r} is not produced by any node")
    producer = f"{model.producer_name} {model.producer_version}".strip()
    return OnnxGraph(path, opset, nodes, values, runtime, [o.name for o in g.output], bound, producer,
                     {"onnx_nodes": len(nodes), "initializers": len(g.initializer)})
