"""The front door: compile a model on a chip with a set of designs.

The driver layer: it runs the strategies (``solvers``) and the model builders
(``elk.graphs``), times every schedule with the simulator, and proves a lower
bound on latency so that each design's *certified gap* (latency / bound - 1)
can be reported; the core (``elk.*`` modules) never imports any of that.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from elk.chip import Chip, resolve_chip
from elk.errors import ElkError, ScheduleError, SolverConfigError
from elk.ir import Program
from elk.schedule import Schedule
from elk.simulator import SimResult, simulate
from elk.workload import Workload


@dataclass
class DesignResult:
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
               "achieved_tflops": r.achieved_tflops, "peak_sram_bytes": r.peak_sram_bytes,
               "compile_seconds": self.compile_seconds, "relaxation": r.relaxation}
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
    model: str
    chip: Chip
    program: Program
    workload: Workload
    designs: dict[str, DesignResult]
    table_seconds: float
    total_seconds: float = 0.0
    extras: dict = field(default_factory=dict)
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
                "designs": designs, **jsonable(self.extras)}


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
            mode: str = "decode", designs: str | Iterable[str] = "default",
            chip_overrides: Mapping[str, Any] | None = None, design_options: Mapping[str, Mapping] | None = None,
            placement: str | None = "heuristic", placement_time_limit: float = 10.0,
            bound: str | None = "lp", bound_time_limit: float = 30.0,
            carry: Iterable[Schedule] = (), dims: Mapping[str, int] | None = None) -> CompileResult:
    """Build the model, its plan tables, and a schedule per design, each timed by the simulator.

    ``bound`` ("closed", "lp" (default), "milp" or None) proves a lower bound on
    latency (solvers.schedule.bounds) so that every design's certified gap
    is reported; ``bound_time_limit`` caps the solver time spent on it.

    The exact designs (periodic, cpsat, milp) start from ``design_options[name]["warm_start"]``:
    a design name (run too if it is not requested), a Schedule (e.g. from
    ``elk.schedule_file.read_schedule``), or by default the fastest strict
    schedule run before them. Each reports the one it used (``warm_start`` in
    its row, with ``warm_start_ms``).

    ``carry``: schedules carried from elsewhere (a neighbouring point of a sweep
    with less HBM bandwidth or SRAM; see elk.study). Those the simulator
    accepts here compete with the heuristics as the exact designs' default warm
    start, so an exact design is never slower than a schedule that carries over.

    With ``placement`` (an allocator: heuristic, cpsat or milp) every strict
    design's buffers also get SRAM addresses; a schedule whose buffers do not
    fit is repaired by re-running the design under a smaller byte budget, and
    the design's result is the repaired schedule (the cost is reported).
    ``placement=None`` keeps byte budgets only.

    ``dims`` binds symbolic dimensions of an ONNX model by name (``batch`` and
    ``seq`` bind the usual names).
    """
    from solvers.registry import DESIGNS, EXACT_DESIGNS, dependency_order, parse_designs, pick_warm_start, run_design
    from solvers.schedule.bounds import LEVELS, check_time_limit, compute_bounds

    started = time.perf_counter()
    the_chip = resolve_chip(chip)
    if chip_overrides:
        the_chip = the_chip.with_overrides(**{k: v for k, v in chip_overrides.items() if v is not None})
    if isinstance(model, Program):
        program = model
    else:
        from elk.graphs.zoo import build_program
        program = build_program(model, batch=batch, seq=seq, mode=mode, **({"dims": dims} if dims else {}))
    names = parse_designs(designs, DESIGNS)
    from solvers.alloc.allocate import ALLOC_SOLVERS
    if placement is not None and placement not in ALLOC_SOLVERS:
        raise SolverConfigError(f"unknown placement solver '{placement}' ({', '.join(ALLOC_SOLVERS)} or None)")
    if bound is not None and bound not in LEVELS:
        raise SolverConfigError(f"unknown bound level '{bound}' ({', '.join(LEVELS)} or None)")
    check_time_limit(bound_time_limit, "bound time limit")
    design_options = design_options or {}
    order = dependency_order(names + _named_warm_starts(names, design_options, DESIGNS),
                             _common_warm_start(names, design_options))
    workload = Workload.build(program, the_chip)
    for opts in design_options.values():
        warm = opts.get("warm_start")
        if isinstance(warm, Schedule):  # a schedule from elsewhere must hold here, or the design would start invalid
            verdict = simulate(workload, warm)
            if not verdict.valid:
                raise ScheduleError(f"warm start '{warm.design}' is not valid on this program and chip: "
                                    f"{verdict.violations[0].message(the_chip.clock_hz)}")
    bounds = compute_bounds(workload, bound, bound_time_limit) if bound is not None else None
    results: dict[str, DesignResult] = {}
    done: dict[str, Schedule] = {}
    carried = [s for s in carry if simulate(workload, s).valid]
    if carried:  # not a design of its own: only a candidate warm start
        done["carried"] = min(carried, key=lambda s: simulate(workload, s).latency_cycles)
    # Requested designs' schedules as reported (after placement and any repair), and where each was placed:
    # an exact design starts from these, so that it is compared with, and falls back to, what the report shows.
    final: dict[str, Schedule] = {}
    placements: dict[int, Any] = {}
    for name in order:
        t0 = time.perf_counter()
        options = dict(design_options.get(name, {}))
        warm_ms = None
        warm = None
        if name in EXACT_DESIGNS:
            warm = pick_warm_start(workload, {n: final.get(n, s) for n, s in done.items()}, options.get("warm_start"))
            warm_ms = simulate(workload, warm).latency_ms
            options["warm_start"] = warm
        schedule = run_design(name, workload, done, options)
        spent = time.perf_counter() - t0
        done[name] = schedule
        if name in names:
            placed = None
            if placement is not None and schedule.relaxation.strict:
                from solvers.placement import cost_aware_placement, repair_reruns
                options = {k: v for k, v in design_options.get(name, {}).items() if k != "records"}
                designed = schedule
                quick, whole = repair_reruns(name, options, schedule)
                schedule, placed = cost_aware_placement(name, workload, schedule, quick, refine=whole,
                                                        solver=placement, time_limit=placement_time_limit)
                spent += placed.seconds
                if warm is not None and id(warm) in placements and (
                        simulate(workload, schedule).latency_cycles > simulate(workload, warm).latency_cycles):
                    # the exact schedule needed a repair that made it slower than its (placed) warm start:
                    # report the warm start under this design's name, with the placement it already has
                    schedule = Schedule(name, warm.entry, warm.exec_start, warm.exec_end, warm.load_start,
                                        warm.load_end, warm.relaxation, designed.info)
                    placed = dataclasses.replace(placements[id(warm)], design=name)
                placements[id(schedule)] = placed
            final[name] = schedule
            results[name] = DesignResult(name, schedule, simulate(workload, schedule), spent, placed, warm_ms)
    ordered = {n: results[n] for n in names}
    return CompileResult(model=program.name, chip=the_chip, program=program, workload=workload,
                         designs=ordered, table_seconds=workload.table_seconds,
                         total_seconds=time.perf_counter() - started, bounds=bounds)


def _named_warm_starts(names: list[str], options: Mapping[str, Mapping], known) -> list[str]:
    """Designs named as an exact design's warm start that were not requested (they are run too)."""
    from solvers.registry import EXACT_DESIGNS
    extra = []
    for name in names:
        warm = options.get(name, {}).get("warm_start") if name in EXACT_DESIGNS else None
        if warm is None or isinstance(warm, Schedule):
            continue
        if not isinstance(warm, str) or warm not in known:
            raise SolverConfigError(f"{name}: warm start {warm!r} is neither a design ({', '.join(known)}) "
                                    f"nor a Schedule")
        if warm == name:
            raise SolverConfigError(f"{name} cannot warm-start from itself")
        if warm in EXACT_DESIGNS and EXACT_DESIGNS.index(warm) > EXACT_DESIGNS.index(name):
            raise SolverConfigError(f"{name} cannot warm-start from {warm}: it runs first "
                                    f"(exact designs run in the order {', '.join(EXACT_DESIGNS)})")
        if warm not in names and warm not in extra:
            extra.append(warm)
    return extra


def _common_warm_start(names: list[str], options: Mapping[str, Mapping]) -> str | Schedule | None:
    """What ``dependency_order`` needs to know: a warm start every requested exact design was given, if any.

    None when some exact design starts from the default (the fastest schedule run before it), so that
    ELK-Full runs when no heuristic is requested.
    """
    from solvers.registry import EXACT_DESIGNS
    given = [options.get(n, {}).get("warm_start") for n in names if n in EXACT_DESIGNS]
    if not given or any(w is None for w in given):
        return None
    return next((w for w in given if isinstance(w, str) and w in EXACT_DESIGNS), given[0])


__all__ = ["compile", "CompileResult", "DesignResult", "ElkError", "jsonable", "window_summary"]
