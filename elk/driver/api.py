"""The front door: compile a model on a chip with a set of designs.

The driver layer: it runs the strategies (``solvers``) and the model builders
(``elk.graphs``), times every schedule with the simulator, and proves a lower
bound on latency so that each design's *certified gap* (latency / bound - 1)
can be reported; the core (``elk.*`` modules) never imports any of that.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from elk.chip import Chip, resolve_chip
from elk.errors import ElkError, SolverConfigError
from elk.ir import Program
from elk.schedule import Schedule
from elk.simulator import SimResult, simulate
from elk.workload import Workload
from solvers.solver_options import (DEFAULT_BOUND, DEFAULT_BOUND_TIME_LIMIT, DEFAULT_PLACEMENT,
                                    DEFAULT_PLACEMENT_WORK_LIMIT, check_bound, check_positive,
                                    check_seconds)

if TYPE_CHECKING:
    from elk.graphs.training import TrainingOptions
    from solvers.registry import RunPlan


@dataclass
class DesignResult:
    """One design's schedule in a compile, the simulator's verdict on it, and what it cost to make and place."""

    name: str
    schedule: Schedule
    sim: SimResult
    compile_seconds: float
    #: SRAM addresses of the schedule's buffers (None for bounds, or when placement is off)
    placement: Any = None
    #: exact designs: the simulated latency of the schedule they started from
    warm_start_ms: float | None = None

    def row(self, ideal_ms: float | None, clock_hz: float, bound_ms: float | None = None) -> dict[str, Any]:
        r = self.sim
        strict = self.schedule.relaxation.strict
        row = {"design": self.name, "latency_ms": r.latency_ms, "valid": r.valid,
               # certified gap: how far above a proven lower bound (None for relaxed schedules such as Ideal)
               "gap_to_bound": (r.latency_ms / bound_ms - 1.0) if bound_ms and strict and r.latency_ms else None,
               "pct_of_ideal": (100.0 * ideal_ms / r.latency_ms) if ideal_ms and r.latency_ms else None,
               # float noise of the breakdown's sums (a stall of 4.8e-14 ms) is zero
               **{f"{k}_ms": (0.0 if abs(v) < 1e-9 else v) for k, v in r.breakdown_ms.items()},
               "hbm_utilisation": r.hbm_utilisation, "noc_utilisation": r.noc_utilisation,
               **({"hbm_read_utilisation": r.hbm_read_utilisation, "hbm_write_utilisation": r.hbm_write_utilisation,
                   "hbm_read_bytes": r.hbm_bytes, "hbm_write_bytes": r.hbm_write_bytes, "store_ms": r.store_ms}
                  if r.hbm_write_bytes else {}),
               "achieved_tflops": r.achieved_tflops, "peak_sram_bytes": r.peak_sram_bytes,
               "compile_seconds": self.compile_seconds, "relaxation": r.relaxation.describe()}
        if self.schedule.info.warm_start is not None:  # exact designs: the schedule they started from
            row["warm_start"] = self.schedule.info.warm_start
            row["warm_start_ms"] = self.warm_start_ms
        if self.placement is not None:
            row.update(self.placement.row())
        if r.violations:
            row["first_violation"] = r.violations[0].message(clock_hz)
        return row


@dataclass
class CompileResult:
    """Everything one ``compile`` made: the program, chip and plan tables (``workload``), each design's result
    in the order requested, and the proven lower bounds that turn latencies into certified gaps."""

    model: str
    chip: Chip
    program: Program
    workload: Workload
    designs: dict[str, DesignResult]
    table_seconds: float
    total_seconds: float = 0.0
    #: proven lower bounds on latency (None when compiled with ``bound=None``)
    bounds: Any = None

    @property
    def ideal_ms(self) -> float | None:
        d = self.designs.get("ideal")
        return d.sim.latency_ms if d else None

    @property
    def bound(self):
        """The best (largest) proven lower bound, or None."""
        return self.bounds.best if self.bounds is not None else None

    @property
    def bound_ms(self) -> float | None:
        return self.bound.ms if self.bound is not None else None

    def rows(self) -> list[dict[str, Any]]:
        return [d.row(self.ideal_ms, self.chip.clock_hz, self.bound_ms) for d in self.designs.values()]

    def to_frame(self):
        """One row per design (pandas DataFrame)."""
        import pandas as pd
        return pd.DataFrame(self.rows()).set_index("design")

    def to_json(self) -> dict[str, Any]:
        designs = {}
        for name, d in self.designs.items():
            row = d.row(self.ideal_ms, self.chip.clock_hz, self.bound_ms)
            row.pop("design")
            row["violations"] = [v.message(self.chip.clock_hz) for v in d.sim.violations[:10]]
            info = d.schedule.info
            if info.records:
                row["windows"] = window_summary(info.records)
            row["info"] = jsonable(info.copy(records=()))
            designs[name] = row
        best = self.bound
        bound = None if best is None else {"ms": best.ms, "name": best.name, "seconds": self.bounds.seconds,
                                           "status": best.status, "solver": best.solver,
                                           "load_models": list(best.load_models)}
        return {"model": self.model, "program": jsonable(self.program.summary()),
                "chip": jsonable(self.chip.to_dict()), "load_model": self.chip.load_model.value,
                "table_seconds": self.table_seconds, "total_seconds": self.total_seconds,
                "bound": bound, "bounds": jsonable(self.bounds.bounds) if self.bounds is not None else [],
                "bound_warnings": list(self.bounds.warnings) if self.bounds is not None else [],
                "designs": designs}


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses, numpy scalars/arrays, paths and NaN turned into plain JSON values."""
    import dataclasses

    import numpy as np
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def window_summary(records) -> dict[str, Any]:
    """Per-design totals of the exact window solves (for reports)."""
    solved = [r for r in records if not r.reused]
    proven = sum(1 for r in solved if r.status == "OPTIMAL")
    return {"windows": len(records), "solved": len(solved), "reused": len(records) - len(solved),
            "proven_optimal_pct": 100.0 * proven / len(solved) if solved else 0.0,
            "improved": sum(1 for r in records if r.accepted),
            "solve_seconds": sum(r.seconds for r in solved),
            "heuristic_cycles": sum(r.heuristic_cycles for r in records),
            "exact_cycles": sum(r.exact_cycles for r in records),
            "solver": records[0].solver if records else "", "version": records[0].version if records else ""}


def compile(model: str | Path | Program, *, chip: str | Chip | None = None, batch: int = 32, seq: int = 2048,
            mode: str = "decode", designs: "str | Iterable[str] | RunPlan" = "default",
            chip_overrides: Mapping[str, Any] | None = None, design_options: Mapping[str, Any] | None = None,
            placement: str | None = DEFAULT_PLACEMENT, placement_time_limit: float = 10.0,
            placement_work_limit: float | None = DEFAULT_PLACEMENT_WORK_LIMIT,
            bound: str | None = DEFAULT_BOUND, bound_time_limit: float = DEFAULT_BOUND_TIME_LIMIT,
            carry: Iterable[Schedule] = (), workers: int | None = None,
            dims: Mapping[str, int] | None = None, training: "TrainingOptions | None" = None,
            kv_append: bool = False) -> CompileResult:
    """Build the model, its plan tables, and a schedule per design, each timed by the simulator.

    ``designs``: names (a comma list or an iterable; "default", "paper") or a
    ready ``solvers.registry.RunPlan`` (what the command line builds). With
    names, ``design_options`` maps a design to its options: an exact design's
    dataclass (``solvers.solver_options.PeriodicOptions``...) or a mapping of
    its fields, which may hold its ``warm_start``: a design name (run too if it
    is not requested), a Schedule (e.g. from ``elk.schedule_file.read_schedule``),
    or by default the fastest strict schedule run before it. Each exact design
    reports the one it used (``warm_start`` in its row, with ``warm_start_ms``).

    ``bound`` ("closed", "lp" (default), "milp" or None) proves a lower bound on
    latency (solvers.schedule.bounds) so that every design's certified gap
    is reported; ``bound_time_limit`` caps the solver time spent on it.

    ``carry``: schedules carried from elsewhere (a neighbouring point of a sweep
    with less HBM bandwidth or SRAM; see elk.study). Those the simulator
    accepts here compete with the heuristics as the exact designs' default warm
    start, so an exact design is never slower than a schedule that carries over.

    With ``placement`` (an allocator of ``solvers.alloc.allocate``; default
    ``search``: the greedy allocator, and the exact search where the greedy
    placement overflows) every strict design's buffers also get SRAM addresses;
    a schedule whose buffers do not fit is repaired by re-running the design
    under a smaller byte budget, and the design's result is the repaired
    schedule (the cost is reported). ``placement_work_limit`` (work units,
    about core-seconds) ends each exact placement deterministically, so the
    result does not depend on the machine's speed; None leaves it to
    ``placement_time_limit``. ``placement=None`` keeps byte budgets only.

    ``workers``: processes for building plan tables and for the heuristics'
    searches (None: elk.tablecache.default_workers(), which reads ``ELK_WORKERS``).
    ``dims`` binds symbolic dimensions of an ONNX model by name (``batch`` and
    ``seq`` bind the usual names). ``training`` (an
    :class:`elk.graphs.training.TrainingOptions`) builds ``mode="train"``'s step: optimizer, master weights,
    activation checkpointing. ``kv_append`` (decode) adds the KV-cache append: each layer's new key and value
    stored to HBM.
    """
    from solvers.registry import RunPlan
    from solvers.run_plan import run_plan
    from solvers.schedule.bounds import compute_bounds

    started = time.perf_counter()
    plan = designs if isinstance(designs, RunPlan) else RunPlan.build(designs, design_options)
    if isinstance(designs, RunPlan) and design_options:
        raise SolverConfigError("design_options go into the RunPlan: give one or the other")
    check_placement(placement)
    check_seconds(placement_time_limit, "placement time limit")
    if placement_work_limit is not None:
        check_positive(placement_work_limit, "placement work limit")
    check_bound(bound, bound_time_limit)
    the_chip = resolve_chip(chip)
    if chip_overrides:
        the_chip = the_chip.with_overrides(**{k: v for k, v in chip_overrides.items() if v is not None})
    program = model if isinstance(model, Program) else _build_program(model, batch, seq, mode, dims, training,
                                                                       kv_append)
    plan.check_program(program, the_chip)
    workload = Workload.build(program, the_chip, workers)
    bounds = compute_bounds(workload, bound, bound_time_limit) if bound is not None else None
    runs = run_plan(plan, workload, carry=carry, placement=placement, placement_time_limit=placement_time_limit,
                    placement_work_limit=placement_work_limit, workers=workers)
    results = {name: DesignResult(name, r.schedule, simulate(workload, r.schedule), r.seconds, r.placement,
                                  r.warm_start_ms) for name, r in runs.items()}
    return CompileResult(model=program.name, chip=the_chip, program=program, workload=workload, designs=results,
                         table_seconds=workload.table_seconds, total_seconds=time.perf_counter() - started,
                         bounds=bounds)


def _build_program(model: str | Path, batch: int, seq: int, mode: str,
                   dims: Mapping[str, int] | None = None, training: "TrainingOptions | None" = None,
                   kv_append: bool = False) -> Program:
    from elk.graphs.zoo import build_program
    return build_program(model, batch=batch, seq=seq, mode=mode, **({"dims": dims} if dims else {}),
                         **({"training": training} if training is not None else {}),
                         **({"kv_append": True} if kv_append else {}))


def check_placement(placement: str | None) -> None:
    """``placement`` is an allocator's name or None."""
    from solvers.alloc.allocate import ALLOC_SOLVERS
    if placement is not None and placement not in ALLOC_SOLVERS:
        raise SolverConfigError(f"unknown placement solver '{placement}' ({', '.join(ALLOC_SOLVERS)} or None)")


__all__ = ["compile", "CompileResult", "DesignResult", "ElkError", "jsonable", "window_summary"]
