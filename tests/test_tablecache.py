"""The plan-table disk cache and the parallel table builder."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from elk import plantable, tablecache
from elk.chip import preset
from elk.ir import Program, einsum_op

MK2 = preset("ipu-mk2")
ARRAYS = ("cold", "hot", "time", "comp", "comm", "warmup", "spatial", "hot_temporal", "cold_temporal",
          "frontier_hot", "frontier_time")


def matmul_sig(t: int, e: int, f: int):
    ops = [einsum_op("pre", "unary", "te->te", dict(t=t, e=e), ["x"], "a"),
           einsum_op("mm", "matmul", "te,ef->tf", dict(t=t, e=e, f=f), ["a", "w"], "b")]
    return Program.from_ops("p", ops).ops[1].signature


def assert_same_table(a, b):
    assert a.sig == b.sig
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.n_plans, a.n_spatial) == (b.n_plans, b.n_spatial)


@pytest.fixture
def fresh_memory(monkeypatch):
    """An empty in-process table cache, so plan_table must go to disk or build."""
    plantable.clear_memory()


@pytest.fixture
def cache_root(tmp_path, monkeypatch, fresh_memory):
    monkeypatch.setenv("ELK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ELK_NO_CACHE", raising=False)
    return tmp_path / "tables"


# ---------------------------------------------------------------------------
# build_many
# ---------------------------------------------------------------------------
def test_build_many_keeps_job_order_with_a_process_pool(monkeypatch):
    used = []

    class Recording(ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            used.append(kwargs.get("max_workers"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tablecache, "ProcessPoolExecutor", Recording)
    # volumes 4.2 M, 1.6 M and 16.8 M: neither ascending nor descending
    sigs = [matmul_sig(8, 512, 1024), matmul_sig(4, 512, 768), matmul_sig(8, 1024, 2048)]
    volumes = [float(np.prod(s.lengths)) for s in sigs]
    assert min(volumes) > 1e6 and len(set(volumes)) == 3
    assert volumes != sorted(volumes) and volumes != sorted(volumes, reverse=True)
    tables = tablecache.build_many(plantable.build_job, [(s, MK2) for s in sigs], workers=2)
    assert used == [2], "the process pool was not used"
    assert [t.sig for t in tables] == sigs
    for sig, table in zip(sigs, tables):
        assert_same_table(table, plantable.build_plan_table(sig, MK2))


def test_build_many_serial_path_and_empty():
    sigs = [matmul_sig(4, 256, 512), matmul_sig(8, 128, 256)]  # small: built in this process
    tables = tablecache.build_many(plantable.build_job, [(s, MK2) for s in sigs], workers=2)
    assert [t.sig for t in tables] == sigs
    assert tablecache.build_many(plantable.build_job, [], workers=2) == []


# ---------------------------------------------------------------------------
# the disk cache
# ---------------------------------------------------------------------------
def test_cache_round_trip(cache_root):
    sig = matmul_sig(8, 333, 777)
    assert plantable.load_cached(sig, MK2) is None
    table = plantable.plan_table(sig, MK2)
    files = list(cache_root.glob("*.npz"))
    assert [f.name for f in files] == [f"{tablecache.table_key(sig, MK2)}.npz"]
    assert not list(cache_root.glob("*.tmp*"))  # written atomically, no leftovers
    loaded = plantable.load_cached(sig, MK2)
    assert loaded is not None and loaded is not table
    assert_same_table(loaded, table)
    for name in ARRAYS:
        assert getattr(loaded, name).dtype == getattr(table, name).dtype, name
    assert loaded.build_seconds == pytest.approx(table.build_seconds)
    # the HBM bandwidth is not part of the key: another bandwidth reads the same file
    assert_same_table(plantable.load_cached(sig, MK2.with_overrides(hbm_bytes_per_s=1e12)), table)
    # a change in a costing field is a different table
    assert plantable.load_cached(sig, MK2.with_overrides(noc_scale=2.0)) is None


def test_plan_table_reads_the_disk_cache(cache_root, monkeypatch):
    sig = matmul_sig(8, 334, 777)
    first = plantable.plan_table(sig, MK2)
    plantable.clear_memory()

    def no_build(*args, **kwargs):
        raise AssertionError("table rebuilt although it is cached on disk")

    monkeypatch.setattr(plantable, "build_plan_table", no_build)
    assert_same_table(plantable.plan_table(sig, MK2), first)


def test_garbage_cache_file_is_ignored_and_rebuilt(cache_root, monkeypatch):
    sig = matmul_sig(8, 335, 777)
    table = plantable.plan_table(sig, MK2)
    path = cache_root / f"{tablecache.table_key(sig, MK2)}.npz"
    path.write_bytes(b"this is not an npz file")
    assert plantable.load_cached(sig, MK2) is None
    plantable.clear_memory()
    rebuilt = plantable.plan_table(sig, MK2)
    assert_same_table(rebuilt, table)
    assert_same_table(plantable.load_cached(sig, MK2), table)  # the file was replaced by a good one


def test_cache_file_missing_an_array_is_ignored(cache_root):
    sig = matmul_sig(8, 336, 777)
    plantable.plan_table(sig, MK2)
    path = cache_root / f"{tablecache.table_key(sig, MK2)}.npz"
    np.savez_compressed(path, cold=np.zeros(3))  # a foreign file with the right name
    assert plantable.load_cached(sig, MK2) is None


def test_valid_cache_file_copied_over_another_is_rebuilt_not_trusted(cache_root, monkeypatch):
    """Two good tables; one's file copied over the other's name. The file is whole and loads, but it holds
    another operator's table: its stored key does not match, so it is rebuilt, never returned."""
    a, b = matmul_sig(8, 341, 777), matmul_sig(8, 342, 777)
    table_a, table_b = plantable.plan_table(a, MK2), plantable.plan_table(b, MK2)
    path_a = cache_root / f"{tablecache.table_key(a, MK2)}.npz"
    path_b = cache_root / f"{tablecache.table_key(b, MK2)}.npz"
    path_b.write_bytes(path_a.read_bytes())
    assert plantable.load_cached(b, MK2) is None
    plantable.clear_memory()
    built = []
    real = plantable.build_plan_table

    def counting(sig, chip):
        built.append(sig)
        return real(sig, chip)

    monkeypatch.setattr(plantable, "build_plan_table", counting)
    rebuilt = plantable.plan_table(b, MK2)
    assert built == [b]
    assert_same_table(rebuilt, table_b)
    assert rebuilt.sig != table_a.sig
    assert_same_table(plantable.load_cached(b, MK2), table_b)  # and the good table is stored again


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped"])
def test_damaged_cache_file_is_ignored(cache_root, damage):
    sig = matmul_sig(8, 337, 777)
    plantable.plan_table(sig, MK2)
    path = cache_root / f"{tablecache.table_key(sig, MK2)}.npz"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:])
    assert plantable.load_cached(sig, MK2) is None


def test_no_cache_writes_nothing(tmp_path, monkeypatch, fresh_memory):
    monkeypatch.setenv("ELK_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ELK_NO_CACHE", "1")
    assert tablecache.cache_dir() is None
    sig = matmul_sig(8, 338, 777)
    table = plantable.plan_table(sig, MK2)
    assert len(table) > 0
    assert list(tmp_path.rglob("*")) == []
    assert plantable.load_cached(sig, MK2) is None
    monkeypatch.setenv("ELK_NO_CACHE", "0")  # "0" means caching is on
    assert tablecache.cache_dir() == tmp_path / "tables"


def test_unwritable_cache_dir_does_not_break_building(tmp_path, monkeypatch, fresh_memory):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ELK_CACHE_DIR", str(blocker))
    sig = matmul_sig(8, 339, 777)
    table = plantable.plan_table(sig, MK2)
    assert len(table) > 0 and plantable.load_cached(sig, MK2) is None


def test_tables_for_shares_one_table_per_shape(cache_root):
    ops = [einsum_op("u0", "unary", "te->te", dict(t=8, e=340), ["x"], "a"),
           einsum_op("u1", "unary", "te->te", dict(t=8, e=340), ["a"], "b"),
           einsum_op("u2", "unary", "te->te", dict(t=8, e=340), ["b"], "c"),
           einsum_op("mm", "matmul", "te,ef->tf", dict(t=8, e=340, f=777), ["c", "w"], "d")]
    program = Program.from_ops("p", ops)
    # u0 reads x from HBM, u1 and u2 read on-chip data: two unary shapes
    assert program.ops[0].signature != program.ops[1].signature == program.ops[2].signature
    tables = plantable.tables_for(program, MK2, workers=1)
    assert tables[1] is tables[2] and tables[0] is not tables[1]
    assert [t.sig for t in tables] == [op.signature for op in program.ops]
    assert len(list(cache_root.glob("*.npz"))) == 3
