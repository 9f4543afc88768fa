"""The training step (docs/design.md §9.1): FLOPs, stores and loads, HBM accounting, every model source, bad input.

Program level only for Llama2-13B (building its step takes about a second; its plan tables would take far longer);
plan tables only for tiny programs.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conftest import shared_file, user_error
from elk.errors import ModelConfigError
from elk.graphs.training import CATEGORIES, TrainingOptions, training_step
from elk.graphs.zoo import build_program, zoo_dir
from elk.ir import OpKind, Program, base_tensor, einsum_op

ZOO = zoo_dir()


@lru_cache(maxsize=None)
def step(model: str, batch: int = 2, seq: int = 2048, **options) -> Program:
    return build_program(model, batch=batch, seq=seq, mode="train", training=TrainingOptions(**options))


@lru_cache(maxsize=None)
def forward(model: str, batch: int = 2, seq: int = 2048) -> Program:
    return build_program(model, batch=batch, seq=seq, mode="forward")


def matmul_flops(ops) -> int:
    return sum(op.flops for op in ops if op.kind == OpKind.MATMUL)


def check_step(program: Program) -> None:
    """What every step satisfies: round trips, accounting that sums to the program's totals, phases in order."""
    program.check_round_trips()
    m = program.meta
    assert m["mode"] == "train" and m["step"] == "train"
    assert set(m["hbm_read_bytes"]) == set(CATEGORIES) == set(m["hbm_write_bytes"])
    assert sum(m["hbm_read_bytes"].values()) == program.hbm_bytes
    assert sum(m["hbm_write_bytes"].values()) == program.hbm_write_bytes
    assert m["forward_ops"] + m["backward_ops"] + m["optimizer_ops"] == len(program.ops)
    assert m["forward_flops"] + m["backward_flops"] + m["recompute_flops"] + m["optimizer_flops"] == program.flops
    first_read = {}
    for j, op in enumerate(program.ops):
        for o in op.inputs:
            if o.offchip:
                first_read.setdefault(base_tensor(o.tensor), j)
    for i, op in enumerate(program.ops):
        if op.store and op.role != "optimizer":  # a stored tensor is loaded back, after its producer
            assert op.output.tensor in first_read and first_read[op.output.tensor] > i, op.name
    for s, j in program.round_trips:
        assert s < j and program.ops[s].output.tensor in {base_tensor(o.tensor) for o in program.ops[j].inputs
                                                          if o.offchip}


# ---------------------------------------------------------------------------
# Llama2-13B, B2 S2048
# ---------------------------------------------------------------------------
def test_llama2_13b_step_flops():
    fwd, train = forward("llama2-13b"), step("llama2-13b")
    m = train.meta
    n = m["forward_ops"]
    assert m["forward_flops"] == fwd.flops and n == len(fwd.ops)
    backward = train.ops[n:n + m["backward_ops"]]
    assert matmul_flops(backward) == 2 * matmul_flops(fwd.ops)  # every matmul: dX and dW, each the forward's
    ratio = train.flops / (3 * fwd.flops + m["optimizer_flops"])
    print(f"Llama2-13B B2 S2048 step / (3 x forward + optimizer) = {ratio:.5f}")
    assert abs(ratio - 1) < 0.02
    assert m["parameters"] == 12_852_024_320  # 13B without the token embedding table (its lookup is not built)
    check_step(train)


def test_llama2_13b_layer_checkpointing_recomputes_one_forward():
    none, layer = step("llama2-13b"), step("llama2-13b", checkpoint="layer")
    fwd = forward("llama2-13b").flops
    assert layer.meta["backward_flops"] == none.meta["backward_flops"]
    assert 0.95 * fwd < layer.meta["recompute_flops"] < fwd  # every layer again; the LM head is not in a layer
    # what it buys: the activations held in HBM between forward and backward
    assert layer.meta["saved_activation_bytes"] < none.meta["saved_activation_bytes"] / 50
    assert layer.meta["peak_activation_hbm_bytes"] < none.meta["peak_activation_hbm_bytes"] / 10
    assert any(op.name.startswith("recompute.") for op in layer.ops)
    check_step(layer)


def test_llama2_13b_step_layers():
    """The longest repeated run: the backward blocks (layers 39..1; layer 0 has no input gradient)."""
    for options, length in (({}, 77), ({"checkpoint": "layer"}, 120)):
        layers = step("llama2-13b", **options).layers
        assert layers is not None and layers.count == 39 and layers.length == length


@pytest.mark.parametrize("optimizer, master, state_bytes, weight_in_state", [
    ("adam", True, 12, False), ("adam", False, 6, True), ("sgd", True, 4, False), ("sgd", False, 2, True)])
def test_optimizer_bytes_per_parameter(optimizer, master, state_bytes, weight_in_state):
    """fp16 weights: optimizer state read and written exactly, per parameter and per setting."""
    p = step("tiny", 2, 64, optimizer=optimizer, master_weights=master)
    m = p.meta
    params = m["parameters"]
    reads, writes = m["hbm_read_bytes"], m["hbm_write_bytes"]
    weight_part = 2 * params if weight_in_state else 0
    assert reads["optimizer_state"] + weight_part == state_bytes * params
    assert writes["optimizer_state"] + weight_part == state_bytes * params
    assert writes["weights"] == 2 * params  # the new fp16 weights: a cast, or the state's weight word
    check_step(p)


def test_weights_and_gradients_traffic():
    """Weights read by the forward and by the backward (unless the read is adjacent); each weight gradient
    written once and read once, by its update (or neither, when the update runs right after it)."""
    p = step("tiny", 2, 64)
    m = p.meta
    opt_start = len(p.ops) - m["optimizer_ops"]
    reads = Counter(o.tensor for op in p.ops[:opt_start] for o in op.inputs if o.tensor in p.weights)
    assert set(reads) == p.weights and set(reads.values()) == {1, 2}
    # once only: layer 0's input norm scale, whose input (the token vectors) needs no gradient
    assert [w for w, n in reads.items() if n == 1] == ["l0.attn_norm.w"]
    params = m["parameters"]
    assert 0 < 2 * 2 * params - m["hbm_read_bytes"]["weights"] <= 2 * 2 * 256
    grads = {f"grad.{w}" for w in p.weights}
    readers = Counter(o.tensor for op in p.ops for o in op.inputs if o.tensor in grads)
    assert set(readers.values()) == {1}
    assert m["hbm_read_bytes"]["weight_gradients"] == m["hbm_write_bytes"]["weight_gradients"]
    assert 0 <= 2 * params - m["hbm_write_bytes"]["weight_gradients"] <= 2 * 256
    layered = step("tiny", 2, 64, checkpoint="layer")
    opt_start = len(layered.ops) - layered.meta["optimizer_ops"]
    reads = Counter(o.tensor for op in layered.ops[:opt_start] for o in op.inputs if o.tensor in layered.weights)
    in_layers = [w for w in layered.weights if w.startswith(("l0.", "l1.")) and w != "l0.attn_norm.w"]
    assert {reads[w] for w in in_layers} == {3}  # recomputed layers read them again


# ---------------------------------------------------------------------------
# stores and loads
# ---------------------------------------------------------------------------
def test_round_trips_and_a_missing_store_fails():
    p = step("tiny", 2, 64)
    check_step(p)
    assert p.round_trips
    s, _ = p.round_trips[0]
    ops = list(p.ops)
    ops[s] = replace(ops[s], store=False)
    broken = Program(p.name, tuple(ops), dict(p.meta), p.weights)
    with pytest.raises(ModelConfigError, match="does not store"):
        broken.check_round_trips()


def test_tiny_step_plan_tables_build():
    """Every backward operator kind gets a plan table (a small chip; the tiny model)."""
    from elk.chip import preset
    from elk.workload import Workload
    chip = preset("ipu-mk2").with_overrides(cores=64, sram_per_core=624 * 1024)
    w = Workload.build(step("tiny", 1, 32), chip, workers=1)
    assert len(w) == len(step("tiny", 1, 32).ops)


def cnn(stem: bool) -> Program:
    """A windowed convolution (its input from a weight's matmul when ``stem``), a max pool, a head."""
    sz = dict(b=1, h=4, r=3, c=4, k=8, j=4, s=3, d=4)
    small = {**sz, "h": 2, "j": 2}
    ops = [einsum_op("stem", "matmul", "bhjc,cd->bhjd", sz, ["image", "stem.w"], "x")] if stem else \
        [einsum_op("stem", "unary", "bhjd->bhjd", sz, ["image"], "x")]
    ops += [einsum_op("conv", "conv", "b(hr)(js)d,rsdk->bhjk", sz, ["x", "conv.w"], "y"),
            einsum_op("pool", "pool", "b(hr)(js)k->bhjk", small, ["y"], "p"),
            einsum_op("head", "matmul", "bhjk,kv->bhjv", {**small, "v": 10}, ["p", "head.w"], "out")]
    return Program.from_ops("cnn", ops, weights={"stem.w", "conv.w", "head.w"} if stem else {"conv.w", "head.w"})


def test_windowed_conv_weight_and_pool_backward_build_plan_tables():
    from elk.chip import preset
    from elk.workload import Workload
    p = training_step(cnn(stem=False))
    kinds = {op.name: op.kind for op in p.ops}
    assert kinds["backward.conv.d1"] == OpKind.CONV and kinds["backward.pool.d0"] == OpKind.POOL
    assert "backward.conv.d0" not in kinds  # the image needs no gradient
    check_step(p)
    chip = preset("ipu-mk2").with_overrides(cores=64, sram_per_core=624 * 1024)
    assert len(Workload.build(p, chip, workers=1)) == len(p.ops)


def test_windowed_conv_input_gradient_is_refused():
    with pytest.raises(ModelConfigError, match=r"^training step: backward of conv \(the input gradient"):
        training_step(cnn(stem=True))


# ---------------------------------------------------------------------------
# random einsum chains
# ---------------------------------------------------------------------------
@st.composite
def chains(draw):
    t, d = draw(st.sampled_from([4, 8, 16])), draw(st.sampled_from([8, 16, 32]))
    ops = [einsum_op("in", "unary", "td->td", dict(t=t, d=d), ["x"], "a")]
    prev, width, weights, k = "a", d, set(), 0
    for kind in draw(st.lists(st.sampled_from(["matmul", "unary", "binary", "reduce", "residual"]),
                              min_size=1, max_size=7)):
        k += 1
        if kind == "matmul":
            out = draw(st.sampled_from([8, 16, 32]))
            ops.append(einsum_op(f"mm{k}", "matmul", "td,de->te", dict(t=t, d=width, e=out), [prev, f"w{k}"],
                                 f"h{k}"))
            weights.add(f"w{k}")
            width = out
        elif kind == "unary":
            ops.append(einsum_op(f"act{k}", "unary", "td->td", dict(t=t, d=width), [prev], f"h{k}"))
        elif kind == "binary":
            ops.append(einsum_op(f"mul{k}", "binary", "td,d->td", dict(t=t, d=width), [prev, f"g{k}.w"], f"h{k}"))
            weights.add(f"g{k}.w")
        elif kind == "reduce":
            ops.append(einsum_op(f"sum{k}", "reduce", "td->t", dict(t=t, d=width), [prev], f"s{k}"))
            ops.append(einsum_op(f"norm{k}", "binary", "td,t->td", dict(t=t, d=width), [prev, f"s{k}"], f"h{k}"))
        elif width == d:
            ops.append(einsum_op(f"res{k}", "binary", "td,td->td", dict(t=t, d=d), [prev, "a"], f"h{k}",
                                 role="residual"))
        else:
            continue
        prev = f"h{k}"
    weights.add("head.w")
    ops.append(einsum_op("head", "matmul", "td,dv->tv", dict(t=t, d=width, v=8), [prev, "head.w"], "logits"))
    return Program.from_ops("chain", ops, weights=weights)


@settings(max_examples=30, deadline=None)
@given(chains(), st.sampled_from(["adam", "sgd"]), st.sampled_from(["none", "layer"]), st.booleans())
def test_random_chains_build_steps(program, optimizer, checkpoint, master):
    p = training_step(program, TrainingOptions(optimizer=optimizer, checkpoint=checkpoint, master_weights=master))
    check_step(p)
    m = p.meta
    backward = p.ops[m["forward_ops"]:m["forward_ops"] + m["backward_ops"]]
    # dW of every matmul; dX of every matmul whose input depends on a weight (the first one's does not)
    first = next(op for op in program.ops if op.kind == OpKind.MATMUL)
    dx_first = any(op.name == f"backward.{first.name}.d0" for op in backward)
    expected = 2 * matmul_flops(program.ops) - (0 if dx_first else first.flops)
    assert matmul_flops(op for op in backward if not op.name.startswith("recompute.")) == expected
    assert m["trainable_weights"] == len(program.weights)


# ---------------------------------------------------------------------------
# every model source
# ---------------------------------------------------------------------------
def test_every_source_builds_a_step(tmp_path):
    import onnx
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    sources = [("tiny", {}), (str(ZOO / "opt-30b.json"), {}), ("dit-xl-2", {}),
               (str(shared_file("elk-artifact-graphs", "opt-1.3.json")), {}),
               (str(shared_file("elk-artifact-graphs", "resnet.json")), {}),
               (str(shared_file("onnx", "gpt2.onnx")), {}), (str(light), {})]
    for model, kw in sources:
        fwd = build_program(model, batch=1, seq=64, mode="forward", **kw)
        p = build_program(model, batch=1, seq=64, mode="train", **kw)
        assert fwd.weights and p.weights == fwd.weights, model
        check_step(p)
        assert abs(p.flops / (3 * fwd.flops + p.meta["optimizer_flops"]) - 1) < 0.05, model


def test_weights_exclude_caches_tables_masks_and_token_vectors():
    w = forward("tiny", 2, 64).weights
    assert "lm_head" in w and "l0.qkv.w" in w and "l1.ffn_norm.w" in w
    assert not any(n.startswith(("rope.", "attn.mask")) or n in ("embed", "kcache", "vcache") for n in w)
    assert build_program("tiny", batch=2, seq=64, mode="decode").weights >= w - {"embed"}


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_bad_training_options(capsys, no_compile):
    user_error(capsys, ["compile", "tiny", "--mode", "train", "--optimizer", "foo"], "unknown optimizer 'foo'")
    user_error(capsys, ["compile", "tiny", "--mode", "train", "--checkpoint", "some"], "checkpointing policy")
    with pytest.raises(ModelConfigError, match="unknown optimizer"):
        TrainingOptions(optimizer="lion")
    with pytest.raises(ModelConfigError, match="mode 'train' only"):
        build_program("tiny", mode="forward", training=TrainingOptions())


def test_a_model_without_weights_has_no_training_step(capsys, tmp_path, no_compile):
    relu = "output0[N0, N1, N2] = input0[N0, N1, N2].call(`max`, [const(0).cast(input0[N0, N1, N2].dtype())]);"
    table = '"input0" : { "dtype" : "float32", "shape" : [99, 66, 64]}'
    graph = [[10, f' - einstein_v2(" {relu} ", input_dict={{ {table} }})  ', "Relu", [[1, 0]]], [11, "", "Result",
                                                                                            [[10, 0]]]]
    path = tmp_path / "relu.json"
    path.write_text(json.dumps(graph))
    user_error(capsys, ["compile", str(path), "--mode", "train", "--batch", "2", "--seq", "8"],
               "needs trainable weights")


def test_options_without_mode_train_are_noted(capsys):
    from elk.cli.main import main
    assert main(["models", str(ZOO / "tiny.json"), "--mode", "forward", "--optimizer", "sgd", "--batch", "1",
                 "--seq", "16"]) == 0
    assert "--optimizer applies to --mode train only" in capsys.readouterr().out


def test_models_shows_the_step(capsys):
    from elk.cli.main import main
    assert main(["models", str(ZOO / "tiny.json"), "--mode", "train", "--batch", "1", "--seq", "16"]) == 0
    out = capsys.readouterr().out
    assert "training step: adam" in out and "HBM write:" in out and "optimizer state" in out


def test_large_weights_are_updated_in_chunks_that_fit_the_chip():
    from elk.chip import preset
    from elk.sizecheck import check_program_fits
    train = step("llama2-13b")
    head = [op for op in train.ops if op.role == "optimizer" and op.name.startswith("optimizer.lm_head@")
            and not op.name.endswith(".cast")]
    assert len(head) == -(-5120 * 32000 // (1 << 24))  # 10 chunks of at most 2^24 parameters
    assert sum(op.tensor_elements(op.inputs[1]) for op in head) == 5120 * 32000
    assert train.meta["parameters"] == sum(op.tensor_elements(op.inputs[1]) for op in train.ops
                                           if op.role == "optimizer" and not op.name.endswith(".cast"))
    check_program_fits(train, preset("ipu-pod4"))  # the whole LM head's update alone would not fit
    whole = training_step(forward("llama2-13b"), TrainingOptions(optimizer_chunk=10 ** 12))
    with pytest.raises(Exception, match="does not fit|needs at least"):
        check_program_fits(whole, preset("ipu-pod4"))
