"""The allocation problem and a solver's answer to it (see :mod:`elk.allocation`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from elk.errors import AllocationInputError

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
        """Number of buffers."""
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def free(self) -> np.ndarray:
        """Mask of buffers the allocator may move."""
        return self.fixed_offset < 0

    def with_capacity(self, capacity: int | None) -> "AllocationProblem":
        """The same buffers with another capacity (None: minimise the peak)."""
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
        """The result's facts (solver, status, peak, bounds, effort) as a flat dict for reports and JSON."""
        return {"solver": self.solver, "version": self.solver_version, "status": self.status, "peak": self.peak,
                "lower_bound": self.lower_bound, "proven_bound": self.proven_bound, "capacity": self.capacity,
                "seconds": round(self.seconds, 3), "workers": self.workers, "seed": self.seed,
                "time_limit": self.time_limit, "params": self.params, "message": self.message}
