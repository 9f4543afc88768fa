"""Property-based tests of elk's input readers: whatever a file holds, the answer is a result or an ElkError.

The allocation CSV reader, the chip config reader (TOML and JSON) and the model config reader are fed
arbitrary bytes and arbitrary well-formed but wrong content (the right shape of file with wrong keys,
types, signs, sizes). Anything but elk's own errors escaping is a bug: the CLI would print a traceback.
Bounded and machine-independent: a fixed number of examples, derandomized, no deadline, no database.
"""
from __future__ import annotations

import csv
import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk.allocation import read_csv, read_placement
from elk.chip import Chip, Topology, load_chip
from elk.errors import ElkError
from elk.graphs.arch import MODEL_TYPES, load_config_file, parse_config

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def reads_or_elk_error(read, *args, **kwargs):
    """Call a reader: a value, or an ElkError subclass; anything else fails the test (with its type)."""
    try:
        return read(*args, **kwargs)
    except ElkError:
        return None
    except Exception as exc:  # noqa: BLE001 - the property under test
        pytest.fail(f"{read.__name__} raised {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- value alphabets
#: Text that looks like numbers and text that does not: what a wrong cell can hold.
CELLS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=-5, max_value=300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "-1", "1e3", "0x10", "1_000", "nan", "inf", "١٢", "\ufeff", "\"", "a,b", "None"]),
    st.text(max_size=12),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4)), max_leaves=10)


# ---------------------------------------------------------------- allocation CSV
ALLOC_COLUMNS = ["id", "lower", "upper", "size", "alignment", "offset", "ID", " size ", "weight", ""]


@PROPERTY
@given(data=st.binary(max_size=2000))
def test_alloc_reader_on_arbitrary_bytes(tmp_path, data):
    path = _write(tmp_path, "any.csv", data)
    reads_or_elk_error(read_csv, path)
    reads_or_elk_error(read_placement, path)


@PROPERTY
@given(columns=st.lists(st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.text(max_size=3)),
                                 min_size=2, max_size=2), min_size=5, max_size=5))
def test_allocation_problem_from_any_arrays(columns):
    """The API behind the reader: any values in the arrays, an AllocationProblem or an ElkError."""
    from elk.allocation import AllocationProblem
    lower, upper, size, alignment, fixed = columns
    reads_or_elk_error(AllocationProblem.from_arrays, lower, upper, size, alignment=alignment, fixed_offset=fixed)


@PROPERTY
@given(header=st.lists(st.sampled_from(ALLOC_COLUMNS), min_size=1, max_size=7),
       rows=st.lists(st.lists(CELLS, min_size=0, max_size=8), max_size=8),
       bom=st.booleans(), capacity=st.none() | st.integers(min_value=-3, max_value=2**50),
       offsets=st.sampled_from(["fixed", "ignore"]))
def test_alloc_reader_on_wrong_csv_content(tmp_path, header, rows, bom, capacity, offsets):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path = _write(tmp_path, "wrong.csv", (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    reads_or_elk_error(read_csv, path, capacity, offsets=offsets)
    reads_or_elk_error(read_placement, path, capacity)


BIG = st.one_of(st.integers(-3, 300), st.integers(-3, 2**70))


@PROPERTY
@given(rows=st.lists(st.tuples(st.integers(0, 2**70) | st.integers(0, 50), st.integers(1, 2**70) | st.integers(1, 50),
                                BIG, st.integers(-3, 64), BIG), min_size=1, max_size=10))
def test_alloc_reader_on_numeric_rows_of_any_size(tmp_path, rows):
    """Every column present and numeric, live ranges well formed, values of any sign and size (beyond int64)."""
    lines = ["id,lower,upper,size,alignment,offset"] + [f"b{i},{lo},{lo + d},{s},{a},{o}"
                                                          for i, (lo, d, s, a, o) in enumerate(rows)]
    path = _write(tmp_path, "numbers.csv", "\n".join(lines).encode())
    problem = reads_or_elk_error(read_csv, path)
    if problem is not None:
        assert problem.n == len(rows)


# ---------------------------------------------------------------- chip config (TOML / JSON)
CHIP_KEYS = ([f.name for f in Chip.__dataclass_fields__.values()] + ["base", "hbm_tbps", "sram_kib", "chip"]
             + ["nonsense"])
TOPOLOGY_KEYS = list(Topology.__dataclass_fields__) + ["hops"]


def toml_value(value) -> str | None:
    """A TOML literal for a JSON-like value (None where TOML has no such value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                                else repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        items = [toml_value(v) for v in value]
        return None if any(i is None for i in items) else "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        items = [(json.dumps(k), toml_value(v)) for k, v in value.items()]
        return None if any(v is None for _, v in items) else "{" + ", ".join(f"{k} = {v}" for k, v in items) + "}"
    return None


CHIP_VALUES = st.one_of(JSON_VALUES, st.sampled_from(["ipu-mk2", "ipu-pod4", "mesh", "all-to-all", "fluid"]),
                        st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**7))


CHIP_MAPPINGS = st.dictionaries(st.sampled_from(CHIP_KEYS), CHIP_VALUES, max_size=6).flatmap(
    lambda d: st.one_of(st.just(d), st.dictionaries(st.sampled_from(TOPOLOGY_KEYS), CHIP_VALUES, max_size=4)
                        .map(lambda t: {**d, "topology": t})))


@PROPERTY
@given(data=st.binary(max_size=1000), suffix=st.sampled_from([".toml", ".json"]))
def test_chip_reader_on_arbitrary_bytes(tmp_path, data, suffix):
    reads_or_elk_error(load_chip, _write(tmp_path, "chip" + suffix, data))


@PROPERTY
@given(mapping=CHIP_MAPPINGS)
def test_chip_reader_on_wrong_json_content(tmp_path, mapping):
    path = _write(tmp_path, "chip.json", json.dumps(mapping, allow_nan=True).encode())
    chip = reads_or_elk_error(load_chip, path)
    if chip is not None:
        assert isinstance(chip, Chip)


@PROPERTY
@given(mapping=CHIP_MAPPINGS)
def test_chip_reader_on_wrong_toml_content(tmp_path, mapping):
    lines = []
    for key, value in mapping.items():
        literal = toml_value(value)
        if literal is not None:
            lines.append(f"{json.dumps(key)} = {literal}")
    reads_or_elk_error(load_chip, _write(tmp_path, "chip.toml", "\n".join(lines).encode()))


@pytest.mark.parametrize("text", ["base = []", "sram_kib = inf", "sram_kib = nan", 'cores = "x"\ntopology = "mesh"'])
def test_known_chip_reader_bugs(tmp_path, text):
    with pytest.raises(ElkError):
        load_chip(_write(tmp_path, "chip.toml", text.encode()))


# ---------------------------------------------------------------- model config (config.json)
MODEL_KEYS = ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "head_dim", "intermediate_size", "vocab_size", "hidden_act", "hidden_activation",
              "activation_function", "attention_bias", "sliding_window", "layer_types", "ffn_dim",
              "do_layer_norm_before", "word_embed_proj_dim", "enable_bias", "attn_logit_softcapping",
              "final_logit_softcapping", "num_heads", "input_size", "patch_size", "mlp_ratio", "in_channels",
              "depth", "learn_sigma", "num_classes", "frequency_embedding_size", "_elk"]
MODEL_VALUES = st.one_of(JSON_VALUES, st.sampled_from(sorted(MODEL_TYPES)), st.integers(-4, 5000),
                         st.sampled_from(["silu", "gelu", "relu", "tanh", "sliding_attention", "full_attention"]),
                         st.lists(st.sampled_from(["sliding_attention", "full_attention", "x"]), max_size=6))


@PROPERTY
@given(data=st.binary(max_size=1500))
def test_model_config_reader_on_arbitrary_bytes(tmp_path, data):
    reads_or_elk_error(load_config_file, _write(tmp_path, "config.json", data))


@PROPERTY
@given(model_type=st.sampled_from(sorted(MODEL_TYPES)),
       mapping=st.dictionaries(st.sampled_from(MODEL_KEYS), MODEL_VALUES, max_size=14))
def test_model_config_reader_on_wrong_content(tmp_path, model_type, mapping):
    mapping = {"model_type": model_type, **mapping}
    path = _write(tmp_path, "config.json", json.dumps(mapping).encode())
    reads_or_elk_error(load_config_file, path)
    reads_or_elk_error(parse_config, mapping, "mapping")
