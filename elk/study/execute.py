"""Running study points: in this process, on a local process pool, or on a Dask cluster.

The unit of work is one point (:func:`execute_point`), which never raises: an
input elk cannot compile becomes an "error" record, anything else a "crash"
record, so one bad point cannot take a study down. Records travel back to the
caller, which alone writes them (see :mod:`elk.study.store`): results need no
shared filesystem and there is a single writer.

Plan-table reuse: points whose chips agree on ``Chip.plan_key()`` and that
compile the same program share every plan table (a *table group*: HBM
bandwidth, and designs, do not change tables). Table groups that differ only
in compute or NoC scale form a *table family* (same ``Chip.enumeration_key()``):
they share each operator's enumeration of plans, and only its costing differs
(``elk.plantable.tables_for_chips``). For a family of several points one table
task runs first, builds every group's tables in one pass per operator and
writes them to the on-disk cache (``ELK_CACHE_DIR``, shared by all local
workers); the family's points are released when it is done, so no two workers
build the same table at once and every point after it starts warm.
"""
from __future__ import annotations

import functools
import math
import os
import platform
import socket
import time
import traceback
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from elk.chip import Chip
from elk.errors import ElkError
from elk.procs import sigint_deferred
from elk.study.point import Point, StudyError
from elk.study.shared_bounds import BOUND_CACHE_ENV, bound_key, report_from_json, shared_from_env

#: Recycle a pool worker after this many tasks (bounds any slow memory creep).
MAX_TASKS_PER_CHILD = 40
#: How many times a dying pool is restarted before the study gives up.
MAX_POOL_RESTARTS = 2

Record = dict[str, Any]
OnRecord = Callable[[Point, Record], None]

_current_group: str | None = None


# ---------------------------------------------------------------- worker side
def _trim_tables(group: str) -> None:
    """Keep only the current table family's plan tables in memory (memory stays flat over a study)."""
    global _current_group
    if _current_group is not None and _current_group != group:
        from elk import plantable
        plantable.clear_memory()
    _current_group = group


def build_tables(point: Point, table_workers: int | None = None, chips: tuple[Chip, ...] = ()) -> dict[str, Any]:
    """Put the plan tables of the point's program on ``chips`` (default: the point's chip) in the on-disk cache
    (and this worker's memory). The chips are the point's table family: one enumeration serves them all."""
    _trim_tables(point.resolved.table_family)
    from elk.plantable import tables_for_chips
    from elk.graphs.zoo import build_program
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    try:
        program = build_program(point.model, batch=point.batch, seq=point.seq, mode=point.mode)
        tables_for_chips(program, list(chips) or [point.resolved.chip], table_workers)
        error = None
    except Exception as exc:  # the points themselves will record it
        error = f"{type(exc).__name__}: {exc}"
    return {"group": point.resolved.table_family, "chips": max(1, len(chips)), "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - cpu0, "error": error,
            "host": socket.gethostname(), "pid": os.getpid()}


def execute_point(point: Point, table_workers: int | None = None, after: Any = None,
                  carry: tuple = (), keep_schedule: bool = False) -> Record:
    """Compile one point and return its record (see :mod:`elk.study.store`). Never raises an Exception.

    ``after`` is ignored: it only orders the task after its table task on Dask.
    ``carry``: schedules from neighbouring points, offered to the exact designs
    as warm starts (see :func:`run_carried`); ``keep_schedule`` stores the
    point's fastest strict schedule in the record (``best_schedule``) for them.
    """
    import elk
    from elk.driver.api import compile as compile_model
    from elk.driver.api import window_summary
    from elk.tablecache import COST_MODEL_VERSION

    res = point.resolved
    _trim_tables(res.table_family)
    started = time.time()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    record: Record = {"schema": None, "key": res.key, "inputs": point.inputs(), "knobs": res.knobs,
                      "table_group": res.table_group, "elk_version": elk.__version__,
                      "cost_model_version": COST_MODEL_VERSION, "host": socket.gethostname(), "pid": os.getpid(),
                      "python": platform.python_version(), "started_at": started}
    try:
        shared = shared_from_env() if res.bound is not None else None
        key = bound_key(res.table_group, res.chip, res.bound, res.bound_time_limit) if shared is not None else ""
        proof, proved = None, False
        if shared is not None:  # prove first unless another process is proving this chip right now
            proof, proved = shared.get_or_prove(key, lambda: _prove(point, workers=table_workers), wait=False)
        result = compile_model(point.model, chip=res.chip, batch=point.batch, seq=point.seq, mode=point.mode,
                               designs=",".join(res.designs), design_options=res.design_options, carry=carry,
                               bound=None if shared is not None else res.bound,
                               bound_time_limit=res.bound_time_limit, workers=table_workers)
        if shared is not None:
            if proof is None:
                proof, proved = shared.get_or_prove(key, lambda: _prove(point, result.workload), wait=True)
            result.bounds = report_from_json(proof, res.chip.load_model.value)
            record["bound_shared"] = not proved
        rows = []
        for row in result.rows():
            info = result.designs[row["design"]].schedule.info
            if info.records:
                row.update(_solver_columns(window_summary(info.records)))
            layer = info.search.get("layer_solve")
            if layer:  # the periodic design's one CP-SAT solve, in the windows' columns
                row.update(solve_seconds=layer["seconds"], solver=layer["solver"], solver_version=layer["version"],
                           proven_optimal_pct=100.0 if layer["status"] == "OPTIMAL" else 0.0, layer_solve=layer)
            rows.append(row)
        best = result.bound  # at the point's bound level: every row's gap_to_bound is certified against it
        record.update(status="ok", error=None, rows=rows, table_seconds=result.table_seconds,
                      bound_ms=best.ms if best is not None else None, bound_name=best.name if best else None,
                      # a proof another point of the study made (bound_shared) cost this point nothing
                      bound_seconds=(0.0 if record.get("bound_shared") else result.bounds.seconds)
                      if result.bounds is not None else None,
                      # every family computed (the best is bound_ms / bound_name): which binds, by how much
                      bounds=[{"name": b.name, "ms": b.ms, "status": b.status, "seconds": b.seconds}
                              for b in (result.bounds.bounds if result.bounds is not None else [])],
                      bound_warnings=list(result.bounds.warnings) if result.bounds is not None else [],
                      compile_total_seconds=result.total_seconds,
                      hbm_bytes=float(result.workload.load_bytes.sum()),
                      hbm_bound_ms=result.workload.hbm_seconds() * 1e3, operators=len(result.program.ops))
        if keep_schedule:
            strict = [d for d in result.designs.values() if d.schedule.relaxation.strict and d.sim.valid]
            if strict:
                best = min(strict, key=lambda d: d.sim.latency_cycles)
                s = best.schedule
                record["best_schedule"] = {"design": best.name, "entry": s.entry.tolist(),
                                           "exec_start": s.exec_start.tolist(), "exec_end": s.exec_end.tolist(),
                                           "load_start": s.load_start.tolist(), "load_end": s.load_end.tolist()}
    except ElkError as exc:
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", rows=_failure_rows(res.designs))
    except Exception as exc:  # a bug or resource exhaustion: kept, reported, and retried on the next run
        tail = traceback.format_exc(limit=-3).strip().splitlines()
        record.update(status="crash", error=f"{type(exc).__name__}: {exc}", traceback=tail[-12:],
                      rows=_failure_rows(res.designs))
    record["point_seconds"] = time.perf_counter() - t0
    record["cpu_seconds"] = time.process_time() - cpu0  # this process only: table builds on other cores not counted
    record["finished_at"] = time.time()
    from elk.study.point import SCHEMA_VERSION
    record["schema"] = SCHEMA_VERSION
    return finite_json(record)


def _prove(point: Point, workload: Any = None, workers: int | None = None):
    """The point's bounds at its level (``workload``: the compiled one, else built here, its plan tables from
    the cache or by ``workers`` processes as the compile would)."""
    from solvers.schedule.bounds import compute_bounds
    if workload is None:
        from elk.graphs.zoo import build_program
        from elk.workload import Workload
        program = build_program(point.model, batch=point.batch, seq=point.seq, mode=point.mode)
        workload = Workload.build(program, point.resolved.chip, workers)
    return compute_bounds(workload, point.resolved.bound, point.resolved.bound_time_limit)


def _failure_rows(designs: Iterable[str]) -> list[dict[str, Any]]:
    return [{"design": d, "latency_ms": None, "valid": False} for d in designs]


def _solver_columns(summary: dict[str, Any]) -> dict[str, Any]:
    names = {"windows": "windows", "solved": "windows_solved", "reused": "windows_reused",
             "proven_optimal_pct": "proven_optimal_pct", "improved": "windows_improved",
             "solve_seconds": "solve_seconds", "heuristic_cycles": "heuristic_cycles",
             "exact_cycles": "exact_cycles", "solver": "solver", "version": "solver_version"}
    return {names.get(k, k): v for k, v in summary.items()}


def finite_json(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, dataclasses to dicts."""
    from elk.driver.api import jsonable
    value = jsonable(value)

    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(value)


# ---------------------------------------------------------------- ordering
@dataclass
class Plan:
    """The order points are handed out in: table groups together, the biggest groups first."""

    groups: "OrderedDict[str, list[Point]]" = field(default_factory=OrderedDict)

    @classmethod
    def of(cls, points: Iterable[Point]) -> "Plan":
        groups: OrderedDict[str, list[Point]] = OrderedDict()
        for p in points:
            groups.setdefault(p.resolved.table_group, []).append(p)
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))  # stable: declared order within a size
        return cls(OrderedDict(ordered))

    def serial(self) -> list[Point]:
        return [p for pts in self.groups.values() for p in pts]

    def families(self) -> "OrderedDict[str, list[list[Point]]]":
        """The table groups of each table family (``Resolved.table_family``), in plan order."""
        out: OrderedDict[str, list[list[Point]]] = OrderedDict()
        for pts in self.groups.values():
            out.setdefault(pts[0].resolved.table_family, []).append(pts)
        return out


class Dispatcher:
    """Hands out work for a pool: one table task per table family that shares tables, then its points.

    A family of a single point builds its tables inside that point; any other
    family's groups wait for its table task, which builds them all.
    """

    def __init__(self, plan: Plan) -> None:
        self.pending: OrderedDict[str, list[Point]] = OrderedDict((g, list(p)) for g, p in plan.groups.items())
        self.family_of = {g: pts[0].resolved.table_family for g, pts in plan.groups.items()}
        self.members: dict[str, list[str]] = {}
        for g, fam in self.family_of.items():
            self.members.setdefault(fam, []).append(g)
        self.ready: set[str] = {g for g, pts in plan.groups.items()
                                if len(pts) == 1 and len(self.members[self.family_of[g]]) == 1}
        self.building: set[str] = set()  # families

    def __bool__(self) -> bool:
        return any(self.pending.values())

    def next(self) -> tuple[str, Point] | None:
        """("point", p) from a ready group, else ("tables", head) for a family nobody builds yet, else None."""
        for g, pts in self.pending.items():
            if g in self.ready and pts:
                return "point", pts.pop(0)
        for g, pts in self.pending.items():
            if pts and g not in self.ready and self.family_of[g] not in self.building:
                self.building.add(self.family_of[g])
                return "tables", pts[0]
        return None

    def family_chips(self, head: Point) -> tuple[Chip, ...]:
        """One chip per group of ``head``'s family still waiting for tables (``head``'s own first)."""
        waiting = [g for g in self.members[head.resolved.table_family] if g not in self.ready and self.pending[g]]
        chips = [self.pending[g][0].resolved.chip for g in waiting]
        return tuple(dict.fromkeys([head.resolved.chip, *chips]))

    def tables_done(self, head: Point) -> None:
        family = head.resolved.table_family
        self.building.discard(family)
        self.ready.update(self.members[family])

    def tables_lost(self, head: Point) -> None:
        """A table task's worker died: the family may be handed out again."""
        self.building.discard(head.resolved.table_family)

    def put_back(self, point: Point) -> None:
        self.pending[point.resolved.table_group].insert(0, point)


# ---------------------------------------------------------------- runners
#: knobs along which a schedule provably carries over: more HBM bandwidth or more SRAM
CARRY_KNOBS = ("hbm_tbps", "sram_kib")


def carry_chain(point: Point) -> str:
    """Points equal in every knob but ``CARRY_KNOBS`` (one chain of a sweep)."""
    import json
    knobs = {k: v for k, v in point.resolved.knobs.items() if k not in CARRY_KNOBS}
    return json.dumps(knobs, sort_keys=True, default=str)


def run_carried(points: list[Point], stored: Callable[[Point], Record | None], on_record: OnRecord) -> None:
    """Serially, in this process, each chain in order of (SRAM, HBM bandwidth), handing each point the best
    schedules of the finished points it dominates (no more HBM bandwidth and no more SRAM).

    A schedule valid with less bandwidth or SRAM stays valid with more (loads may
    take longer than they must; the plans of a smaller SRAM's tables are in the
    larger's), so the exact designs' curves along a chain never rise where a
    schedule carries over. Points already stored lend their stored schedule.
    """
    from elk.graphs.zoo import build_program
    from elk.schedule import Schedule
    from elk.schedule_file import translate
    from elk.workload import Workload

    chains: OrderedDict[str, list[Point]] = OrderedDict()
    for p in points:
        chains.setdefault(carry_chain(p), []).append(p)
    for chain in chains.values():
        chain.sort(key=lambda p: tuple(p.resolved.knobs[k] for k in ("sram_kib", "hbm_tbps")))
        finished: list[tuple[Point, Schedule, Workload]] = []
        for p in chain:
            program = build_program(p.model, batch=p.batch, seq=p.seq, mode=p.mode)
            try:
                here = Workload.build(program, p.resolved.chip)
            except ElkError:
                here = None
            carry = []
            if here is not None:
                for q, sched, there in finished:
                    if all(q.resolved.knobs[k] <= p.resolved.knobs[k] for k in CARRY_KNOBS):
                        moved = translate(sched, there, here)
                        if moved is not None:
                            carry.append(moved)
            record = stored(p)
            # a point stored without carrying (no schedule kept) is redone with it
            if record is None or record.get("status") == "crash" or \
                    (record.get("status") == "ok" and "best_schedule" not in record):
                record = execute_point(p, carry=tuple(carry), keep_schedule=True)
                on_record(p, record)
            best = record.get("best_schedule")
            if best and here is not None:
                name = f"{best['design']}@{_label(p)}"
                finished.append((p, Schedule(name, best["entry"], best["exec_start"], best["exec_end"],
                                             best["load_start"], best["load_end"]), here))


def _label(p: Point) -> str:
    return ",".join(f"{k}={p.resolved.knobs[k]:g}" for k in CARRY_KNOBS)


def run_serial(points: list[Point], on_record: OnRecord) -> None:
    """In this process, one after another (workers=1): simplest, and tables build on every core.

    A table family of several groups (a compute/NoC sweep) has its tables built
    first, together, so each operator's plans are enumerated once for all of them.
    """
    plan = Plan.of(points)
    families = plan.families()
    built: set[str] = set()
    for p in plan.serial():
        groups = families[p.resolved.table_family]
        if len(groups) > 1 and p.resolved.table_family not in built:
            build_tables(p, chips=tuple(pts[0].resolved.chip for pts in groups))
            built.add(p.resolved.table_family)
        on_record(p, execute_point(p))


def _worker_init(owner: int, shared_bounds: str | None = None) -> None:
    """In each pool worker: the owner's shared-bounds folder (a forkserver's children inherit the environment
    the forkserver started with, not the owner's now), and end with the process that owns the pool, however it
    ends.

    SIGINT and normal exits shut the pool down, but a SIGKILLed owner runs no
    cleanup, and a worker waiting for its next task would wait forever: it
    keeps the forkserver (its parent) and the resource tracker alive with it.
    The worker's parent is the forkserver, so the kernel's parent-death signal
    does not help here; a watchdog thread on the owner's pid does.
    """
    from elk.procs import die_with_parent, exit_with
    from elk.study.shared_bounds import BOUND_CACHE_ENV
    if shared_bounds:
        os.environ[BOUND_CACHE_ENV] = shared_bounds
    else:
        os.environ.pop(BOUND_CACHE_ENV, None)
    exit_with(owner)
    die_with_parent()  # and if the forkserver itself goes


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing
    # forkserver: workers start from a clean, single-threaded process (safe with any threads in the parent)
    # and may be recycled, which "fork" does not allow.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["elk.study.execute", "elk.driver.api", "elk.graphs.zoo", "solvers.registry"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=MAX_TASKS_PER_CHILD,
                               initializer=_worker_init,
                               initargs=(os.getpid(), os.environ.get(BOUND_CACHE_ENV)))


def run_pool(points: list[Point], workers: int, on_record: OnRecord, table_workers: int = 1,
             on_tables: Callable[[Point, dict], None] | None = None) -> None:
    """On a local process pool; the caller stores each record as it arrives (``on_tables`` sees table tasks)."""
    dispatch = Dispatcher(Plan.of(points))
    restarts = 0
    while dispatch:
        pool = _pool(workers)
        running: dict = {}
        try:
            while dispatch or running:
                with sigint_deferred():  # never between a worker's start request and its reply
                    while len(running) < workers:
                        job = dispatch.next()
                        if job is None:
                            break
                        kind, p = job
                        if kind == "point":
                            fut = pool.submit(execute_point, p, table_workers)
                        else:
                            fut = pool.submit(build_tables, p, table_workers, dispatch.family_chips(p))
                        running[fut] = (kind, p)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    kind, p = running.pop(fut)
                    out = fut.result()
                    if kind == "tables":
                        dispatch.tables_done(p)
                        if on_tables is not None:
                            on_tables(p, out)
                    else:
                        on_record(p, out)
        except BrokenProcessPool:
            restarts += 1
            lost = [p for kind, p in running.values() if kind == "point"]
            for kind, p in running.values():
                if kind == "point":
                    dispatch.put_back(p)
                else:
                    dispatch.tables_lost(p)
            if restarts > MAX_POOL_RESTARTS:
                raise StudyError("worker processes keep dying (out of memory?) while running: "
                                 + "; ".join(p.label() for p in lost)
                                 + " (finished points are stored; rerun to resume)") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _tables_finished(on_tables: Callable[[Point, dict], None], point: Point, future: Any) -> None:
    if future.status == "finished":
        on_tables(point, future.result())


def run_dask(points: list[Point], address: str, workers: int | None, on_record: OnRecord,
             on_tables: Callable[[Point, dict], None] | None = None) -> None:
    """On a Dask cluster (``address="local"`` starts a LocalCluster of ``workers`` processes).

    Each point is one task; a shared group's points depend on its table task, which Dask
    prefers to run on the worker that built the tables (its memory and disk cache are warm).
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise StudyError("a Dask address needs the 'cluster' extra: pip install 'elk-icca[cluster]'") from None
    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(address, timeout="30s")
    except OSError as exc:
        raise StudyError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = {}
        for family, groups in Plan.of(points).families().items():
            after = None
            if sum(len(pts) for pts in groups) > 1:
                chips = tuple(pts[0].resolved.chip for pts in groups)
                after = client.submit(build_tables, groups[0][0], 1, chips, key=f"elk-tables-{family}", pure=False)
                if on_tables is not None:
                    after.add_done_callback(functools.partial(_tables_finished, on_tables, groups[0][0]))
            for p in (p for pts in groups for p in pts):
                fut = client.submit(execute_point, p, 1, after, key=f"elk-point-{p.key()}", pure=False)
                futures[fut] = p
        lost: list[str] = []
        for fut in as_completed(list(futures)):
            p = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # its worker died (again and again): nothing to store, a rerun redoes it
                lost.append(f"{p.label()} ({type(exc).__name__}: {exc})")
                continue
            on_record(p, record)
        if lost:
            raise StudyError(f"Dask lost {len(lost)} point(s): " + "; ".join(lost)
                             + " (every other point is stored; rerun to redo these)")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
