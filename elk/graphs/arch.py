"""Model architectures as data, read from Hugging Face style ``config.json`` files.

Elk only needs the shapes and the few structural switches that change which
operators a layer has (gated FFN, norm kind, biases, soft-capping, sliding
windows). Everything else in a public config (token ids, dropout, dtype) is
ignored, so a config downloaded from the Hub can be used as it is.

Keys are read the way the matching ``transformers`` class reads them, which is
why each family has its own small reader: OPT says ``ffn_dim`` where Llama says
``intermediate_size``, DiT says ``depth`` where both say ``num_hidden_layers``.
An optional ``_elk`` object may add a display name and aliases; HF ignores it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from elk.errors import ModelConfigError

FAMILIES = ("llama", "opt", "gemma2", "dit")

#: model_type -> family; the aliases differ from their family only in keys we read.
MODEL_TYPES = {"llama": "llama", "mistral": "llama", "opt": "opt",
               "gemma2": "gemma2", "gemma": "gemma2", "dit": "dit"}

#: HF activation names -> how many operators elk emits for them (see build_llm).
ACTIVATIONS = {"silu": "silu", "swish": "silu", "relu": "relu",
               "gelu": "gelu", "gelu_new": "gelu", "gelu_fast": "gelu",
               "gelu_pytorch_tanh": "gelu", "gelu_tanh": "gelu", "gelu-approximate": "gelu"}


@dataclass(frozen=True)
class ArchConfig:
    """The shape of one model; enough to emit its operators, nothing more.

    ``sliding`` has one flag per decoder layer (True = the layer attends over
    at most ``sliding_window`` cached tokens) because Gemma 2 alternates local
    and global layers while Mistral windows every layer.
    """

    name: str
    family: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int = 0
    activation: str = "silu"
    gated: bool = True
    norm: str = "rms"
    biases: bool = False
    learned_positions: bool = False
    post_norms: bool = False
    embed_scale: bool = False
    sliding_window: int | None = None
    sliding: tuple[bool, ...] = ()
    attn_softcap: float | None = None
    final_softcap: float | None = None
    display_name: str = ""
    source: str = ""
    # DiT only
    input_size: int = 0
    patch_size: int = 0
    in_channels: int = 0
    out_channels: int = 0
    num_classes: int = 0
    freq_dim: int = 256

    @property
    def group(self) -> int:
        """Query heads per KV head (1 for multi-head attention)."""
        return self.heads // self.kv_heads

    @property
    def qkv_width(self) -> int:
        """Width of the fused QKV projection: query heads plus key and value heads, times the head size."""
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    @property
    def tokens_per_image(self) -> int:
        """DiT latent patches per image."""
        side = self.input_size // self.patch_size if self.patch_size else 0
        return side * side

    def kv_length(self, layer: int, seq: int) -> int:
        """Cached tokens layer ``layer`` attends over when the context is ``seq`` long."""
        if self.sliding_window and self.sliding and self.sliding[layer]:
            return min(seq, self.sliding_window)
        return seq

    def decoder_weight_params(self) -> int:
        """Weights a decode step streams from HBM for its matmuls (no embedding table).

        Why here: tests and reports compare HBM traffic against this number.
        """
        e, a, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = e * (a + 2 * kv) + a * e
        mlp = e * self.ffn * (3 if self.gated else 2)
        return self.layers * (attn + mlp) + e * self.vocab


# ---------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------
class _Reader:
    """Typed access to one config mapping with messages that name the source and key."""

    def __init__(self, mapping: Mapping[str, Any], source: str) -> None:
        self.m = mapping
        self.source = source

    def fail(self, message: str) -> ModelConfigError:
        return ModelConfigError(f"{self.source}: {message}")

    def has(self, key: str) -> bool:
        return self.m.get(key) is not None

    def pos_int(self, key: str, default: int | None = None) -> int:
        if key not in self.m or self.m[key] is None:
            if default is None:
                raise self.fail(f"missing key '{key}'")
            return default
        value = self.m[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(f"'{key}' must be a positive integer, got {value!r}")
        return value

    def pos_number(self, key: str) -> float | None:
        value = self.m.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.fail(f"'{key}' must be a positive number or null, got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.m.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false, got {value!r}")
        return value

    def activation(self, *keys: str, default: str) -> str:
        key = next((k for k in keys if self.has(k)), None)
        value = self.m[key] if key else default
        if not isinstance(value, str) or value not in ACTIVATIONS:
            raise self.fail(f"'{key or keys[0]}' = {value!r} is not a supported activation "
                            f"(supported: {', '.join(sorted(ACTIVATIONS))})")
        return ACTIVATIONS[value]

    def head_dim(self, hidden: int, heads: int, key: str = "head_dim") -> int:
        if self.has(key):
            return self.pos_int(key)
        if hidden % heads:
            raise self.fail(f"'hidden_size' {hidden} is not divisible by 'num_attention_heads' {heads} "
                            f"and no '{key}' is given")
        return hidden // heads

    def kv_heads(self, heads: int) -> int:
        kv = self.pos_int("num_key_value_heads", heads)
        if heads % kv:
            raise self.fail(f"'num_attention_heads' {heads} is not divisible by 'num_key_value_heads' {kv}")
        return kv


def _sliding_flags(r: _Reader, layers: int, pattern: Callable[[int], bool]) -> tuple[int | None, tuple[bool, ...]]:
    """Window size and per-layer flags; HF's newer ``layer_types`` list wins over the family default."""
    if not r.has("sliding_window"):
        return None, ()
    window = r.pos_int("sliding_window")
    types = r.m.get("layer_types")
    if types is None:
        return window, tuple(pattern(i) for i in range(layers))
    if not isinstance(types, list) or len(types) != layers:
        raise r.fail(f"'layer_types' must be a list of {layers} entries")
    known = {"sliding_attention": True, "full_attention": False}
    if any(t not in known for t in types):
        raise r.fail(f"'layer_types' entries must be one of {', '.join(known)}")
    return window, tuple(known[t] for t in types)


def _common(r: _Reader, name: str, display: str) -> dict[str, Any]:
    return {"name": name, "display_name": display or name, "source": r.source}


def _llama(r: _Reader, model_type: str, name: str, display: str) -> ArchConfig:
    hidden, layers = r.pos_int("hidden_size"), r.pos_int("num_hidden_layers")
    heads = r.pos_int("num_attention_heads")
    window, sliding = (_sliding_flags(r, layers, lambda i: True) if model_type == "mistral"
                       else (None, ()))
    return ArchConfig(
        family="llama", hidden=hidden, layers=layers, heads=heads, kv_heads=r.kv_heads(heads),
        head_dim=r.head_dim(hidden, heads), ffn=r.pos_int("intermediate_size"),
        vocab=r.pos_int("vocab_size"), activation=r.activation("hidden_act", default="silu"),
        gated=True, norm="rms", biases=r.flag("attention_bias", False),
        sliding_window=window, sliding=sliding, **_common(r, name, display))


def _opt(r: _Reader, model_type: str, name: str, display: str) -> ArchConfig:
    hidden, layers = r.pos_int("hidden_size"), r.pos_int("num_hidden_layers")
    heads = r.pos_int("num_attention_heads")
    if not r.flag("do_layer_norm_before", True):
        raise r.fail("'do_layer_norm_before' false (post-norm OPT, e.g. OPT-350M) is not supported")
    proj = r.pos_int("word_embed_proj_dim", hidden)
    if proj != hidden:
        raise r.fail(f"'word_embed_proj_dim' {proj} != 'hidden_size' {hidden} is not supported")
    return ArchConfig(
        family="opt", hidden=hidden, layers=layers, heads=heads, kv_heads=heads,
        head_dim=r.head_dim(hidden, heads), ffn=r.pos_int("ffn_dim"), vocab=r.pos_int("vocab_size"),
        activation=r.activation("activation_function", default="relu"), gated=False, norm="layer",
        biases=r.flag("enable_bias", True), learned_positions=True, **_common(r, name, display))


def _gemma(r: _Reader, model_type: str, name: str, display: str) -> ArchConfig:
    hidden, layers = r.pos_int("hidden_size"), r.pos_int("num_hidden_layers")
    heads = r.pos_int("num_attention_heads")
    v2 = model_type == "gemma2"
    window, sliding = _sliding_flags(r, layers, lambda i: i % 2 == 0) if v2 else (None, ())
    return ArchConfig(
        family="gemma2", hidden=hidden, layers=layers, heads=heads, kv_heads=r.kv_heads(heads),
        head_dim=r.head_dim(hidden, heads), ffn=r.pos_int("intermediate_size"),
        vocab=r.pos_int("vocab_size"),
        activation=r.activation("hidden_activation", "hidden_act", default="gelu_pytorch_tanh"),
        gated=True, norm="rms", biases=r.flag("attention_bias", False), post_norms=v2, embed_scale=True,
        sliding_window=window, sliding=sliding, attn_softcap=r.pos_number("attn_logit_softcapping"),
        final_softcap=r.pos_number("final_logit_softcapping"), **_common(r, name, display))


def _dit(r: _Reader, model_type: str, name: str, display: str) -> ArchConfig:
    hidden, heads = r.pos_int("hidden_size"), r.pos_int("num_heads")
    input_size, patch = r.pos_int("input_size"), r.pos_int("patch_size")
    if input_size % patch:
        raise r.fail(f"'input_size' {input_size} is not divisible by 'patch_size' {patch}")
    if hidden % heads:
        raise r.fail(f"'hidden_size' {hidden} is not divisible by 'num_heads' {heads}")
    ratio = r.m.get("mlp_ratio", 4.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0 \
            or hidden * ratio != int(hidden * ratio):
        raise r.fail(f"'mlp_ratio' must be a positive number giving a whole FFN width, got {ratio!r}")
    channels = r.pos_int("in_channels")
    return ArchConfig(
        family="dit", hidden=hidden, layers=r.pos_int("depth"), heads=heads, kv_heads=heads,
        head_dim=hidden // heads, ffn=int(hidden * ratio),
        activation=r.activation("hidden_act", default="gelu_pytorch_tanh"), gated=False, norm="layer",
        biases=False, input_size=input_size, patch_size=patch, in_channels=channels,
        out_channels=channels * (2 if r.flag("learn_sigma", True) else 1),
        num_classes=r.pos_int("num_classes", 1000), freq_dim=r.pos_int("frequency_embedding_size", 256),
        **_common(r, name, display))


_READERS = {"llama": _llama, "opt": _opt, "gemma2": _gemma, "dit": _dit}


def parse_config(mapping: Mapping[str, Any], source: str, name: str | None = None) -> ArchConfig:
    """Validate an HF-style config mapping; ``source`` (a file or model name) prefixes every error.

    ``name`` defaults to ``_elk.name``, then to the stem of ``source``.
    """
    if not isinstance(mapping, Mapping):
        raise ModelConfigError(f"{source}: a model config must be a JSON object, got {type(mapping).__name__}")
    r = _Reader(mapping, source)
    extra = mapping.get("_elk") or {}
    if not isinstance(extra, Mapping):
        raise r.fail("'_elk' must be an object")
    if "model_type" not in mapping:
        raise r.fail("missing key 'model_type'")
    model_type = mapping["model_type"]
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise r.fail(f"unknown model_type {model_type!r} (supported: {', '.join(MODEL_TYPES)})")
    if name is None:
        name = extra.get("name") or _name_from_source(source)
    display = str(extra.get("display_name", ""))
    return _READERS[MODEL_TYPES[model_type]](r, model_type, str(name), display)


def _name_from_source(source: str) -> str:
    path = Path(source)
    # HF snapshots are <model>/config.json: the folder is the useful name
    return path.parent.name if path.stem == "config" and path.parent.name else path.stem


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object file, turning every way it can be wrong into one ModelConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # (a byte-order mark some editors write is dropped)
    except FileNotFoundError:
        raise ModelConfigError(f"{path}: model config file not found") from None
    except IsADirectoryError:
        raise ModelConfigError(f"{path}: is a directory, expected a config.json file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{path}: cannot read model config ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # str(exc), not exc.msg: "Unterminated string starting at: line 8 column 3"
        raise ModelConfigError(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: a model config must be a JSON object, got {type(data).__name__}")
    return data


def load_config_file(path: str | Path, name: str | None = None) -> ArchConfig:
    """Parse one ``config.json``; a directory means its ``config.json`` (an HF snapshot)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    return parse_config(read_json(path), str(path), name)
