"""The one schedule type every strategy returns and the simulator judges."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Relaxation:
    """Rules a *bound* may bend; a real design is always ``STRICT``.

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
    nothing). Times may start anywhere; latency is measured from the earliest
    event.
    """

    design: str
    entry: np.ndarray
    exec_start: np.ndarray
    exec_end: np.ndarray
    load_start: np.ndarray
    load_end: np.ndarray
    relaxation: Relaxation = STRICT
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.entry = np.asarray(self.entry, dtype=np.int64)
        for name in ("exec_start", "exec_end", "load_start", "load_end"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))

    def __len__(self) -> int:
        return len(self.entry)

    def shifted(self, offset: float) -> "Schedule":
        """The same schedule moved in time (latency and validity do not change)."""
        return Schedule(self.design, self.entry.copy(), self.exec_start + offset, self.exec_end + offset,
                        self.load_start + offset, self.load_end + offset, self.relaxation, dict(self.info))
