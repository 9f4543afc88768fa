"""Chips as data: presets, TOML/JSON chip files, validation and overrides."""
from __future__ import annotations

import dataclasses
import json

import pytest

from elk.chip import (ARTIFACT_GBPS, PRESETS, Chip, Topology, chip_from_mapping, default_mesh_shape, load_chip,
                      preset, resolve_chip)
from elk.errors import ChipConfigError, ElkError
from elk.tablecache import table_key
from elk.ir import einsum_op


def test_presets():
    mk2, pod4 = preset("ipu-mk2"), preset("ipu-pod4")
    assert mk2.cores == 1472 and pod4.cores == 5888
    assert mk2.sram_per_core == pod4.sram_per_core == 624 * 1024
    assert not mk2.multi_chip and pod4.multi_chip
    assert mk2.topology.kind == "all-to-all"
    assert pod4.sram_total == 5888 * 624 * 1024
    assert pod4.hbm_bytes_per_cycle == pytest.approx(16e12 / 1.325e9)
    assert pod4.peak_flops == pytest.approx(5888 * 128 * 1.325e9)
    assert pod4.cycles_to_ms(1.325e6) == pytest.approx(1.0)
    assert set(PRESETS) == {"ipu-mk2", "ipu-pod4"}
    assert resolve_chip(None) == pod4 and resolve_chip("ipu-mk2") is mk2 and resolve_chip(mk2) is mk2
    assert ARTIFACT_GBPS == 1_048_576_000
    assert "1472 cores" in mk2.describe() and "624 KiB" in mk2.describe()


def test_unknown_preset():
    with pytest.raises(ChipConfigError, match="unknown chip preset 'ipu-mk9'"):
        preset("ipu-mk9")
    with pytest.raises(ChipConfigError, match="ipu-mk2"):
        resolve_chip("ipu-mk9")
    assert issubclass(ChipConfigError, ElkError)


def test_default_mesh_shape():
    assert default_mesh_shape(1472) == (32, 46)
    assert default_mesh_shape(5888) == (64, 92)
    assert default_mesh_shape(100) == (10, 10)
    assert default_mesh_shape(13) == (1, 13)


# ---------------------------------------------------------------------------
# chip files
# ---------------------------------------------------------------------------
def test_load_toml_with_base_and_friendly_units(tmp_path):
    path = tmp_path / "my-chip.toml"
    path.write_text('base = "ipu-mk2"\nhbm_tbps = 3.2\nsram_kib = 256\nsync_cycles = 100\n')
    chip = load_chip(path)
    assert chip.name == "my-chip"  # the file stem when no name is given
    assert chip.cores == 1472  # from the base preset
    assert chip.hbm_bytes_per_s == pytest.approx(3.2e12)
    assert chip.sram_per_core == 256 * 1024
    assert chip.sync_cycles == 100
    assert chip.topology == Topology()
    assert resolve_chip(str(path)) == chip


def test_load_toml_mesh_without_shape_gets_the_most_square_one(tmp_path):
    path = tmp_path / "mesh.toml"
    path.write_text('name = "m"\ncores = 1472\n\n[topology]\nkind = "mesh"\nlink_bytes_per_cycle = 16\n')
    chip = load_chip(path)
    assert chip.name == "m"
    assert chip.topology.kind == "mesh"
    assert (chip.topology.rows, chip.topology.cols) == (32, 46)
    assert chip.topology.link_bytes_per_cycle == 16
    assert "mesh 32x46" in chip.describe()


def test_load_toml_mesh_with_explicit_shape_and_chip_table(tmp_path):
    path = tmp_path / "mesh2.toml"
    path.write_text('[chip]\ncores = 100\ncores_per_chip = 100\n\n[chip.topology]\nkind = "mesh"\nrows = 4\ncols = 25\n')
    chip = load_chip(path)
    assert chip.cores == 100 and (chip.topology.rows, chip.topology.cols) == (4, 25)


def test_load_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": "ipu-pod4", "name": "fast", "hbm_tbps": 32, "topology": "mesh"}))
    chip = load_chip(path)
    assert chip.name == "fast" and chip.cores == 5888
    assert chip.hbm_bytes_per_s == pytest.approx(32e12)
    assert (chip.topology.kind, chip.topology.rows, chip.topology.cols) == ("mesh", 64, 92)
    nested = tmp_path / "n.json"
    nested.write_text(json.dumps({"chip": {"cores": 1472, "sram_kib": 100}}))
    n = load_chip(nested)
    assert n.cores == 1472 and n.sram_per_core == 102400


def test_to_dict_round_trip():
    chip = preset("ipu-mk2").with_overrides(topology_kind="mesh", hbm_bytes_per_s=4e12)
    d = chip.to_dict()
    assert d["hbm_tbps"] == pytest.approx(4.0)
    d.pop("hbm_tbps")
    assert chip_from_mapping(d) == chip


@pytest.mark.parametrize("name, text, match", [
    ("bad.toml", "cores = [\n", "malformed chip config"),
    ("bad.json", '{"cores": 1472,', "malformed chip config"),
    ("unknown.toml", "cores = 1472\nwarp_drive = true\n", "unknown chip field.*warp_drive"),
    ("unknown-topo.toml", "[topology]\nkind = \"mesh\"\nhops = 3\n", "unknown topology field.*hops"),
    ("zero-cores.toml", "cores = 0\n", "cores must be a positive"),
    ("neg-cores.json", '{"cores": -4}', "cores must be a positive"),
    ("float-cores.toml", "cores = 1472.5\n", "cores must be an integer"),
    ("bool-cores.toml", "cores = true\n", "cores must be an integer"),
    ("zero-sram.toml", "sram_per_core = 0\n", "sram_per_core must be a positive"),
    ("zero-sram-kib.toml", "sram_kib = 0\n", "sram_per_core must be a positive"),
    ("neg-hbm.toml", "hbm_tbps = -1.0\n", "hbm_bytes_per_s must be a positive"),
    ("neg-hbm-raw.json", '{"hbm_bytes_per_s": -5}', "hbm_bytes_per_s must be a positive"),
    ("text-hbm.toml", 'hbm_tbps = "fast"\n', "hbm_tbps must be a number"),
    ("mesh.toml", "cores = 1472\n[topology]\nkind = \"mesh\"\nrows = 10\ncols = 10\n",
     "mesh 10x10 has 100 cores but the chip has 1472"),
    ("mesh-rows.toml", "[topology]\nkind = \"mesh\"\nrows = 1.5\ncols = 2\n", "positive integer rows and cols"),
    ("torus.toml", "[topology]\nkind = \"torus\"\n", "unknown topology 'torus'"),
    ("topo-num.toml", "topology = 5\n", "must be a table or a string"),
    ("base.toml", 'base = "ipu-mk9"\n', "unknown chip preset 'ipu-mk9'"),
    ("neg-sync.toml", "sync_cycles = -1\n", "sync_cycles must be >= 0"),
    ("factor.toml", "inter_chip_comm_factor = 0.5\n", "inter_chip_comm_factor"),
    ("link.toml", "[topology]\nkind = \"mesh\"\nlink_bytes_per_cycle = 0\n", "link_bytes_per_cycle"),
])
def test_bad_chip_files(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ChipConfigError, match=match):
        load_chip(path)
    with pytest.raises(ChipConfigError):
        resolve_chip(str(path))


def test_missing_chip_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ChipConfigError, match="not found"):
        load_chip(missing)
    with pytest.raises(ChipConfigError, match="not found"):
        resolve_chip(str(missing))
    with pytest.raises(ChipConfigError, match="not found"):
        load_chip(tmp_path)  # a directory is not a chip file


@pytest.mark.parametrize("text", ["[1, 2]", '"ipu-mk2"'])
def test_json_chip_file_that_is_not_an_object(tmp_path, text):
    path = tmp_path / "list.json"
    path.write_text(text)
    with pytest.raises(ChipConfigError):
        load_chip(path)


def test_binary_chip_file(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ChipConfigError):
        load_chip(path)


def test_nan_sync_cycles_rejected(tmp_path):
    path = tmp_path / "nan.toml"
    path.write_text("sync_cycles = nan\n")
    with pytest.raises(ChipConfigError, match="sync_cycles"):
        load_chip(path)


# ---------------------------------------------------------------------------
# direct construction and overrides
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("changes, match", [
    (dict(cores=0), "cores"),
    (dict(cores=-1), "cores"),
    (dict(sram_per_core=0), "sram_per_core"),
    (dict(hbm_bytes_per_s=-1.0), "hbm_bytes_per_s"),
    (dict(hbm_bytes_per_s=float("nan")), "hbm_bytes_per_s"),
    (dict(clock_hz=float("inf")), "clock_hz"),
    (dict(noc_scale=0), "noc_scale"),
    (dict(compute_scale=-2), "compute_scale"),
    (dict(inter_chip_comm_factor=0.9), "inter_chip_comm_factor"),
    (dict(warp=9), "unknown chip field.*warp"),
    (dict(topology_kind="torus"), "unknown topology"),
    (dict(topology_kind="mesh", rows=10, cols=10), "mesh 10x10"),
    (dict(topology_kind="mesh", link_bytes_per_cycle=-1.0), "link_bytes_per_cycle"),
    (dict(topology="ring"), "unknown topology 'ring'"),
    (dict(topology=5), "topology must be one of"),
])
def test_with_overrides_validates(changes, match):
    with pytest.raises(ChipConfigError, match=match):
        preset("ipu-mk2").with_overrides(**changes)


def test_topology_override_by_name_as_the_knobs_take_it():
    """``chip_overrides={"topology": "mesh"}`` (what elk.compile passes on) used to end in an AttributeError."""
    mk2 = preset("ipu-mk2")
    assert mk2.with_overrides(topology="mesh").topology == mk2.with_overrides(topology_kind="mesh").topology
    assert mk2.with_overrides(topology="mesh").with_overrides(topology="all-to-all").topology.kind == "all-to-all"
    assert mk2.with_overrides(topology=Topology(kind="mesh", rows=32, cols=46)).topology.rows == 32


def test_with_overrides_builds_a_new_chip():
    mk2 = preset("ipu-mk2")
    mesh = mk2.with_overrides(topology_kind="mesh")
    assert (mesh.topology.rows, mesh.topology.cols) == (32, 46)
    assert mk2.topology.kind == "all-to-all"  # the preset is untouched
    resized = mk2.with_overrides(cores=100, topology_kind="mesh")
    assert (resized.topology.rows, resized.topology.cols) == (10, 10)
    scaled = mk2.with_overrides(noc_scale=2.0, compute_scale=3.0, hbm_bytes_per_s=1e12)
    assert (scaled.noc_scale, scaled.compute_scale, scaled.hbm_bytes_per_s) == (2.0, 3.0, 1e12)
    assert "NoC x2" in scaled.describe() and "compute x3" in scaled.describe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        mk2.cores = 3  # type: ignore[misc]
    with pytest.raises(ChipConfigError):
        Chip(cores=0)


def test_plan_key_ignores_hbm_bandwidth_but_not_cost_fields():
    mk2 = preset("ipu-mk2")
    slow = mk2.with_overrides(hbm_bytes_per_s=1e11, name="other-name")
    assert slow.plan_key() == mk2.plan_key()
    sig = einsum_op("m", "matmul", "mk,kn->mn", dict(m=8, n=64, k=64), ["x", "w"], "y").signature
    assert table_key(sig, slow) == table_key(sig, mk2)
    for change in (dict(sram_per_core=1024), dict(noc_scale=2.0), dict(compute_scale=2.0), dict(cores=1000),
                   dict(sync_cycles=50.0), dict(topology_kind="mesh")):
        other = mk2.with_overrides(**change)
        assert other.plan_key() != mk2.plan_key(), change
        assert table_key(sig, other) != table_key(sig, mk2)
