"""Allocation problems: CSV format, bad input named by row, the validator, the max-load bound."""
from __future__ import annotations

import re

import numpy as np
import pytest

from alloc_cases import DATA, MINIMALLOC, minimalloc, perfect_packing
from conftest import shared_file
from elk.allocation import (AllocationProblem, AllocationResult, capacity_from_name, first_overlap, load_profile,
                            max_load_lower_bound, read_csv, read_placement, validate, write_csv)
from elk.errors import AllocationInputError, ElkError, InvalidPlacementError


def write(tmp_path, text: str, name: str = "in.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_worked_example_lower_bound():
    # x [0,4) 3, y [2,6) 5, z [4,8) 2, w [6,10) 4: loads 3, 8, 7, 6, 4 on the sections.
    # Half-open ranges: x ends where z starts, so t=4 holds y+z (7), not x+y+z (10).
    p = read_csv(DATA / "worked.csv")
    assert p.ids == ("x", "y", "z", "w")
    times, load = load_profile(p)
    assert times.tolist() == [0, 2, 4, 6, 8, 10]
    assert load.tolist() == [3, 8, 7, 6, 4, 0]
    assert max_load_lower_bound(p) == 8


def test_lower_bound_touching_ranges_do_not_add():
    p = AllocationProblem.from_arrays([0, 5, 5], [5, 10, 6], [7, 7, 1])
    assert max_load_lower_bound(p) == 8
    assert max_load_lower_bound(AllocationProblem.from_arrays([], [], [])) == 0


def test_csv_round_trip_with_alignment_and_fixed(tmp_path):
    p = read_csv(DATA / "mixed.96.csv", capacity=96)
    assert p.alignment.tolist() == [1, 8, 8, 4, 1, 16, 1]
    assert p.fixed_offset.tolist() == [0, -1, -1, -1, -1, -1, -1]
    write_csv(p, None, tmp_path / "same.csv")
    q = read_csv(tmp_path / "same.csv", capacity=96)
    assert q == p
    offsets = np.array([0, 64, 16, 48, 40, 16, 40])
    validate(p, offsets)
    write_csv(p, offsets, tmp_path / "solved.csv")
    text = (tmp_path / "solved.csv").read_text().splitlines()
    assert text[0] == "id,lower,upper,size,alignment,offset"
    solved, placed = read_placement(tmp_path / "solved.csv")
    assert placed.tolist() == offsets.tolist() and (solved.fixed_offset == -1).all()
    assert read_csv(tmp_path / "solved.csv").fixed_offset.tolist() == offsets.tolist()  # a solution read back as fixed


def test_write_without_alignment_column(tmp_path):
    p = read_csv(DATA / "worked.csv")
    write_csv(p, [0, 3, 0, 5], tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text().splitlines()[:2] == ["id,lower,upper,size,offset", "x,0,4,3,0"]


def test_offset_column_can_be_ignored(tmp_path):
    path = write(tmp_path, "id,lower,upper,size,offset\na,0,2,4,8\nb,1,3,4,0\n")
    assert read_csv(path).fixed_offset.tolist() == [8, 0]
    assert read_csv(path, offsets="ignore").fixed_offset.tolist() == [-1, -1]


def test_capacity_from_file_name():
    assert capacity_from_name("A.1048576.csv") == 1048576
    assert capacity_from_name("dir/tight.8.csv") == 8
    assert capacity_from_name("worked.csv") is None


@pytest.mark.parametrize("text, pattern", [
    ("id,lower,upper\na,0,1\n", r"header has missing column 'size'"),
    ("id,lower,upper,size,colour\na,0,1,2,red\n", r"unknown column 'colour'"),
    ("id,lower,upper,size\na,0,1,2\nb,0,1\n", r"line 3 \(id 'b'\): 3 fields, expected 4"),
    ("id,lower,upper,size\na,0,1,2\nb,0,x,2\n", r"line 3 \(id 'b'\): upper 'x' is not an integer"),
    ("id,lower,upper,size\na,0,1,2.5\n", r"line 2 \(id 'a'\): size '2.5' is not an integer"),
    ("id,lower,upper,size\na,0,1,2\nb,4,4,2\n", r"line 3 \(id 'b'\): upper 4 <= lower 4"),
    ("id,lower,upper,size\na,5,1,2\n", r"line 2 \(id 'a'\): upper 1 <= lower 5"),
    ("id,lower,upper,size\na,0,1,-2\n", r"line 2 \(id 'a'\): negative size -2"),
    ("id,lower,upper,size\na,-1,1,2\n", r"line 2 \(id 'a'\): negative lower -1"),
    ("id,lower,upper,size\na,0,1,2\n\nb,0,1,2\na,2,3,1\n", r"line 5 \(id 'a'\): duplicate id 'a' \(first on line 2\)"),
    ("id,lower,upper,size,alignment\na,0,1,2,0\n", r"line 2 \(id 'a'\): alignment 0 < 1"),
    ("id,lower,upper,size,alignment,offset\na,0,1,2,4,6\n", r"line 2: buffer 'a': fixed offset 6 is not a multiple"),
    ("id,lower,upper,size\n,0,1,2\n", r"line 2: empty id"),
    ("", r"empty file"),
])
def test_bad_csv_names_the_row(tmp_path, text, pattern):
    path = write(tmp_path, text)
    with pytest.raises(AllocationInputError, match=pattern):
        read_csv(path)


def test_buffer_larger_than_capacity_names_the_row(tmp_path):
    path = write(tmp_path, "id,lower,upper,size\na,0,1,2\nbig,0,1,9\n")
    with pytest.raises(AllocationInputError, match=r"line 3 \(id 'big'\): size 9 is larger than the capacity 8"):
        read_csv(path, capacity=8)
    fixed = write(tmp_path, "id,lower,upper,size,offset\na,0,1,2,7\n", "f.csv")
    with pytest.raises(AllocationInputError, match=r"line 2: buffer 'a' of size 2 at fixed offset 7 does not fit"):
        read_csv(fixed, capacity=8)


def test_missing_file_is_an_elk_error(tmp_path):
    with pytest.raises(ElkError, match="cannot read"):
        read_csv(tmp_path / "nope.csv")


def test_from_arrays_checks():
    with pytest.raises(AllocationInputError, match="duplicate buffer id 'a'"):
        AllocationProblem.from_arrays([0, 0], [1, 1], [1, 1], ids=["a", "a"])
    with pytest.raises(AllocationInputError, match="buffer '1': upper 3 <= lower 3"):
        AllocationProblem.from_arrays([0, 3], [1, 3], [1, 1])
    with pytest.raises(AllocationInputError, match="size has 1 entries for 2 buffers"):
        AllocationProblem.from_arrays([0, 3], [1, 4], [1])
    with pytest.raises(AllocationInputError, match="not an integer"):
        AllocationProblem.from_arrays([0], [1.5], [1])
    p = AllocationProblem.from_arrays([0], [1], [2.0], capacity=4)
    assert p.size.dtype == np.int64 and p.capacity == 4
    with pytest.raises(ValueError):
        p.size[0] = 3  # read-only: a frozen problem is really frozen


def test_validator_accepts_and_names_violations():
    p = read_csv(DATA / "worked.csv")  # x [0,4) 3, y [2,6) 5, z [4,8) 2, w [6,10) 4
    good = np.array([0, 3, 0, 2])  # z and x share addresses but not time (x ends at 4)
    validate(p, good, capacity=8)
    with pytest.raises(InvalidPlacementError, match=r"buffers 'x' and 'y' overlap: live \[0, 4\) and \[2, 6\), "
                                                    r"addresses \[0, 3\) and \[2, 7\)"):
        validate(p, [0, 2, 0, 3])
    with pytest.raises(InvalidPlacementError, match=r"buffers 'z' and 'w' overlap"):
        validate(p, [0, 3, 0, 0])
    with pytest.raises(InvalidPlacementError, match=r"buffer 'y' ends at 8 .* over the capacity 7"):
        validate(p, good, capacity=7)
    with pytest.raises(InvalidPlacementError, match=r"buffer 'x': negative offset -1"):
        validate(p, [-1, 3, 0, 2])
    with pytest.raises(InvalidPlacementError, match=r"3 offsets for 4 buffers"):
        validate(p, [0, 3, 0])
    q = read_csv(DATA / "mixed.96.csv", capacity=96)
    with pytest.raises(InvalidPlacementError, match=r"buffer 'pinned': fixed at 0 but placed at 8"):
        validate(q, [8, 64, 16, 48, 40, 16, 40])
    with pytest.raises(InvalidPlacementError, match=r"buffer 'a': offset 60 is not a multiple of its alignment 8"):
        validate(q, [0, 60, 16, 48, 40, 16, 40])


def test_validator_on_zero_size_and_identical_offsets():
    p = AllocationProblem.from_arrays([0, 0, 0], [4, 4, 4], [0, 3, 3])
    validate(p, [1, 0, 3])
    assert first_overlap(p, np.array([0, 3, 3])) == (1, 2)
    assert first_overlap(p, np.array([5, 0, 3])) is None


@pytest.mark.parametrize("seed", range(5))
def test_validator_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    p, known = perfect_packing(25, seed)
    validate(p, known)
    for _ in range(30):
        off = known.copy()
        k = rng.integers(p.n)
        off[k] = rng.integers(0, 64)
        lo, up, sz = p.lower, p.upper, p.size
        t = (lo[:, None] < up[None, :]) & (lo[None, :] < up[:, None])
        a = (off[:, None] < off[None, :] + sz[None, :]) & (off[None, :] < off[:, None] + sz[:, None])
        clash = t & a & ~np.eye(p.n, dtype=bool) & (sz[:, None] > 0) & (sz[None, :] > 0)
        assert (first_overlap(p, off) is not None) == bool(clash.any())


def test_result_status_is_checked():
    with pytest.raises(ValueError):
        AllocationResult(None, None, 0, "weird", "heuristic")


NOTICE_BOUNDS = {
    "iree/iree_mobilenet.csv": 5_706_112, "iree/iree_mobilebert.csv": 1_674_240,
    "somas_tensors/resnet50.csv": 1_515_472_556, "somas_tensors/tiny_bert.csv": 758_936_113,
    "somas_tensors/bert_base.csv": 15_734_934_689, "somas_tensors/bert_large.csv": 4_310_278_401,
    "somas_tensors/bert_nezha.csv": 16_986_728_161, "somas_tensors/pangu_13B.csv": 16_546_177_037,
    "somas_tensors/pangu_2.6B.csv": 5_530_099_775, "iopddl/G_1.csv": 3_030_937_746,
    "iopddl/S_1.csv": 1_498_635_932, "iopddl/Y_1.csv": 497_261_190_115,
}


@pytest.mark.parametrize("name", sorted(NOTICE_BOUNDS))
def test_idealloc_bounds_match_notice(name):
    p = read_csv(shared_file("idealloc", name), offsets="ignore")
    assert max_load_lower_bound(p) == NOTICE_BOUNDS[name]


def test_iree_own_placements_are_valid():
    for name, peak in (("iree_mobilenet", 7_311_744), ("iree_mobilebert", 2_408_448)):
        p, offsets = read_placement(shared_file("idealloc", "iree", f"{name}.csv"))
        validate(p, offsets)
        assert int((offsets + p.size).max()) == peak


def test_minimalloc_files_read_with_capacity_from_name():
    for name in MINIMALLOC:  # all 11, by name: a missing one fails (shared_file), a glob would just skip it
        path = minimalloc(name)
        p = read_csv(path, capacity=capacity_from_name(path))
        assert p.capacity == 1_048_576 and max_load_lower_bound(p) <= p.capacity
    assert re.fullmatch(r"\d+", str(capacity_from_name("input.12.csv")))


def test_shared_benchmarks_skip_only_when_shared_is_absent(tmp_path):
    """No ../shared at all (a user's clone): skip. ../shared present but a benchmark file missing: fail,
    so CI cannot lose checks by a moved or deleted file."""
    root = tmp_path / "shared"
    with pytest.raises(pytest.skip.Exception):
        shared_file("minimalloc", "challenging", "A.1048576.csv", root=root)
    (root / "benchmarks" / "minimalloc").mkdir(parents=True)
    with pytest.raises(pytest.fail.Exception, match="missing although ../shared is present"):
        shared_file("minimalloc", "challenging", "A.1048576.csv", root=root)
    present = root / "benchmarks" / "minimalloc" / "challenging" / "A.1048576.csv"
    present.parent.mkdir()
    present.write_text("id,lower,upper,size\n")
    assert shared_file("minimalloc", "challenging", "A.1048576.csv", root=root) == present
