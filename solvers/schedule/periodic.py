"""The periodic design: solve one steady-state layer exactly as a modulo schedule, replay it on the program.

1. ``layer_problem`` turns one repeated layer into the blocks of
   :mod:`formulations.schedule.modulo` (each large operator with its plan
   options, runs of small operators merged at fixed plans), hinted with
   the same layer of a warm-start schedule (whose plans the small operators keep).
2. CP-SAT finds the smallest period: the plans and, above all, how each
   layer's loads interleave with the previous layer's (its loads may run during
   the previous layer).
3. ``replay`` hands those decisions to elk's backward pass on the whole program:
   every layer takes the period's plan rows where they fit in SRAM, and the HBM
   load order follows the periodic timeline across all layers (prologue and
   epilogue included). The pass builds a valid schedule under the chip's load
   model; the simulator times it.

The result is a candidate and a warm start for the window search; ``periodic``
returns the faster of it and its warm start, so it is never slower than the
warm start.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError
from elk.schedule import NocMode, Schedule
from elk.simulator import simulate
from elk.workload import Workload
from formulations.schedule.modulo import SCALE, Block, BlockOption, ModuloProblem, ModuloSolution, build_modulo
from solvers.schedule.bounds import undominated
from solvers.schedule.choice import CostAware
from solvers.schedule.engine import PassConfig, backward_pass
from solvers.schedule.fallback import keep_faster
from solvers.solver_options import DEFAULT_TIME_LIMIT

#: a block's plan options are capped to this many rows (spread along the time axis)
MAX_OPTIONS = 12
#: an operator is "large" (a block of its own, with plan options) above this share of its layer's time or HBM
LARGE_SHARE = 0.01


@dataclass
class LayerModel:
    """A modulo problem and how its blocks map back to the program."""

    problem: ModuloProblem
    base: int  # program index of the modelled layer's first operator
    offsets: list[tuple[int, ...]]  # per block: layer-relative offsets of its operators
    hint: ModuloSolution | None


@dataclass(frozen=True)
class LayerSolve:
    """One CP-SAT solve of the layer model, as every exact solve is recorded: what it was asked (limits, workers,
    seed, solver version) and what it found and proved (status, period, lower bound on the period, in the model's
    units: cycles / ``SCALE``). Kept in the periodic schedule's ``info.search["layer_solve"]``."""

    solution: ModuloSolution | None
    status: str
    seconds: float
    deterministic_seconds: float
    period: float | None
    bound: float | None
    time_limit: float
    deterministic_time: float | None
    workers: int
    seed: int
    solver: str
    version: str

    def summary(self) -> dict:
        """The record without the solution (JSON-ready)."""
        return {k: v for k, v in self.__dict__.items() if k != "solution"}


class FixedRows:
    """A chooser that takes a given plan row where it fits the budget, and asks ``fallback`` otherwise."""

    def __init__(self, workload: Workload, rows: dict[int, int], fallback):
        self.rows = rows
        self.fallback = fallback
        self.footprint = {op: float(workload.tables[op].footprint()[row]) for op, row in rows.items()}

    def choose(self, op: int, budget: float) -> int | None:
        row = self.rows.get(op)
        if row is not None and self.footprint[op] <= budget:
            return row
        return self.fallback.choose(op, budget)


def _candidate_rows(table, keep: int | None = None) -> np.ndarray:
    """Undominated rows (time, comm, hot, cold), at most MAX_OPTIONS spread along time, fastest kept; plus ``keep``
    (the warm start's row, so that the warm start is a solution of the model)."""
    rows = undominated(np.stack([table.time, table.comm, table.hot.astype(float), table.cold.astype(float)], 1))
    rows = rows[np.argsort(table.time[rows], kind="stable")]
    if len(rows) > MAX_OPTIONS:
        pick = np.unique(np.round(np.linspace(0, len(rows) - 1, MAX_OPTIONS)).astype(int))
        rows = rows[pick]
    if keep is not None and keep not in rows:
        rows = np.sort(np.append(rows, keep))
    return rows


def _blocking(comm: float, time_: float, kappa: float) -> int:
    """Share of an execution (1/SCALE) during which a load at top rate ``kappa`` cannot progress."""
    if time_ <= 0 or kappa <= 0:
        return 0
    share = comm / time_
    return int(math.ceil(SCALE * max(0.0, min(1.0, (share + kappa - 1.0) / kappa))))


def layer_problem(workload: Workload, warm: Schedule | None, layer: int | None = None) -> LayerModel:
    """The modulo problem of one repeated layer (the middle one by default), hinted by ``warm``'s same layer."""
    structure = workload.program.layers
    if structure is None:
        raise ScheduleError("the periodic design needs a program with repeated layers")
    layer = structure.count // 2 if layer is None else layer
    base = structure.start + layer * structure.length
    ops = list(range(base, base + structure.length))
    fastest = np.array([float(workload.tables[i].time.min()) for i in ops])
    hbm = workload.hbm_cycles[ops]
    large = [(len(_candidate_rows(workload.tables[i])) > 1 and fastest[k] >= LARGE_SHARE * fastest.sum())
             or hbm[k] >= LARGE_SHARE * max(hbm.sum(), 1.0) for k, i in enumerate(ops)]
    groups: list[list[int]] = []
    for k in range(len(ops)):
        if large[k] or not groups or large[groups[-1][-1]]:
            groups.append([k])
        else:
            groups[-1].append(k)

    period_hint = None
    if warm is not None and layer + 1 < structure.count:
        period_hint = float(warm.exec_start[base + structure.length] - warm.exec_start[base])
    scale_ref = period_hint if period_hint else float(fastest.sum() + hbm.sum())
    unit = max(1, int(scale_ref // 20000))
    chip = workload.chip
    rho_min = chip.hbm_bytes_per_cycle / workload.noc_load_bytes_per_cycle
    kappa = min(1.0, rho_min)  # a load's top interconnect rate
    theta = 0.99
    blocks = []
    for g in groups:
        members = [ops[k] for k in g]
        if len(g) == 1 and large[g[0]]:
            op = members[0]
            t = workload.tables[op]
            options = []
            for r in _candidate_rows(t, int(warm.entry[op]) if warm is not None else None):
                cold = int(t.cold[r])
                if workload.load_bytes[op] > 0:
                    noc = workload.load_noc_cycles(op, cold)
                    h = float(workload.hbm_cycles[op])
                    fluid = chip.load_model is LoadModel.FLUID
                    load_time = math.ceil((max(h, noc) if fluid else max(h, noc / theta)) / unit)
                else:
                    cold, load_time = 0, 0
                options.append(BlockOption(rows=(int(r),), time=math.ceil(float(t.time[r]) / unit),
                                           comm=math.ceil(float(t.comm[r]) / unit), hot=int(t.hot[r]), cold=cold,
                                           load_time=load_time))
            blocking = min(_blocking(float(t.comm[r]), float(t.time[r]), kappa) for r in _candidate_rows(t))
            blocks.append(Block(ops=tuple(members), options=tuple(options), blocking=blocking))
        else:
            # the warm start's plans (known to fit next to its preloads), else the fastest
            rows = tuple(int(warm.entry[i]) if warm is not None else int(workload.tables[i].fastest) for i in members)
            t_sum = sum(float(workload.tables[i].time[r]) for i, r in zip(members, rows))
            c_sum = sum(float(workload.tables[i].comm[r]) for i, r in zip(members, rows))
            hot = max(int(workload.tables[i].hot[r]) for i, r in zip(members, rows))
            blocks.append(Block(ops=tuple(members), options=(BlockOption(
                rows=rows, time=math.ceil(t_sum / unit), comm=min(math.ceil(c_sum / unit), math.ceil(t_sum / unit)),
                hot=hot, cold=0, load_time=0),), blocking=_blocking(c_sum, t_sum, kappa)))
    lb = max(sum(min(o.time for o in b.options) for b in blocks),
             sum(min(o.load_time for o in b.options) for b in blocks if b.loads), 1)
    # generous: the model is a planner (rounded, interconnect approximated) and may not fit the warm start tightly
    ub = max(lb, math.ceil(1.5 * period_hint / unit) + 2 * len(blocks) + 2) if period_hint else 3 * lb
    problem = ModuloProblem(blocks=tuple(blocks), sram=int(chip.sram_per_core), unit=unit, period_lb=lb,
                            period_ub=ub)
    hint = _hint(workload, warm, problem, base, ub) if warm is not None else None
    return LayerModel(problem, base, [tuple(o - base for o in b.ops) for b in blocks], hint)


def _hint(workload: Workload, warm: Schedule, p: ModuloProblem, base: int, period: int) -> ModuloSolution:
    """The warm start's layer in model units, repaired to be consistent after rounding up.

    Executions keep their order and at least their (rounded) durations; a load
    keeps its start where it can and ends by its block's start. What rounding
    still breaks (the circular channel, SRAM) the solver repairs.
    """
    u = p.unit
    origin = float(warm.exec_start[base])
    choice, starts, ends, la, lb = [], [], [], {}, {}
    prev = 0
    for k, blk in enumerate(p.blocks):
        first, last = blk.ops[0], blk.ops[-1]
        rows = [o.rows[0] for o in blk.options]
        warm_row = int(warm.entry[first])
        if warm_row in rows:
            c = rows.index(warm_row)
        else:
            t = workload.tables[first]
            c = int(np.argmin([abs(float(t.time[r]) - float(t.time[warm_row])) for r in rows]))
        choice.append(c)
        s = max(prev, math.floor((warm.exec_start[first] - origin) / u))
        e = max(s + blk.options[c].time, math.ceil((warm.exec_end[last] - origin) / u))
        starts.append(s)
        ends.append(e)
        prev = e
    period = max(period, prev)
    loaded = sorted((k for k, blk in enumerate(p.blocks) if blk.loads), key=lambda k: warm.load_start[p.blocks[k].ops[0]])
    prev_end = -period
    for k in loaded:  # in the warm start's channel order, each after the previous one
        op = p.blocks[k].ops[0]
        length = max(p.blocks[k].options[choice[k]].load_time,
                     math.ceil((warm.load_end[op] - warm.load_start[op]) / u))
        a = max(prev_end, math.floor((warm.load_start[op] - origin) / u))
        b = a + length
        if b > starts[k]:
            b = starts[k]
            a = b - length
        la[k], lb[k] = max(-period, a), b
        prev_end = b
    return ModuloSolution(period=period, choice=choice, exec_start=starts, exec_end=ends, load_start=la,
                          load_end=lb)


def solve_layer(model: LayerModel, *, time_limit: float, workers: int, seed: int,
                deterministic_time: float | None = None) -> LayerSolve:
    """CP-SAT on the modulo problem. With ``deterministic_time`` and one worker, the same model gives the same
    solution on a busy machine as on a quiet one (the wall-clock limit is then only a safety net)."""
    import ortools
    from ortools.sat.python import cp_model
    built = build_modulo(model.problem)
    if model.hint is not None:
        built.hint(model.hint)
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.max_time_in_seconds = float(time_limit)
    prm.num_workers = int(workers)
    prm.random_seed = int(seed)
    # No repair_hint: with 8 workers OR-Tools 9.15 aborts the whole process
    # ("Check failed: heuristics.fixed_search != nullptr") on some models
    # (tiny train at 0.3 TB/s), and without it the layer optimum of
    # Llama2-13B/70B and Gemma2-27B is proven 2-7x sooner (0.2-0.5 s vs 0.7-3.7 s).
    if deterministic_time is not None:
        prm.max_deterministic_time = float(deterministic_time)
    started = time.perf_counter()
    status = solver.solve(built.model)
    seconds = time.perf_counter() - started
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    return LayerSolve(solution=built.decode(solver) if found else None, status=solver.status_name(status),
                      seconds=seconds, deterministic_seconds=float(solver.deterministic_time),
                      period=float(solver.objective_value) if found else None,
                      bound=float(solver.best_objective_bound) if found else None, time_limit=float(time_limit),
                      deterministic_time=None if deterministic_time is None else float(deterministic_time),
                      workers=int(workers), seed=int(seed), solver="cp-sat", version=f"ortools {ortools.__version__}")


def replay_rows(workload: Workload, model: LayerModel, sol: ModuloSolution) -> tuple[dict[int, int], list[int]]:
    """Plan rows for every repeated layer and the HBM load order of the whole program, from a periodic solution."""
    structure = workload.program.layers
    rows: dict[int, int] = {}
    key = np.zeros(len(workload))
    n = len(workload)
    for i in range(structure.start):  # prologue: its loads first, in program order
        key[i] = -1e18 + i
    for i in range(structure.stop, n):  # epilogue: after every layer's, in program order
        key[i] = 1e18 + i
    period = float(sol.period)
    for k, blk in enumerate(model.problem.blocks):
        option = blk.options[sol.choice[k]]
        offsets = model.offsets[k]
        for layer in range(structure.count):
            first = structure.start + layer * structure.length
            for off, row in zip(offsets, option.rows):
                rows[first + off] = row
            start = layer * period + sol.exec_start[k]
            if blk.loads:
                key[first + offsets[0]] = layer * period + sol.load_start[k]
                tiny = offsets[1:]
            else:
                tiny = offsets
            for q, off in enumerate(tiny):  # small loads the model leaves out: just before their block, in order
                key[first + off] = start - 1e-3 * (len(tiny) - q)
    order = sorted(range(n), key=lambda i: (key[i], i))
    return rows, order


def schedule_load_order(workload: Workload, schedule: Schedule) -> list[int]:
    """The HBM load order of a schedule (operators without a load just before their execution)."""
    key = np.where(workload.has_load, schedule.load_start, schedule.exec_start - 1e-3)
    return sorted(range(len(workload)), key=lambda i: (key[i], i))


def replay(workload: Workload, rows: dict[int, int], order: list[int] | None, modes: tuple[NocMode, ...],
           theta: float = 0.99, penalty: float = 0.5) -> list[Schedule]:
    """The backward pass following the periodic decisions, once per NoC mode (invalid or failed passes dropped)."""
    chooser = FixedRows(workload, rows, CostAware(workload, noc_penalty=penalty))
    out = []
    for mode in modes:
        try:
            sched = backward_pass(workload, chooser, PassConfig(theta=theta, noc_mode=mode), design="periodic",
                                  load_order=order, max_depth=None)
        except ScheduleError:
            continue
        if simulate(workload, sched).valid:
            out.append(sched)
    return out


def periodic(workload: Workload, warm_start: Schedule | None = None, *, time_limit: float = DEFAULT_TIME_LIMIT,
             workers: int = 8, seed: int = 0, deterministic_time: float | None = None) -> Schedule:
    """The periodic design (see the module docstring); never slower than ``warm_start``."""
    from solvers.schedule.designs import RIGID_MODES, elk_full
    started = time.perf_counter()
    warm = warm_start if warm_start is not None else elk_full(workload)
    best = None
    solve: LayerSolve | None = None
    if workload.program.layers is not None:
        model = layer_problem(workload, warm)
        solve = solve_layer(model, time_limit=time_limit, workers=workers, seed=seed,
                            deterministic_time=deterministic_time)
        sol = solve.solution
        fluid = workload.chip.load_model is LoadModel.FLUID
        modes = (NocMode.PUSH, NocMode.HYBRID) if fluid else RIGID_MODES
        if sol is not None:
            rows, order = replay_rows(workload, model, sol)
            # the period's plans with its own load order, with the warm start's and with program order
            candidates = []
            for load_order in (order, schedule_load_order(workload, warm), None):
                candidates += replay(workload, rows, load_order, modes)
            best = min(candidates, key=lambda s: simulate(workload, s).latency_cycles, default=None)
    result, _ = keep_faster(workload, best, warm, tie="warm")  # a replay only counts if it gains something
    out = result.renamed("periodic", result.info.copy(warm_start=warm.design))
    if solve is not None:
        out.info.search["layer_solve"] = solve.summary()
    out.info.compile_seconds = time.perf_counter() - started
    return out
