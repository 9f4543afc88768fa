"""The common CSV format of allocation problems, ``id,lower,upper,size[,alignment][,offset]`` (MiniMalloc's
and idealloc's): reading problems and placements, writing them atomically."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from elk.allocation.problem import MAX_VALUE, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, AllocationProblem
from elk.errors import AllocationInputError, InvalidPlacementError

_CAPACITY_IN_NAME = re.compile(r"\.(\d+)$")


def capacity_from_name(path: str | Path) -> int | None:
    """MiniMalloc names files ``NAME.CAPACITY.csv``; return that capacity, or None."""
    m = _CAPACITY_IN_NAME.search(Path(path).stem)
    return int(m.group(1)) if m else None


def _parse_int(text: str, column: str, where: str) -> int:
    t = text.strip()
    shown = text if len(text) <= 40 else text[:37] + "..."
    try:
        value = int(t)
    except ValueError:
        raise AllocationInputError(f"{where}: {column} '{shown}' is not an integer") from None
    if abs(value) > MAX_VALUE:
        raise AllocationInputError(f"{where}: {column} '{shown}' is out of range (at most 2^48 = {MAX_VALUE})")
    return value


def _text(path: Path) -> str:
    """The file's text: UTF-8 (a byte-order mark is dropped); anything else is not a text CSV."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise AllocationInputError(f"cannot read {path}: it is a folder") from None
    except OSError as exc:
        raise AllocationInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise AllocationInputError(f"{path}: not a text CSV (it holds NUL bytes: a binary file?)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AllocationInputError(f"{path}: not a text CSV (not UTF-8: byte 0x{raw[exc.start]:02x} at "
                                   f"offset {exc.start})") from None


def read_csv(path: str | Path, capacity: int | None = None, *, offsets: str = "fixed") -> AllocationProblem:
    """Read ``id,lower,upper,size[,alignment][,offset]`` (header row required, columns in any order).

    ``offsets``: "fixed" reads the offset column as fixed offsets (empty or -1
    = free), "ignore" drops it (e.g. idealloc's IREE files, whose offset
    column is IREE's own solution; see :func:`read_placement`). Every
    malformed row is named by its line number and id.
    """
    problem, _ = _read(path, capacity, offsets)
    return problem


def read_placement(path: str | Path, capacity: int | None = None) -> tuple[AllocationProblem, np.ndarray]:
    """A file whose offset column is a solution: the problem (all buffers free) and those offsets."""
    problem, offsets = _read(path, capacity, "solution")
    return problem, offsets


def _read(path: str | Path, capacity: int | None, offsets: str) -> tuple[AllocationProblem, np.ndarray | None]:
    if offsets not in ("fixed", "ignore", "solution"):
        raise AllocationInputError(f"offsets must be 'fixed' or 'ignore', got {offsets!r}")
    path = Path(path)
    handle = io.StringIO(_text(path), newline="")
    ids: list[str] = []
    cols: dict[str, list[int]] = {c: [] for c in ("lower", "upper", "size", "alignment", "offset")}
    lines: list[int] = []
    seen: dict[str, int] = {}
    reader = csv.reader(handle)
    header: list[str] | None = None
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if unknown or missing or len(set(header)) != len(header):
                    what = (f"unknown column '{unknown[0]}'" if unknown else
                            f"missing column '{missing[0]}'" if missing else "a repeated column")
                    raise AllocationInputError(f"{path} line {reader.line_num}: header has {what} (expected "
                                               "id,lower,upper,size[,alignment][,offset])")
                continue
            line = reader.line_num
            key = row[header.index("id")].strip() if len(row) > header.index("id") else ""
            where = f"{path} line {line}" + (f" (id '{key}')" if key else "")
            if len(row) != len(header):
                raise AllocationInputError(f"{where}: {len(row)} fields, expected {len(header)} "
                                           f"({','.join(header)})")
            values = dict(zip(header, row))
            if not key:
                raise AllocationInputError(f"{where}: empty id")
            if key in seen:
                raise AllocationInputError(f"{where}: duplicate id '{key}' (first on line {seen[key]})")
            seen[key] = line
            lo = _parse_int(values["lower"], "lower", where)
            up = _parse_int(values["upper"], "upper", where)
            size = _parse_int(values["size"], "size", where)
            align = _parse_int(values["alignment"], "alignment", where) if "alignment" in values else 1
            text = values.get("offset", "").strip()
            off = _parse_int(text, "offset", where) if text else -1
            if lo < 0:
                raise AllocationInputError(f"{where}: negative lower {lo}")
            if up <= lo:
                raise AllocationInputError(f"{where}: upper {up} <= lower {lo} (live ranges are half-open "
                                           "[lower, upper) and must not be empty)")
            if size < 0:
                raise AllocationInputError(f"{where}: negative size {size}")
            if align < 1:
                raise AllocationInputError(f"{where}: alignment {align} < 1")
            if off < -1:
                raise AllocationInputError(f"{where}: negative offset {off} (-1 or empty = free)")
            if offsets == "solution" and off < 0:
                raise AllocationInputError(f"{where}: no offset (a placement file needs every offset)")
            if capacity is not None and size > capacity:
                raise AllocationInputError(f"{where}: size {size} is larger than the capacity {capacity}")
            ids.append(key)
            lines.append(line)
            for c, v in (("lower", lo), ("upper", up), ("size", size), ("alignment", align), ("offset", off)):
                cols[c].append(v)
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise AllocationInputError(f"{path} line {reader.line_num}: not a readable CSV row ({exc})") from None
    if header is None:
        raise AllocationInputError(f"{path}: empty file (expected a header id,lower,upper,size)")
    fixed = cols["offset"] if offsets == "fixed" else [-1] * len(ids)
    try:
        problem = AllocationProblem.from_arrays(cols["lower"], cols["upper"], cols["size"], ids=ids,
                                                alignment=cols["alignment"], fixed_offset=fixed,
                                                capacity=capacity, name=path.stem)
    except AllocationInputError as exc:  # name the row, not only the buffer
        m = re.match(r"buffer '([^']*)'", str(exc))
        if m and m.group(1) in seen:
            raise AllocationInputError(f"{path} line {seen[m.group(1)]}: {exc}") from None
        raise
    solution = np.asarray(cols["offset"], np.int64) if offsets == "solution" else None
    return problem, solution


def write_csv(problem: AllocationProblem, offsets: Sequence[int] | np.ndarray | None, path: str | Path) -> None:
    """Write the problem and a placement: ``id,lower,upper,size[,alignment],offset``.

    The alignment column appears only when some buffer has one; ``offsets``
    None writes the fixed offsets (empty = free), i.e. the problem itself.
    """
    path = Path(path)
    aligned = bool((problem.alignment != 1).any())
    if offsets is None:
        column = [str(o) if o >= 0 else "" for o in problem.fixed_offset.tolist()]
        has_offset = bool((problem.fixed_offset >= 0).any())
    else:
        off = np.asarray(offsets, np.int64)
        if off.shape != (problem.n,):
            raise InvalidPlacementError(f"{off.size} offsets for {problem.n} buffers")
        column = [str(o) for o in off.tolist()]
        has_offset = True
    header = ["id", "lower", "upper", "size"] + (["alignment"] if aligned else []) + (["offset"] if has_offset else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, (key, lo, up, size, al) in enumerate(zip(problem.ids, problem.lower.tolist(), problem.upper.tolist(),
                                                         problem.size.tolist(), problem.alignment.tolist())):
            row = [key, lo, up, size] + ([al] if aligned else []) + ([column[i]] if has_offset else [])
            w.writerow(row)
