"""On-chip memory allocation problems: buffers with fixed live ranges that need addresses.

An allocation problem (dynamic storage allocation) is a set of buffers, each
live over a half-open interval ``[lower, upper)`` and ``size`` address units
tall, optionally with an ``alignment`` (its offset must be a multiple) and a
fixed offset. A placement gives every buffer an offset so that buffers live
at the same time occupy disjoint address ranges ``[offset, offset + size)``
and every ``offset + size <= capacity``. Its *peak* is the largest
``offset + size``.

This module is the problem side only: the data class, the common CSV format
(``id,lower,upper,size[,alignment][,offset]``, as used by MiniMalloc and
idealloc), the validator every placement elk returns must pass, and the
max-load lower bound. Allocators live in ``solvers/`` (``solvers.alloc.allocate``).
"""
from __future__ import annotations

import csv
import heapq
import io
import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from elk.errors import AllocationInputError, InvalidPlacementError

#: Largest magnitude of a number in a CSV: sums of many such values must stay inside int64.
MAX_VALUE = 2**48
REQUIRED_COLUMNS = ("id", "lower", "upper", "size")
OPTIONAL_COLUMNS = ("alignment", "offset")
STATUSES = ("optimal", "feasible", "infeasible", "unknown")


def _int_array(values: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise AllocationInputError(f"{name} must be a one-dimensional sequence, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) \
                and np.all(np.abs(arr) < 2.0**63):
            arr = arr.astype(np.int64)
        else:  # name the first value that is no int64 (not whole, not a number, or too large: an object array)
            for i, v in enumerate(arr.tolist()):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        (isinstance(v, float) and not (math.isfinite(v) and v.is_integer())):
                    raise AllocationInputError(f"{name} of buffer {i} is not an integer: {v!r}")
                if not -(2**63) <= v < 2**63:
                    raise AllocationInputError(f"{name} of buffer {i} is out of range: {v}")
    arr = arr.astype(np.int64, copy=True)
    if n is not None and arr.size != n:
        raise AllocationInputError(f"{name} has {arr.size} entries for {n} buffers")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class AllocationProblem:
    """Buffers to place. Arrays are read-only int64; ``alignment`` 1 = none, ``fixed_offset`` -1 = free.

    ``capacity`` None means "no limit given" (the natural task is then to
    minimise the peak). Construction checks everything a placement could not
    repair, naming the first offending buffer, so an allocator never sees a
    malformed problem.
    """

    ids: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    size: np.ndarray
    alignment: np.ndarray
    fixed_offset: np.ndarray
    capacity: int | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for attr in ("lower", "upper", "size", "alignment", "fixed_offset"):
            object.__setattr__(self, attr, _int_array(getattr(self, attr), attr, n))
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        if self.capacity is not None:
            if isinstance(self.capacity, bool) or int(self.capacity) != self.capacity or self.capacity < 0:
                raise AllocationInputError(f"capacity must be a non-negative integer, got {self.capacity!r}")
            object.__setattr__(self, "capacity", int(self.capacity))
        seen: dict[str, int] = {}
        for i, key in enumerate(self.ids):
            if key in seen:
                raise AllocationInputError(f"duplicate buffer id '{key}' (buffers {seen[key]} and {i})")
            seen[key] = i
        problems = (
            (self.upper <= self.lower, lambda i: f"upper {self.upper[i]} <= lower {self.lower[i]} (live ranges are "
                                                 "half-open [lower, upper) and must not be empty)"),
            (self.lower < 0, lambda i: f"negative lower {self.lower[i]}"),
            (self.size < 0, lambda i: f"negative size {self.size[i]}"),
            (self.alignment < 1, lambda i: f"alignment {self.alignment[i]} < 1 (1 = no alignment)"),
            (self.fixed_offset < -1, lambda i: f"negative fixed offset {self.fixed_offset[i]} (-1 = free)"),
            ((self.fixed_offset >= 0) & (self.fixed_offset % np.maximum(self.alignment, 1) != 0),
             lambda i: f"fixed offset {self.fixed_offset[i]} is not a multiple of its alignment {self.alignment[i]}"),
        )
        for bad, message in problems:
            if bad.any():
                i = int(np.argmax(bad))
                raise AllocationInputError(f"buffer '{self.ids[i]}': {message(i)}")
        if self.capacity is not None:
            self.check_capacity(self.capacity)

    def check_capacity(self, capacity: int) -> None:
        """Raise if a buffer alone cannot fit under ``capacity`` (too large, or fixed above it)."""
        top = np.where(self.fixed_offset >= 0, self.fixed_offset, 0) + self.size
        if (top > capacity).any():
            i = int(np.argmax(top > capacity))
            where = f"at fixed offset {self.fixed_offset[i]} " if self.fixed_offset[i] >= 0 else ""
            raise AllocationInputError(f"buffer '{self.ids[i]}' of size {self.size[i]} {where}does not fit in "
                                       f"capacity {capacity}")

    def __eq__(self, other: object) -> bool:  # arrays compare element-wise, so spell equality out
        if not isinstance(other, AllocationProblem):
            return NotImplemented
        return self.ids == other.ids and self.capacity == other.capacity and all(
            np.array_equal(getattr(self, a), getattr(other, a))
            for a in ("lower", "upper", "size", "alignment", "fixed_offset"))

    def __hash__(self) -> int:
        return hash((self.ids, self.capacity, self.size.tobytes(), self.lower.tobytes(), self.upper.tobytes()))

    @classmethod
    def from_arrays(cls, lower: Sequence[int], upper: Sequence[int], size: Sequence[int], *,
                    ids: Iterable[Any] | None = None, alignment: Sequence[int] | None = None,
                    fixed_offset: Sequence[int] | None = None, capacity: int | None = None,
                    name: str = "") -> "AllocationProblem":
        """Build a problem from plain sequences; ids default to "0", "1", ..."""
        n = len(lower)
        ids_t = tuple(str(i) for i in (range(n) if ids is None else ids))
        if len(ids_t) != n:
            raise AllocationInputError(f"{len(ids_t)} ids for {n} buffers")
        return cls(ids=ids_t, lower=lower, upper=upper, size=size,
                   alignment=np.ones(n, np.int64) if alignment is None else alignment,
                   fixed_offset=np.full(n, -1, np.int64) if fixed_offset is None else fixed_offset,
                   capacity=capacity, name=name)

    @property
    def n(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def free(self) -> np.ndarray:
        """Mask of buffers the allocator may move."""
        return self.fixed_offset < 0

    def with_capacity(self, capacity: int | None) -> "AllocationProblem":
        return AllocationProblem(self.ids, self.lower, self.upper, self.size, self.alignment, self.fixed_offset,
                                 capacity, self.name)

    def without_fixed(self) -> "AllocationProblem":
        """The same buffers, all free (for reading a file's offset column as a reference solution)."""
        return AllocationProblem(self.ids, self.lower, self.upper, self.size, self.alignment,
                                 np.full(self.n, -1, np.int64), self.capacity, self.name)


@dataclass
class AllocationResult:
    """What an allocator found and proved, and how (recorded with every exact result).

    ``offsets`` is None unless a placement passing :func:`validate` was found
    (at ``capacity`` when one was asked for). ``peak`` is that placement's
    peak; ``lower_bound`` the max-load bound (or higher, if fixed buffers
    reach above it); ``proven_bound`` what the solver itself proved about the
    least peak (None when it proved nothing beyond ``lower_bound``).
    Status: "optimal" (least peak proven: it equals a proven bound),
    "feasible" (valid, within the capacity if one was asked for; least peak
    not proven), "infeasible" (proven: no placement within the capacity),
    "unknown" (nothing valid found within the limit).
    """

    offsets: np.ndarray | None
    peak: int | None
    lower_bound: int
    status: str
    solver: str
    solver_version: str = ""
    seconds: float = 0.0
    proven_bound: int | None = None
    workers: int = 1
    seed: int = 0
    params: dict = field(default_factory=dict)
    message: str = ""
    capacity: int | None = None
    time_limit: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ratio(self) -> float | None:
        """Peak over the lower bound (1.0 = provably optimal)."""
        if self.peak is None or self.lower_bound <= 0:
            return None
        return self.peak / self.lower_bound

    def summary(self) -> dict:
        return {"solver": self.solver, "version": self.solver_version, "status": self.status, "peak": self.peak,
                "lower_bound": self.lower_bound, "proven_bound": self.proven_bound, "capacity": self.capacity,
                "seconds": round(self.seconds, 3), "workers": self.workers, "seed": self.seed,
                "time_limit": self.time_limit, "params": self.params, "message": self.message}


# ---------------------------------------------------------------- CSV

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


# ---------------------------------------------------------------- bounds and validation

def load_profile(problem: AllocationProblem) -> tuple[np.ndarray, np.ndarray]:
    """Event times and the total live size just after each (ends before starts at equal times).

    Returns ``(times, load)`` with ``load[k]`` the live size on
    ``[times[k], times[k+1])``; vectorized (sort the events, cumulative sum).
    """
    times = np.concatenate([problem.lower, problem.upper])
    delta = np.concatenate([problem.size, -problem.size])
    order = np.lexsort((delta, times))  # at equal times the ends (negative deltas) come first
    times, load = times[order], np.cumsum(delta[order])
    last = np.r_[times[1:] != times[:-1], True]  # keep the load after the last event at each time
    return times[last], load[last]


def max_load_lower_bound(problem: AllocationProblem) -> int:
    """Max over time of the total size of live buffers: no placement can have a smaller peak."""
    if problem.n == 0:
        return 0
    _, load = load_profile(problem)
    return int(max(load.max(), 0))


def lower_bound(problem: AllocationProblem) -> int:
    """The max-load bound, raised by fixed buffers that sit higher than it."""
    bound = max_load_lower_bound(problem)
    fixed = problem.fixed_offset >= 0
    if fixed.any():
        bound = max(bound, int((problem.fixed_offset[fixed] + problem.size[fixed]).max()))
    return bound


def peak_of(problem: AllocationProblem, offsets: np.ndarray) -> int:
    if problem.n == 0:
        return 0
    return int((np.asarray(offsets, np.int64) + problem.size).max(initial=0))


def validate(problem: AllocationProblem, offsets: Sequence[int] | np.ndarray, capacity: int | None = None) -> None:
    """Raise :class:`InvalidPlacementError` naming the first violation; return None if the placement is valid.

    Checks, in this order: one integer offset per buffer, none negative,
    fixed buffers where they were fixed, alignment, the first buffer (in
    input order) over the capacity (``capacity`` or the problem's), and the
    first overlapping pair met by a sweep over time (buffers of size 0
    occupy no addresses and never overlap).
    """
    off = np.asarray(offsets)
    if off.shape != (problem.n,):
        raise InvalidPlacementError(f"{off.size} offsets for {problem.n} buffers")
    if off.size and not np.issubdtype(off.dtype, np.integer):
        raise InvalidPlacementError("offsets must be integers")
    off = off.astype(np.int64)
    ids = problem.ids
    checks = (
        (off < 0, lambda i: f"negative offset {off[i]}"),
        ((problem.fixed_offset >= 0) & (off != problem.fixed_offset),
         lambda i: f"fixed at {problem.fixed_offset[i]} but placed at {off[i]}"),
        (off % problem.alignment != 0, lambda i: f"offset {off[i]} is not a multiple of its alignment "
                                                 f"{problem.alignment[i]}"),
    )
    for bad, message in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidPlacementError(f"buffer '{ids[i]}': {message(i)}")
    cap = problem.capacity if capacity is None else capacity
    end = off + problem.size
    if cap is not None and (end > cap).any():
        i = int(np.argmax(end > cap))
        raise InvalidPlacementError(f"buffer '{ids[i]}' ends at {end[i]} (offset {off[i]} + size "
                                    f"{problem.size[i]}), over the capacity {cap}")
    pair = first_overlap(problem, off)
    if pair is not None:
        i, j = pair
        raise InvalidPlacementError(
            f"buffers '{ids[i]}' and '{ids[j]}' overlap: live [{problem.lower[i]}, {problem.upper[i]}) and "
            f"[{problem.lower[j]}, {problem.upper[j]}), addresses [{off[i]}, {end[i]}) and [{off[j]}, {end[j]})")


def first_overlap(problem: AllocationProblem, offsets: np.ndarray) -> tuple[int, int] | None:
    """The first pair (earlier-placed, later) of buffers that overlap in time and address, or None.

    A sweep over buffers by start time keeps the live ones sorted by offset;
    as long as they are disjoint, a new buffer can only overlap its two
    neighbours in that order, so each start costs a bisection, not a scan.
    """
    lower, upper, size = problem.lower.tolist(), problem.upper.tolist(), problem.size.tolist()
    off = np.asarray(offsets, np.int64).tolist()
    order = np.lexsort((np.arange(problem.n), problem.lower)).tolist()
    live: list[tuple[int, int]] = []  # (offset, index), sorted; pairwise disjoint
    expiry: list[tuple[int, int]] = []  # heap of (upper, index)
    for j in order:
        if size[j] == 0:
            continue
        t = lower[j]
        while expiry and expiry[0][0] <= t:
            _, k = heapq.heappop(expiry)
            del live[bisect_left(live, (off[k], k))]
        key = (off[j], j)
        pos = bisect_left(live, key)
        if pos > 0:
            k = live[pos - 1][1]
            if off[k] + size[k] > off[j]:
                return (k, j)
        if pos < len(live):
            k = live[pos][1]
            if off[k] < off[j] + size[j]:
                return (k, j)
        live.insert(pos, key)
        heapq.heappush(expiry, (upper[j], j))
    return None


def is_valid(problem: AllocationProblem, offsets: np.ndarray | None, capacity: int | None = None) -> bool:
    if offsets is None:
        return False
    try:
        validate(problem, offsets, capacity)
    except InvalidPlacementError:
        return False
    return True


__all__ = ["maximal_sections", "AllocationProblem", "AllocationResult", "read_csv", "read_placement", "write_csv", "validate",
           "first_overlap", "is_valid", "max_load_lower_bound", "lower_bound", "load_profile", "peak_of",
           "capacity_from_name", "STATUSES"]


def maximal_sections(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time sections whose live set is a maximal clique of the interval graph, as [start, stop) in event times.

    A section's live set is contained in a neighbour's unless some buffer
    starts at its start and some buffer ends at its stop; only the others
    can hold a buffer's highest floor or a binding bound.
    """
    times = np.unique(np.concatenate([lower, upper]))
    starts = np.isin(times[:-1], lower)
    stops = np.isin(times[1:], upper)
    keep = starts & stops
    return times[:-1][keep], times[1:][keep]
