"""Decoder-only language models (Llama, Mistral, OPT, Gemma, Gemma 2) as operator lists.

One builder serves every family: the config's switches (norm kind, gated FFN,
biases, learned positions, post-norms, soft-capping, sliding windows) decide
which operators a layer gets, so a new Llama-like model needs a config file,
not code. The layout follows the Elk artifact closely enough that HBM traffic
and FLOPs match it: QKV is one fused matmul, gate and up are one fused matmul,
the KV cache is read from HBM by the attention matmuls, and the token
embedding lookup is left out (decode reads the embedded tokens as an input).

Every decoder layer emits the same operator sequence, so
:attr:`elk.ir.Program.layers` can find the repetition. When layers differ in
KV length (Gemma 2 with a context longer than its sliding window alternates
local and global layers) the repeated unit becomes the shortest period of
that pattern: ``op.layer`` is then ``i // period`` and ``meta["layer_period"]``
says how many decoder layers one block holds.

The first half of this module is shared with :mod:`elk.graphs.build_dit`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Sequence

from elk.graphs.arch import ArchConfig
from elk.errors import ModelConfigError
from elk.ir import Operator, einsum_op


# ---------------------------------------------------------------------------
# shared emission helpers
# ---------------------------------------------------------------------------
def squeeze_spec(spec: str, sizes: Mapping[str, int]) -> str:
    """Drop indices of length 1 from an einsum spec.

    Why: a length-1 index (the group index of multi-head attention, batch 1)
    only multiplies the plan space without changing any cost, and would make
    otherwise equal operators look different. The output keeps its indices if
    dropping would leave it a scalar.
    """
    lhs, out = spec.split("->")
    ones = {i for i in spec if i.isalpha() and sizes.get(i) == 1}
    if not ones:
        return spec
    if all(i in ones for i in out):
        ones -= set(out)

    def strip(s: str) -> str:
        return "".join(c for c in s if c not in ones)
    return ",".join(strip(s) for s in lhs.split(",")) + "->" + strip(out)


def fuse_batch_indices(spec: str, sizes: Mapping[str, int]) -> tuple[str, dict[str, int]]:
    """Merge the indices a matmul's three operands all share into one index ``X``.

    Why: an index in every variable never creates replication, yet each one
    lets every variable rotate along it, multiplying the plan space (batch x
    heads attention goes from 0.5 M to 17 M plans at 8,192 tokens) without
    adding useful plans; splitting the fused index covers the products of the
    separate splits. The artifact's own OPT graph flattens batch x heads the
    same way.
    """
    lhs, out = spec.split("->")
    operands = lhs.split(",") + [out]
    shared = [i for i in out if all(i in o for o in operands)]
    if len(shared) < 2:
        return spec, dict(sizes)
    fused = "X"
    size = 1
    for i in shared:
        size *= sizes[i]

    def merge(o: str) -> str:
        kept = [c for c in o if c not in shared]
        return fused + "".join(kept)
    new_sizes = {k: v for k, v in sizes.items()}
    new_sizes[fused] = size
    return ",".join(merge(o) for o in lhs.split(",")) + "->" + merge(out), new_sizes


@dataclass
class Emitter:
    """Collects operators in execution order; each op's output tensor is named like the op.

    Why: naming outputs after their ops keeps names unique and per layer
    (``l3.qkv``), which is what residency and layer detection rely on.
    """

    bytes_per_element: int = 2
    ops: list[Operator] = field(default_factory=list)
    prefix: str = ""
    layer: int | None = None
    #: decode: the new token's key and value tensors of every layer (what a KV-cache append writes)
    appended: list[str] = field(default_factory=list)

    def __call__(self, name: str, kind: str, spec: str, sizes: Mapping[str, int],
                 inputs: Sequence[str], role: str = "") -> str:
        full = self.prefix + name
        spec = squeeze_spec(spec, sizes)
        if kind == "matmul":
            spec, sizes = fuse_batch_indices(spec, sizes)
        self.ops.append(einsum_op(full, kind, spec, sizes, inputs, full,
                                  bytes_per_element=self.bytes_per_element, layer=self.layer, role=role))
        return full

    def w(self, name: str) -> str:
        """A weight tensor of the current scope (off chip: no op produces it)."""
        return self.prefix + name

    @contextmanager
    def scope(self, prefix: str, layer: int | None = None) -> Iterator["Emitter"]:
        """Emit the operators inside the ``with`` block under ``prefix`` and ``layer`` (restored after)."""
        saved = (self.prefix, self.layer)
        self.prefix, self.layer = prefix, layer
        try:
            yield self
        finally:
            self.prefix, self.layer = saved


def rms_norm(em: Emitter, name: str, x: str, sz: Mapping[str, int], weight: str | None = None) -> str:
    """RMSNorm over ``e`` of a ``te`` tensor: square, mean, rsqrt, normalise, scale (5 ops)."""
    sq = em(f"{name}.sq", "binary", "te,te->te", sz, [x, x], "norm")
    ms = em(f"{name}.ms", "reduce", "te->t", sz, [sq], "norm")
    rs = em(f"{name}.rs", "unary", "t->t", sz, [ms], "norm")
    xn = em(f"{name}.xn", "binary", "te,t->te", sz, [x, rs], "norm")
    return em(f"{name}.y", "binary", "te,e->te", sz, [xn, weight or em.w(f"{name}.w")], "norm")


def layer_norm(em: Emitter, name: str, x: str, sz: Mapping[str, int], affine: bool = True) -> str:
    """LayerNorm over ``e``: 8 ops with gamma and beta, 6 without (DiT's adaLN norms)."""
    mean = em(f"{name}.mean", "reduce", "te->t", sz, [x], "norm")
    xc = em(f"{name}.xc", "binary", "te,t->te", sz, [x, mean], "norm")
    sq = em(f"{name}.sq", "binary", "te,te->te", sz, [xc, xc], "norm")
    var = em(f"{name}.var", "reduce", "te->t", sz, [sq], "norm")
    rs = em(f"{name}.rs", "unary", "t->t", sz, [var], "norm")
    y = em(f"{name}.xn", "binary", "te,t->te", sz, [xc, rs], "norm")
    if affine:
        y = em(f"{name}.scale", "binary", "te,e->te", sz, [y, em.w(f"{name}.g")], "norm")
        y = em(f"{name}.shift", "binary", "te,e->te", sz, [y, em.w(f"{name}.b")], "norm")
    return y


def softmax(em: Emitter, name: str, x: str, axes: str, sz: Mapping[str, int]) -> str:
    """Numerically safe softmax over the last index of ``axes``: max, subtract, exp, sum, divide."""
    red = axes[:-1]
    mx = em(f"{name}.max", "reduce", f"{axes}->{red}", sz, [x], "softmax")
    sub = em(f"{name}.sub", "binary", f"{axes},{red}->{axes}", sz, [x, mx], "softmax")
    ex = em(f"{name}.exp", "unary", f"{axes}->{axes}", sz, [sub], "softmax")
    sm = em(f"{name}.sum", "reduce", f"{axes}->{red}", sz, [ex], "softmax")
    return em(f"{name}.div", "binary", f"{axes},{red}->{axes}", sz, [ex, sm], "softmax")


def activation(em: Emitter, name: str, kind: str, x: str, axes: str, sz: Mapping[str, int]) -> str:
    """silu = sigmoid then multiply (2 ops); gelu and relu are one unary each."""
    if kind == "silu":
        sig = em(f"{name}.sig", "unary", f"{axes}->{axes}", sz, [x], "act")
        return em(f"{name}.silu", "binary", f"{axes},{axes}->{axes}", sz, [x, sig], "act")
    return em(f"{name}.{kind}", "unary", f"{axes}->{axes}", sz, [x], "act")


def linear(em: Emitter, name: str, x: str, spec: str, sz: Mapping[str, int], bias: bool, role: str) -> str:
    """Matmul with a weight named ``<name>.w``, plus a bias add when the model has biases."""
    y = em(name, "matmul", spec, sz, [x, em.w(f"{name}.w")], role)
    if bias:
        out = spec.split("->")[1]
        y = em(f"{name}.bias", "binary", f"{out},{out[-1]}->{out}", sz, [y, em.w(f"{name}.b")], role)
    return y


#: name endings of trainable parameters: linear weights and biases, norm scales (``.w``/``.g``) and shifts
WEIGHT_SUFFIXES = (".w", ".b", ".g")


def trainable_weights(ops: Sequence[Operator], extra: Sequence[str] = ()) -> frozenset[str]:
    """The trainable parameters among the HBM inputs of ``ops``: names ending like a weight, plus ``extra``.

    Why by name: the builders name every parameter ``<op>.w``/``.b``/``.g`` (:meth:`Emitter.w`), while the
    other HBM inputs (token vectors, KV caches, RoPE tables, masks) have names of their own.
    """
    produced = {op.output.tensor for op in ops}
    return frozenset(o.tensor for op in ops for o in op.inputs
                     if o.tensor not in produced and (o.tensor.endswith(WEIGHT_SUFFIXES) or o.tensor in extra))


def layer_period(values: Sequence[object]) -> int:
    """Shortest period p dividing len(values) with values[i] == values[i % p]."""
    n = len(values)
    for p in range(1, n + 1):
        if n % p == 0 and all(values[i] == values[i % p] for i in range(n)):
            return p
    return n  # pragma: no cover - p = n always qualifies


# ---------------------------------------------------------------------------
# decoder-only language models
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    """Index lengths of one program; attention letters differ between decode and train."""

    cfg: ArchConfig
    batch: int
    seq: int
    train: bool

    @property
    def tokens(self) -> int:
        return self.batch * self.seq if self.train else self.batch

    def sizes(self, kv_len: int) -> dict[str, int]:
        c = self.cfg
        return {"t": self.tokens, "e": c.hidden, "q": c.qkv_width, "b": self.batch, "k": c.kv_heads,
                "g": c.group, "d": c.head_dim, "s": self.seq if self.train else kv_len, "z": self.seq,
                "i": c.heads * c.head_dim, "j": c.kv_heads * c.head_dim, "v": c.vocab}


def _norm(em: Emitter, cfg: ArchConfig, name: str, x: str, sz: Mapping[str, int]) -> str:
    return rms_norm(em, name, x, sz) if cfg.norm == "rms" else layer_norm(em, name, x, sz)


def _rope(em: Emitter, name: str, qkv: str, axes: str, table: str, sz: Mapping[str, int]) -> str:
    """x*cos + rotate_half(x)*sin: slice, mul cos, half swap, negate, mul sin, add (6 ops)."""
    full = f"{axes},{table}->{axes}"
    x = em(f"{name}", "slice", f"{axes}->{axes}", sz, [qkv], "rope")
    xc = em(f"{name}.cos", "binary", full, sz, [x, "rope.cos"], "rope")
    xr = em(f"{name}.rot", "slice", f"{axes}->{axes}", sz, [x], "rope")
    xn = em(f"{name}.neg", "unary", f"{axes}->{axes}", sz, [xr], "rope")
    xs = em(f"{name}.sin", "binary", full, sz, [xn, "rope.sin"], "rope")
    return em(f"{name}.rope", "binary", f"{axes},{axes}->{axes}", sz, [xc, xs], "rope")


def _attention(em: Emitter, shape: _Shape, layer: int, x: str, sz: Mapping[str, int]) -> str:
    """From the normed input to the attention output projection (before the residual)."""
    cfg = shape.cfg
    qkv = linear(em, "qkv", x, "te,eq->tq", sz, cfg.biases, "qkv")
    if shape.train:  # queries over s, keys over z, K/V are activations sliced from qkv
        q_ax, k_ax, sc_ax = "bkgsd", "bkzd", "bkgsz"
        v = em("v", "slice", "bkzd->bkzd", sz, [qkv], "qkv")
        q_tab, k_tab = "sd", "zd"
    else:  # one new query per sequence; K/V come from the cache in HBM
        q_ax, k_ax, sc_ax = "bkgd", "bkd", "bkgs"
        v = em("v", "slice", "tj->tj", sz, [qkv], "qkv")
        q_tab = k_tab = "bd"
    if cfg.learned_positions:
        q = em("q", "slice", f"{q_ax}->{q_ax}", sz, [qkv], "qkv")
        k = em("k", "slice", f"{k_ax}->{k_ax}", sz, [qkv], "qkv")
    else:
        q = _rope(em, "q", qkv, q_ax, q_tab, sz)
        k = _rope(em, "k", qkv, k_ax, k_tab, sz)
    if shape.train:
        keys, values = k, v
        ctx_spec = "bkgsz,bkzd->bkgsd"
    else:
        em.appended += [k, v]
        keys, values = em.w("kcache"), em.w("vcache")
        ctx_spec = "bkgs,bksd->bkgd"
    scores = em("scores", "matmul", f"{q_ax},{'bkzd' if shape.train else 'bksd'}->{sc_ax}", sz,
                [q, keys], "attn")
    y = em("scale", "unary", f"{sc_ax}->{sc_ax}", sz, [scores], "attn")
    if cfg.attn_softcap:  # tanh(s / cap) * cap, the 1/cap folded into the scale
        y = em("cap.tanh", "unary", f"{sc_ax}->{sc_ax}", sz, [y], "attn")
        y = em("cap.mul", "unary", f"{sc_ax}->{sc_ax}", sz, [y], "attn")
    if shape.train:
        mask = "attn.mask.local" if cfg.kv_length(layer, shape.seq) < shape.seq else "attn.mask"
        y = em("mask", "binary", f"{sc_ax},sz->{sc_ax}", sz, [y, mask], "attn")
    p = softmax(em, "softmax", y, sc_ax, sz)
    ctx = em("ctx", "matmul", ctx_spec, sz, [p, values], "attn")
    out = linear(em, "o", ctx, "ti,ie->te", sz, cfg.biases, "proj")
    return rms_norm(em, "post_attn_norm", out, sz) if cfg.post_norms else out


def _mlp(em: Emitter, cfg: ArchConfig, x: str, sz: Mapping[str, int]) -> str:
    if cfg.gated:  # fused gate+up, then act(gate) * up
        gu = linear(em, "gate_up", x, "te,ef->tf", {**sz, "f": 2 * cfg.ffn}, cfg.biases, "ffn")
        fsz = {**sz, "f": cfg.ffn}
        g = em("gate", "slice", "tf->tf", fsz, [gu], "ffn")
        u = em("up", "slice", "tf->tf", fsz, [gu], "ffn")
        h = em("glu", "binary", "tf,tf->tf", fsz, [activation(em, "act", cfg.activation, g, "tf", fsz), u], "ffn")
    else:
        fsz = {**sz, "f": cfg.ffn}
        h = activation(em, "act", cfg.activation, linear(em, "fc1", x, "te,ef->tf", fsz, cfg.biases, "ffn"),
                       "tf", fsz)
    out = linear(em, "down" if cfg.gated else "fc2", h, "tf,fe->te", {**sz, "f": cfg.ffn}, cfg.biases, "ffn")
    return rms_norm(em, "post_ffn_norm", out, sz) if cfg.post_norms else out


def build_llm(cfg: ArchConfig, batch: int, seq: int, mode: str,
              bytes_per_element: int = 2, kv_append: bool = False) -> tuple[list[Operator], dict]:
    """Operators of one decode step (``mode='decode'``) or one full-sequence forward ('train').

    ``kv_append`` (decode): the new token's key and value of every layer are written to the KV cache in HBM
    (stores, docs/design.md §5.2); without it, as in the Elk paper, the step reads the cache and writes nothing.
    Returns the ops and the meta entries the builder knows about.
    """
    if cfg.family not in ("llama", "opt", "gemma2"):
        raise ModelConfigError(f"model {cfg.name}: family {cfg.family} is not a decoder-only LLM")
    shape = _Shape(cfg, batch, seq, mode != "decode")
    kv = [cfg.kv_length(i, seq) for i in range(cfg.layers)]
    # train attends over the full sequence with a banded mask, so every layer has the same shape
    period = 1 if shape.train else layer_period(kv)
    em = Emitter(bytes_per_element)
    base = shape.sizes(seq)

    # preamble: whatever puts the layer-0 input on chip, so layer 0 looks like every other layer
    x = "embed"
    if cfg.embed_scale:
        x = em("embed.scale", "unary", "te->te", base, [x], "embed")
    elif cfg.learned_positions:
        x = em("embed.pos", "binary", "te,te->te", base, [x, "pos_embed"], "embed")
    else:  # Llama has no op here; a load of the token vectors stands in for the dropped lookup
        x = em("embed.load", "slice", "te->te", base, [x], "embed")

    for i in range(cfg.layers):
        sz = shape.sizes(kv[i])
        with em.scope(f"l{i}.", i // period):
            h = em("attn_res", "binary", "te,te->te", sz,
                   [_attention(em, shape, i, _norm(em, cfg, "attn_norm", x, sz), sz), x], "residual")
            x = em("ffn_res", "binary", "te,te->te", sz,
                   [_mlp(em, cfg, _norm(em, cfg, "ffn_norm", h, sz), sz), h], "residual")

    with em.scope("final."):
        y = em("lm_head", "matmul", "te,ev->tv", base, [_norm(em, cfg, "norm", x, base), "lm_head"], "head")
        if cfg.final_softcap:
            y = em("cap.tanh", "unary", "tv->tv", base, [y], "head")
            em("cap.mul", "unary", "tv->tv", base, [y], "head")
    meta = {"tokens": shape.tokens, "layer_period": period,
            "kv_lengths": sorted(set(kv)) if not shape.train else [seq]}
    if kv_append and not shape.train:
        appended = set(em.appended)
        meta["kv_append"] = True
        return [replace(op, store=True) if op.output.tensor in appended else op for op in em.ops], meta
    return em.ops, meta
