"""Diffusion Transformers (DiT, Peebles & Xie 2023) as operator lists: one forward pass.

A diffusion sampler runs this pass once per denoising step, so "decode",
"forward" and "train" all mean the same program here: B latent images of
``input_size``² x ``in_channels``, patchified into ``tokens_per_image`` tokens.

The conditioning vector c (timestep MLP + class embedding) is computed before
the patch embedding on purpose: each block starts by reading c, and with this
order c is an older activation (off chip) for block 0 exactly as for every
later block, so all blocks have identical signatures and
:attr:`elk.ir.Program.layers` finds them. Linear biases are left out (they
are a rounding error in both bytes and FLOPs); the class-label lookup is an
input ``y_emb`` like the LLMs' token embedding.
"""
from __future__ import annotations

from elk.graphs.arch import ArchConfig
from elk.graphs.build_llm import Emitter, activation, layer_norm, softmax
from elk.errors import ModelConfigError
from elk.ir import Operator


def _modulate(em: Emitter, name: str, x: str, mod: str, sz: dict[str, int]) -> str:
    """x * (1 + scale) + shift, each reading its region of the block's modulation tensor."""
    y = em(f"{name}.scale", "binary", "bne,be->bne", sz, [x, mod], "adaln")
    return em(f"{name}.shift", "binary", "bne,be->bne", sz, [y, mod], "adaln")


def _adaln(em: Emitter, c: str, width: int, sz: dict[str, int]) -> str:
    """silu(c) then the modulation matmul to ``width`` (6E in blocks, 2E in the final layer)."""
    s = activation(em, "ada", "silu", c, "be", sz)
    return em("ada.mod", "matmul", "be,ef->bf", {**sz, "f": width}, [s, em.w("ada.w")], "adaln")


def build_dit(cfg: ArchConfig, batch: int, bytes_per_element: int = 2) -> tuple[list[Operator], dict]:
    """Operators of one DiT forward pass over ``batch`` images, and the builder's meta entries."""
    if cfg.family != "dit":
        raise ModelConfigError(f"model {cfg.name}: family {cfg.family} is not a DiT")
    n = cfg.tokens_per_image
    side, e = cfg.input_size // cfg.patch_size, cfg.hidden
    sz = {"b": batch, "n": n, "t": batch * n, "e": e, "h": cfg.heads, "d": cfg.head_dim,
          "p": n, "q": n, "i": cfg.heads * cfg.head_dim}
    em = Emitter(bytes_per_element)

    with em.scope("embed."):  # conditioning first, see the module docstring
        h = em("t_fc1", "matmul", "bf,fe->be", {**sz, "f": cfg.freq_dim}, ["t_freq", em.w("t_fc1.w")], "embed")
        h = activation(em, "t_act", "silu", h, "be", sz)
        h = em("t_fc2", "matmul", "bi,ie->be", {**sz, "i": e}, [h, em.w("t_fc2.w")], "embed")
        c = em("c", "binary", "be,be->be", sz, [h, "y_emb"], "embed")
        # patchify: a stride = kernel convolution, so each output token reads one disjoint patch of
        # c x r x s latent values; fusing (c, r, s) into k and the patch grid into n keeps the same
        # work and bytes with 4 indices instead of 7 (7 would explode the plan space)
        conv = {"b": batch, "n": side * side, "k": cfg.in_channels * cfg.patch_size ** 2, "e": e}
        x = em("patch", "conv", "bnk,ek->ben", conv, ["latent", em.w("patch.w")], "embed")
        x = em("pos", "binary", "bne,ne->bne", sz, [x, "pos_embed"], "embed")

    for i in range(cfg.layers):
        with em.scope(f"l{i}.", i):
            mod = _adaln(em, c, 6 * e, sz)
            y = _modulate(em, "mod1", layer_norm(em, "norm1", x, sz, affine=False), mod, sz)
            qkv = em("qkv", "matmul", "te,ef->tf", {**sz, "f": 3 * e}, [y, em.w("qkv.w")], "qkv")
            v = em("v", "slice", "bhqd->bhqd", sz, [qkv], "qkv")
            q = em("q", "slice", "bhpd->bhpd", sz, [qkv], "qkv")
            k = em("k", "slice", "bhqd->bhqd", sz, [qkv], "qkv")
            s = em("scores", "matmul", "bhpd,bhqd->bhpq", sz, [q, k], "attn")
            p = softmax(em, "softmax", em("scale", "unary", "bhpq->bhpq", sz, [s], "attn"), "bhpq", sz)
            ctx = em("ctx", "matmul", "bhpq,bhqd->bhpd", sz, [p, v], "attn")
            a = em("proj", "matmul", "ti,ie->te", sz, [ctx, em.w("proj.w")], "proj")
            a = em("gate1", "binary", "bne,be->bne", sz, [a, mod], "adaln")
            h = em("attn_res", "binary", "bne,bne->bne", sz, [a, x], "residual")
            y = _modulate(em, "mod2", layer_norm(em, "norm2", h, sz, affine=False), mod, sz)
            fsz = {**sz, "f": cfg.ffn}
            y = em("fc1", "matmul", "te,ef->tf", fsz, [y, em.w("fc1.w")], "ffn")
            y = activation(em, "act", cfg.activation, y, "tf", fsz)
            y = em("fc2", "matmul", "tf,fe->te", fsz, [y, em.w("fc2.w")], "ffn")
            y = em("gate2", "binary", "bne,be->bne", sz, [y, mod], "adaln")
            x = em("ffn_res", "binary", "bne,bne->bne", sz, [y, h], "residual")

    with em.scope("final."):
        mod = _adaln(em, c, 2 * e, sz)
        y = _modulate(em, "mod", layer_norm(em, "norm", x, sz, affine=False), mod, sz)
        width = cfg.patch_size * cfg.patch_size * cfg.out_channels
        em("linear", "matmul", "te,eo->to", {**sz, "o": width}, [y, em.w("linear.w")], "head")
    return em.ops, {"tokens": batch * n, "tokens_per_image": n, "layer_period": 1}
