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

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from elk.errors import ModelConfigError
from elk.graphs.artifact.expr import Access, AxisRef, Expression, parse_expression
from elk.graphs.artifact.importer import GraphImporter
from elk.graphs.artifact.layers import MAX_LARGE_PER_BLOCK, MIN_LAYER_COVERAGE, find_layers, with_layers
from elk.graphs.artifact.read import BATCH_CODE, SEQ_CODE, TOKENS_CODE, GraphNode, is_artifact_graph, read_graph
from elk.ir import Operator, Program

QUIRKS_ENV = "ELK_ARTIFACT_QUIRKS"


def quirks_from_env() -> bool:
    """Whether ``ELK_ARTIFACT_QUIRKS`` asks for the artifact parser's quirks (an unclear value is an error,
    not a silent no)."""
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
    importer = GraphImporter(path, nodes, batch, seq, mode, quirks, bytes_per_element)
    # the artifact deletes every gather of a decode step, and of any model whose file is named like an LLM
    importer.drop_gathers = quirks and (mode == "decode" or path.stem.startswith(("llam", "opt-", "gemm")))
    ops = importer.run()
    meta = {"model": path.stem, "display_name": path.stem, "family": "artifact", "mode": importer.mode,
            "batch": batch if importer.has_batch else 1, "seq": seq if importer.has_seq else None,
            "bytes_per_element": bytes_per_element, "source": str(path), "format": "elk-artifact",
            "artifact_quirks": quirks, "layer_match": "structure", **importer.stats, "layers_found": None}
    program, _ = with_layers(Program.from_ops(path.stem, ops, meta, weights=importer.weights))
    program.meta["graph_inputs"] = _graph_input_summary(program.ops, importer)
    return program


def _graph_input_summary(ops: Sequence[Operator], importer: GraphImporter) -> dict[str, int]:
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


__all__ = ["AxisRef", "Access", "BATCH_CODE", "Expression", "GraphNode", "MAX_LARGE_PER_BLOCK", "MIN_LAYER_COVERAGE",
           "QUIRKS_ENV", "SEQ_CODE", "TOKENS_CODE", "find_layers", "is_artifact_graph", "load_artifact_graph",
           "parse_expression", "quirks_from_env", "read_graph"]
