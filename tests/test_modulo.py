"""The periodic design's modulo model (formulations/schedule/modulo.py) and the design itself, against exhaustive search.

What "optimal" means here. ``solve_layer`` reports ``OPTIMAL`` when CP-SAT proves the smallest period ``P`` of
the *modulo problem* it was given: one layer's blocks, times rounded up to the problem's unit, the interconnect
approximated by each block's ``blocking`` share, tiny loads left out. That is a statement about the rounded
model, not about the program: the design replays the period's decisions through the backward pass and only the
simulator's verdict on the whole program counts. So the tests check three things:

1. on hand-made tiny modulo problems, the model's proven optimum is the smallest period an independent
   enumeration of the same problem (written here from the model's docstring) finds, its solution meets every
   constraint of that problem, and infeasibility is agreed on;
2. on a layer built from a tiny program, an ``OPTIMAL`` solution meets the constraints, its period is the
   solver's proven bound and is no larger than the warm start's layer wherever that layer is expressible;
3. on tiny layered programs under both load models, the periodic design's schedule passes the simulator and is
   never faster than the optimum of the whole program found by ``solvers/schedule/brute_force.py`` (exhaustive
   where the interconnect does not bind, which ``noc_binding`` confirms), up to the window model's rounding of
   every duration up to whole cycles.

Every solve is deterministic: 1 worker, seed 0 and a ``max_deterministic_time``.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from elk.chip import preset
from elk.ir import Program, einsum_op
from elk.simulator import simulate
from elk.workload import Workload
from formulations.schedule.modulo import SCALE, Block, BlockOption, ModuloProblem, ModuloSolution, build_modulo
from solvers.schedule import designs
from solvers.schedule.brute_force import noc_binding, solve_brute_force
from solvers.schedule.periodic import layer_problem, periodic, solve_layer
from solvers.schedule.windowed import StitchState, WindowedSolver
from solvers.solver_options import SolverSettings

pytestmark = pytest.mark.solver


# ---------------------------------------------------------------------------
# the modulo problem, stated independently of the CP-SAT model
# ---------------------------------------------------------------------------
def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def violations(p: ModuloProblem, sol: ModuloSolution) -> list[str]:
    """Every constraint of the modulo problem (module docstring of formulations.schedule.modulo) ``sol`` breaks."""
    bad = []
    P = sol.period
    if not p.period_lb <= P <= p.period_ub:
        bad.append(f"period {P} outside [{p.period_lb}, {p.period_ub}]")
    opts = [blk.options[c] for blk, c in zip(p.blocks, sol.choice)]
    prev = 0
    for k, (s, e) in enumerate(zip(sol.exec_start, sol.exec_end)):
        if k == 0 and s != 0:
            bad.append("the layer does not start at 0")
        if s < prev or e - s < opts[k].time or e > P:
            bad.append(f"block {k}: execution [{s}, {e}) out of order, too short or past the period")
        prev = e
    loads = [k for k, blk in enumerate(p.blocks) if blk.loads]
    channel, held = [], []
    for k in loads:
        a, b = sol.load_start[k], sol.load_end[k]
        if a < -P or b > sol.exec_start[k]:
            bad.append(f"block {k}: load [{a}, {b}) begins before the previous layer or ends after its block starts")
        lost = sum(p.blocks[x].blocking * _overlap(sol.exec_start[x], sol.exec_end[x], a + shift, b + shift)
                   for x in range(len(p.blocks)) if p.blocks[x].blocking > 0 for shift in (0, P))
        if SCALE * (b - a) < SCALE * opts[k].load_time + lost:
            bad.append(f"block {k}: load of length {b - a} is shorter than its time plus what blocking costs it")
        channel += [(a, b), (a + P, b + P)]
        held += [(a, sol.exec_start[k], opts[k].cold), (a + P, sol.exec_start[k] + P, opts[k].cold)]
    for (a0, a1), (b0, b1) in itertools.combinations(channel, 2):
        if _overlap(a0, a1, b0, b1) > 0:
            bad.append(f"loads [{a0}, {a1}) and [{b0}, {b1}) share the channel")
    intervals = held + [(s, e, o.hot) for s, e, o in zip(sol.exec_start, sol.exec_end, opts)]
    for t in range(min(x for x, _, _ in intervals), max(y for _, y, _ in intervals)):
        used = sum(d for x, y, d in intervals if x <= t < y)
        if used > p.sram:
            bad.append(f"SRAM {used} > {p.sram} at {t}")
            break
    return bad


def smallest_period(p: ModuloProblem) -> int | None:
    """The smallest feasible period by enumeration (None: infeasible up to ``period_ub``).

    Without loss of generality every execution lasts exactly its option's time and every load is as short as
    its blocking allows for its start: a longer one only occupies more of the channel, SRAM is held from the
    load's start whatever its length, and a longer execution only holds more SRAM and blocks more loads.
    """
    loads = [k for k, blk in enumerate(p.blocks) if blk.loads]
    for P in range(p.period_lb, p.period_ub + 1):
        for choice in itertools.product(*(range(len(blk.options)) for blk in p.blocks)):
            opts = [blk.options[c] for blk, c in zip(p.blocks, choice)]
            for starts in _exec_starts(opts, P):
                ends = [s + o.time for s, o in zip(starts, opts)]
                ranges = [range(-P, starts[k] - opts[k].load_time + 1) for k in loads]
                for begins in itertools.product(*ranges):
                    sol = _with_loads(p, P, list(choice), starts, ends, dict(zip(loads, begins)))
                    if sol is not None and not violations(p, sol):
                        return P
    return None


def _exec_starts(opts: list[BlockOption], P: int, k: int = 0, at: int = 0):
    if k == len(opts):
        yield []
        return
    for s in ([0] if k == 0 else range(at, P - opts[k].time + 1)):
        if s + opts[k].time <= P:
            for rest in _exec_starts(opts, P, k + 1, s + opts[k].time):
                yield [s] + rest


def _with_loads(p, P, choice, starts, ends, begins) -> ModuloSolution | None:
    """The shortest load for each start that its blocking allows (None if none fits before its block)."""
    ends_of = {}
    for k, a in begins.items():
        option = p.blocks[k].options[choice[k]]
        for length in range(option.load_time, starts[k] - a + 1):
            lost = sum(p.blocks[x].blocking * _overlap(starts[x], ends[x], a + shift, a + length + shift)
                       for x in range(len(p.blocks)) if p.blocks[x].blocking > 0 for shift in (0, P))
            if SCALE * length >= SCALE * option.load_time + lost:
                ends_of[k] = a + length
                break
        else:
            return None
    return ModuloSolution(period=P, choice=choice, exec_start=starts, exec_end=ends, load_start=dict(begins),
                          load_end=ends_of)


def random_problem(rng: np.random.Generator) -> ModuloProblem:
    """Two or three blocks of one or two options, one or two of them loading; some block the interconnect."""
    n = int(rng.integers(2, 4))
    loading = set(rng.choice(n, size=int(rng.integers(1, 3)), replace=False).tolist())
    blocks = []
    for k in range(n):
        options = []
        for _ in range(int(rng.integers(1, 3))):
            load = k in loading
            options.append(BlockOption(rows=(len(options),), time=int(rng.integers(1, 4)), comm=0,
                                       hot=int(rng.integers(1, 6)), cold=int(rng.integers(1, 5)) if load else 0,
                                       load_time=int(rng.integers(1, 4)) if load else 0))
        blocking = int(rng.choice([0, SCALE // 2, SCALE])) if k not in loading else 0
        blocks.append(Block(ops=(k,), options=tuple(options), blocking=blocking))
    lb = max(sum(min(o.time for o in b.options) for b in blocks),
             sum(min(o.load_time for o in b.options) for b in blocks if b.loads), 1)
    return ModuloProblem(blocks=tuple(blocks), sram=int(rng.integers(4, 11)), unit=1, period_lb=lb,
                         period_ub=lb + 5)


def solve(p: ModuloProblem):
    """CP-SAT on the modulo model, deterministic: (status name, decoded solution or None)."""
    from ortools.sat.python import cp_model
    built = build_modulo(p)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_deterministic_time = 20.0
    status = solver.solve(built.model)
    name = solver.status_name(status)
    return name, (built.decode(solver) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None)


def test_the_checker_sees_each_broken_rule():
    """The independent statement above rejects what the model forbids (so agreement below means something)."""
    blocks = (Block(ops=(0,), options=(BlockOption((0,), time=2, comm=0, hot=3, cold=0, load_time=0),),
                    blocking=SCALE),
              Block(ops=(1,), options=(BlockOption((0,), time=2, comm=0, hot=3, cold=2, load_time=2),)))
    p = ModuloProblem(blocks=blocks, sram=6, unit=1, period_lb=4, period_ub=10)
    good = ModuloSolution(period=4, choice=[0, 0], exec_start=[0, 2], exec_end=[2, 4], load_start={1: -2},
                          load_end={1: 0})
    assert violations(p, good) == []
    assert smallest_period(p) == 4
    overlapping = ModuloSolution(4, [0, 0], [0, 2], [2, 4], {1: -1}, {1: 1})  # paused by block 0's exchange
    assert any("blocking" in v for v in violations(p, overlapping))
    too_late = ModuloSolution(4, [0, 0], [0, 2], [2, 4], {1: 1}, {1: 3})
    assert any("after its block starts" in v for v in violations(p, too_late))
    crowded = ModuloProblem(blocks=blocks, sram=4, unit=1, period_lb=4, period_ub=10)
    assert any("SRAM" in v for v in violations(crowded, good))
    hopeless = ModuloProblem(blocks=blocks, sram=2, unit=1, period_lb=4, period_ub=10)  # no block fits
    assert smallest_period(hopeless) is None and solve(hopeless)[0] == "INFEASIBLE"


def test_modulo_model_finds_the_smallest_period_of_tiny_problems():
    rng = np.random.default_rng(7)
    optimal = infeasible = blocked = 0
    for _ in range(30):
        p = random_problem(rng)
        expected = smallest_period(p)
        status, sol = solve(p)
        if expected is None:
            assert status == "INFEASIBLE", (p, status)
            infeasible += 1
            continue
        assert status == "OPTIMAL", (p, status)
        assert violations(p, sol) == [], (p, sol)
        assert sol.period == expected, (p, sol, expected)
        optimal += 1
        blocked += any(b.blocking for b in p.blocks) and expected > p.period_lb
    assert optimal >= 20 and blocked >= 1, (optimal, infeasible, blocked)


# ---------------------------------------------------------------------------
# tiny layered programs: the layer model, then the whole design against brute force
# ---------------------------------------------------------------------------
def layered(layers: int = 3, t: int = 8, d: int = 64) -> Program:
    """``layers`` matmuls, each with its own weight from HBM; the first reads the input from HBM as well, so the
    repeated layers are the later ones."""
    ops, prev = [], "x"
    for k in range(layers):
        ops.append(einsum_op(f"mm{k}", "matmul", "td,de->te", dict(t=t, d=d, e=d), [prev, f"w{k}"], f"h{k}",
                             layer=k))
        prev = f"h{k}"
    return Program.from_ops("layered", ops)


def mlp_layers(layers: int = 4, t: int = 8, d: int = 64, e: int = 128) -> Program:
    """``layers`` MLP blocks (up-projection, activation, down-projection), weights from HBM."""
    ops, prev = [], "x"
    for k in range(layers):
        ops.append(einsum_op(f"up{k}", "matmul", "td,de->te", dict(t=t, d=d, e=e), [prev, f"w{k}"], f"h{k}", layer=k))
        ops.append(einsum_op(f"act{k}", "unary", "te->te", dict(t=t, e=e), [f"h{k}"], f"g{k}", layer=k))
        ops.append(einsum_op(f"down{k}", "matmul", "te,ed->td", dict(t=t, d=d, e=e), [f"g{k}", f"v{k}"], f"y{k}",
                             layer=k))
        prev = f"y{k}"
    return Program.from_ops("mlp", ops)


def tiny_chip(load_model: str, hbm: float):
    """Slow HBM and a fast interconnect: memory and the channel bind, the interconnect does not."""
    return preset("ipu-mk2").with_overrides(cores=16, sram_per_core=8 * 1024, noc_scale=1000.0,
                                            hbm_bytes_per_s=hbm, load_model=load_model)


@pytest.mark.parametrize("load_model", ["fluid", "rigid"])
@pytest.mark.parametrize("hbm", [2e10, 1e11], ids=["slow-hbm", "exchange-blocks-loads"])
def test_an_optimal_layer_meets_its_model_and_is_no_longer_than_the_expressible_warm_start(load_model, hbm):
    """At 100 GB/s the norms-free MLP's exchanges block loads (``blocking`` > 0), and the warm start's layer,
    rounded into the model, is not a solution of it (the solver repairs the hint); at 20 GB/s it is."""
    chip = preset("ipu-mk2").with_overrides(cores=16, sram_per_core=8 * 1024, hbm_bytes_per_s=hbm,
                                            load_model=load_model)
    w = Workload.build(mlp_layers(4), chip)
    warm = designs.elk_full(w)
    model = layer_problem(w, warm)
    assert len(model.problem.blocks) == 3 and any(len(b.options) > 1 for b in model.problem.blocks)
    assert any(b.blocking > 0 for b in model.problem.blocks) == (hbm > 5e10)
    solve = solve_layer(model, time_limit=60, workers=1, seed=0, deterministic_time=10.0)
    sol, bound = solve.solution, solve.bound
    assert solve.status == "OPTIMAL" and sol is not None
    assert solve.period == pytest.approx(sol.period) and solve.deterministic_seconds <= 11.0  # limit + overshoot
    assert (solve.workers, solve.seed, solve.deterministic_time) == (1, 0, 10.0) and solve.version.startswith("ortools ")
    assert violations(model.problem, sol) == []
    assert sol.period == pytest.approx(bound)  # proven: no smaller period of this (rounded) model exists
    assert sol.period >= model.problem.period_lb
    hint_ok = model.hint is not None and not violations(model.problem, model.hint)
    assert hint_ok == (hbm < 5e10)
    if hint_ok:
        assert sol.period <= model.hint.period


def whole_program_optimum(w: Workload, warm) -> tuple[float, int]:
    """Brute force over the whole program as one window (every undominated plan row, every load order and wait):
    its shortest makespan in cycles, and how much rounding each duration up to whole cycles may have added."""
    n = len(w)
    runner = WindowedSolver(w, warm, SolverSettings(time_limit=10, workers=1), window=n)
    problem = runner.build(0, n, n, StitchState.from_schedule(warm)).problem
    assert problem.fixed == () and problem.future == ()
    assert not noc_binding(problem)  # so the enumeration is exhaustive
    best, _ = solve_brute_force(problem, limit=200_000)
    assert best is not None
    rounding = 2 * (n + int(w.has_load.sum()))  # each start down and each end up: under two cycles per interval
    return float(best.makespan() - problem.release), rounding


@pytest.mark.parametrize("load_model", ["fluid", "rigid"])
def test_periodic_is_valid_and_never_beats_the_brute_force_optimum(load_model):
    for hbm in (2e10,):
        w = Workload.build(layered(3), tiny_chip(load_model, hbm))
        assert w.program.layers is not None and w.program.layers.count == 2
        warm = designs.elk_dyn(w)
        optimum, rounding = whole_program_optimum(w, warm)
        warm_latency = simulate(w, warm).latency_cycles
        assert optimum <= warm_latency + rounding  # the enumeration covers the warm start
        runs = [periodic(w, warm, time_limit=60, workers=1, seed=0, deterministic_time=5.0) for _ in range(2)]
        verdict = simulate(w, runs[0])
        assert verdict.valid, verdict.violations[:1]
        assert verdict.latency_cycles >= optimum - rounding, (verdict.latency_cycles, optimum)
        assert verdict.latency_cycles <= warm_latency + 1e-6  # never slower than its warm start
        assert np.array_equal(runs[0].entry, runs[1].entry)  # deterministic
        assert simulate(w, runs[1]).latency_cycles == verdict.latency_cycles
        # the layer solve is recorded like every exact solve, and on deterministic time it repeats exactly
        record = runs[0].info.search["layer_solve"]
        assert record["status"] in ("OPTIMAL", "FEASIBLE") and record["bound"] <= record["period"]
        assert (record["workers"], record["seed"], record["deterministic_time"]) == (1, 0, 5.0)
        assert record["deterministic_seconds"] <= 5.5 and record["solver"] == "cp-sat"
        assert record["version"].startswith("ortools ")
        assert record["period"] == runs[1].info.search["layer_solve"]["period"]
