"""ONNX models as input (elk.graphs.onnx_read, elk.graphs.onnx_import).

Real files only for what elk must compile: the nine ``light_*.onnx`` CNNs the ``onnx``
wheel ships, and the transformer exports in ``../shared/benchmarks/onnx`` next to the
repository (skipped when that folder is absent; a missing file in a present folder
fails). Small models made with ``onnx.helper`` in ``tmp_path`` only for bad input and
for features no real file has (an unbound dimension, a cycle, external data).
"""
from __future__ import annotations

import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from elk.cli.main import main
from elk.errors import ModelConfigError
from elk.graphs import build_program
from elk.graphs.onnx_import import SUPPORTED, load_onnx
from elk.graphs.onnx_read import read_onnx
from elk.ir import OpKind, Program

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "onnx"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_NAMES = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
               "squeezenet", "vgg19", "zfnet512"]
EXPORTS = ["bert", "gpt2", "vit", "llama2_13b_2l", "opt_1_3b", "gemma2_27b_2l"]
DECODERS = ["llama2_13b_2l", "opt_1_3b", "gemma2_27b_2l"]
ALL_DESIGNS = "basic,static,elk-dyn,elk-full,ideal,periodic"


def shared(name: str) -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared ONNX exports are not here ({SHARED})")
    path = SHARED / name
    assert path.is_file(), f"{path} is missing from {SHARED}"
    return path


def light(name: str) -> Path:
    path = LIGHT / f"light_{name}.onnx"
    assert path.is_file(), f"the onnx package ships {path.name}, but it is not installed at {LIGHT}"
    return path


@lru_cache(maxsize=None)
def export(stem: str, batch: int = 4, seq: int = 512) -> Program:
    return load_onnx(shared(f"{stem}.onnx"), batch=batch, seq=seq)


def weight_bytes(small: Program, big: Program) -> int:
    """HBM bytes of the weights: inputs no operator produces whose size does not change with the sequence.

    Why this way: it treats both builds alike (masks, rotary tables and embedding rows
    grow with the sequence, weights do not) without relying on how either names tensors.
    """
    def inputs(p: Program) -> dict[str, int]:
        produced = {op.output.tensor for op in p.ops}
        return {o.tensor: op.tensor_elements(o) * op.bytes_per_element for op in p.ops for o in op.inputs
                if o.tensor not in produced}
    fixed = {t for t, n in inputs(small).items() if inputs(big).get(t) == n}
    return sum(op.tensor_elements(o) * op.bytes_per_element for op in small.ops for o in op.inputs
               if o.offchip and o.tensor in fixed)


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
def test_import_elk_does_not_import_onnx():
    code = ("import sys, elk, elk.graphs, elk.cli.main; from elk.graphs import build_program; "
            "build_program('tiny', batch=2, seq=16); assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("name", LIGHT_NAMES)
def test_light_shapes_agree_with_onnx_shape_inference(name):
    """Every value's shape elk works out is the one onnx.shape_inference gives (the light files are static)."""
    path = light(name)
    graph = read_onnx(path)
    inferred = onnx.shape_inference.infer_shapes(onnx.load(path, load_external_data=False))
    known = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
             for v in list(inferred.graph.value_info) + list(inferred.graph.output)
             if v.type.tensor_type.HasField("shape")}
    compared = 0
    for name_, shape in known.items():
        if name_ in graph.values and all(shape):
            assert graph.values[name_].shape == shape, name_
            compared += 1
    assert compared >= len(graph.nodes) // 2


@pytest.mark.parametrize("name", LIGHT_NAMES)
def test_light_models_import(name):
    program = load_onnx(light(name))
    kinds = {op.kind for op in program.ops}
    assert OpKind.CONV in kinds and program.flops > 0
    # every weight is read from HBM once it is used: the conv kernels' bytes are all there
    graph = read_onnx(light(name))
    convs = [n for n in graph.nodes if n.op_type == "Conv"]
    kernel = sum(graph.values[n.inputs[1]].size for n in convs) * 4
    conv_ops = [op for op in program.ops if op.kind == OpKind.CONV]
    assert len(conv_ops) == len(convs)
    assert sum(op.tensor_elements(op.inputs[1]) * 4 for op in conv_ops) == kernel


def test_conv_flops_are_exact_with_groups_and_strides():
    """ShuffleNet has grouped and depthwise strided convolutions: FLOPs = 2 x N x F x HO x WO x C/g x k."""
    graph = read_onnx(light("shufflenet"))
    program = load_onnx(light("shufflenet"))
    expected = 0
    for n in graph.nodes:
        if n.op_type == "Conv":
            out, w = graph.values[n.outputs[0]], graph.values[n.inputs[1]]
            expected += 2 * int(np.prod(out.shape)) * int(np.prod(w.shape[1:]))
    assert any(n.attrs.get("group", 1) > 1 for n in graph.nodes if n.op_type == "Conv")
    assert sum(op.flops for op in program.ops if op.kind == OpKind.CONV) == expected


@pytest.mark.parametrize("stem", EXPORTS)
def test_exports_import_with_layers(stem):
    program = export(stem)
    layers = program.layers
    expected = {"bert": 12, "gpt2": 12, "vit": 12, "llama2_13b_2l": 2, "opt_1_3b": 24, "gemma2_27b_2l": 2}[stem]
    assert layers is not None and layers.count == expected
    assert program.meta["format"] == "onnx" and program.meta["mode"] == "forward"
    assert program.meta["past_kv_inputs"] == []  # none of the shared exports is a decode graph
    bpe = {op.bytes_per_element for op in program.ops if op.kind == OpKind.MATMUL}
    assert bpe == ({4} if stem in ("bert", "gpt2", "vit") else {2})


@pytest.mark.parametrize("stem", DECODERS)
def test_decoder_exports_match_elks_builder(stem):
    """The same model built from its config by elk's HF reader: FLOPs and weight bytes within 1%."""
    onnx_program = export(stem)
    config = build_program(shared(f"{stem}.config.json"), batch=4, seq=512, mode="forward")
    assert onnx_program.flops == pytest.approx(config.flops, rel=0.01)
    config_256 = build_program(shared(f"{stem}.config.json"), batch=4, seq=256, mode="forward")
    ours, theirs = weight_bytes(onnx_program, export(stem, 4, 256)), weight_bytes(config, config_256)
    assert ours == pytest.approx(theirs, rel=0.01)
    # HBM bytes per step: weights, the mask and rotary tables read once, and the activations the
    # residency rule re-reads, which follow the producer-adjacent operator order (README)
    assert onnx_program.hbm_bytes == pytest.approx(config.hbm_bytes, rel=0.01)
    if stem == "llama2_13b_2l":
        plain = load_onnx(shared(f"{stem}.onnx"), batch=4, seq=512, merge_matmuls=False)
        assert plain.flops == pytest.approx(config.flops, rel=0.01)
        assert plain.meta["scales_folded"] == 2 * 2


@pytest.mark.parametrize("stem", DECODERS)
def test_decoder_masks_are_read_as_one_sequence_table(stem):
    """The exporter expands the causal mask over the batch; it is the same for every row, so one seq x seq table."""
    program = export(stem)
    produced = {op.output.tensor for op in program.ops}
    graph = read_onnx(shared(f"{stem}.onnx"), batch=4, seq=512, supported=SUPPORTED)
    expanded = {name for name, v in graph.values.items()
                if v.const and not v.initializer and v.shape == (4, 1, 512, 512)}
    reads = [op.tensor_elements(o) for op in program.ops for o in op.inputs
             if o.tensor in expanded and o.tensor not in produced]
    assert reads and all(n == 512 * 512 for n in reads)


def test_rotate_half_is_one_permutation_and_splits_follow_their_producer():
    """Llama's rotate_half (two slices, a negation, a concat) is one slice and one negation per Q and K;
    each consumer of a merged projection's split follows it, so the split is read on chip."""
    program = export("llama2_13b_2l")
    assert program.meta["permutation_parts"] == 2 * 2 * 3
    assert not any(op.role == "concat" and len(op.inputs) > 1 for op in program.ops)
    index = {op.output.tensor: k for k, op in enumerate(program.ops)}
    for k, op in enumerate(program.ops):  # a topological order
        assert all(index.get(o.tensor, -1) < k for o in op.inputs)


def test_sibling_bias_adds_merge_with_their_matmuls():
    """OPT's Q, K and V each add a bias: one matmul, one bias add over its output, then the three splits."""
    program = export("opt_1_3b")
    adds = [op for op in program.ops if op.name.endswith("+2.bias")]
    assert len(adds) == 24 and all(op.kind == OpKind.BINARY for op in adds)
    for add in adds:
        splits = [op for op in program.ops if op.inputs and op.inputs[0].tensor == add.output.tensor]
        assert len(splits) == 3 and all(op.kind == OpKind.SLICE and not op.inputs[0].offchip for op in splits)


def test_grouped_query_attention_reads_each_kv_head_once():
    """Gemma 2's K and V are repeated to 32 heads by Expand: the score matmul reads the 16 real heads."""
    program = export("gemma2_27b_2l")
    scores = [op for op in program.ops if op.kind == OpKind.MATMUL and op.role == "matmul"
              and op.tensor_elements(op.inputs[1]) == 4 * 16 * 512 * 128]
    assert len(scores) >= 4  # scores and context of both layers read K/V at 16 heads
    assert all(op.volume == 4 * 32 * 512 * 512 * 128 for op in scores)


def test_symbolic_dimensions_follow_batch_and_seq():
    small, big = export("bert", 1, 64), export("bert", 2, 128)
    assert small.meta["dims"] == {"batch": 1, "seq": 64} and big.meta["dims"] == {"batch": 2, "seq": 128}
    assert big.flops > 2 * small.flops


# ---------------------------------------------------------------------------
# compiling: every design valid
# ---------------------------------------------------------------------------
def _all_valid(capsys, args: list[str]) -> list[list[str]]:
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()  # design rows: a name, then a latency
            if line.split()[:1] and line.split()[0] in ALL_DESIGNS.split(",")
            and re.fullmatch(r"[\d.]+", line.split()[1])]
    assert len(rows) == 6 and all(r[-1] == "yes" for r in rows), out
    return rows


def small_compile(capsys, path: Path) -> None:
    _all_valid(capsys, ["compile", str(path), "--batch", "1", "--seq", "32", "--designs", ALL_DESIGNS,
                        "--bound", "closed", "--time-limit", "5", "--workers", "1"])


def test_an_export_compiles_small_with_every_design(capsys):
    small_compile(capsys, shared("llama2_13b_2l.onnx"))


@pytest.mark.slow
@pytest.mark.parametrize("stem", [s for s in EXPORTS if s != "llama2_13b_2l"])
def test_exports_compile_small_with_every_design(stem, capsys):
    small_compile(capsys, shared(f"{stem}.onnx"))


@pytest.mark.parametrize("name", ["squeezenet"])
def test_a_light_model_compiles_with_every_design(name, capsys):
    _all_valid(capsys, ["compile", str(light(name)), "--designs", ALL_DESIGNS, "--bound", "closed",
                        "--time-limit", "5", "--workers", "1"])


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_NAMES)
def test_every_light_model_compiles_with_every_design(name, capsys):
    _all_valid(capsys, ["compile", str(light(name)), "--designs", ALL_DESIGNS, "--workers", "1"])


@pytest.mark.slow
@pytest.mark.parametrize("stem", EXPORTS)
def test_exports_compile_at_the_comparison_size(stem, capsys):
    _all_valid(capsys, ["compile", str(shared(f"{stem}.onnx")), "--batch", "4", "--seq", "512",
                        "--designs", ALL_DESIGNS, "--workers", "1"])


# ---------------------------------------------------------------------------
# small models made here: features and bad input
# ---------------------------------------------------------------------------
def mlp_model(dim: str = "batch", opset: int = 20, hidden: int = 64) -> onnx.ModelProto:
    """x[dim, hidden] -> MatMul W1 -> Relu -> MatMul W2 -> Softmax."""
    w1 = numpy_helper.from_array(np.zeros((hidden, hidden), np.float32), "w1")
    w2 = numpy_helper.from_array(np.zeros((hidden, 16), np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="act"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
             helper.make_node("Softmax", ["y"], ["p"], name="probs", axis=-1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim, hidden])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [dim, 16])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(tmp_path: Path, model: onnx.ModelProto, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_weights_inline_or_absent_external_data_give_the_same_program(tmp_path):
    inline = save(tmp_path, mlp_model(), "inline.onnx")
    ext_dir = tmp_path / "ext"
    ext_dir.mkdir()
    model = mlp_model()
    onnx.save_model(model, str(ext_dir / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    (ext_dir / "ext.data").unlink()  # the weights are gone; names, types and dims stay
    a, b = load_onnx(inline, batch=8), load_onnx(ext_dir / "ext.onnx", batch=8)
    assert [op.signature for op in a.ops] == [op.signature for op in b.ops]
    assert a.hbm_bytes == b.hbm_bytes == 4 * (8 * 64 + 64 * 64 + 64 * 16)
    assert [op.kind for op in a.ops] == [OpKind.MATMUL, OpKind.UNARY, OpKind.MATMUL] + [
        OpKind.REDUCE, OpKind.BINARY, OpKind.UNARY, OpKind.REDUCE, OpKind.BINARY]  # softmax as elk emits it


def test_dim_binds_other_names(tmp_path, capsys):
    path = save(tmp_path, mlp_model(dim="tokens_total"))
    with pytest.raises(ModelConfigError, match="tokens_total"):
        load_onnx(path)
    program = load_onnx(path, dims={"tokens_total": 24})
    assert program.ops[0].volume == 24 * 64 * 64
    assert main(["plans", str(path), "--dim", "tokens_total=24"]) == 0
    assert "fc1" in capsys.readouterr().out


def _expect_error(tmp_path, capsys, path: Path, *needles: str, extra: list[str] | None = None) -> str:
    out_json = tmp_path / "report.json"
    code = main(["compile", str(path), "--json", str(out_json), *(extra or [])])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("elk: error: ") and "\n" not in err and "Traceback" not in err, err
    assert str(path) in err
    for needle in needles:
        assert needle in err, err
    assert not out_json.exists()
    return err


def test_bad_input_not_onnx(tmp_path, capsys):
    text = tmp_path / "notes.onnx"
    text.write_text('{"this": "is json"}')
    _expect_error(tmp_path, capsys, text, "not an ONNX model")
    binary = tmp_path / "random.onnx"
    binary.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    _expect_error(tmp_path, capsys, binary, "not an ONNX model")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _expect_error(tmp_path, capsys, empty, "empty")
    _expect_error(tmp_path, capsys, tmp_path / "absent.onnx", "not found")


def test_bad_input_truncated_real_file(tmp_path, capsys):
    data = light("squeezenet").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, capsys, cut, "ONNX model")


def test_bad_input_deep_nesting(tmp_path, capsys):
    """10,000 nested subgraphs (Model.graph -> Graph.node -> Node.attribute -> Attribute.g -> ...)."""
    def field(tag: int, payload: bytes) -> bytes:
        n, varint = len(payload), b""
        while True:
            byte = n & 0x7F
            n >>= 7
            varint += bytes([byte | (0x80 if n else 0)])
            if not n:
                break
        return bytes([tag]) + varint + payload
    inner = b""
    for _ in range(10_000):
        inner = field(0x0A, field(0x2A, field(0x32, inner)))  # graph.node{attribute{g{...}}}
    path = tmp_path / "deep.onnx"
    path.write_bytes(bytes([0x08, 0x08]) + field(0x3A, inner))  # ir_version 8, graph
    _expect_error(tmp_path, capsys, path, "ONNX model")


def test_bad_input_opset_operator_dimension_cycle_dangling(tmp_path, capsys):
    _expect_error(tmp_path, capsys, save(tmp_path, mlp_model(opset=99), "opset.onnx"), "opset 99")
    _expect_error(tmp_path, capsys, save(tmp_path, mlp_model(dim="foo"), "dim.onnx"), "'foo'", "--dim")
    model = mlp_model()
    model.graph.node[1].op_type = "NonMaxSuppression"
    _expect_error(tmp_path, capsys, save(tmp_path, model, "op.onnx"), "'act'", "NonMaxSuppression", "README")
    model = mlp_model()
    model.graph.node[0].input[0] = "r"  # fc1 reads act's output: fc1 -> act -> fc1
    _expect_error(tmp_path, capsys, save(tmp_path, model, "cycle.onnx"), "cycle")
    model = mlp_model()
    model.graph.node[2].input[0] = "nowhere"
    _expect_error(tmp_path, capsys, save(tmp_path, model, "dangling.onnx"), "'fc2'", "'nowhere'", "dangling")
    model = mlp_model()
    model.graph.node[2].input[1] = "w1"  # [64, 64] @ [64, 64] then softmax: fine; make the shapes clash instead
    model.graph.node[0].input[1] = "w2"  # x[64] @ w2[64, 16] -> [., 16] @ w1[64, 64]: inner lengths differ
    _expect_error(tmp_path, capsys, save(tmp_path, model, "shapes.onnx"), "'fc2'", "inner lengths")


def test_supported_list_is_documented():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## ONNX models as input"):]
    for op in ("MatMul", "Gemm", "Conv", "LayerNormalization", "BatchNormalization", "Softmax", "Reshape", "Expand"):
        assert op in SUPPORTED and op in section


def test_python_api_and_models_summary(tmp_path, capsys):
    import elk
    path = save(tmp_path, mlp_model(dim="tokens_total"))
    result = elk.compile(str(path), dims={"tokens_total": 64}, designs="basic,elk-full", bound=None)
    assert all(d.sim.valid for d in result.designs.values())
    assert result.workload.program.meta["dims"] == {"tokens_total": 64}
    assert main(["models", str(path), "--dim", "tokens_total=64"]) == 0
    out = capsys.readouterr().out
    assert "onnx, forward, dims tokens_total=64, opset 20" in out and "matmul 2" in out
    assert main(["models", str(path)]) == 2  # the dimension is unbound: one error line, nothing printed
    captured = capsys.readouterr()
    assert captured.out == "" and "tokens_total" in captured.err


def test_merging_sibling_projections_keeps_flops():
    """Llama's Q/K/V and gate/up matmuls merge into one each per layer; every original output is a slice."""
    path = shared("llama2_13b_2l.onnx")
    plain, merged = load_onnx(path, batch=1, seq=64, merge_matmuls=False), load_onnx(path, batch=1, seq=64)
    assert merged.meta["matmuls_merged"] == 2 * (3 + 2)
    assert sum(op.kind == OpKind.MATMUL for op in merged.ops) == sum(op.kind == OpKind.MATMUL for op in plain.ops) - 6
    matmul_flops = [sum(op.flops for op in p.ops if op.kind == OpKind.MATMUL) for p in (plain, merged)]
    assert matmul_flops[0] == matmul_flops[1]


def test_computed_constants_count_only_the_axes_they_vary_on(tmp_path):
    """A constant expanded over an axis is read once along it; one that varies along an axis counts it whole.

    x[batch, 32768] + rows[batch, 32768] + cols[batch, 32768]: rows = Expand(Range(batch) as a column),
    cols = Expand(Range(32768) as a row). Both are too large for the reader to evaluate, so the flags
    come from the nodes (Range varies, Expand copies): rows carries batch, cols carries the 32768.
    """
    n = 32768
    ints = {name: numpy_helper.from_array(np.array(v, np.int64), name)
            for name, v in (("zero", 0), ("one", 1), ("n", n), ("col", [1]), ("row", [0]))}
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "zero"], ["b"], name="b", axis=0),
             helper.make_node("Range", ["zero", "b", "one"], ["rb"], name="range_b"),
             helper.make_node("Unsqueeze", ["rb", "col"], ["rb2"], name="col_b"),
             helper.make_node("Expand", ["rb2", "shape"], ["rows_i"], name="rows_expand"),
             helper.make_node("Cast", ["rows_i"], ["rows"], name="rows_cast", to=TensorProto.FLOAT),
             helper.make_node("Range", ["zero", "n", "one"], ["rn"], name="range_n"),
             helper.make_node("Unsqueeze", ["rn", "row"], ["rn2"], name="row_n"),
             helper.make_node("Expand", ["rn2", "shape"], ["cols_i"], name="cols_expand"),
             helper.make_node("Cast", ["cols_i"], ["cols"], name="cols_cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rows"], ["y"], name="add_rows"),
             helper.make_node("Add", ["y", "cols"], ["z"], name="add_cols")]
    graph = helper.make_graph(nodes, "consts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", n])],
                              list(ints.values()))
    path = save(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    program = load_onnx(path, batch=4, seq=8)
    reads = {o.tensor: op.tensor_elements(o) for op in program.ops for o in op.inputs if o.tensor in ("rows", "cols")}
    assert reads == {"rows": 4, "cols": n}
