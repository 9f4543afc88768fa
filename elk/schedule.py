"""The one schedule type every strategy returns and the simulator judges."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Sequence

import numpy as np

from elk.errors import SolverConfigError


class NocMode(str, Enum):
    """How a backward pass resolves interconnect contention between a running operator and its loads.

    ``stretch``: the operator is lengthened until the loads leave it enough
    interconnect (the paper's delay-compute); ``push``: the operator keeps its
    time and the overlapping loads move earlier (delay-load); ``hybrid``: the
    better of the two for each operator; ``yield``: stretch, except that the loads move earlier out of the way
    of an exchange-bound operator (communication at least ``PassConfig.yield_share`` of its plan time), which a
    rigid load at share s would stretch by 1 / (1 - s): a norm's all-reduce by 20-50%; ``none``: contention
    ignored (Ideal's relaxed schedule).
    """

    STRETCH = "stretch"
    PUSH = "push"
    HYBRID = "hybrid"
    YIELD = "yield"
    NONE = "none"

    @classmethod
    def parse(cls, value: "str | NocMode") -> "NocMode":
        try:
            return cls(value)
        except ValueError:
            raise SolverConfigError(f"unknown NoC mode {value!r} (known: {', '.join(m.value for m in cls)})") \
                from None


class ColdVariant(str, Enum):
    """Basic's and Static's fixed plan rule: the smallest cold layout, or the largest whose hot plan fits."""

    MIN = "min-cold"
    MAX = "max-cold"


@dataclass(frozen=True)
class LoadOrderChoice:
    """ELK-Full's winning configuration: a permutation of a layer's groups, a NoC mode and a NoC penalty; under
    rigid loads also, where refining them paid, one interconnect share limit per group of the layer.
    ``rigid_loads``: the pass scheduled the loads as rigid ones on a chip with fluid loads (ELK-Full's
    ``rigid_paced`` search), and a repeat must too."""

    order: tuple[int, ...]
    noc_mode: NocMode
    noc_penalty: float
    group_thetas: tuple[float, ...] | None = None
    rigid_loads: bool = False


@dataclass
class Provenance:
    """How a strategy arrived at its schedule: what it chose and what it cost.

    A placement repair reads the choice to repeat it under a smaller byte
    budget (``theta``, ``variant``/``exec_region_kib``, ``load_order``); reports
    read the costs and, for exact designs, the per-window ``records`` and the
    ``warm_start`` they began from. Fields a design does not use stay None.
    """

    compile_seconds: float = 0.0
    #: interconnect share the winning pass allowed loads
    theta: float | None = None
    noc_mode: NocMode | None = None
    #: Basic / Static: the plan rule; Static: the execution region it won with
    variant: ColdVariant | None = None
    exec_region_kib: float | None = None
    #: ELK-Full: the winning (order, mode, penalty), or None when ELK-Dyn's own schedule won
    load_order: LoadOrderChoice | None = None
    #: counts of the design's search (orders, passes, splits tried...), for reports
    search: dict[str, Any] = field(default_factory=dict)
    #: exact designs: the schedule they started from, and why they returned it unchanged (if they did)
    warm_start: str | None = None
    kept_warm_start: str = ""
    #: exact designs: one record per window solve (solvers.schedule.records.WindowRecord)
    records: Sequence[Any] = ()
    window: int | None = None
    #: set by a placement repair: the byte budget the schedule was re-planned under
    placement_budget: int | None = None
    #: set by solvers.schedule.stores: the schedule as its design made it, before its stores were placed
    before_stores: "Schedule | None" = None

    def copy(self, **changes: Any) -> "Provenance":
        return replace(self, search=dict(self.search), **changes)


@dataclass(frozen=True)
class Relaxation:
    """Rules a relaxed schedule may bend (Ideal's); every other design is ``STRICT``.

    A relaxed schedule is a comparison point, not a bound: nothing proves a
    valid schedule cannot beat it (the proven bounds are in solvers.schedule.bounds).

    ``sram_uses_min_hot``: the executing operator is charged its smallest hot
    footprint, not the one of its chosen (fastest) plan. ``cold_uses_min``:
    preloads are charged their minimum cold size. ``noc_contention``: whether
    loads and execution compete for the interconnect.
    """

    sram_uses_min_hot: bool = False
    cold_uses_min: bool = False
    noc_contention: bool = True

    @property
    def strict(self) -> bool:
        return self == STRICT

    def describe(self) -> str:
        if self.strict:
            return "strict"
        parts = []
        if self.sram_uses_min_hot:
            parts.append("SRAM charged at min hot")
        if self.cold_uses_min:
            parts.append("preloads at min cold")
        if not self.noc_contention:
            parts.append("no NoC contention")
        return ", ".join(parts)


STRICT = Relaxation()
IDEAL_RELAXATION = Relaxation(sram_uses_min_hot=True, cold_uses_min=True, noc_contention=False)


@dataclass
class Schedule:
    """Plan choice and timing of every operator, in cycles.

    ``entry[i]`` is a row of operator i's plan table. Executions occupy
    ``[exec_start, exec_end)``; the HBM load of operator i's off-chip data
    occupies ``[load_start, load_end)`` (ignored for operators that load
    nothing), and the HBM write of its output ``[store_start, store_end)``
    (ignored for operators that store nothing; docs/design.md §5.2). Times may
    start anywhere; latency is measured from the earliest event.
    """

    design: str
    entry: np.ndarray
    exec_start: np.ndarray
    exec_end: np.ndarray
    load_start: np.ndarray
    load_end: np.ndarray
    relaxation: Relaxation = STRICT
    #: how the design arrived at it (a Provenance: its choices, costs, warm start); kept as ``info``, the name
    #: every strategy, report and schedule file reads
    info: Provenance = field(default_factory=Provenance)
    #: stores (None: none placed yet; a design leaves them to solvers.schedule.stores)
    store_start: np.ndarray | None = None
    store_end: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.entry = np.asarray(self.entry, dtype=np.int64)
        for name in ("exec_start", "exec_end", "load_start", "load_end"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.store_start is None or self.store_end is None:
            self.store_start = self.exec_end.copy()
            self.store_end = self.exec_end.copy()
        else:
            self.store_start = np.asarray(self.store_start, dtype=np.float64)
            self.store_end = np.asarray(self.store_end, dtype=np.float64)

    def with_stores(self, store_start: np.ndarray, store_end: np.ndarray, **times: np.ndarray) -> "Schedule":
        """The same decisions with these store intervals (and, optionally, retimed executions and loads)."""
        arrays = {"exec_start": self.exec_start, "exec_end": self.exec_end, "load_start": self.load_start,
                  "load_end": self.load_end, **times}
        return Schedule(self.design, self.entry.copy(), arrays["exec_start"].copy(), arrays["exec_end"].copy(),
                        arrays["load_start"].copy(), arrays["load_end"].copy(), self.relaxation, self.info.copy(),
                        np.asarray(store_start, dtype=np.float64).copy(),
                        np.asarray(store_end, dtype=np.float64).copy())

    def __len__(self) -> int:
        return len(self.entry)

    def renamed(self, design: str, info: Provenance | None = None) -> "Schedule":
        """The same decisions under another design's name (a design that keeps its warm start reports it so),
        with ``info`` as its provenance (default: a copy of this one's)."""
        return Schedule(design, self.entry.copy(), self.exec_start.copy(), self.exec_end.copy(),
                        self.load_start.copy(), self.load_end.copy(), self.relaxation,
                        self.info.copy() if info is None else info, self.store_start.copy(),
                        self.store_end.copy())

    def shifted(self, offset: float) -> "Schedule":
        """The same schedule moved in time (latency and validity do not change)."""
        return Schedule(self.design, self.entry.copy(), self.exec_start + offset, self.exec_end + offset,
                        self.load_start + offset, self.load_end + offset, self.relaxation, self.info.copy(),
                        self.store_start + offset, self.store_end + offset)
