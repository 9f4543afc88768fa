"""The model zoo and the front door from a model name to a :class:`~elk.ir.Program`.

The zoo is a folder of HF-style ``config.json`` files (``models/*.json``), not
Python: adding a model means dropping in its public config. A user may also
pass a path to any config.json (or an HF snapshot folder holding one), or to
one of the Elk artifact's graph files: a ``.json`` whose content is a JSON list
of einstein_v2 nodes rather than an object (:mod:`elk.graphs.artifact`).
"""
from __future__ import annotations

import re
import sysconfig
from pathlib import Path
from typing import Mapping

from elk.graphs.arch import ArchConfig, load_config_file, read_json
from elk.graphs.artifact import is_artifact_graph, load_artifact_graph
from elk.graphs.build_dit import build_dit
from elk.graphs.build_llm import build_llm, trainable_weights
from elk.graphs.onnx_read import is_onnx_path
from elk.graphs.training import TrainingOptions, training_step
from elk.errors import ModelConfigError
from elk.ir import Program

#: "decode": one generated token per sequence against an S-long KV cache.
#: "forward": one full-sequence forward pass (the Elk paper's training proxy; for DiT one denoising step).
#: "train": one training step, that forward pass plus its backward and the optimizer update (docs/design.md §9.1).
MODES = ("decode", "train", "forward")


def zoo_dir() -> Path:
    """The ``models/`` folder: the checkout's (editable install) first, then the installed copy."""
    candidates = [Path(__file__).resolve().parents[2] / "models",
                  Path(sysconfig.get_paths()["data"]) / "share" / "elk" / "models"]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.json")):
            return folder
    raise ModelConfigError("model zoo not found (looked in " + ", ".join(str(c) for c in candidates) + ")")


def list_models() -> list[str]:
    """Zoo model names (config file stems), sorted."""
    return sorted(p.stem for p in zoo_dir().glob("*.json"))


def _key(name: str) -> str:
    """Spelling-insensitive key: lower case, alphanumerics only, a size's trailing 'b' optional."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return re.sub(r"(\d)b$", r"\1", key)


def _aliases() -> dict[str, str]:
    """Lookup key -> zoo name, from each file's stem and its ``_elk.aliases`` list."""
    table: dict[str, str] = {}
    for path in sorted(zoo_dir().glob("*.json")):
        extra = read_json(path).get("_elk") or {}
        names = [path.stem, *(extra.get("aliases") or [])] if isinstance(extra, dict) else [path.stem]
        for alias in names:
            table.setdefault(_key(str(alias)), path.stem)
    return table


def _looks_like_path(name: str) -> bool:
    return name.endswith(".json") or Path(name).exists() or name.startswith((".", "/", "~"))


def artifact_graph_path(model: object) -> Path | None:
    """The path when ``model`` names an Elk artifact graph file (a JSON list), else None."""
    if not isinstance(model, (str, Path)) or not (isinstance(model, Path) or _looks_like_path(model)):
        return None
    path = Path(model).expanduser()
    return path if path.is_file() and is_artifact_graph(path) else None


def resolve_model(name_or_path: str | Path) -> ArchConfig:
    """A zoo name or alias (``llama2-13``, ``Llama-2-13b``, ``dit-xl``) or a config path -> config."""
    if is_onnx_path(name_or_path):
        raise ModelConfigError(f"{name_or_path}: an ONNX model has no architecture config; compile it with "
                               f"`elk compile` or build it with elk.graphs.build_program")
    graph = artifact_graph_path(name_or_path)
    if graph is not None:
        raise ModelConfigError(f"{graph}: an Elk artifact graph (a list of einstein_v2 nodes) has no architecture "
                               f"config; compile it with `elk compile` or build it with elk.graphs.build_program")
    if isinstance(name_or_path, Path) or _looks_like_path(str(name_or_path)):
        return load_config_file(Path(name_or_path).expanduser())
    name = str(name_or_path)
    hit = _aliases().get(_key(name))
    if hit is None:
        raise ModelConfigError(f"unknown model '{name}' (known: {', '.join(list_models())}; "
                               f"or give a path to a config.json)")
    return load_config_file(zoo_dir() / f"{hit}.json", name=hit)


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def build_program(model: str | Path | ArchConfig, *, batch: int = 32, seq: int = 2048, mode: str = "decode",
                  bytes_per_element: int = 2, dims: Mapping[str, int] | None = None,
                  training: TrainingOptions | None = None, kv_append: bool = False) -> Program:
    """The operator program of one step of ``model``.

    ``kv_append`` (decode, elk's LLM builders): the step also writes each layer's new key and value to the KV
    cache in HBM (docs/design.md §5.2).

    ``decode``: B new tokens, each attending over an S-token KV cache in HBM.
    ``forward``: the forward pass over B sequences of S tokens. ``train``: one
    training step of that forward pass (:func:`elk.graphs.training.training_step`,
    built as ``training`` says: optimizer, master weights, checkpointing). For a
    DiT, decode and forward are one forward pass over B images (one denoising
    step) and train is its training step; ``seq`` is ignored: the image fixes
    the token count (``meta["seq"]`` reports it).

    ``model`` may also be a path to an Elk artifact graph file, imported by
    :func:`elk.graphs.artifact.load_artifact_graph` (its quirks follow the
    ``ELK_ARTIFACT_QUIRKS`` environment variable).

    A path ending in ``.onnx`` is an ONNX model, imported by
    :func:`elk.graphs.onnx_import.load_onnx`: ``batch``/``seq`` bind its usual
    symbolic dimensions and ``dims`` any other; its element types set the bytes.
    """
    batch = _positive(batch, "batch")
    seq = _positive(seq, "seq")
    if mode not in MODES:
        raise ModelConfigError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if bytes_per_element not in (1, 2, 4):
        raise ModelConfigError(f"bytes_per_element must be 1, 2 or 4, got {bytes_per_element!r}")
    if training is not None and not isinstance(training, TrainingOptions):
        raise ModelConfigError(f"training must be TrainingOptions, got {type(training).__name__}")
    if training is not None and mode != "train":
        raise ModelConfigError(f"training options apply to mode 'train' only, not {mode!r}")
    if kv_append and mode != "decode":
        raise ModelConfigError(f"the KV-cache append belongs to mode 'decode', not {mode!r}")
    if mode == "train":
        forward = build_program(model, batch=batch, seq=seq, mode="forward", bytes_per_element=bytes_per_element,
                                dims=dims)
        if forward.meta.get("mode") == "decode":
            raise ModelConfigError(f"{model}: a decode graph (it reads a KV cache) has no training step")
        return training_step(forward, training or TrainingOptions())
    if kv_append and (is_onnx_path(model) or artifact_graph_path(model) is not None):
        raise ModelConfigError(f"{model}: the KV-cache append is modelled for elk's own LLM builders (a zoo name or "
                               f"a Hugging Face config), not for imported graphs")
    if is_onnx_path(model):
        from elk.graphs.onnx_import import load_onnx
        return load_onnx(Path(model).expanduser(), batch=batch, seq=seq, dims=dims, mode=mode)
    if dims:
        raise ModelConfigError(f"--dim binds the symbolic dimensions of an ONNX model; {model} is not one")
    graph = artifact_graph_path(model)
    if graph is not None:
        return load_artifact_graph(graph, batch=batch, seq=seq, mode=mode, bytes_per_element=bytes_per_element)
    cfg = model if isinstance(model, ArchConfig) else resolve_model(model)
    if cfg.family == "dit":
        if kv_append:
            raise ModelConfigError(f"model {cfg.name}: a DiT has no KV cache to append to")
        ops, extra = build_dit(cfg, batch, bytes_per_element)
        # one denoising step whatever was asked: say what runs, and what was asked that does not apply
        extra["not_applied"] = {k: v for k, v in (("mode", mode), ("seq", seq))
                                if v != {"mode": "forward", "seq": cfg.tokens_per_image}[k]}
        mode, seq = "forward", cfg.tokens_per_image
        weights = trainable_weights(ops)
    else:
        ops, extra = build_llm(cfg, batch, seq, mode, bytes_per_element, kv_append=kv_append)
        weights = trainable_weights(ops, ("lm_head", "pos_embed"))
    meta = {"model": cfg.name, "display_name": cfg.display_name, "family": cfg.family, "mode": mode,
            "batch": batch, "seq": seq, "bytes_per_element": bytes_per_element, "source": cfg.source, **extra}
    return Program.from_ops(cfg.name, ops, meta, weights=weights)
