"""The model zoo: every config builds, layers repeat, and HBM bytes / FLOPs match hand counts."""
from __future__ import annotations

import json

from pathlib import Path

import pytest

from elk.graphs.arch import load_config_file, parse_config
from elk.errors import ModelConfigError
from elk.graphs.zoo import build_program, list_models, resolve_model, zoo_dir

EXPECTED_LAYERS = {"llama2-13b": 40, "llama2-70b": 80, "opt-30b": 48, "gemma2-27b": 46,
                   "dit-xl-2": 28, "tiny": 2}
GB = 1e9


def kcache_bytes(program) -> dict[int, int]:
    """HBM bytes of each layer's K cache read, keyed by the layer number in the tensor name."""
    out = {}
    for op in program.ops:
        for o in op.inputs:
            if o.tensor.endswith(".kcache"):
                out[int(o.tensor.split(".")[0][1:])] = op.tensor_elements(o) * op.bytes_per_element
    return out


def test_zoo_lists_every_model():
    assert zoo_dir().name == "models"
    assert set(EXPECTED_LAYERS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYERS))
def test_every_model_builds_with_repeated_layers(name, record_property):
    mode = "forward" if name.startswith("dit") else "decode"
    program = build_program(name, batch=2, seq=64, mode=mode)
    layers = program.layers
    assert layers is not None and layers.count == EXPECTED_LAYERS[name]
    per_layer = {op.layer: 0 for op in program.ops if op.layer is not None}
    for op in program.ops:
        if op.layer is not None:
            per_layer[op.layer] += 1
    assert set(per_layer.values()) == {layers.length}
    assert program.name == name
    for key in ("model", "family", "mode", "batch", "seq"):
        assert key in program.meta
    record_property("operators", len(program.ops))
    record_property("operators_per_layer", layers.length)
    print(f"{name}: {len(program.ops)} ops, {layers.length} per layer")


@pytest.mark.parametrize("name", ["tiny", "opt-30b", "gemma2-27b", "dit-xl-2"])
def test_forward_mode_builds(name):
    program = build_program(name, batch=2, seq=128, mode="forward")
    assert program.layers is not None and program.layers.count == EXPECTED_LAYERS[name]


def test_llama2_13b_decode_hbm_bytes():
    program = build_program("llama2-13b", batch=32, seq=2048)
    cfg = resolve_model("llama2-13b")
    kv = 2 * 40 * 32 * 40 * 2048 * 128 * 2
    weights = cfg.decoder_weight_params() * 2
    assert sum(kcache_bytes(program).values()) * 2 == kv
    assert weights == pytest.approx(25.7 * GB, rel=0.01)
    assert program.hbm_bytes == pytest.approx(79.6 * GB, rel=0.01)
    assert program.hbm_bytes == pytest.approx(weights + kv, rel=0.01)


def test_llama2_13b_decode_flops():
    program = build_program("llama2-13b", batch=32, seq=2048)
    cfg = resolve_model("llama2-13b")
    attention = 2 * 2 * 32 * 40 * 2048 * 128 * 40  # scores + context, every layer
    assert program.flops == pytest.approx(2 * cfg.decoder_weight_params() * 32 + attention, rel=0.03)


def test_llama2_70b_kv_uses_kv_heads():
    program = build_program("llama2-70b", batch=32, seq=2048)
    per_layer = kcache_bytes(program)
    assert len(per_layer) == 80
    assert set(per_layer.values()) == {32 * 8 * 2048 * 128 * 2}


def test_gemma2_sliding_window_layers():
    program = build_program("gemma2-27b", batch=4, seq=8192)
    per_layer = kcache_bytes(program)
    assert {i: b // (4 * 16 * 128 * 2) for i, b in per_layer.items() if i < 4} == \
        {0: 4096, 1: 8192, 2: 4096, 3: 8192}
    # local and global layers alternate, so one repeated block is a pair of layers
    assert program.meta["layer_period"] == 2
    assert program.layers is not None and program.layers.count == 23
    short = build_program("gemma2-27b", batch=4, seq=2048)
    assert short.meta["layer_period"] == 1 and short.layers.count == 46


def test_hf_config_file_builds(tmp_path):
    config = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1376,
              "num_hidden_layers": 3, "num_attention_heads": 8, "vocab_size": 5000}
    path = tmp_path / "my-model" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    program = build_program(str(path), batch=2, seq=32)
    assert program.name == "my-model"
    assert program.layers.count == 3
    assert build_program(path.parent, batch=2, seq=32).name == "my-model"


@pytest.mark.parametrize("alias,name", [("llama2-13", "llama2-13b"), ("Llama-2-13B", "llama2-13b"),
                                        ("dit-xl", "dit-xl-2"), ("gemma-2-27b", "gemma2-27b")])
def test_aliases(alias, name):
    assert resolve_model(alias).name == name


def _cfg(**changes):
    base = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("config,needle", [
    (_cfg(hidden_size=None), "hidden_size"),
    (_cfg(hidden_size=0), "hidden_size"),
    (_cfg(hidden_size=-4), "hidden_size"),
    (_cfg(num_key_value_heads=3), "num_key_value_heads"),
    (_cfg(model_type="bert"), "bert"),
    (_cfg(model_type=None), "model_type"),
    (_cfg(hidden_act="tanhshrink"), "hidden_act"),
])
def test_bad_configs_name_the_key(config, needle):
    with pytest.raises(ModelConfigError, match=needle) as err:
        parse_config(config, "cfg.json")
    assert "cfg.json" in str(err.value)


def test_unknown_model_type_lists_supported():
    with pytest.raises(ModelConfigError, match="supported: .*llama.*gemma2"):
        parse_config(_cfg(model_type="bert"), "x.json")


def test_unknown_model_lists_known():
    with pytest.raises(ModelConfigError, match="no-such-model.*llama2-13b"):
        build_program("no-such-model")


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"model_type\": ")
    with pytest.raises(ModelConfigError, match="bad.json.*malformed JSON"):
        build_program(str(bad))
    cut = tmp_path / "cut.json"  # an unterminated string: the message says where it starts, whole
    cut.write_text('{"model_type": "llama",\n "hidden_act": "si')
    with pytest.raises(ModelConfigError) as info:
        load_config_file(cut)
    assert str(info.value) == f"{cut}: malformed JSON: Unterminated string starting at: line 2 column 16 (char 39)"
    bom = tmp_path / "bom.json"  # saved with a byte-order mark: read like any other
    bom.write_bytes(b"\xef\xbb\xbf" + (Path(__file__).parents[1] / "models" / "tiny.json").read_bytes())
    assert load_config_file(bom).family == "llama"
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ModelConfigError, match="list.json.*JSON object"):
        load_config_file(listed)
    with pytest.raises(ModelConfigError, match="missing.json.*not found"):
        build_program(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("kwargs,needle", [
    ({"mode": "prefill"}, "prefill"),
    ({"batch": 0}, "batch"),
    ({"seq": -1}, "seq"),
    ({"batch": 2.5}, "batch"),
    ({"bytes_per_element": 3}, "bytes_per_element"),
])
def test_bad_build_arguments(kwargs, needle):
    with pytest.raises(ModelConfigError, match=needle):
        build_program("tiny", **kwargs)


def test_size_one_indices_are_dropped():
    # multi-head attention has no group index; with batch 1 only ops whose output would become
    # a scalar keep their length-1 indices
    program = build_program("llama2-13b", batch=1, seq=16)
    for op in program.ops:
        lengths = op.lengths
        if 1 in lengths.values():
            assert all(lengths[i] == 1 for i in op.output.indices), op.describe()
    assert program.layers.count == 40
    scores = next(op for op in build_program("llama2-13b", batch=2, seq=16).ops if op.name == "l0.scores")
    # b and k (= heads) appear in every operand, so they are fused into one batch index X = b * k
    assert dict(scores.sizes) == {"X": 2 * 40, "s": 16, "d": 128}
