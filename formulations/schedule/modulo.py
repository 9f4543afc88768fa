"""A periodic (modulo) schedule of one repeated layer, as a CP-SAT model.

Transformer layers repeat 40-80 times with identical operators, so a schedule
whose every layer looks the same, shifted by a period ``P``, is the natural form
of the steady state; the whole program is then about ``layers x P`` plus a
prologue and an epilogue. The model asks for the smallest ``P``:

* the layer's operators (merged into *blocks*: each large operator on its own
  with its plan options, runs of small ones merged with fixed plans) execute in
  order inside ``[0, P)``; layer ``l`` runs the same at ``l P``;
* each block's HBM load ends before it starts and may begin up to one period
  earlier (during the previous layer): interval ``[a, a + len)`` with
  ``-P <= a``; the loads of all layers share one channel, which on a circle of
  length ``P`` means: no two of the intervals ``{I_j, I_j + P}`` overlap;
* SRAM: running hot bytes plus the cold bytes of every begun, not yet executed
  load, of this layer and of the next (``[a, s)`` and ``[a + P, s + P)``), on one
  cumulative;
* interconnect: an execution whose communication leaves a load less than its
  top rate blocks the fraction ``blocking`` of a load's progress while they
  overlap, so a load lasts its shortest time plus that share of its overlap
  with such executions. (Exact for a load paused by a uniform exchange; the
  operators that matter are the norms' reductions, ~98% communication, during
  which a load at half the interconnect cannot move.)

It is a *planner*: times are in units of ``unit`` cycles (rounded up), caps
rounded down, and tiny loads left out. Its decisions (plans, the interleaving
of loads across layers) are replayed through elk's backward pass on the whole
program, and only the simulator's verdict on that schedule counts.
An ``OPTIMAL`` status therefore proves the smallest period of this rounded model, not of the program
(tests/test_modulo.py checks it against an enumeration of the same problem).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

SCALE = 10_000  # interconnect work and caps in 1/10,000 of a unit


@dataclass(frozen=True)
class BlockOption:
    """One way to run a block: a plan row per member operator, and what that costs (in model units)."""

    rows: tuple[int, ...]
    time: int
    comm: int
    hot: int  # bytes per core (the largest of the members')
    cold: int  # bytes per core its load holds while waiting (0: no load)
    load_time: int  # shortest load duration in units


@dataclass(frozen=True)
class Block:
    """Consecutive operators of the layer scheduled as one unit: its plan options and how much it blocks loads."""

    ops: tuple[int, ...]  # program indices of one layer (consecutive)
    options: tuple[BlockOption, ...]
    #: share of its run (1/SCALE) during which a load overlapping it cannot progress: its communication
    #: leaves the interconnect less than a load needs (a norm's reduction is ~98% communication)
    blocking: int = 0

    @property
    def loads(self) -> bool:
        """Whether any option of the block loads from HBM."""
        return any(o.load_time > 0 for o in self.options)


@dataclass(frozen=True)
class ModuloProblem:
    """One layer's blocks, the SRAM per core and the period's range, in units of ``unit`` cycles."""

    blocks: tuple[Block, ...]
    sram: int
    unit: int  # cycles per model time unit
    period_lb: int
    period_ub: int


@dataclass
class ModuloSolution:
    """A period, an option per block, execution intervals and load intervals of one layer (model units)."""

    period: int
    choice: list[int]  # option index per block
    exec_start: list[int]
    exec_end: list[int]
    load_start: dict[int, int]  # block index -> start (may be negative: during the previous layer)
    load_end: dict[int, int]


@dataclass
class ModuloModel:
    """The CP-SAT model of a :class:`ModuloProblem` and its variables; ``decode`` and ``hint`` map solutions."""

    problem: ModuloProblem
    model: cp_model.CpModel
    period: cp_model.IntVar
    choice: list[list]
    start: list
    end: list
    load_start: dict
    load_end: dict
    aux: list = field(default_factory=list)

    def decode(self, solver: cp_model.CpSolver) -> ModuloSolution:
        """The solver's solution as a :class:`ModuloSolution`."""
        return ModuloSolution(
            period=solver.value(self.period),
            choice=[next(k for k, b in enumerate(bs) if solver.boolean_value(b)) for bs in self.choice],
            exec_start=[solver.value(v) for v in self.start], exec_end=[solver.value(v) for v in self.end],
            load_start={b: solver.value(v) for b, v in self.load_start.items()},
            load_end={b: solver.value(v) for b, v in self.load_end.items()})

    def hint(self, sol: ModuloSolution) -> None:
        """Hint every variable with ``sol`` (the solver may repair what does not fit)."""
        m = self.model
        m.add_hint(self.period, sol.period)
        for bs, c in zip(self.choice, sol.choice):
            for k, b in enumerate(bs):
                m.add_hint(b, k == c)
        for v, x in zip(self.start, sol.exec_start):
            m.add_hint(v, x)
        for v, x in zip(self.end, sol.exec_end):
            m.add_hint(v, x)
        for b, v in self.load_start.items():
            if b in sol.load_start:
                m.add_hint(v, sol.load_start[b])
        for b, v in self.load_end.items():
            if b in sol.load_end:
                m.add_hint(v, sol.load_end[b])


def build_modulo(p: ModuloProblem) -> ModuloModel:
    """The CP-SAT model of ``p`` (the constraints are listed in the module notes), minimising the period."""
    m = cp_model.CpModel()
    hi = p.period_ub
    P = m.new_int_var(p.period_lb, hi, "P")
    choice, start, end, dur, execs, hot = [], [], [], [], [], []
    for k, blk in enumerate(p.blocks):
        bs = [m.new_bool_var(f"x{k}_{o}") for o in range(len(blk.options))]
        m.add_exactly_one(bs)
        s = m.new_int_var(0, hi, f"s{k}")
        e = m.new_int_var(0, hi, f"e{k}")
        d = m.new_int_var(0, hi, f"d{k}")
        execs.append(m.new_interval_var(s, d, e, f"exec{k}"))
        m.add(d >= sum(o.time * b for o, b in zip(blk.options, bs)))
        m.add(e <= P)
        if k == 0:
            m.add(s == 0)
        else:
            m.add(s >= end[k - 1])
        choice.append(bs), start.append(s), end.append(e), dur.append(d)
        hot.append(_value(m, [o.hot for o in blk.options], bs, f"hot{k}"))

    load_start, load_end, length, cold, shifted = {}, {}, {}, {}, {}
    channel, residency, res_demand = [], [], []
    for k, blk in enumerate(p.blocks):
        if not blk.loads:
            continue
        bs = choice[k]
        a = m.new_int_var(-hi, hi, f"a{k}")
        ln = m.new_int_var(0, 2 * hi, f"len{k}")
        b = m.new_int_var(-hi, hi, f"b{k}")
        m.add(ln >= sum(o.load_time * x for o, x in zip(blk.options, bs)))
        m.add(b == a + ln)
        m.add(b <= start[k])
        m.add(a >= -P)
        channel.append(m.new_interval_var(a, ln, b, f"load{k}"))
        a2 = m.new_int_var(0, 2 * hi, f"a2_{k}")
        b2 = m.new_int_var(0, 2 * hi, f"b2_{k}")
        m.add(a2 == a + P)
        m.add(b2 == b + P)
        channel.append(m.new_interval_var(a2, ln, b2, f"load{k}'"))
        c = _value(m, [o.cold for o in blk.options], bs, f"cold{k}")
        shifted[k] = (a2, b2)
        for x0, x1, tag in ((a, start[k], ""), (a2, None, "'")):
            x1 = x1 if x1 is not None else _plus(m, start[k], P, 2 * hi, f"s{k}+P")
            size = m.new_int_var(0, 2 * hi, f"res{k}{tag}_len")
            residency.append(m.new_interval_var(x0, size, x1, f"res{k}{tag}"))
            res_demand.append(c)
        load_start[k], load_end[k], length[k], cold[k] = a, b, ln, c
    m.add_no_overlap(channel)
    m.add_cumulative(execs + residency, hot + res_demand, p.sram)

    # interconnect: a load makes no progress for the share ``block`` of any execution it overlaps
    loads = list(load_start)
    blocking = [k for k, blk in enumerate(p.blocks) if blk.blocking > 0]
    for j in loads:
        lost = []
        for k in blocking:
            for shift, (a, b) in enumerate(((load_start[j], load_end[j]), shifted[j])):
                lost.append(p.blocks[k].blocking * _overlap(m, start[k], end[k], a, b, hi, f"ov{k}_{j}_{shift}"))
        if lost:
            need = sum(o.load_time * x for o, x in zip(p.blocks[j].options, choice[j]))
            m.add(SCALE * length[j] >= SCALE * need + sum(lost))
    m.minimize(P)
    return ModuloModel(p, m, P, choice, start, end, load_start, load_end)


def _value(m: cp_model.CpModel, values: list[int], bools: list, name: str):
    if len(set(values)) == 1:
        return m.new_constant(values[0])
    v = m.new_int_var(min(values), max(values), name)
    m.add(v == sum(x * b for x, b in zip(values, bools)))
    return v


def _plus(m: cp_model.CpModel, a, b, hi: int, name: str):
    v = m.new_int_var(-2 * hi, 4 * hi, name)
    m.add(v == a + b)
    return v


def _overlap(m: cp_model.CpModel, s, e, a, b, hi: int, name: str):
    """max(0, min(e, b) - max(s, a))."""
    lo = m.new_int_var(-2 * hi, 4 * hi, name + "_lo")
    up = m.new_int_var(-2 * hi, 4 * hi, name + "_hi")
    m.add_max_equality(lo, [s, a])
    m.add_min_equality(up, [e, b])
    ov = m.new_int_var(0, 2 * hi, name)
    m.add_max_equality(ov, [0, up - lo])
    return ov


__all__ = ["Block", "BlockOption", "ModuloProblem", "ModuloSolution", "ModuloModel", "build_modulo", "SCALE"]
