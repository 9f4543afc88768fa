"""Per-operator plan tables: what schedulers choose from.

A table row is a (cold, hot) pair: the operator waits preloaded in a compact
*cold* layout (bytes per core), converts to the *hot* layout of a Pareto-
optimal execution plan (same spatial split, a temporal split that divides the
cold one), and runs. Its time includes that warm-up. Exactly the artifact's
cold-hot table, built from numpy arrays instead of millions of Python tuples,
and cached per operator shape and chip.
"""
from __future__ import annotations

import time as _time
from dataclasses import dataclass

import numpy as np

from elk import tablecache
from elk.chip import Chip
from elk.costmodel import warmup_cycles
from elk.errors import OperatorDoesNotFitError
from elk.ir import OpSignature
from elk.plans import PlanChunk, PlanSet, enumerate_plans, stream_plans


@dataclass(frozen=True)
class PlanTable:
    """One operator shape's plans on one chip, as the rows schedulers choose from.

    Each row pairs a cold layout (bytes per core while preloaded) with a hot plan on the execution Pareto
    frontier (bytes per core while running); its time includes the warm-up from cold to hot. Arrays are
    per row; ``frontier_*`` describe the frontier itself.
    """

    sig: OpSignature
    # cold-hot rows, sorted by (cold, hot)
    cold: np.ndarray  # bytes per core while preloaded
    hot: np.ndarray  # bytes per core while executing
    time: np.ndarray  # cycles, hot plan time + warm-up
    comp: np.ndarray  # cycles of computation
    comm: np.ndarray  # cycles of interconnect use (sync, shifts, shuffle, warm-up)
    warmup: np.ndarray
    spatial: np.ndarray  # (m, D)
    hot_temporal: np.ndarray  # (m, D, V)
    cold_temporal: np.ndarray  # (m, D, V)
    # the execution Pareto frontier (hot bytes, time), for reporting
    frontier_hot: np.ndarray
    frontier_time: np.ndarray
    n_plans: int
    n_spatial: int
    build_seconds: float

    def __len__(self) -> int:
        return len(self.cold)

    @property
    def min_cold(self) -> int:
        """Smallest cold size (bytes per core): what a load must bring to every core at least."""
        return int(self.cold[0])

    @property
    def min_hot(self) -> int:
        """Smallest hot size of any row (bytes per core)."""
        return int(self.hot.min())

    @property
    def fastest(self) -> int:
        """Row of the fastest entry (smallest memory among ties)."""
        return int(np.lexsort((self.hot, self.cold, self.time))[0])

    def footprint(self) -> np.ndarray:
        """Bytes the entry needs to be chosen under a budget: both layouts must fit."""
        return np.maximum(self.cold, self.hot)

    def rows(self) -> list[dict]:
        """Every row as a dict (bytes, cycles, spatial split), for reports."""
        return [{"cold_bytes": int(c), "hot_bytes": int(h), "time_cycles": float(t), "comp_cycles": float(cp),
                 "comm_cycles": float(cm), "warmup_cycles": float(w), "spatial": tuple(int(x) for x in s)}
                for c, h, t, cp, cm, w, s in zip(self.cold, self.hot, self.time, self.comp, self.comm,
                                                 self.warmup, self.spatial)]


@dataclass(frozen=True)
class HotRuns:
    """Plans sorted by hot bytes (stable: enumeration order among equals), cut into runs of one size.

    The scale-free half of :func:`pareto_front`: hot bytes do not depend on the
    compute or NoC scale, so one sort serves the fronts of every scale.
    """

    order: np.ndarray  # plan positions, by hot bytes
    starts: np.ndarray  # first sorted position of each run
    sizes: np.ndarray  # plans in each run

    @classmethod
    def of(cls, hot: np.ndarray) -> "HotRuns":
        """Rows grouped by equal hot size: the sort order, where each run starts and how long it is."""
        order = np.argsort(hot, kind="stable")
        h = hot[order]
        starts = np.concatenate([[0], np.flatnonzero(h[1:] != h[:-1]) + 1])
        return cls(order, starts, np.diff(np.concatenate([starts, [len(h)]])))


def pareto_front(hot: np.ndarray, time: np.ndarray, runs: HotRuns | None = None) -> np.ndarray:
    """Indices of plans strictly faster than every plan using less or equal memory, by hot bytes.

    One radix argsort on the integer hot sizes (``runs``, reusable across
    times) and a ``reduceat`` for each size's fastest plan; a lexsort over a
    million float keys costs 10x more. Among equally fast plans of one size
    the first enumerated is kept.
    """
    if len(hot) == 0:
        return np.zeros(0, dtype=np.int64)
    runs = HotRuns.of(hot) if runs is None else runs
    t = time[runs.order]
    fastest = np.minimum.reduceat(t, runs.starts)
    at_min = np.flatnonzero(t == np.repeat(fastest, runs.sizes))
    group = np.repeat(np.arange(len(runs.starts)), runs.sizes)[at_min]
    first = at_min[np.concatenate([[True], group[1:] != group[:-1]])]  # first fastest plan of each size
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(fastest)[:-1]])
    return runs.order[first[fastest < best_before]]


def build_table(plans: PlanSet, hot_plans: np.ndarray, chip: Chip) -> dict:
    """Cold-hot rows: every (cold, hot plan) pair of the same spatial plan, fastest per (cold, hot).

    Hot plans are the frontier plans, one per hot size (the fastest; the first
    enumerated among equals). The artifact also keeps, order-dependently, some
    slower plans of a frontier size; letting every such plan pair with cold
    layouts was measured (Llama2-13B): ELK's latency does not move, while the
    fixed-rule baselines start pairing large cold layouts with plans up to 17x
    slower, so the tables stay the artifact's.
    """
    sram = chip.sram_per_core
    # order every spatial group's plans by cold size once, so a hot candidate pairs only with
    # the prefix of its group whose cold layouts fit in its hot size (and in SRAM)
    cold_capped = np.minimum(plans.cold, sram + 1).astype(np.int64)
    key = (plans.spatial_id.astype(np.int64) << 32) | cold_capped
    by_key = np.argsort(key, kind="stable")
    key_sorted = key[by_key]
    group = plans.spatial_id[hot_plans].astype(np.int64)
    lo = np.searchsorted(key_sorted, group << 32, side="left")
    hi = np.searchsorted(key_sorted, (group << 32) | np.minimum(plans.hot[hot_plans], sram), side="right")
    sizes = hi - lo
    h = np.repeat(hot_plans, sizes)
    c = by_key[np.repeat(lo, sizes) + (np.arange(len(h)) - np.repeat(np.cumsum(sizes) - sizes, sizes))]
    ok = np.all(plans.temporal[c] % plans.temporal[h] == 0, axis=(1, 2))
    h, c = h[ok], c[ok]
    warm = np.empty(len(h))
    for start in range(0, len(h), 1 << 16):  # bounded memory for very large operators
        sl = slice(start, start + (1 << 16))
        warm[sl] = warmup_cycles(plans.sig, chip, plans.temporal[c[sl]], plans.temporal[h[sl]],
                                 plans.var_elems[c[sl]], plans.var_comm_factor[c[sl]])
    total = plans.time[h] + warm
    cold, hot = plans.cold[c], plans.hot[h]
    order = np.lexsort((total, hot, cold))  # per (cold, hot) keep the fastest pair
    first_of = np.concatenate([[True], (cold[order][1:] != cold[order][:-1]) | (hot[order][1:] != hot[order][:-1])])
    keep = order[first_of]
    return {"cold": cold[keep], "hot": hot[keep], "time": total[keep], "comp": plans.comp[h[keep]],
            "comm": plans.comm[h[keep]] + warm[keep], "warmup": warm[keep], "hot_plan": h[keep],
            "cold_plan": c[keep]}


@dataclass
class Frontier:
    """Execution Pareto-front plans of one operator on one chip, by hot bytes.

    ``spatial_id`` and ``rank`` (position among its spatial plan's plans, in
    enumeration order) find a plan again when its spatial plan is re-enumerated.
    """

    spatial_id: np.ndarray
    rank: np.ndarray
    hot: np.ndarray
    time: np.ndarray

    @classmethod
    def concat(cls, parts: list["Frontier"]) -> "Frontier":
        """The frontiers of several chunks as one."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("spatial_id", "rank", "hot", "time")))

    def take(self, rows: np.ndarray) -> "Frontier":
        """The frontier restricted to ``rows``."""
        return Frontier(self.spatial_id[rows], self.rank[rows], self.hot[rows], self.time[rows])


@dataclass
class Enumeration:
    """What one streaming pass over an operator's plans leaves: counts and a frontier per chip."""

    spatial: np.ndarray
    n_plans: int
    min_hot: int | None  # over every plan (None without plans): why nothing fits
    fronts: list[Frontier]
    seconds: float


def chunk_fronts(chunk: PlanChunk, sram: int, chips: list[Chip]) -> list[Frontier]:
    """Each chip's Pareto front of the plans of ``chunk`` that fit in ``sram``, in enumeration order.

    A plan off its chunk's front is off the whole operator's front too: a plan of
    the chunk with no more memory is at least as fast (and, of equal memory and
    time, enumerated earlier). So keeping the chunks' fronts loses nothing.
    """
    fits = np.flatnonzero(chunk.hot <= sram)
    hot = chunk.hot[fits]
    sid = chunk.spatial_id[fits]
    rank = fits - np.searchsorted(chunk.spatial_id, sid, side="left")
    runs = HotRuns.of(hot)
    fronts = []
    for chip in chips:
        time = chunk.time(chip, fits)
        keep = np.sort(pareto_front(hot, time, runs))
        fronts.append(Frontier(sid[keep], rank[keep], hot[keep], time[keep]))
    return fronts


def enumerate_fronts(sig: OpSignature, chips: list[Chip]) -> Enumeration:
    """One pass over every plan of ``sig``, keeping each chip's execution Pareto front.

    The chips must share ``Chip.enumeration_key()``: the plans and their
    unscaled costs are the same, and each chip's scales divide them as
    ``plan_costs`` would. Memory holds one chunk and the chunks' fronts, never
    every plan (training operators have tens of millions).
    """
    started = _time.perf_counter()
    keys = {c.enumeration_key() for c in chips}
    if len(keys) != 1:
        raise ValueError("enumerate_fronts: the chips must share Chip.enumeration_key()")
    sram = chips[0].sram_per_core
    spatial, chunks = stream_plans(sig, chips[0])
    n_plans, min_hot = 0, None
    parts: list[list[Frontier]] = [[] for _ in chips]
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        n_plans += len(chunk)
        low = int(chunk.hot.min())
        min_hot = low if min_hot is None else min(min_hot, low)
        for k, front in enumerate(chunk_fronts(chunk, sram, chips)):
            parts[k].append(front)
    fronts = []
    for part in parts:
        merged = Frontier.concat(part) if part else Frontier(*(np.zeros(0, dt) for dt in (np.int32, np.int64,
                                                                                        np.int64, np.float64)))
        fronts.append(merged.take(pareto_front(merged.hot, merged.time)))
    return Enumeration(spatial, n_plans, min_hot, fronts, _time.perf_counter() - started)


def table_from_front(sig: OpSignature, chip: Chip, spatial: np.ndarray, front: Frontier, n_plans: int,
                     seconds: float) -> PlanTable:
    """The cold-hot table of ``front``: re-enumerate only the spatial plans it touches (cold and hot layouts
    share their spatial plan), fully costed on ``chip``, and pair them."""
    started = _time.perf_counter()
    touched, local = np.unique(front.spatial_id, return_inverse=True)
    plans = enumerate_plans(sig, chip, spatial[touched])
    # a frontier plan's rank inside its spatial plan is the same in both passes
    hot_plans = np.searchsorted(plans.spatial_id, local, side="left") + front.rank
    rows = build_table(plans, hot_plans, chip)
    hp, cp = rows["hot_plan"], rows["cold_plan"]
    order = np.argsort(front.hot, kind="stable")
    return PlanTable(
        sig=sig, cold=rows["cold"], hot=rows["hot"], time=rows["time"], comp=rows["comp"],
        comm=rows["comm"], warmup=rows["warmup"], spatial=plans.spatial[plans.spatial_id[hp]],
        hot_temporal=plans.temporal[hp], cold_temporal=plans.temporal[cp],
        frontier_hot=front.hot[order], frontier_time=front.time[order],
        n_plans=n_plans, n_spatial=len(spatial), build_seconds=seconds + _time.perf_counter() - started)


def check_fits(sig: OpSignature, chip: Chip, found: Enumeration, front: Frontier) -> None:
    """Raise the reason an operator has no table on ``chip``: no plan at all, or none fits in SRAM."""
    if found.n_plans == 0:
        raise OperatorDoesNotFitError(f"{sig.describe()}: no partition plan satisfies the utilisation and "
                                      f"padding rules on {chip.cores} cores", sig)
    if len(front.hot) == 0:
        raise OperatorDoesNotFitError(
            f"{sig.describe()} needs at least {found.min_hot} bytes per core even fully "
            f"partitioned over {chip.cores} cores, but a core has {chip.sram_per_core} bytes of SRAM", sig)


def build_plan_tables(sig: OpSignature, chips: list[Chip]) -> list[PlanTable]:
    """One operator's table on each chip (no caching), enumerating its plans once.

    The chips must share ``Chip.enumeration_key()`` (a compute- or NoC-scale
    sweep): the expensive pass over every plan runs once, each chip gets its
    own front, and only the few spatial plans on that front are re-enumerated
    per chip. Bit-identical to building each table on its own. Each table's
    ``build_seconds`` counts the shared pass and its own second pass.
    """
    found = enumerate_fronts(sig, chips)
    tables = []
    for chip, front in zip(chips, found.fronts):
        check_fits(sig, chip, found, front)
        tables.append(table_from_front(sig, chip, found.spatial, front, found.n_plans, found.seconds))
    return tables


def build_plan_table(sig: OpSignature, chip: Chip) -> PlanTable:
    """Enumerate, cost and tabulate one operator shape (no caching).

    Pass 1 streams over all plans keeping each chunk's Pareto front; pass 2
    re-enumerates in full only the few spatial plans that hold a frontier plan,
    which is all the cold pairing needs (cold and hot layouts share their spatial plan).
    """
    return build_plan_tables(sig, [chip])[0]


#: In-memory tables keyed like the disk cache, by (signature, ``Chip.plan_key()``): chips that differ
#: only in HBM bandwidth (a bandwidth sweep) share one copy instead of holding one each.
_MEMORY: dict[tuple[OpSignature, tuple], PlanTable] = {}


def clear_memory() -> None:
    """Forget the in-memory tables (a long-running process bounding its memory; the disk cache stays)."""
    _MEMORY.clear()


def load_cached(sig: OpSignature, chip: Chip) -> PlanTable | None:
    """The table stored on disk for this shape and chip (None if absent, damaged or another table's file)."""
    stored = tablecache.load(sig, chip)
    if stored is None:
        return None
    arrays, meta = stored
    return PlanTable(sig=sig, **arrays, n_plans=meta["n_plans"], n_spatial=meta["n_spatial"],
                     build_seconds=meta["build_seconds"])


def _store(table: PlanTable, chip: Chip) -> None:
    arrays = {k: getattr(table, k) for k in tablecache.stored_arrays()}
    meta = {"n_plans": table.n_plans, "n_spatial": table.n_spatial, "build_seconds": table.build_seconds}
    tablecache.store(arrays, meta, table.sig, chip)


def build_job(job: tuple[OpSignature, Chip]) -> PlanTable:
    """``build_plan_table`` on a (signature, chip) pair: the unit of work sent to table-building processes."""
    return build_plan_table(*job)


def build_family_job(job: tuple[OpSignature, tuple[Chip, ...]]) -> list[PlanTable]:
    """``build_plan_tables`` on (signature, chips sharing an enumeration): one table-building task."""
    sig, chips = job
    return build_plan_tables(sig, list(chips))


def plan_table(sig: OpSignature, chip: Chip) -> PlanTable:
    """The plan table of an operator shape on a chip: from memory, from disk, or built."""
    key = (sig, chip.plan_key())
    table = _MEMORY.get(key)
    if table is None:
        table = load_cached(sig, chip)
        if table is None:
            table = build_plan_table(sig, chip)
            _store(table, chip)
        _MEMORY[key] = table
    return table


def tables_for(program, chip: Chip, workers: int | None = None) -> list[PlanTable]:
    """One table per operator of a program; missing shapes are built in parallel."""
    return tables_for_chips(program, [chip], workers)[0]


def _missing(program, chips: list[Chip]) -> list[tuple[OpSignature, tuple[Chip, ...]]]:
    """(signature, chips that lack its table) jobs, one per signature and enumeration family.

    A table found on disk is taken into memory on the way.
    """
    jobs = []
    for sig in dict.fromkeys(op.signature for op in program.ops):
        lacking: dict[tuple, list[Chip]] = {}
        for chip in chips:
            key = (sig, chip.plan_key())
            if key in _MEMORY:
                continue
            cached = load_cached(sig, chip)
            if cached is not None:
                _MEMORY[key] = cached
            else:
                lacking.setdefault(chip.enumeration_key(), []).append(chip)
        jobs += [(sig, tuple(family)) for family in lacking.values()]
    return jobs


def tables_for_chips(program, chips: list[Chip], workers: int | None = None) -> list[list[PlanTable]]:
    """One table per operator of a program on each chip; missing shapes are built in parallel.

    Chips that differ only in compute or NoC scale share one enumeration of
    each operator's plans (``build_plan_tables``): a compute/NoC sweep costs
    about one table build instead of one per setting.
    """
    chips = list(dict.fromkeys(chips))
    jobs = _missing(program, chips)
    try:
        built = tablecache.build_many(build_family_job, jobs, workers)
    except OperatorDoesNotFitError as exc:
        names = [op.name for op in program.ops if op.signature == exc.signature]
        if not names:
            raise
        more = f" and {len(names) - 1} more like it" if len(names) > 1 else ""
        raise OperatorDoesNotFitError(f"operator {names[0]}{more}: {exc}", exc.signature) from None
    for (sig, family), tables in zip(jobs, built):
        for chip, table in zip(family, tables):
            _store(table, chip)
            _MEMORY[(sig, chip.plan_key())] = table
    return [[_MEMORY[(op.signature, chip.plan_key())] for op in program.ops] for chip in chips]
