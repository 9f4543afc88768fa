"""MILP (PuLP) model of a window: the same problem as the CP-SAT model, linearised.

* plan choice: one binary per (operator, option);
* times: integer execution starts/ends and load starts (the problem's data are
  whole cycles, so this is the CP-SAT model's feasible set, not a relaxation);
* HBM channel: a precedence binary per pair of new loads, and per (new load,
  busy span of fixed loads);
* SRAM: one row per execution k, exact. During k the resident data are the
  loads started before k ends whose operators run after k. A binary "load j in
  flight while k runs" is forced to 1 when load j starts before k ends, and
  the chosen cold bytes of j are charged through it (big-M linearisation).
  Checking rows at executions suffices: between executions the residents are
  a subset of the next execution's (whose hot size covers its own cold size),
  and a final row holds the data still waiting after the window;
* interconnect: per (execution, load) pair, min(end) and max(start) are
  pinned exactly with one binary each, the overlap is at least their
  difference, and option-dependent shares split the overlap per option (rigid
  loads); fluid loads have an end of their own and a work variable per pair,
  as in the CP-SAT model (an overlap above the true one only tightens);
* objective: makespan + (sum of future-load ends) / weight, so the makespan
  dominates as in the CP-SAT model.

Exactness: identical feasible set to formulations.schedule.cpsat_window; both are
conservative relative to the simulator only by the rounding in
formulations.schedule.window.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pulp

from formulations.schedule.window import (FAMILIES, SHARE_SCALE, WindowAssignment, WindowProblem,
                                          fixed_channel_blocks, fluid_split, overlap)


@dataclass
class MilpWindow:
    """A window's MILP and the variables a solution is read from (and a MIP start written to)."""

    problem: pulp.LpProblem
    window: WindowProblem
    x: list[list[pulp.LpVariable]]
    s: list[pulp.LpVariable]
    e: list[pulp.LpVariable]
    a: dict[int, pulp.LpVariable]
    weight: int
    start_values: list = field(default_factory=list)  # (var, function of an assignment)

    load_end: dict = field(default_factory=dict)  # fluid: program op -> end var
    fluid_work: dict = field(default_factory=dict)  # fluid: (execution position, program op) -> work var

    def decode(self) -> WindowAssignment:
        choice = [max(range(len(xs)), key=lambda p: xs[p].value() or 0.0) for xs in self.x]
        return WindowAssignment(choice=choice, exec_start=[round(v.value()) for v in self.s],
                                exec_end=[round(v.value()) for v in self.e],
                                load_start={op: round(v.value()) for op, v in self.a.items()},
                                load_end={op: round(v.value()) for op, v in self.load_end.items()})

    def set_start(self, hint: WindowAssignment) -> None:
        """Initial values for every variable (a complete MIP start)."""
        for var, value_of in self.start_values:  # clipped to the bounds: a start outside them is no start
            value = value_of(hint)
            if var.lowBound is not None:
                value = max(value, var.lowBound)
            if var.upBound is not None:
                value = min(value, var.upBound)
            var.setInitialValue(value)
        if self.fluid_work:
            split = fluid_split(self.window, hint)
            for key, var in self.fluid_work.items():
                var.setInitialValue(min(split.get(key, 0.0), var.upBound if var.upBound is not None else 1e18))


def build_milp(problem: WindowProblem) -> MilpWindow:
    """The window's MILP, one constraint family at a time; build_cpsat (formulations.schedule.cpsat_window)
    takes the same steps under the same names, so the two feasible sets can be compared family by family."""
    b = _MilpBuilder(problem)
    for family in FAMILIES:
        getattr(b, family)()
    return MilpWindow(b.lp, problem, b.x, b.s, b.e, b.a, problem.tail_weight, b.starts, b.ends, b.work_vars)


class _MilpBuilder:
    """The variables of one window MILP as its constraint families are added (see :func:`build_milp`)."""

    def __init__(self, problem: WindowProblem):
        self.p = problem
        self.lo, self.hi = problem.lower, problem.horizon
        self.big_t = self.hi - self.lo + 2  # big-M for times
        self.lp = pulp.LpProblem("window", pulp.LpMinimize)
        self.starts: list = []  # (var, value_of): the MIP start
        self.x: list[list[pulp.LpVariable]] = []  # binary per (window operator, option)
        self.s: list[pulp.LpVariable] = []
        self.e: list[pulp.LpVariable] = []
        self.a: dict[int, pulp.LpVariable] = {}  # program op -> load start (free and future loads)
        self.ends: dict[int, pulp.LpVariable] = {}  # fluid loads' own ends
        self.new_loads: list = []  # ("w", k, start, end) for free window loads, ("f", future load, start, end)
        self.fluid_pairs: dict = {}  # program op -> [(work var, overlap var)]
        self.work_vars: dict = {}  # (execution position, program op) -> work var

    def var(self, name: str, low, up, cat=pulp.LpContinuous, value_of=None):
        v = self.lp.add_variable(name, low, up, cat=cat)
        if value_of is not None:
            self.starts.append((v, value_of))
        return v

    def pick(self, k: int, attr: str):
        """The chosen option's ``attr`` of window operator k (a linear expression)."""
        return pulp.lpSum(getattr(o, attr) * xv for o, xv in zip(self.p.ops[k].options, self.x[k]))

    def caps(self, k: int) -> list[tuple[int, object]]:
        """(top rate, 1 iff the chosen option has it) per distinct fluid rate of operator k's load options: a
        replicated layout moves more work at a higher rate, so each option keeps its own rate."""
        options = self.p.ops[k].options
        caps = sorted({o.load_cap for o in options})
        if len(caps) == 1:
            return [(caps[0], None)]
        return [(c, pulp.lpSum(xv for o, xv in zip(options, self.x[k]) if o.load_cap == c)) for c in caps]

    def end_value(self, item, h: WindowAssignment) -> int:
        kind, ref, _, _ = item
        ops = self.p.ops
        if kind == "w":
            return h.end_of(ops[ref].op, ops[ref].options[h.choice[ref]])
        return h.end_of(ref.op, ref.option)

    def start_value(self, item, h: WindowAssignment) -> int:
        kind, ref, _, _ = item
        return h.load_start[self.p.ops[ref].op] if kind == "w" else h.load_start[ref.op]

    def executions(self) -> None:
        """Plan choice, and executions in program order, each at least its chosen plan's time."""
        p, var, lp, hi = self.p, self.var, self.lp, self.hi
        K = len(p.ops)
        self.x = [[var(f"x{k}_{q}", 0, 1, pulp.LpBinary, (lambda a, k=k, q=q: int(a.choice[k] == q)))
                   for q in range(len(w.options))] for k, w in enumerate(p.ops)]
        self.s = [var(f"s{k}", p.release, hi, pulp.LpInteger, lambda a, k=k: a.exec_start[k]) for k in range(K)]
        self.e = [var(f"e{k}", p.release, hi, pulp.LpInteger, lambda a, k=k: a.exec_end[k]) for k in range(K)]
        s, e = self.s, self.e
        for k in range(K):
            lp += pulp.lpSum(self.x[k]) == 1
            lp += e[k] - s[k] >= self.pick(k, "time")
            if k > 0:
                lp += s[k] >= e[k - 1]

    def loads(self) -> None:
        """Free window loads and future loads, each ending before its operator starts (and by its latest end);
        fixed loads still end before their operators start."""
        p, var, lp, hi, ops = self.p, self.var, self.lp, self.hi, self.p.ops
        for k, w in enumerate(ops):
            if w.load != "free":
                continue
            av = var(f"a{k}", p.release, hi, pulp.LpInteger, lambda h, op=w.op: h.load_start[op])
            self.a[w.op] = av
            if p.fluid:
                end = var(f"b{k}", p.release, hi, pulp.LpInteger,
                          lambda h, k=k, op=w.op: h.end_of(op, ops[k].options[h.choice[k]]))
                lp += end - av >= self.pick(k, "load_time")
                self.ends[w.op] = end
            else:
                end = av + self.pick(k, "load_time")
            lp += end <= self.s[k]
            if w.latest_end is not None:
                lp += end <= w.latest_end
            self.new_loads.append(("w", k, av, end))
        for f in p.future:
            av = var(f"f{f.op}", p.release, hi, pulp.LpInteger, lambda h, op=f.op: h.load_start[op])
            self.a[f.op] = av
            if p.fluid:
                end = var(f"fb{f.op}", p.release, hi, pulp.LpInteger, lambda h, f=f: h.end_of(f.op, f.option))
                lp += end - av >= f.option.load_time
                self.ends[f.op] = end
            else:
                end = av + f.option.load_time
            lp += end <= f.latest_end
            self.new_loads.append(("f", f, av, end))
        for f in p.fixed:
            if f.owner >= 0:
                lp += self.s[f.owner] >= f.end

    def channel(self) -> None:
        """One HBM channel: a precedence binary per pair of new loads, and per (new load, fixed busy span)."""
        lp, big_t, new_loads = self.lp, self.big_t, self.new_loads
        for u in range(len(new_loads)):
            for v in range(u + 1, len(new_loads)):
                lu, lv = new_loads[u], new_loads[v]
                y = self.var(f"y{u}_{v}", 0, 1, pulp.LpBinary,
                             lambda h, lu=lu, lv=lv: int(self.start_value(lu, h) <= self.start_value(lv, h)))
                lp += lu[3] <= lv[2] + big_t * (1 - y)
                lp += lv[3] <= lu[2] + big_t * y
        for u, item in enumerate(new_loads):
            for b, (b0, b1) in enumerate(fixed_channel_blocks(self.p)):
                z = self.var(f"z{u}_{b}", 0, 1, pulp.LpBinary,
                             lambda h, item=item, b0=b0: int(self.end_value(item, h) <= b0))
                lp += item[3] <= b0 + big_t * (1 - z)
                lp += item[2] >= b1 - big_t * z

    def sram(self) -> None:
        """Per-core SRAM: a row at every execution (its hot bytes plus the loads in flight while it runs), and
        one for the data still waiting after the window."""
        p, lp, big_t, ops = self.p, self.lp, self.big_t, self.p.ops
        max_cold = max([o.cold for w in ops for o in w.options] + [f.option.cold for f in p.future] + [0])
        for k in range(len(ops)):
            waiting = sum(f.cold for f in p.fixed if f.owner < 0 or f.owner > k)
            terms = []
            for item in self.new_loads:
                kind, ref, av, _ = item
                if kind == "w" and ref <= k:
                    continue  # its operator has run (or is this one: its data are in the hot bytes)
                flight = self.var(f"r{k}_{kind}{ref if kind == 'w' else ref.op}", 0, 1, pulp.LpBinary,
                                  lambda h, item=item, k=k: int(self.start_value(item, h) < h.exec_end[k]))
                lp += self.e[k] - av <= big_t * flight  # started before k ends -> in flight while k runs
                if kind == "f":
                    terms.append(ref.option.cold * flight)
                else:
                    charge = self.var(f"c{k}_{ref}", 0, max_cold, pulp.LpContinuous,
                                      lambda h, item=item, k=k, ref=ref: (
                                          ops[ref].options[h.choice[ref]].cold
                                          if self.start_value(item, h) < h.exec_end[k] else 0))
                    lp += charge >= self.pick(ref, "cold") - max_cold * (1 - flight)
                    terms.append(charge)
            lp += self.pick(k, "hot") + pulp.lpSum(terms) + waiting <= p.sram
        lp += sum(f.option.cold for f in p.future) + sum(f.cold for f in p.fixed if f.owner < 0) <= p.sram

    def interconnect(self) -> None:
        """Per execution: the loads it overlaps (their shares, or fluid work) fit in what its communication
        leaves of the interconnect."""
        for k in range(len(self.p.ops)):
            terms = []
            for name, l0, l1, share, item, span_of in self._pairs(k):
                terms += self._pair_terms(k, name, l0, l1, share, item, span_of)
            self.lp += pulp.lpSum(terms) <= SHARE_SCALE * (self.e[k] - self.s[k] - self.pick(k, "comm"))

    def _pairs(self, k: int) -> list:
        """The loads execution k may overlap: (name, start, end, share or None, item, spans under a hint)."""
        p, ops = self.p, self.p.ops
        pairs = []
        for f in p.fixed:
            if f.end <= p.release or 0 <= f.owner <= k:
                continue
            if (f.work == 0) if p.fluid else (f.share == 0):
                continue
            f0 = max(f.start, p.release) if p.fluid else f.start
            pairs.append((f"F{f.op}", f0, f.end, f.share, ("fixed", f, None, None),
                          lambda h, f=f, f0=f0: (f0, f.end)))
        for item in self.new_loads:
            kind, ref, av, end = item
            if kind == "w":
                if ref <= k:
                    continue
                shares = sorted({o.load_share for o in ops[ref].options})
                if shares == [0]:
                    continue
            elif ref.option.load_share == 0 and not p.fluid:
                continue
            if p.fluid:
                opts_of = ops[ref].options if kind == "w" else (ref.option,)
                if all(o.load_work == 0 for o in opts_of):
                    continue
            share = ref.option.load_share if kind == "f" else None
            pairs.append((f"{kind}{ref if kind == 'w' else ref.op}", av, end, share, item,
                          lambda h, item=item: (self.start_value(item, h), self.end_value(item, h))))
        return pairs

    def _pair_terms(self, k: int, name: str, l0, l1, share, item, span_of) -> list:
        """Execution k's interconnect terms for one load: its overlap (min of ends - max of starts, pinned with
        one binary each) times its share, split per option when the share depends on it, or fluid work."""
        lp, var, big_t, lo, hi, ops = self.lp, self.var, self.big_t, self.lo, self.hi, self.p.ops
        s, e = self.s, self.e

        def spans(h):
            return (h.exec_start[k], h.exec_end[k], *span_of(h))
        m1 = var(f"m{k}_{name}", 0, 1, pulp.LpBinary, lambda h: int(spans(h)[1] <= spans(h)[3]))
        m2 = var(f"n{k}_{name}", 0, 1, pulp.LpBinary, lambda h: int(spans(h)[0] >= spans(h)[2]))
        last = var(f"hi{k}_{name}", lo - 1, hi + 1, pulp.LpContinuous, lambda h: min(spans(h)[1], spans(h)[3]))
        first = var(f"lo{k}_{name}", lo - 1, hi + 1, pulp.LpContinuous, lambda h: max(spans(h)[0], spans(h)[2]))
        lp += last <= e[k]
        lp += last <= l1
        lp += last >= e[k] - big_t * (1 - m1)  # m1 = 1: the execution ends first
        lp += last >= l1 - big_t * m1
        lp += first >= s[k]
        lp += first >= l0
        lp += first <= s[k] + big_t * (1 - m2)  # m2 = 1: the execution starts last
        lp += first <= l0 + big_t * m2
        ov = var(f"ov{k}_{name}", 0, big_t, pulp.LpContinuous, lambda h: overlap(*spans(h)))
        lp += ov >= last - first
        if self.p.fluid and item is not None:  # fluid load: work done inside this execution
            kind, ref = item[0], item[1]
            if kind == "fixed":
                groups, op = [(ref.cap, None)], ref.op
            else:
                groups = self.caps(ref) if kind == "w" else [(ref.option.load_cap, None)]
                op = ops[ref].op if kind == "w" else ref.op
            top = max(c for c, _ in groups)
            u = var(f"u{k}_{name}", 0, top * big_t, pulp.LpContinuous)
            for cap, chosen in groups:  # the chosen option's rate; the other rates' rows are slack
                lp += u <= cap * ov + (0 if chosen is None else (top - cap) * big_t * (1 - chosen))
            self.fluid_pairs.setdefault(op, []).append((u, ov))
            self.work_vars[(k, op)] = u
            return [u]
        if share is not None:
            return [share * ov]
        ref = item[1]
        terms = []
        for q, o in enumerate(ops[ref].options):
            if o.load_share == 0:
                continue
            part = var(f"ov{k}_{name}_{q}", 0, big_t, pulp.LpContinuous,
                       lambda h, ref=ref, q=q: overlap(*spans(h)) if h.choice[ref] == q else 0)
            lp += part >= ov - big_t * (1 - self.x[ref][q])
            terms.append(o.load_share * part)
        return terms

    def fluid_progress(self) -> None:
        """Fluid loads: every load moves its whole work, inside executions or at its top rate outside them."""
        p, lp, ops = self.p, self.lp, self.p.ops
        if not p.fluid:
            return
        for item in self.new_loads:
            kind, ref, av, end = item
            op = ops[ref].op if kind == "w" else ref.op
            if kind == "w":
                groups, need = self.caps(ref), self.pick(ref, "load_work")
                most = max(o.load_work for o in ops[ref].options)
            else:
                groups, need, most = [(ref.option.load_cap, None)], ref.option.load_work, 0
            pairs = self.fluid_pairs.get(op, [])
            for cap, chosen in groups:  # enforced for the chosen option's rate only
                lp += pulp.lpSum(u for u, _ in pairs) + cap * (end - av) - cap * pulp.lpSum(ov for _, ov in pairs) \
                    >= need - (0 if chosen is None else most * (1 - chosen))
        for f in p.fixed:
            if f.work and f.end > p.release:
                pairs = self.fluid_pairs.get(f.op, [])
                length = f.end - max(f.start, p.release)
                lp += pulp.lpSum(u for u, _ in pairs) + f.cap * length - f.cap * pulp.lpSum(ov for _, ov in pairs) \
                    >= f.work

    def objective(self) -> None:
        """Makespan first, then the future loads' ends (divided by the tail weight, as the CP-SAT model weighs
        the makespan up)."""
        self.lp += self.e[-1] + pulp.lpSum(item[3] for item in self.new_loads if item[0] == "f") * (
            1.0 / self.p.tail_weight)
