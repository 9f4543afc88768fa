"""One training step (forward, backward, optimizer update) built from any forward program (docs/design.md §9.1).

:func:`training_step` differentiates a forward :class:`~elk.ir.Program` operator by operator, in reverse
execution order, with respect to its trainable weights (``Program.weights``). Every backward operator is an
einsum over its forward operator's index space, so its FLOPs follow from the forward's and plan tables treat it
like a forward operator:

- **matmul** ``A,B->C``: ``dA = dC,B->A`` and ``dB = A,dC->B`` (each exactly the forward's FLOPs); a
  convolution without sliding windows (elk's implicit GEMMs) is the same pair, as matmuls;
- **binary** ``x,y->z``: ``dx = dz,y->x`` for a product (the saved other operand is read back), ``dz->x`` for a
  sum or difference (a residual, a bias, a shift, softmax's subtraction); an ``x`` with fewer indices than ``z`` (a broadcast) makes it a reduction;
- **unary** ``x->z``: ``dz,x->x`` (``f'(x)`` needs the saved input), ``dz->x`` when the function is linear (a
  scale, a negation);
- **reduce** ``x->z``: ``dz->x``, a broadcast back over the reduced indices;
- **slice** ``x->z``: ``dz->x``, a pad into the sliced tensor's full shape;
- **gather** ``t,i->z``: ``dz->t``, a scatter into the table;
- **conv** with sliding windows: ``dW = X,dY->W``, a convolution over the forward's indices;
- **pool**: ``dz,x->x`` with the window on the output, the window's gradient routed by the saved input (max)
  or spread (average).

The input gradient of a sliding-window convolution (a transposed convolution: the window on the output)
is refused with one error line (``training step: backward of <op> (...) is not supported``): elk's plan
tables cannot cost a convolution whose output is windowed (no replica count). elk's builders and importers
model convolutions as implicit GEMMs without windows, whose backward is the matmul pair above; only a
hand-built program meets the refusal.

Only tensors that need a gradient get one: the weights and every activation computed from one; constants
(masks, rotary tables, token vectors) get none. A tensor read by several operators gets one gradient
contribution per read, summed by ``binary`` adds as the contributions arrive. The loss is the gradient seed:
one ``loss.<t>`` operator per program output that depends on a weight (cross-entropy's backward, elementwise
over the logits).

The optimizer runs after the whole backward (``optimizer.step()``): one update operator per weight, reading
the weight's optimizer state and its gradient and storing the new state; with an fp32 master copy, a cast then
stores the low-precision weight that the next forward reads. An operator has one element size, so optimizer
state is counted in words of the weight's element size ``b``: Adam keeps three tensors (master or weight,
first and second moments), SGD one; with a master copy each tensor is fp32, ``4 / b`` words. Per parameter:

=========================  ===================================  ===================================
optimizer, master copy      update reads (state + gradient)      writes (state + weight copy)
=========================  ===================================  ===================================
Adam, master (b = 2)        12 + 2 bytes                         12 + 2 bytes
Adam, no master             3b + b bytes                         3b bytes (the weight is in the state)
SGD, master (b = 2)         4 + 2 bytes                          4 + 2 bytes
SGD, no master              b + b bytes                          b bytes
=========================  ===================================  ===================================

Weight decay and bias correction are folded into the update's elementwise cost.

Saved activations: the step's operators run forward, backward (last layer first), optimizer. Whatever an
operator reads that the operator just before it did not produce or read is off chip (elk's residency rule), so
every such tensor produced inside the step is stored by its producer (``Operator.store``) and loaded back
(``Program.round_trips``); an activation stays on chip only when its reader runs right after its producer. ``checkpoint="layer"`` keeps only each layer's inputs: the backward of layer L
first recomputes layer L's forward operators (``recompute.<name>``) and reads their outputs instead.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from enum import Enum
from typing import Sequence

from elk.errors import ModelConfigError
from elk.ir import SLICE_MARK, Axis, Operand, OpKind, Operator, Program, base_tensor


class Optimizer(str, Enum):
    """The update rule; it fixes how many state tensors each weight carries."""

    ADAM = "adam"
    SGD = "sgd"

    @property
    def state_tensors(self) -> int:
        """Tensors of state per weight, the weight (or its master copy) included: Adam w, m, v; SGD w."""
        return 3 if self is Optimizer.ADAM else 1


class Checkpoint(str, Enum):
    """Which forward activations the backward reads back, and which it recomputes."""

    NONE = "none"  # every saved activation is stored to HBM and reloaded
    LAYER = "layer"  # only each layer's inputs; the backward recomputes the layer first


OPTIMIZERS = tuple(o.value for o in Optimizer)
CHECKPOINTS = tuple(c.value for c in Checkpoint)


@dataclass(frozen=True)
class TrainingOptions:
    """How the step is built: optimizer, fp32 master weights (None: when the weights are 2 bytes), checkpointing."""

    optimizer: Optimizer | str = Optimizer.ADAM
    master_weights: bool | None = None
    checkpoint: Checkpoint | str = Checkpoint.NONE
    #: parameters per optimizer update operator: a larger weight is updated in chunks along its first axis
    #: (an update holds its state, gradient and new state on chip at once: Llama2-13B's LM head in one piece
    #: needs 723 KB per core on 5,888 cores; a chunk of 2^24 parameters needs 74 KB)
    optimizer_chunk: int = 1 << 24

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        except ValueError:
            raise ModelConfigError(f"unknown optimizer {self.optimizer!r} (known: {', '.join(OPTIMIZERS)})") from None
        try:
            object.__setattr__(self, "checkpoint", Checkpoint(self.checkpoint))
        except ValueError:
            raise ModelConfigError(f"unknown checkpointing policy {self.checkpoint!r} "
                                   f"(known: {', '.join(CHECKPOINTS)})") from None
        if self.master_weights is not None and not isinstance(self.master_weights, bool):
            raise ModelConfigError(f"master_weights must be true or false, got {self.master_weights!r}")
        if isinstance(self.optimizer_chunk, bool) or not isinstance(self.optimizer_chunk, int) \
                or self.optimizer_chunk < 1:
            raise ModelConfigError(f"optimizer_chunk must be a positive number of parameters, got "
                                   f"{self.optimizer_chunk!r}")

    def master_for(self, bytes_per_element: int) -> bool:
        """Whether the step keeps an fp32 master copy for weights of this element size."""
        return self.master_weights if self.master_weights is not None else bytes_per_element == 2


#: operator kinds whose backward elk builds (every kind today; a new kind is refused until it has a rule)
BACKWARD_KINDS = frozenset(OpKind)

#: unary operators whose derivative is a constant (no saved input needed), by name suffix
_LINEAR_UNARY = ("scale", "neg", "cap.mul", ".mul")
#: binary operators that add or subtract their inputs (the gradient passes through, no saved operand): by role
#: (elk's residuals; the importers' source operator types) or by name ending (elk's builders)
_SUM_ROLES = frozenset({"residual", "add", "bias", "sub", "subtract", "sum"})
_SUM_SUFFIXES = (".bias", ".shift", ".rope", "_res", ".sub")


def _is_sum(op: Operator) -> bool:
    """A binary operator that adds or subtracts its inputs: a residual, a bias, a layer norm's shift, RoPE's add.

    Why by role and name: the IR says "binary", not which function; elk's builders name their adds like this,
    the artifact importer keeps the node's type (``Add``, ``Subtract``) as the role and the ONNX importer its
    own label (``add``, ``bias``, ``sub``). Anything else is treated as a product, whose gradient reads the
    other operand back (the more expensive case).
    """
    return op.role.lower() in _SUM_ROLES or op.name.endswith(_SUM_SUFFIXES)


def _is_linear_unary(op: Operator) -> bool:
    return op.name.endswith(_LINEAR_UNARY)


def _grad(tensor: str) -> str:
    return f"grad.{tensor}"


def _make(name: str, kind: OpKind, lengths: dict[str, int], output: Operand, inputs: Sequence[Operand],
          bytes_per_element: int, layer: int | None, role: str, store: bool = False) -> Operator:
    """An operator from operands, its indices in elk's canonical order (output's, then inputs' last first)."""
    order: list[str] = []
    for operand in (output, *reversed(inputs)):
        for idx in operand.indices:
            if idx not in order:
                order.append(idx)
    return Operator(name=name, kind=kind, sizes=tuple((i, lengths[i]) for i in order), output=output,
                    inputs=tuple(replace(o, offchip=False) for o in inputs), bytes_per_element=bytes_per_element,
                    layer=layer, role=role, store=store)


def _has_window(op: Operator) -> bool:
    return any(len(axis) > 1 for operand in (op.output, *op.inputs) for axis in operand.axes)


@dataclass(frozen=True)
class _View:
    """A tensor as one operator sees it: axes and their lengths (the canonical view of a gradient)."""

    axes: tuple[Axis, ...]
    lengths: dict[str, int]
    bytes_per_element: int

    @property
    def elements(self) -> int:
        return math.prod(sum(self.lengths[i] for i in axis) - (len(axis) - 1) for axis in self.axes)


def _view(op: Operator, operand: Operand) -> _View:
    lengths = op.lengths
    return _View(operand.axes, {i: lengths[i] for i in operand.indices}, op.bytes_per_element)


class _StepBuilder:
    """One build of one training step: the forward's facts, then the backward and optimizer operators."""

    def __init__(self, forward: Program, options: TrainingOptions) -> None:
        self.fwd, self.opt = forward, options
        ops = forward.ops
        self.producer: dict[str, int] = {op.output.tensor: i for i, op in enumerate(ops)}
        readers: dict[str, int] = defaultdict(int)
        for op in ops:
            for o in op.inputs:
                readers[o.tensor] += 1
        self.read_count = readers
        self.weights = [w for w in dict.fromkeys(o.tensor for op in ops for o in op.inputs)
                        if w in forward.weights and w not in self.producer]
        if not self.weights:
            raise ModelConfigError(f"model {forward.name}: a training step needs trainable weights and the "
                                   f"program has none (use --mode forward for a forward pass)")
        self.needs: set[str] = set(self.weights)
        for op in ops:
            if any(self._grad_input(op, k) for k in range(len(op.inputs))):
                self.needs.add(op.output.tensor)
        # canonical view of each gradient: the producer's output, or a weight's first reader
        self.canon: dict[str, _View] = {}
        for op in ops:
            for o in op.inputs:
                if o.tensor not in self.producer:
                    self.canon.setdefault(o.tensor, _view(op, o))
            self.canon.setdefault(op.output.tensor, _view(op, op.output))
        self.contributions: dict[str, int] = defaultdict(int)
        for op in ops:
            if op.output.tensor in self.needs:
                for k, o in enumerate(op.inputs):
                    if self._grad_input(op, k):
                        self.contributions[o.tensor] += 1
        self.arrived: dict[str, int] = defaultdict(int)
        self.layer_base = 1 + max((op.layer for op in ops if op.layer is not None), default=-1)
        self.max_layer = self.layer_base - 1

    # ---- which inputs get a gradient ---------------------------------------------------------------
    def _grad_input(self, op: Operator, k: int) -> bool:
        """Input k of ``op`` gets a gradient: it needs one, and the operator passes one to it."""
        if op.inputs[k].tensor not in self.needs:
            return False
        if op.kind == OpKind.GATHER and k == len(op.inputs) - 1 and len(op.inputs) > 1:
            return False  # the indices
        return True

    def check_supported(self) -> None:
        """Refuse, before emitting anything, an operator whose backward elk cannot express."""
        for op in self.fwd.ops:
            if op.output.tensor not in self.needs:
                continue
            windowed_input_grad = op.kind == OpKind.CONV and any(
                self._grad_input(op, k) and any(len(a) > 1 for a in o.axes) for k, o in enumerate(op.inputs))
            if op.kind not in BACKWARD_KINDS or windowed_input_grad:
                what = "the input gradient of a sliding-window " if windowed_input_grad else ""
                raise ModelConfigError(f"training step: backward of {op.name} ({what}{op.kind.value}) "
                                       f"is not supported")

    def backward_layer(self, layer: int | None) -> int | None:
        """Backward blocks numbered after the forward's, increasing in execution order (last layer first)."""
        return None if layer is None else self.layer_base + (self.max_layer - layer)

    # ---- gradient accumulation ---------------------------------------------------------------------
    def contribute(self, tensor: str, name: str, kind: OpKind, lengths: dict[str, int], output_axes: tuple,
                   inputs: Sequence[Operand], bpe: int, layer: int | None, role: str) -> list[Operator]:
        """The operator of one gradient contribution to ``tensor``, then the add that sums it in."""
        n = self.contributions[tensor]
        self.arrived[tensor] += 1
        k = self.arrived[tensor]
        target = _grad(tensor) if n == 1 else f"{_grad(tensor)}.{k}"
        out = [_make(name, kind, lengths, Operand(target, output_axes), inputs, bpe, layer, role)]
        if k >= 2:
            c = self.canon[tensor]
            prev = f"{_grad(tensor)}.1" if k == 2 else f"{_grad(tensor)}.sum{k - 1}"
            total = _grad(tensor) if k == n else f"{_grad(tensor)}.sum{k}"
            out.append(_make(f"backward.sum.{tensor}.{k}", OpKind.BINARY, c.lengths, Operand(total, c.axes),
                             [Operand(prev, c.axes), Operand(target, c.axes)], c.bytes_per_element, layer,
                             "backward.sum"))
        return out

    # ---- one forward operator's backward --------------------------------------------------------------
    def backward_of(self, op: Operator) -> list[Operator]:
        """The gradient operators of every input of ``op`` that gets one (weights first, activations last)."""
        dz = Operand(_grad(op.output.tensor), op.output.axes)
        lengths, bpe = op.lengths, op.bytes_per_element
        layer = self.backward_layer(op.layer)
        todo = [k for k in range(len(op.inputs)) if self._grad_input(op, k)]
        todo.sort(key=lambda k: self.producer.get(op.inputs[k].tensor, -1))
        out: list[Operator] = []
        for k in todo:
            x = op.inputs[k]
            name = f"backward.{op.name}.d{k}"
            role = f"backward.{op.role}" if op.role else "backward"
            if op.kind in (OpKind.MATMUL, OpKind.CONV):
                other = op.inputs[1 - k]
                ins = [dz, other] if k == 0 else [other, dz]
                kind = OpKind.CONV if _has_window(op) else OpKind.MATMUL
                out += self.contribute(x.tensor, name, kind, lengths, x.axes, ins, bpe, layer, role)
                continue
            if op.kind == OpKind.POOL:  # the window's gradient, routed by the saved input (max) or spread (mean)
                out += self.contribute(x.tensor, name, OpKind.POOL, lengths, x.axes, [dz, x], bpe, layer, role)
                continue
            if op.kind == OpKind.BINARY and not _is_sum(op):
                ins = [dz, *(o for j, o in enumerate(op.inputs) if j != k)]
            elif op.kind == OpKind.UNARY and not _is_linear_unary(op):
                ins = [dz, x]
            else:
                ins = [dz]
            reduces = set(x.indices) < set(lengths)
            if len(ins) > 1:
                kind = OpKind.BINARY
            elif reduces and set(dz.indices) - set(x.indices):
                kind = OpKind.REDUCE
            else:
                kind = OpKind.UNARY
            view = _view(op, x)
            canon = self.canon.get(x.tensor)
            if op.kind == OpKind.SLICE and canon is not None and canon.elements != view.elements \
                    and x.tensor in self.producer:
                # a pad into the full tensor: over the producer's output, reading dz as that shape
                out += self.contribute(x.tensor, name, OpKind.UNARY, canon.lengths, canon.axes,
                                       [Operand(dz.tensor, canon.axes)], canon.bytes_per_element, layer, role)
                continue
            out += self.contribute(x.tensor, name, kind, lengths, x.axes, ins, bpe, layer, role)
        return out

    def loss(self, op: Operator) -> Operator:
        """The gradient seed of an output that depends on a weight: the loss's backward, elementwise."""
        c = self.canon[op.output.tensor]
        return _make(f"loss.{op.output.tensor}", OpKind.UNARY, c.lengths, Operand(_grad(op.output.tensor), c.axes),
                     [Operand(op.output.tensor, c.axes)], c.bytes_per_element, self.backward_layer(op.layer),
                     "loss")

    # ---- checkpointing -------------------------------------------------------------------------------
    def recompute(self, layer: int, ops: Sequence[Operator]) -> tuple[list[Operator], dict[str, str]]:
        """Layer ``layer``'s forward operators again, writing ``recompute.<tensor>``: the backward reads these."""
        rename: dict[str, str] = {}
        out = []
        for op in ops:
            inputs = [replace(o, tensor=rename.get(o.tensor, o.tensor)) for o in op.inputs]
            rename[op.output.tensor] = f"recompute.{op.output.tensor}"
            out.append(replace(op, name=f"recompute.{op.name}", output=replace(op.output,
                               tensor=rename[op.output.tensor]), inputs=tuple(replace(o, offchip=False)
                                                                           for o in inputs),
                               layer=self.backward_layer(layer), role=f"recompute.{op.role}", store=False))
        return out, rename

    # ---- optimizer ---------------------------------------------------------------------------------
    def optimizer_ops(self) -> list[Operator]:
        """One update per weight in first-use order, each stored; with a master copy, a cast stores the weight.
        A weight of more than ``optimizer_chunk`` parameters is updated in chunks along its first axis, each
        reading and writing its own slice (``T@k``) of the state, the gradient and the weight copy."""
        out = []
        for w in self.weights:
            c = self.canon[w]
            first = c.axes[0][0]
            chunks = min(c.lengths[first], -(-math.prod(c.lengths.values()) // self.opt.optimizer_chunk))
            step = -(-c.lengths[first] // chunks)
            for k, lo in enumerate(range(0, c.lengths[first], step)):
                part = {**c.lengths, first: min(step, c.lengths[first] - lo)}
                out += self.update_ops(w, c, part, f"{SLICE_MARK}{k}" if chunks > 1 else "")
        return out

    def update_ops(self, w: str, c: "_View", lengths: dict[str, int], piece: str) -> list[Operator]:
        """The update of (one chunk of) weight ``w``: state and gradient in, new state out; the cast after it."""
        n_state = self.opt.optimizer.state_tensors
        master = self.opt.master_for(c.bytes_per_element)
        per = 4 // c.bytes_per_element if master else 1
        word = next(ch for ch in "QWYZVUTSRPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if ch not in lengths)
        state_axes = ((word,), *c.axes)
        ops = [_make(f"optimizer.{w}{piece}", OpKind.BINARY, {**lengths, word: n_state * per},
                     Operand(f"optimizer.{w}.state.new{piece}", state_axes),
                     [Operand(f"optimizer.{w}.state{piece}", state_axes), Operand(_grad(w) + piece, c.axes)],
                     c.bytes_per_element, None, "optimizer", store=True)]
        if master:
            ops.append(_make(f"optimizer.{w}{piece}.cast", OpKind.REDUCE, {**lengths, word: per},
                             Operand(f"optimizer.{w}.weight{piece}", c.axes),
                             [Operand(f"optimizer.{w}.state.new{piece}", state_axes)], c.bytes_per_element, None,
                             "optimizer", store=True))
        return ops

    # ---- the whole step ------------------------------------------------------------------------------
    def build(self) -> tuple[list[Operator], int, int]:
        """Forward, backward and optimizer operators in execution order; also where backward and optimizer start."""
        fwd = [replace(op, store=False) for op in self.fwd.ops]
        by_layer: dict[int, list[Operator]] = defaultdict(list)
        for op in fwd:
            if op.layer is not None:
                by_layer[op.layer].append(op)
        checkpoint = self.opt.checkpoint == Checkpoint.LAYER
        sinks = {t for t in self.needs if t in self.producer and self.read_count.get(t, 0) == 0}
        backward: list[Operator] = []
        rename: dict[str, str] = {}
        current: int | None = None
        for op in reversed(fwd):
            if op.output.tensor not in self.needs:
                continue
            if checkpoint and op.layer is not None and op.layer != current:
                current = op.layer
                redo, rename = self.recompute(op.layer, by_layer[op.layer])
                backward += redo
            elif op.layer is None:
                current, rename = None, {}
            emitted = [self.loss(op)] if op.output.tensor in sinks else []
            emitted += self.backward_of(op)
            if rename:
                emitted = [replace(b, inputs=tuple(replace(o, tensor=rename.get(o.tensor, o.tensor))
                                                   for o in b.inputs)) for b in emitted]
            backward += emitted
        if not sinks:
            raise ModelConfigError(f"model {self.fwd.name}: no output of the program depends on a trainable weight")
        return fwd + backward + self.optimizer_ops(), len(fwd), len(fwd) + len(backward)


def training_step(forward: Program, options: TrainingOptions | None = None) -> Program:
    """The program of one training step of ``forward`` (see the module notes); ``meta`` carries the accounting."""
    options = options or TrainingOptions()
    builder = _StepBuilder(forward, options)
    builder.check_supported()
    ops, bwd_start, opt_start = builder.build()
    draft = Program.from_ops(forward.name, ops)
    stored = {base_tensor(o.tensor) for op in draft.ops for o in op.inputs if o.offchip}
    ops = [op if op.store or op.output.tensor not in stored else replace(op, store=True) for op in draft.ops]
    meta = {**forward.meta, "mode": "train", "step": "train", "optimizer": options.optimizer.value,
            "checkpoint": options.checkpoint.value}
    program = Program.from_ops(forward.name, ops, meta, weights=forward.weights)
    program.check_round_trips()
    program.meta.update(step_accounting(program, forward, options, bwd_start, opt_start))
    return program


# ---------------------------------------------------------------------------
# accounting
# ---------------------------------------------------------------------------
CATEGORIES = ("weights", "weight_gradients", "activation_gradients", "optimizer_state", "activations", "inputs")


def _category(tensor: str, weights: frozenset[str], produced: set[str]) -> str:
    tensor = base_tensor(tensor)
    if tensor in weights or (tensor.startswith("optimizer.") and tensor.endswith(".weight")):
        return "weights"
    if tensor.startswith("grad."):
        base = tensor[5:]
        for w in (base, base.rsplit(".", 1)[0]):
            if w in weights:
                return "weight_gradients"
        return "activation_gradients"
    if tensor.startswith("optimizer."):
        return "optimizer_state"
    return "activations" if tensor in produced else "inputs"


def step_accounting(program: Program, forward: Program, options: TrainingOptions, bwd_start: int,
                    opt_start: int) -> dict:
    """FLOPs by phase, HBM bytes read and written by category, and the HBM the saved activations hold.

    Without a master copy the optimizer state holds the weight itself: one word in ``state_tensors`` of the
    state's reads and writes is counted as weights.
    """
    ops = program.ops
    weights = program.weights
    produced = {op.output.tensor for op in ops}
    reads = dict.fromkeys(CATEGORIES, 0)
    writes = dict.fromkeys(CATEGORIES, 0)
    n_state = options.optimizer.state_tensors
    for i, op in enumerate(ops):
        no_master = op.role == "optimizer" and not options.master_for(op.bytes_per_element)
        for o in op.inputs:
            if o.offchip:
                nbytes = op.tensor_elements(o) * op.bytes_per_element
                cat = _category(o.tensor, weights, produced)
                if no_master and cat == "optimizer_state":
                    reads["weights"] += nbytes // n_state
                    nbytes -= nbytes // n_state
                reads[cat] += nbytes
        if op.store:
            nbytes = op.store_bytes()
            cat = _category(op.output.tensor, weights, produced)
            if no_master and cat == "optimizer_state":
                writes["weights"] += nbytes // n_state
                nbytes -= nbytes // n_state
            writes[cat] += nbytes
    recompute = sum(op.flops for op in ops[bwd_start:opt_start] if op.name.startswith("recompute."))
    # HBM held by stored activations: live from their store to their last load
    last_read: dict[str, int] = {}
    for j, op in enumerate(ops):
        for o in op.inputs:
            if o.offchip:
                last_read[o.tensor] = j
    delta = [0] * (len(ops) + 1)
    held_at_boundary = 0
    for i, op in enumerate(ops):
        if op.store and _category(op.output.tensor, weights, produced) == "activations":
            end = last_read.get(op.output.tensor, i)
            delta[i] += op.store_bytes()
            delta[end + 1] -= op.store_bytes()
            if i < bwd_start <= end:
                held_at_boundary += op.store_bytes()
    live = peak = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return {"master_weights": options.master_for(forward.meta.get("bytes_per_element", 2)),
            "forward_ops": bwd_start, "backward_ops": opt_start - bwd_start, "optimizer_ops": len(ops) - opt_start,
            "recompute_ops": sum(1 for op in ops[bwd_start:opt_start] if op.name.startswith("recompute.")),
            "trainable_weights": len(weights & {o.tensor for op in ops for o in op.inputs}),
            "parameters": sum(_param_count(op) for op in ops[opt_start:] if not op.name.endswith(".cast")),
            "forward_flops": sum(op.flops for op in ops[:bwd_start]),
            "backward_flops": sum(op.flops for op in ops[bwd_start:opt_start]) - recompute,
            "recompute_flops": recompute,
            "optimizer_flops": sum(op.flops for op in ops[opt_start:]),
            "hbm_read_bytes": reads, "hbm_write_bytes": writes,
            "saved_activation_bytes": held_at_boundary, "peak_activation_hbm_bytes": peak}


def _param_count(update: Operator) -> int:
    """Parameters of one weight's update operator: its gradient's elements."""
    return update.tensor_elements(update.inputs[1])


__all__ = ["CATEGORIES", "CHECKPOINTS", "Checkpoint", "OPTIMIZERS", "Optimizer", "TrainingOptions",
           "step_accounting", "training_step"]
