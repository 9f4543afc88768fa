"""Operators as einsums over named indices, and programs as ordered graphs.

An operator's variables are its output (variable 0) and its inputs. Each
variable is a list of axes; an axis is one index, or a sliding window of two
(an output position and a kernel offset, for convolutions). Indices are kept
in a canonical order: the output's, then new ones from the inputs taken last
input first. That order fixes tie-breaks in the cost model, exactly as the
Elk artifact orders them.

Inputs are *on chip* or *off chip*. The program decides which by the
artifact's adjacency rule: an input is on chip when the immediately preceding
operator produced it or also read it; everything else (weights, KV cache,
older activations) is loaded from HBM.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import networkx as nx

from elk.errors import ModelConfigError


class OpKind(str, Enum):
    """What an operator computes; it selects the cost formula (:mod:`elk.costmodel`) and the plan filters."""

    MATMUL = "matmul"
    BINARY = "binary"
    UNARY = "unary"
    REDUCE = "reduce"
    GATHER = "gather"
    SLICE = "slice"
    CONV = "conv"
    POOL = "pool"


Axis = tuple[str, ...]  # one index, or (output index, kernel index) for a window


@dataclass(frozen=True)
class Operand:
    """One tensor an operator reads or writes: its name, its axes (index names), and whether it comes from HBM.

    ``offchip`` is decided by :meth:`Program.from_ops` (an input is on chip iff the previous operator produced
    or read it), not by whoever builds the operator.
    """

    tensor: str
    axes: tuple[Axis, ...]
    offchip: bool = False

    @property
    def indices(self) -> tuple[str, ...]:
        """Every index the operand's axes name, in axis order."""
        return tuple(i for axis in self.axes for i in axis)


@dataclass(frozen=True)
class OpSignature:
    """What a plan table depends on: the operator with its index names erased."""

    kind: OpKind
    lengths: tuple[int, ...]
    variables: tuple[tuple[tuple[int, ...], ...], ...]  # variable -> axes -> index positions
    offchip: tuple[bool, ...]  # per variable; the output is never off chip
    bytes_per_element: int

    @property
    def num_indices(self) -> int:
        """Number of indices of the iteration space."""
        return len(self.lengths)

    def describe(self) -> str:
        """The signature as an einsum with letters for indices, for reports."""
        names = "abcdefghijklmnopqrstuvwxyz"

        def var(v: tuple[tuple[int, ...], ...]) -> str:
            return "".join(names[a[0]] if len(a) == 1 else "(" + "".join(names[i] for i in a) + ")"
                           for a in v)
        ins = ",".join(var(v) + ("*" if off else "") for v, off in zip(self.variables[1:], self.offchip[1:]))
        dims = "x".join(str(n) for n in self.lengths)
        return f"{self.kind.value} {ins}->{var(self.variables[0])} [{dims}]"


@dataclass(frozen=True)
class Operator:
    """One einsum over named indices: its kind, index lengths, output and inputs (see :func:`einsum_op`).

    ``layer`` numbers the repeated block it belongs to (None outside them); ``signature`` is what plan tables
    are keyed by, so identical operators share one table.
    """

    name: str
    kind: OpKind
    sizes: tuple[tuple[str, int], ...]  # canonical index order
    output: Operand
    inputs: tuple[Operand, ...]
    bytes_per_element: int = 2
    layer: int | None = None  # transformer block number, None outside the repeated blocks
    role: str = ""
    #: the output is written to HBM once the operator has run (a *store*, docs/design.md §5.2): a training
    #: step's saved activations, gradients, updated weights and optimizer state, decode's KV append
    store: bool = False

    def __post_init__(self) -> None:
        known = dict(self.sizes)
        for operand in (self.output, *self.inputs):
            for idx in operand.indices:
                if idx not in known:
                    raise ModelConfigError(f"operator {self.name}: index '{idx}' of {operand.tensor} has no size")
        for idx, n in self.sizes:
            if not isinstance(n, int) or n < 1:
                raise ModelConfigError(f"operator {self.name}: index '{idx}' must have a positive integer "
                                       f"length, got {n!r}")
        if self.bytes_per_element not in (1, 2, 4):
            raise ModelConfigError(f"operator {self.name}: bytes_per_element must be 1, 2 or 4")
        if self.kind == OpKind.MATMUL and len(self.inputs) != 2:
            raise ModelConfigError(f"operator {self.name}: a matmul needs exactly two inputs")

    @property
    def lengths(self) -> dict[str, int]:
        """Index name -> length."""
        return dict(self.sizes)

    @property
    def volume(self) -> int:
        """Size of the iteration space (product of the index lengths)."""
        return math.prod(n for _, n in self.sizes)

    @property
    def flops(self) -> int:
        """2 x iteration-space volume, the artifact's FLOP count for every operator kind."""
        return 2 * self.volume

    def tensor_elements(self, operand: Operand) -> int:
        """Elements of ``operand`` (a window axis counts its output positions plus kernel overhang)."""
        lengths = self.lengths
        total = 1
        for axis in operand.axes:
            total *= sum(lengths[i] for i in axis) - (len(axis) - 1)
        return total

    def offchip_bytes(self) -> int:
        """Bytes the operator reads from HBM: its off-chip inputs."""
        return sum(self.tensor_elements(op) * self.bytes_per_element for op in self.inputs if op.offchip)

    def store_bytes(self) -> int:
        """Bytes the operator writes to HBM: its whole output when it stores, else 0."""
        return self.tensor_elements(self.output) * self.bytes_per_element if self.store else 0

    @cached_property
    def signature(self) -> OpSignature:
        """What plan tables depend on: kind, index lengths and which index each operand uses (no names)."""
        position = {name: k for k, (name, _) in enumerate(self.sizes)}
        variables = tuple(tuple(tuple(position[i] for i in axis) for axis in operand.axes)
                          for operand in (self.output, *self.inputs))
        return OpSignature(self.kind, tuple(n for _, n in self.sizes), variables,
                           (False, *(op.offchip for op in self.inputs)), self.bytes_per_element)

    def describe(self) -> str:
        """The operator as an einsum with its index lengths (``*`` marks an off-chip input), for reports."""
        def var(o: Operand) -> str:
            return "".join(a[0] if len(a) == 1 else "(" + "".join(a) + ")" for a in o.axes)
        ins = ",".join(var(o) + ("*" if o.offchip else "") for o in self.inputs)
        dims = " ".join(f"{k}={n}" for k, n in self.sizes)
        return f"{self.kind.value} {ins}->{var(self.output)} [{dims}]"


#: ``T@k`` names the k-th slice of tensor ``T`` (an operator that works on part of a tensor, e.g. one chunk of a
#: weight's optimizer update): residency tells slices apart, round trips pair a slice with ``T``'s store
SLICE_MARK = "@"


def base_tensor(name: str) -> str:
    """The tensor a name refers to: ``T`` for ``T`` and for its slices ``T@k``."""
    return name.split(SLICE_MARK, 1)[0]


_AXES = re.compile(r"\(([a-zA-Z]+)\)|([a-zA-Z])")


def parse_axes(spec: str) -> tuple[Axis, ...]:
    """'bhmk' -> (('b',), ('h',), ...); '(hr)' marks a sliding-window axis."""
    axes = []
    pos = 0
    for m in _AXES.finditer(spec):
        if m.start() != pos:
            raise ModelConfigError(f"bad einsum operand '{spec}'")
        pos = m.end()
        axes.append(tuple(m.group(1)) if m.group(1) else (m.group(2),))
    if pos != len(spec):
        raise ModelConfigError(f"bad einsum operand '{spec}'")
    return tuple(axes)


def einsum_op(name: str, kind: OpKind | str, spec: str, sizes: Mapping[str, int],
              inputs: Sequence[str], output: str, *, bytes_per_element: int = 2,
              layer: int | None = None, role: str = "") -> Operator:
    """Build an operator from an einsum spec such as ``'mk,kn->mn'``.

    ``inputs``/``output`` name the tensors; residency is decided later by the
    program, so every input starts on chip.
    """
    kind = OpKind(kind)
    try:
        lhs, rhs = spec.replace(" ", "").split("->")
    except ValueError:
        raise ModelConfigError(f"operator {name}: einsum spec '{spec}' needs exactly one '->'") from None
    in_specs = lhs.split(",")
    if len(in_specs) != len(inputs):
        raise ModelConfigError(f"operator {name}: spec '{spec}' has {len(in_specs)} inputs, "
                               f"{len(inputs)} tensors given")
    out_axes = parse_axes(rhs)
    in_axes = [parse_axes(s) for s in in_specs]
    order: list[str] = []
    for axes in (out_axes, *reversed(in_axes)):
        for axis in axes:
            for idx in axis:
                if idx not in order:
                    order.append(idx)
    missing = [i for i in order if i not in sizes]
    if missing:
        raise ModelConfigError(f"operator {name}: no size for index {', '.join(missing)}")
    return Operator(
        name=name, kind=kind, sizes=tuple((i, int(sizes[i])) for i in order),
        output=Operand(output, out_axes), inputs=tuple(Operand(t, a) for t, a in zip(inputs, in_axes)),
        bytes_per_element=bytes_per_element, layer=layer, role=role)


@dataclass(frozen=True)
class LayerStructure:
    """Where the repeated transformer blocks sit in the program."""

    start: int  # first op of block 0
    length: int  # ops per block
    count: int  # number of identical blocks

    @property
    def stop(self) -> int:
        """Index just past the last repeated block."""
        return self.start + self.length * self.count


@dataclass
class Program:
    """Operators in execution order, with residency resolved.

    ``weights`` names the trainable parameter tensors among the program's HBM inputs (set by the builders;
    a training step differentiates with respect to them, docs/design.md §9.1).
    """

    name: str
    ops: tuple[Operator, ...]
    meta: dict = field(default_factory=dict)
    weights: frozenset[str] = frozenset()

    @classmethod
    def from_ops(cls, name: str, ops: Iterable[Operator], meta: Mapping | None = None,
                 weights: Iterable[str] = ()) -> "Program":
        """A program from operators in execution order: names checked unique, residency decided (an input is on
        chip iff the previous operator produced or read it), the order checked topological.
        """
        ops = tuple(ops)
        if not ops:
            raise ModelConfigError(f"program {name} has no operators")
        names = [op.name for op in ops]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ModelConfigError(f"program {name}: duplicate operator names {dup[:5]}")
        program = cls(name, resolve_residency(ops), dict(meta or {}), frozenset(weights))
        program.check_topological()
        return program

    # ---- structure ----------------------------------------------------------
    @cached_property
    def graph(self) -> nx.DiGraph:
        """Operators as nodes, producer -> consumer edges labelled with the tensor."""
        g = nx.DiGraph()
        producer: dict[str, int] = {}
        for i, op in enumerate(self.ops):
            g.add_node(i, name=op.name, kind=op.kind.value)
            for operand in op.inputs:
                if operand.tensor in producer:
                    g.add_edge(producer[operand.tensor], i, tensor=operand.tensor)
            producer[op.output.tensor] = i
        return g

    def check_topological(self) -> None:
        """Raise :class:`ModelConfigError` if a tensor is read before the operator that produces it."""
        produced: set[str] = set()
        consumed_before: dict[str, str] = {}
        for op in self.ops:
            for operand in op.inputs:
                consumed_before.setdefault(operand.tensor, op.name)
            if op.output.tensor in consumed_before and op.output.tensor not in produced:
                raise ModelConfigError(f"program {self.name}: tensor {op.output.tensor} is read by "
                                       f"{consumed_before[op.output.tensor]} before {op.name} produces it")
            produced.add(op.output.tensor)
        if not nx.is_directed_acyclic_graph(self.graph):  # pragma: no cover - implied by the check above
            raise ModelConfigError(f"program {self.name} has a cycle")

    @cached_property
    def layers(self) -> LayerStructure | None:
        """The repeated block structure, if the ops carry layer numbers with identical blocks.

        Blocks are compared by operator signature. A program whose ``meta["layer_match"]``
        is ``"structure"`` compares them without the on/off-chip flags: imported graphs
        stitched from copied layers (the Elk artifact's Llama2-70B and Gemma2) read a few
        inputs from HBM in some copies only, yet every block has the same operators.

        Layer numbers may form several groups of contiguous, equally long blocks (a training
        step numbers its forward blocks and its backward blocks apart, docs/design.md §9.1):
        the longest run of identical blocks over all groups is returned, the one covering
        most operators (the earliest on a tie).
        """
        first: dict[int, int] = {}
        count: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            if op.layer is not None:
                first.setdefault(op.layer, i)
                count[op.layer] = count.get(op.layer, 0) + 1
        if len(first) < 2:
            return None
        # groups: consecutive layer numbers whose blocks are contiguous and equally long
        groups: list[list[int]] = []
        for k in sorted(first):
            g = groups[-1] if groups else None
            if g and k == g[-1] + 1 and count[k] == count[g[0]] and first[k] == first[g[-1]] + count[g[0]]:
                g.append(k)
            else:
                groups.append([k])
        if self.meta.get("layer_match") == "structure":
            def key(op: Operator) -> object:
                return replace(op.signature, offchip=()), op.store
        else:
            def key(op: Operator) -> object:
                return op.signature, op.store
        best: LayerStructure | None = None
        for order in groups:
            if len(order) < 2:
                continue
            length, start = count[order[0]], first[order[0]]
            # keep the longest run of consecutive blocks whose operator signatures repeat exactly
            # (the first block often differs: its input comes from HBM, not from the block before)
            sigs = [tuple(key(op) for op in self.ops[start + j * length: start + (j + 1) * length])
                    for j in range(len(order))]
            best_from, best_run, j = 0, 1, 0
            while j < len(sigs):
                k = j + 1
                while k < len(sigs) and sigs[k] == sigs[j]:
                    k += 1
                if k - j > best_run:
                    best_from, best_run = j, k - j
                j = k
            if best_run >= 2 and (best is None or best_run * length > best.length * best.count):
                best = LayerStructure(start + best_from * length, length, best_run)
        return best

    # ---- totals ---------------------------------------------------------------
    @property
    def hbm_bytes(self) -> int:
        """Bytes all operators read from HBM in one step."""
        return sum(op.offchip_bytes() for op in self.ops)

    @property
    def hbm_write_bytes(self) -> int:
        """Bytes all operators write to HBM in one step (their stores)."""
        return sum(op.store_bytes() for op in self.ops)

    @cached_property
    def round_trips(self) -> tuple[tuple[int, int], ...]:
        """(storing operator, loading operator) pairs: a load that reads a stored output must start after that
        store ends (rule 2, docs/design.md §5.2). Only stored outputs make pairs: an off-chip read of an output
        nobody stores is the forward programs' residency rule (the artifact's), not a round trip."""
        producer = {op.output.tensor: i for i, op in enumerate(self.ops) if op.store}
        pairs = {(producer[base_tensor(o.tensor)], j) for j, op in enumerate(self.ops) for o in op.inputs
                 if o.offchip and base_tensor(o.tensor) in producer and producer[base_tensor(o.tensor)] < j}
        return tuple(sorted(pairs))

    def check_round_trips(self) -> None:
        """Raise :class:`ModelConfigError` unless every off-chip read of an output produced in the program reads
        a stored one (a training step must write what it reads back; forward programs need not)."""
        produced = {op.output.tensor: op for op in self.ops}
        for op in self.ops:
            for o in op.inputs:
                base = base_tensor(o.tensor)
                if o.offchip and base in produced and not produced[base].store:
                    raise ModelConfigError(f"program {self.name}: {op.name} reads {o.tensor} from HBM but "
                                           f"{produced[base].name} does not store it")

    @property
    def flops(self) -> int:
        """FLOPs of one step (the artifact's count: 2 x each operator's iteration volume)."""
        return sum(op.flops for op in self.ops)

    def unique_signatures(self) -> list[OpSignature]:
        """The distinct operator signatures in order of first appearance (one plan table each)."""
        return list(dict.fromkeys(op.signature for op in self.ops))

    def summary(self) -> dict:
        """Name, operator counts, HBM bytes, FLOPs and the builder's metadata, for reports and tables."""
        writes = {"hbm_write_bytes_per_step": self.hbm_write_bytes} if any(op.store for op in self.ops) else {}
        return {"model": self.name, "operators": len(self.ops),
                "unique_operators": len(self.unique_signatures()),
                "hbm_bytes_per_step": self.hbm_bytes, **writes, "flops": self.flops, **self.meta}


def resolve_residency(ops: Sequence[Operator]) -> tuple[Operator, ...]:
    """Mark each input off chip unless the previous operator produced or read it."""
    out = []
    prev: Operator | None = None
    for op in ops:
        resident: set[str] = set()
        if prev is not None:
            resident = {prev.output.tensor, *(o.tensor for o in prev.inputs)}
        inputs = tuple(replace(o, offchip=o.tensor not in resident) for o in op.inputs)
        out.append(replace(op, inputs=inputs))
        prev = op
    return tuple(out)
