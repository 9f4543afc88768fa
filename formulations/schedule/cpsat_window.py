"""CP-SAT model of a window (see formulations.schedule.window for the problem).

Variables, per window operator k: a Boolean per plan option; execution start,
duration and end (an interval); for a free load its start (an interval whose
size is the chosen option's load time) and a residency interval from load start
to execution start. Per future load: its start. Constraints:

* executions in program order; duration >= the chosen option's plan time;
* every load interval on one NoOverlap (the HBM channel; any order);
* SRAM: one cumulative over execution intervals (hot bytes), residency
  intervals (cold bytes; future and not-yet-run fixed loads stay to the
  horizon) and fixed residencies, capacity = SRAM per core;
* interconnect, per execution k (rigid loads): sum over loads j of
  overlap(k, j) x share(j) <= SHARE_SCALE x (duration - communication), with
  overlap built from min/max equalities and, for free loads whose share depends
  on their option, split per option. Fluid loads have a length variable and,
  per (execution, load) pair, work ``u <= cap x overlap``; an execution's pairs
  (and the fixed loads' constant shares) fit in what its communication leaves,
  and a load's pairs plus ``cap x (length - its overlaps)`` cover its work;
* objective: makespan x weight + sum of future-load ends (the tail term).

Exact relative to the window problem; conservative relative to the simulator
only through the rounding documented in formulations.schedule.window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from formulations.schedule.window import (FAMILIES, SHARE_SCALE, WindowAssignment, WindowProblem,
                                          fixed_channel_blocks, fluid_split, overlap)


@dataclass
class CpsatWindow:
    """A window's CP-SAT model and the variables a solution is read from (and a hint written to)."""

    problem: WindowProblem
    model: cp_model.CpModel
    choice: list[list]  # Boolean per (op, option)
    start: list
    end: list
    duration: list
    load_start: dict  # program op -> start var (free and future loads)
    aux: list = field(default_factory=list)  # (var, function of an assignment) for hints
    load_end: dict = field(default_factory=dict)  # program op -> end var (fluid loads)
    #: fluid loads: program op -> [(work inside one execution, overlap with it)], and program op -> length var
    pairs: dict = field(default_factory=dict)
    lengths: dict = field(default_factory=dict)

    def decode(self, solver: cp_model.CpSolver) -> WindowAssignment:
        choice = [next(p for p, b in enumerate(bs) if solver.boolean_value(b)) for bs in self.choice]
        return WindowAssignment(choice=choice, exec_start=[solver.value(v) for v in self.start],
                                exec_end=[solver.value(v) for v in self.end],
                                load_start={op: solver.value(v) for op, v in self.load_start.items()},
                                load_end={op: solver.value(v) for op, v in self.load_end.items()})

    def add_hint(self, a: WindowAssignment) -> None:
        """A complete hint: every decision and auxiliary variable."""
        m = self.model
        for bs, c in zip(self.choice, a.choice):
            for p, b in enumerate(bs):
                m.add_hint(b, p == c)
        for k in range(len(self.start)):
            m.add_hint(self.start[k], a.exec_start[k])
            m.add_hint(self.end[k], a.exec_end[k])
            m.add_hint(self.duration[k], a.exec_end[k] - a.exec_start[k])
        for op, v in self.load_start.items():
            m.add_hint(v, a.load_start[op])
        for op, v in self.load_end.items():
            if op in a.load_end:
                m.add_hint(v, a.load_end[op])
        for var, value_of in self.aux:
            m.add_hint(var, value_of(a))
        proto = m.proto
        hinted = set(proto.solution_hint.vars)
        for index, v in enumerate(proto.variables):  # constants are variables too in the model proto
            if index not in hinted and len(v.domain) == 2 and v.domain[0] == v.domain[1]:
                m.add_hint(m.get_int_var_from_proto_index(index), v.domain[0])


def build_cpsat(problem: WindowProblem) -> CpsatWindow:
    """The window's CP-SAT model, one constraint family at a time; build_milp (formulations.schedule.milp_window)
    takes the same steps under the same names, so the two feasible sets can be compared family by family."""
    b = _CpsatBuilder(problem)
    for family in FAMILIES:
        getattr(b, family)()
    return CpsatWindow(problem, b.m, b.choice, b.start, b.end, b.duration, b.load_start, b.aux, b.load_end,
                      b.fluid_pairs, b.lengths)


class _CpsatBuilder:
    """The variables of one window model as its constraint families are added (see :func:`build_cpsat`)."""

    def __init__(self, problem: WindowProblem):
        self.p = problem
        self.m = cp_model.CpModel()
        self.lo, self.hi = problem.lower, problem.horizon
        self.choice: list[list] = []  # Boolean per (window operator, option)
        self.start: list = []
        self.end: list = []
        self.duration: list = []
        self.exec_iv: list = []
        self.hot: list = []  # chosen hot bytes (one variable each: cumulative demands must be)
        self.comm: list = []  # chosen communication cycles (an expression)
        self.cold: list = []
        self.load_start: dict[int, cp_model.IntVar] = {}  # program op -> start (free and future loads)
        self.load_end: dict = {}  # program op -> end (fluid loads)
        self.lengths: dict = {}  # fluid: program op -> length var
        self.load_ivs: list = []  # everything on the HBM channel
        self.res_ivs: list = []  # residencies: loaded data waiting for their operator
        self.res_demands: list = []
        self.free_loads: list = []  # (k, start var, end expr)
        self.future_loads: list = []  # (future load, start var, end expr)
        self.fluid_pairs: dict = {}  # program op -> [(work var, overlap var)] over executions
        self.aux: list = []  # (var, function of an assignment) for hints
        self.cap_groups: dict[int, list] = {}  # free fluid load k -> [(top rate, literal)] (see caps)

    def executions(self) -> None:
        """Plan choice, and executions in program order, each at least its chosen plan's time."""
        m, p, hi = self.m, self.p, self.hi
        for k, w in enumerate(p.ops):
            bs = [m.new_bool_var(f"x{k}_{q}") for q in range(len(w.options))]
            m.add_exactly_one(bs)
            self.choice.append(bs)
            s = m.new_int_var(p.release, hi, f"s{k}")
            e = m.new_int_var(p.release, hi, f"e{k}")
            d = m.new_int_var(0, hi - p.release, f"d{k}")
            self.exec_iv.append(m.new_interval_var(s, d, e, f"exec{k}"))
            m.add(d >= sum(o.time * b for o, b in zip(w.options, bs)))
            self.start.append(s), self.end.append(e), self.duration.append(d)
            self.comm.append(sum(o.comm * b for o, b in zip(w.options, bs)))
            self.hot.append(_choice_var(m, [o.hot for o in w.options], bs, f"hot{k}", self.aux, k))
            self.cold.append(_choice_var(m, [o.cold for o in w.options], bs, f"cold{k}", self.aux, k))
            if k > 0:
                m.add(s >= self.end[k - 1])

    def loads(self) -> None:
        """Free window loads, future loads and fixed loads: their intervals on the channel, each ending before
        its operator starts (and by its latest end), and the residency of their data until then."""
        m, p, lo, hi, ops, aux = self.m, self.p, self.lo, self.hi, self.p.ops, self.aux
        for k, w in enumerate(ops):
            if w.load != "free":
                continue
            a = m.new_int_var(p.release, hi, f"a{k}")
            b = m.new_int_var(p.release, hi, f"b{k}")
            if p.fluid:  # any length from the option's shortest up
                size = m.new_int_var(0, hi - p.release, f"len{k}")
                m.add(size >= sum(o.load_time * x for o, x in zip(w.options, self.choice[k])))
                self.load_end[w.op], self.lengths[w.op] = b, size
                aux.append((size, lambda h, k=k, op=w.op: h.end_of(op, ops[k].options[h.choice[k]])
                            - h.load_start[op]))
            else:
                size = _choice_var(m, [o.load_time for o in w.options], self.choice[k], f"lt{k}", aux, k)
                aux.append((b, lambda h, k=k, op=w.op: h.load_start[op] + ops[k].options[h.choice[k]].load_time))
            m.add(b <= self.start[k])
            if w.latest_end is not None:
                m.add(b <= w.latest_end)
            self.load_ivs.append(m.new_interval_var(a, size, b, f"load{k}"))
            self.res_ivs.append(_span(m, a, self.start[k], hi - lo + 1, f"wait{k}", aux,
                                      lambda h, k=k, op=w.op: h.exec_start[k] - h.load_start[op]))
            self.res_demands.append(self.cold[k])
            self.load_start[w.op] = a
            self.free_loads.append((k, a, b))
        for f in p.future:
            a = m.new_int_var(p.release, hi, f"f{f.op}")
            if p.fluid:
                b = m.new_int_var(p.release, hi, f"fb{f.op}")
                size = m.new_int_var(f.option.load_time, hi - p.release, f"flen{f.op}")
                self.load_end[f.op], self.lengths[f.op] = b, size
                aux.append((size, lambda h, f=f: h.end_of(f.op, f.option) - h.load_start[f.op]))
            else:
                b, size = a + f.option.load_time, f.option.load_time
            m.add(b <= f.latest_end)
            self.load_ivs.append(m.new_interval_var(a, size, b, f"fload{f.op}"))
            self.res_ivs.append(_span(m, a, hi + 1, hi - lo + 2, f"fwait{f.op}", aux,
                                      lambda h, op=f.op: hi + 1 - h.load_start[op]))
            self.res_demands.append(f.option.cold)
            self.load_start[f.op] = a
            self.future_loads.append((f, a, b))
        for block_start, block_end in fixed_channel_blocks(p):
            self.load_ivs.append(m.new_interval_var(block_start, block_end - block_start, block_end,
                                                    f"busy{block_start}"))
        for f in p.fixed:
            if f.owner >= 0:
                s = self.start[f.owner]
                m.add(s >= f.end)  # a committed load still ends before its operator starts
                self.res_ivs.append(_span(m, f.start, s, hi - lo + 1, f"fixedwait{f.op}", aux,
                                          lambda h, k=f.owner, t0=f.start: h.exec_start[k] - t0))
            else:
                self.res_ivs.append(m.new_interval_var(f.start, hi + 1 - f.start, hi + 1, f"fixedwait{f.op}"))
            self.res_demands.append(f.cold)

    def channel(self) -> None:
        """One HBM channel: no two loads (nor a load and a fixed load's busy span) overlap, in any order."""
        self.m.add_no_overlap(self.load_ivs)

    def sram(self) -> None:
        """Per-core SRAM: the running operator's hot bytes plus every waiting load's cold bytes fit."""
        self.m.add_cumulative(self.exec_iv + self.res_ivs, self.hot + self.res_demands, self.p.sram)

    def interconnect(self) -> None:
        """Per execution: the loads it overlaps (their shares, or fluid work) fit in what its communication
        leaves of the interconnect."""
        p, m = self.p, self.m
        split = _SplitOf(p)  # the warm start's work per (execution, load), for hints
        for k in range(len(p.ops)):
            terms = self._fixed_terms(k, split) + self._future_terms(k, split) + self._free_terms(k, split)
            if terms:
                m.add(sum(terms) <= SHARE_SCALE * (self.duration[k] - self.comm[k]))
            else:
                m.add(self.duration[k] >= self.comm[k])

    def _fixed_terms(self, k: int, split: "_SplitOf") -> list:
        m, p, lo, hi = self.m, self.p, self.lo, self.hi
        terms = []
        for f in p.fixed:
            if f.end <= p.release or (0 <= f.owner <= k):
                continue
            if p.fluid:  # the work it still has to do, at any rate inside its interval from the origin
                if f.work == 0:
                    continue
                f0 = max(f.start, p.release)
                ov = _overlap_var(m, self.start[k], self.end[k], f0, f.end, lo, hi, f"ovF{k}_{f.op}", self.aux,
                                  _spans_fixed(k, f0, f.end))
                terms.append(_fluid_pair(m, ov, f.cap, hi - lo + 1, f"uF{k}_{f.op}", self.fluid_pairs, f.op,
                                         self.aux, (k, f.op), split))
                continue
            if f.share == 0:
                continue
            ov = _overlap_var(m, self.start[k], self.end[k], f.start, f.end, lo, hi, f"ovF{k}_{f.op}", self.aux,
                              _spans_fixed(k, f.start, f.end))
            terms.append(f.share * ov)
        return terms

    def _future_terms(self, k: int, split: "_SplitOf") -> list:
        m, p, lo, hi = self.m, self.p, self.lo, self.hi
        terms = []
        for f, a, b in self.future_loads:
            if p.fluid:
                if f.option.load_work == 0:
                    continue
                ov = _overlap_var(m, self.start[k], self.end[k], a, b, lo, hi, f"ovU{k}_{f.op}", self.aux,
                                  _spans_future(k, f.op, f.option))
                terms.append(_fluid_pair(m, ov, f.option.load_cap, hi - lo + 1, f"uU{k}_{f.op}", self.fluid_pairs,
                                         f.op, self.aux, (k, f.op), split))
                continue
            if f.option.load_share == 0:
                continue
            ov = _overlap_var(m, self.start[k], self.end[k], a, b, lo, hi, f"ovU{k}_{f.op}", self.aux,
                              _spans_future(k, f.op, f.option))
            terms.append(f.option.load_share * ov)
        return terms

    def _free_terms(self, k: int, split: "_SplitOf") -> list:
        m, p, lo, hi, ops, aux = self.m, self.p, self.lo, self.hi, self.p.ops, self.aux
        terms = []
        for j, a, b in self.free_loads:
            if j <= k:
                continue  # a load of op j ends before j runs, so after k only if j > k
            if p.fluid:
                if all(o.load_work == 0 for o in ops[j].options):
                    continue
                ov = _overlap_var(m, self.start[k], self.end[k], a, b, lo, hi, f"ovW{k}_{j}", aux,
                                  _spans_free(k, j, ops))
                terms.append(_fluid_pair(m, ov, self.caps(j), hi - lo + 1, f"uW{k}_{j}", self.fluid_pairs, ops[j].op,
                                         aux, (k, ops[j].op), split))
                continue
            shares = sorted({o.load_share for o in ops[j].options})
            if shares == [0]:
                continue
            ov = _overlap_var(m, self.start[k], self.end[k], a, b, lo, hi, f"ovW{k}_{j}", aux, _spans_free(k, j, ops))
            if len(shares) == 1:
                terms.append(shares[0] * ov)
                continue
            for share in shares:  # split the overlap by the share the load's option implies
                picked = [bv for o, bv in zip(ops[j].options, self.choice[j]) if o.load_share == share]
                sel = m.new_bool_var(f"sh{k}_{j}_{share}")
                m.add_bool_or(picked).only_enforce_if(sel)
                for bv in picked:
                    m.add_implication(bv, sel)
                part = m.new_int_var(0, hi - lo + 1, f"ovW{k}_{j}_{share}")
                m.add(part == ov).only_enforce_if(sel)
                m.add(part == 0).only_enforce_if(~sel)
                aux.append((sel, _hint_share_sel(j, ops, share)))
                aux.append((part, _hint_share_part(k, j, ops, share)))
                terms.append(share * part)
        return terms

    def caps(self, k: int) -> list[tuple[int, object]]:
        """(top rate, literal) per distinct top rate of free load k's options; the literal holds iff the chosen
        option has that rate. A replicated cold layout moves more interconnect work at a higher rate, so the
        rate is the chosen option's (charging every option the smallest rate cut off valid schedules)."""
        if k not in self.cap_groups:
            options, bools = self.p.ops[k].options, self.choice[k]
            caps = sorted({o.load_cap for o in options})
            groups: list[tuple[int, object]] = [(caps[0], True)] if len(caps) == 1 else []
            for cap in caps if len(caps) > 1 else ():
                y = self.m.new_bool_var(f"cap{k}_{cap}")
                self.m.add(y == sum(b for o, b in zip(options, bools) if o.load_cap == cap))
                self.aux.append((y, lambda h, cap=cap: int(options[h.choice[k]].load_cap == cap)))
                groups.append((cap, y))
            self.cap_groups[k] = groups
        return self.cap_groups[k]

    def fluid_progress(self) -> None:
        """Fluid loads: every load moves its whole work, inside executions or at its top rate outside them."""
        m, p = self.m, self.p
        if not p.fluid:
            return
        for k, w in enumerate(p.ops):
            if w.load == "free" and any(o.load_work for o in w.options):
                need = sum(o.load_work * x for o, x in zip(w.options, self.choice[k]))
                _fluid_progress(m, self.fluid_pairs.get(w.op, []), self.caps(k), self.lengths[w.op], need)
        for f in p.future:
            if f.option.load_work:
                _fluid_progress(m, self.fluid_pairs.get(f.op, []), f.option.load_cap, self.lengths[f.op],
                                f.option.load_work)
        for f in p.fixed:
            if f.work and f.end > p.release:
                _fluid_progress(m, self.fluid_pairs.get(f.op, []), f.cap, f.end - max(f.start, p.release), f.work)

    def objective(self) -> None:
        """Makespan first (weighted), then the future loads' ends (the tail term)."""
        tail = sum(b for _, _, b in self.future_loads) if self.future_loads else 0
        self.m.minimize(self.end[-1] * self.p.tail_weight + tail)


def _fluid_pair(m: cp_model.CpModel, ov, caps: "int | list[tuple[int, object]]", longest: int, name: str,
                pairs: dict, op: int, aux: list,
                key: tuple[int, int], split: "_SplitOf"):
    """Work ``u <= cap x overlap`` a fluid load does inside one execution (its term in the execution's row);
    ``caps`` is the load's top rate, or (rate, literal) pairs when it depends on the chosen option."""
    groups = [(caps, True)] if isinstance(caps, int) else caps
    u = m.new_int_var(0, max(c for c, _ in groups) * longest, name)
    for cap, lit in groups:
        row = m.add(u <= cap * ov)
        if lit is not True:
            row.only_enforce_if(lit)
    pairs.setdefault(op, []).append((u, ov))
    aux.append((u, lambda h: split.value(h, key)))
    return u


class _SplitOf:
    """Hints for fluid work variables: a valid split of the hinted assignment, computed once per assignment."""

    def __init__(self, problem: WindowProblem):
        self.problem = problem
        self.cache: dict[int, dict] = {}

    def value(self, a: WindowAssignment, key: tuple[int, int]) -> int:
        if id(a) not in self.cache:
            self.cache = {id(a): fluid_split(self.problem, a)}
        return int(math.floor(self.cache[id(a)].get(key, 0.0)))


def _fluid_progress(m: cp_model.CpModel, pairs: list, caps: "int | list[tuple[int, object]]", length, need) -> None:
    """A fluid load's work inside executions, plus its top rate x the rest of its interval, covers its work."""
    groups = [(caps, True)] if isinstance(caps, int) else caps
    for cap, lit in groups:
        row = m.add(sum(u for u, _ in pairs) + cap * (length - sum(ov for _, ov in pairs)) >= need)
        if lit is not True:
            row.only_enforce_if(lit)


def _overlap_var(m: cp_model.CpModel, s, e, a, b, lo: int, hi: int, name: str, aux: list, spans):
    """ov = max(0, min(e, b) - max(s, a)), with hints for its helpers (``spans(assignment)``, None: no hint)."""
    first = m.new_int_var(lo - 1, hi + 1, name + "_lo")
    last = m.new_int_var(lo - 1, hi + 1, name + "_hi")
    m.add_max_equality(first, [s, a])
    m.add_min_equality(last, [e, b])
    ov = m.new_int_var(0, hi - lo + 1, name)
    m.add_max_equality(ov, [0, last - first])
    if spans is None:
        return ov
    aux.append((first, lambda x: max(spans(x)[0], spans(x)[2])))
    aux.append((last, lambda x: min(spans(x)[1], spans(x)[3])))
    aux.append((ov, lambda x: overlap(*spans(x))))
    return ov


def _span(m: cp_model.CpModel, start, end, longest: int, name: str, aux: list, length_of):
    """Interval [start, end) between two expressions (its size gets a variable of its own, hinted)."""
    size = m.new_int_var(0, longest, name + "_len")
    aux.append((size, length_of))
    return m.new_interval_var(start, size, end, name)


def _choice_var(m: cp_model.CpModel, values: list[int], bools: list, name: str, aux: list, k: int):
    """The value of the chosen option as one variable (cumulative demands and sizes need one)."""
    if len(set(values)) == 1:
        return m.new_constant(values[0])
    v = m.new_int_var(min(values), max(values), name)
    m.add(v == sum(x * b for x, b in zip(values, bools)))
    aux.append((v, lambda h: values[h.choice[k]]))
    return v


# hint helpers: (exec start, exec end, load start, load end) of a pair under an assignment
def _spans_fixed(k: int, a0: int, a1: int):
    return lambda a: (a.exec_start[k], a.exec_end[k], a0, a1)


def _spans_future(k: int, op: int, option):
    return lambda a: (a.exec_start[k], a.exec_end[k], a.load_start[op], a.end_of(op, option))


def _spans_free(k: int, j: int, ops):
    def spans(a: WindowAssignment):
        op = ops[j].op
        return (a.exec_start[k], a.exec_end[k], a.load_start[op], a.end_of(op, ops[j].options[a.choice[j]]))
    return spans


def _hint_share_sel(j: int, ops, share: int):
    return lambda a: int(ops[j].options[a.choice[j]].load_share == share)


def _hint_share_part(k: int, j: int, ops, share: int):
    spans = _spans_free(k, j, ops)
    return lambda a: overlap(*spans(a)) if ops[j].options[a.choice[j]].load_share == share else 0


__all__ = ["build_cpsat", "CpsatWindow"]
