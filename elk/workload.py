"""A program on a chip: the per-operator facts every strategy and the simulator share.

Built once per (program, chip): plan tables, HBM bytes and transfer times of
each operator's load, and the interconnect capacity loads use. Keeping these
in one place is what lets "only the simulator times a schedule" hold: a
strategy and the simulator read the same numbers.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from elk.chip import Chip
from elk.ir import Program
from elk.plantable import PlanTable, tables_for
from elk.topology import load_noc_bytes_per_cycle


@dataclass
class Workload:
    """A program on a chip: the per-operator facts every strategy and the simulator read (see the module notes).

    Build it with :meth:`Workload.build`; ``tables[i]`` is operator i's :class:`elk.plantable.PlanTable`.
    """

    program: Program
    chip: Chip
    tables: list[PlanTable]
    #: bytes each operator loads from HBM: its minimum cold size on every core
    load_bytes: np.ndarray
    #: cycles the HBM channel needs for that load
    hbm_cycles: np.ndarray
    min_cold: np.ndarray
    min_hot: np.ndarray
    flops: np.ndarray
    #: bytes per cycle the interconnect can spread from HBM over the cores
    noc_load_bytes_per_cycle: float
    table_seconds: float = 0.0
    _entry_cache: dict = field(default_factory=dict, repr=False)
    #: the program's stores left out (exact designs plan on this view, docs/design.md §5.2); round trips stay
    stores_hidden: bool = False

    @classmethod
    def build(cls, program: Program, chip: Chip, workers: int | None = None) -> "Workload":
        """The program's plan tables on ``chip`` (built on ``workers`` processes when not cached) and per-operator
        load facts."""
        started = time.perf_counter()
        tables = tables_for(program, chip, workers)
        min_cold = np.array([t.min_cold for t in tables], dtype=np.int64)
        load_bytes = min_cold * chip.cores
        return cls(program=program, chip=chip, tables=tables, load_bytes=load_bytes,
                   hbm_cycles=load_bytes / chip.hbm_bytes_per_cycle, min_cold=min_cold,
                   min_hot=np.array([t.min_hot for t in tables], dtype=np.int64),
                   flops=np.array([op.flops for op in program.ops], dtype=np.float64),
                   noc_load_bytes_per_cycle=load_noc_bytes_per_cycle(chip),
                   table_seconds=time.perf_counter() - started)

    def __len__(self) -> int:
        return len(self.tables)

    @property
    def has_load(self) -> np.ndarray:
        """Per operator: whether it loads anything from HBM."""
        return self.load_bytes > 0

    # ---- stores (docs/design.md §5.2): the output written to HBM after the operator runs -------------------
    @cached_property
    def store_bytes(self) -> np.ndarray:
        """Bytes each operator writes to HBM (0: it stores nothing, or the view hides stores)."""
        if self.stores_hidden:
            return np.zeros(len(self.program.ops), dtype=np.int64)
        return np.array([op.store_bytes() for op in self.program.ops], dtype=np.int64)

    def without_stores(self) -> "Workload":
        """The same workload with its stores hidden: a load that reads a stored output still starts after its
        writer (and that writer's store, as far as the schedule placed one) ends. Models that know no stores plan
        on it; solvers.schedule.stores places the stores afterwards."""
        if not self.has_store.any():
            return self
        return dataclasses.replace(self, stores_hidden=True, _entry_cache={})

    @property
    def has_store(self) -> np.ndarray:
        """Per operator: whether it writes its output to HBM."""
        return self.store_bytes > 0

    @property
    def store_hbm_cycles(self) -> np.ndarray:
        """Cycles the HBM channel needs for each store."""
        return self.store_bytes / self.chip.hbm_bytes_per_cycle

    @property
    def store_noc_cycles(self) -> np.ndarray:
        """Interconnect work of each store: its bytes gathered once from the cores (no replication)."""
        return self.store_bytes / self.noc_load_bytes_per_cycle

    @property
    def store_cycles(self) -> np.ndarray:
        """Each store's shortest length: its HBM time or its interconnect time at full share, the longer."""
        return np.maximum(self.store_hbm_cycles, self.store_noc_cycles)

    @cached_property
    def store_cold(self) -> np.ndarray:
        """SRAM per core a pending store holds from its operator's end to its own end (the output spread evenly
        over every core, rounded up)."""
        return -(-self.store_bytes // self.chip.cores)

    @cached_property
    def round_trips(self) -> tuple[np.ndarray, np.ndarray]:
        """(storing operators, loading operators): each load must start after the paired store ends."""
        pairs = np.array(self.program.round_trips, dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    def transfer_cycles(self) -> float:
        """Cycles the HBM channel needs for every load and store at full bandwidth."""
        return float(self.hbm_cycles.sum() + self.store_hbm_cycles.sum())

    def load_noc_cycles(self, op: int, cold: float) -> float:
        """Cycles of full interconnect the load needs when it lands in a layout of ``cold`` bytes/core.

        A layout that replicates data (cold > min cold) multiplies the bytes the
        interconnect must deliver by the broadcast ratio cold / min cold.
        """
        if self.load_bytes[op] == 0:
            return 0.0
        return float(self.load_bytes[op]) * (cold / self.min_cold[op]) / self.noc_load_bytes_per_cycle

    def chosen(self, entry: np.ndarray) -> dict[str, np.ndarray]:
        """Per-operator arrays of the chosen plan-table rows."""
        key = entry.tobytes()
        hit = self._entry_cache.get(key)
        if hit is not None:
            return hit
        cols = {name: np.array([getattr(t, name)[e] for t, e in zip(self.tables, entry)])
                for name in ("cold", "hot", "time", "comp", "comm")}
        safe_min = np.where(self.min_cold > 0, self.min_cold, 1)
        cols["noc"] = self.load_bytes * (cols["cold"] / safe_min) / self.noc_load_bytes_per_cycle
        if len(self._entry_cache) > 8:
            self._entry_cache.clear()
        self._entry_cache[key] = cols
        return cols

    def with_load_model(self, load_model) -> "Workload":
        """The same workload (same plan tables) on the chip with ``load_model``: a pass may schedule fluid loads
        as rigid ones, whose schedules are fluid-valid too (docs/design.md §5.1)."""
        if self.chip.load_model is load_model:
            return self
        return dataclasses.replace(self, chip=dataclasses.replace(self.chip, load_model=load_model),
                                   _entry_cache={})

    def truncated(self, layers: int) -> "Workload":
        """The same program with only its first ``layers`` repeated blocks (plus preamble and tail).

        Used to rank choices that act the same way on every layer (load-order
        permutations) cheaply; results are always confirmed on the full program.
        """
        structure = self.program.layers
        if structure is None or layers >= structure.count:
            return self
        keep = list(range(structure.start + layers * structure.length)) + \
            list(range(structure.stop, len(self.program.ops)))
        program = Program(f"{self.program.name}[{layers} layers]", tuple(self.program.ops[k] for k in keep),
                          dict(self.program.meta), self.program.weights)
        idx = np.array(keep)
        return Workload(program=program, chip=self.chip, tables=[self.tables[k] for k in keep],
                        load_bytes=self.load_bytes[idx], hbm_cycles=self.hbm_cycles[idx],
                        min_cold=self.min_cold[idx], min_hot=self.min_hot[idx], flops=self.flops[idx],
                        noc_load_bytes_per_cycle=self.noc_load_bytes_per_cycle)

    def hbm_seconds(self) -> float:
        """Seconds the HBM channel needs for all loads at full bandwidth."""
        return float(self.load_bytes.sum()) / self.chip.hbm_bytes_per_s
