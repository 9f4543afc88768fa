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
formulations.window.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pulp

from formulations.schedule.window import (SHARE_SCALE, WindowAssignment, WindowProblem, fixed_channel_blocks,
                                          fluid_split, overlap)


@dataclass
class MilpWindow:
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
    lo, hi = problem.lower, problem.horizon
    big_t = hi - lo + 2  # big-M for times
    lp = pulp.LpProblem("window", pulp.LpMinimize)
    ops = problem.ops
    K = len(ops)
    starts: list = []  # (var, value_of)

    def var(name: str, low, up, cat=pulp.LpContinuous, value_of=None):
        v = lp.add_variable(name, low, up, cat=cat)
        if value_of is not None:
            starts.append((v, value_of))
        return v

    x = [[var(f"x{k}_{p}", 0, 1, pulp.LpBinary, (lambda a, k=k, p=p: int(a.choice[k] == p)))
          for p in range(len(w.options))] for k, w in enumerate(ops)]
    s = [var(f"s{k}", problem.release, hi, pulp.LpInteger, lambda a, k=k: a.exec_start[k]) for k in range(K)]
    e = [var(f"e{k}", problem.release, hi, pulp.LpInteger, lambda a, k=k: a.exec_end[k]) for k in range(K)]

    def pick(k: int, attr: str):
        return pulp.lpSum(getattr(o, attr) * xv for o, xv in zip(ops[k].options, x[k]))

    def cap_groups(k: int) -> list[tuple[int, object]]:
        """(top rate, 1 iff the chosen option has it) per distinct fluid rate of operator k's load options: a
        replicated layout moves more work at a higher rate, so each option keeps its own rate."""
        caps = sorted({o.load_cap for o in ops[k].options})
        if len(caps) == 1:
            return [(caps[0], None)]
        return [(c, pulp.lpSum(xv for o, xv in zip(ops[k].options, x[k]) if o.load_cap == c)) for c in caps]

    for k in range(K):
        lp += pulp.lpSum(x[k]) == 1
        lp += e[k] - s[k] >= pick(k, "time")
        if k > 0:
            lp += s[k] >= e[k - 1]

    # loads: (key, start var, end expr, share term builder, cold expr, owner)
    a: dict[int, pulp.LpVariable] = {}
    ends: dict[int, pulp.LpVariable] = {}  # fluid loads' own ends
    new_loads = []
    for k, w in enumerate(ops):
        if w.load != "free":
            continue
        av = var(f"a{k}", problem.release, hi, pulp.LpInteger, lambda h, op=w.op: h.load_start[op])
        a[w.op] = av
        if problem.fluid:
            end = var(f"b{k}", problem.release, hi, pulp.LpInteger,
                      lambda h, k=k, op=w.op: h.end_of(op, ops[k].options[h.choice[k]]))
            lp += end - av >= pick(k, "load_time")
            ends[w.op] = end
        else:
            end = av + pick(k, "load_time")
        lp += end <= s[k]
        if w.latest_end is not None:
            lp += end <= w.latest_end
        new_loads.append(("w", k, av, end))
    for f in problem.future:
        av = var(f"f{f.op}", problem.release, hi, pulp.LpInteger, lambda h, op=f.op: h.load_start[op])
        a[f.op] = av
        if problem.fluid:
            end = var(f"fb{f.op}", problem.release, hi, pulp.LpInteger, lambda h, f=f: h.end_of(f.op, f.option))
            lp += end - av >= f.option.load_time
            ends[f.op] = end
        else:
            end = av + f.option.load_time
        lp += end <= f.latest_end
        new_loads.append(("f", f, av, end))
    for f in problem.fixed:
        if f.owner >= 0:
            lp += s[f.owner] >= f.end

    def end_value(item, h: WindowAssignment) -> int:
        kind, ref, _, _ = item
        if kind == "w":
            return h.end_of(ops[ref].op, ops[ref].options[h.choice[ref]])
        return h.end_of(ref.op, ref.option)

    def start_value(item, h: WindowAssignment) -> int:
        kind, ref, _, _ = item
        return h.load_start[ops[ref].op] if kind == "w" else h.load_start[ref.op]

    # HBM channel
    for u in range(len(new_loads)):
        for v in range(u + 1, len(new_loads)):
            lu, lv = new_loads[u], new_loads[v]
            y = var(f"y{u}_{v}", 0, 1, pulp.LpBinary,
                    lambda h, lu=lu, lv=lv: int(start_value(lu, h) <= start_value(lv, h)))
            lp += lu[3] <= lv[2] + big_t * (1 - y)
            lp += lv[3] <= lu[2] + big_t * y
    for u, item in enumerate(new_loads):
        for b, (b0, b1) in enumerate(fixed_channel_blocks(problem)):
            z = var(f"z{u}_{b}", 0, 1, pulp.LpBinary, lambda h, item=item, b0=b0: int(end_value(item, h) <= b0))
            lp += item[3] <= b0 + big_t * (1 - z)
            lp += item[2] >= b1 - big_t * z

    # SRAM rows at every execution, plus the data still waiting after the window
    max_cold = max([o.cold for w in ops for o in w.options] + [f.option.cold for f in problem.future] + [0])
    for k in range(K):
        waiting = sum(f.cold for f in problem.fixed if f.owner < 0 or f.owner > k)
        terms = []
        for item in new_loads:
            kind, ref, av, _ = item
            if kind == "w" and ref <= k:
                continue  # its operator has run (or is this one: its data are in the hot bytes)
            flight = var(f"r{k}_{kind}{ref if kind == 'w' else ref.op}", 0, 1, pulp.LpBinary,
                         lambda h, item=item, k=k: int(start_value(item, h) < h.exec_end[k]))
            lp += e[k] - av <= big_t * flight  # started before k ends -> in flight while k runs
            if kind == "f":
                terms.append(ref.option.cold * flight)
            else:
                charge = var(f"c{k}_{ref}", 0, max_cold, pulp.LpContinuous,
                             lambda h, item=item, k=k, ref=ref: (ops[ref].options[h.choice[ref]].cold
                                                                  if start_value(item, h) < h.exec_end[k] else 0))
                lp += charge >= pick(ref, "cold") - max_cold * (1 - flight)
                terms.append(charge)
        lp += pick(k, "hot") + pulp.lpSum(terms) + waiting <= problem.sram
    lp += sum(f.option.cold for f in problem.future) + sum(f.cold for f in problem.fixed if f.owner < 0) \
        <= problem.sram

    # interconnect
    fluid_pairs: dict = {}  # program op -> [(work var, overlap var)]
    work_vars: dict = {}
    for k in range(K):
        terms = []
        pairs = []
        for f in problem.fixed:
            if f.end <= problem.release or 0 <= f.owner <= k:
                continue
            if (f.work == 0) if problem.fluid else (f.share == 0):
                continue
            f0 = max(f.start, problem.release) if problem.fluid else f.start
            pairs.append((f"F{f.op}", f0, f.end, f.share, ("fixed", f, None, None),
                          lambda h, f=f, f0=f0: (f0, f.end)))
        for item in new_loads:
            kind, ref, av, end = item
            if kind == "w":
                if ref <= k:
                    continue
                shares = sorted({o.load_share for o in ops[ref].options})
                if shares == [0]:
                    continue
            elif ref.option.load_share == 0 and not problem.fluid:
                continue
            if problem.fluid:
                opts_of = ops[ref].options if kind == "w" else (ref.option,)
                if all(o.load_work == 0 for o in opts_of):
                    continue
            share = ref.option.load_share if kind == "f" else None
            pairs.append((f"{kind}{ref if kind == 'w' else ref.op}", av, end, share, item,
                          lambda h, item=item: (start_value(item, h), end_value(item, h))))
        for name, l0, l1, share, item, span_of in pairs:
            def spans(h, k=k, span_of=span_of):
                return (h.exec_start[k], h.exec_end[k], *span_of(h))
            m1 = var(f"m{k}_{name}", 0, 1, pulp.LpBinary, lambda h, spans=spans: int(spans(h)[1] <= spans(h)[3]))
            m2 = var(f"n{k}_{name}", 0, 1, pulp.LpBinary, lambda h, spans=spans: int(spans(h)[0] >= spans(h)[2]))
            last = var(f"hi{k}_{name}", lo - 1, hi + 1, pulp.LpContinuous,
                       lambda h, spans=spans: min(spans(h)[1], spans(h)[3]))
            first = var(f"lo{k}_{name}", lo - 1, hi + 1, pulp.LpContinuous,
                        lambda h, spans=spans: max(spans(h)[0], spans(h)[2]))
            lp += last <= e[k]
            lp += last <= l1
            lp += last >= e[k] - big_t * (1 - m1)  # m1 = 1: the execution ends first
            lp += last >= l1 - big_t * m1
            lp += first >= s[k]
            lp += first >= l0
            lp += first <= s[k] + big_t * (1 - m2)  # m2 = 1: the execution starts last
            lp += first <= l0 + big_t * m2
            ov = var(f"ov{k}_{name}", 0, big_t, pulp.LpContinuous, lambda h, spans=spans: overlap(*spans(h)))
            lp += ov >= last - first
            if problem.fluid and item is not None:  # fluid load: work done inside this execution
                kind, ref = item[0], item[1]
                if kind == "fixed":
                    u = var(f"u{k}_{name}", 0, ref.cap * big_t, pulp.LpContinuous)
                    lp += u <= ref.cap * ov
                    fluid_pairs.setdefault(ref.op, []).append((u, ov))
                    work_vars[(k, ref.op)] = u
                    terms.append(u)
                    continue
                groups = cap_groups(ref) if kind == "w" else [(ref.option.load_cap, None)]
                top = max(c for c, _ in groups)
                u = var(f"u{k}_{name}", 0, top * big_t, pulp.LpContinuous)
                for cap, chosen in groups:  # the chosen option's rate; the others' rows are slack
                    lp += u <= cap * ov + (0 if chosen is None else (top - cap) * big_t * (1 - chosen))
                fluid_pairs.setdefault(ops[ref].op if kind == "w" else ref.op, []).append((u, ov))
                work_vars[(k, ops[ref].op if kind == "w" else ref.op)] = u
                terms.append(u)
                continue
            if share is not None:
                terms.append(share * ov)
                continue
            ref = item[1]
            for p, o in enumerate(ops[ref].options):
                if o.load_share == 0:
                    continue
                part = var(f"ov{k}_{name}_{p}", 0, big_t, pulp.LpContinuous,
                           lambda h, spans=spans, ref=ref, p=p: overlap(*spans(h)) if h.choice[ref] == p else 0)
                lp += part >= ov - big_t * (1 - x[ref][p])
                terms.append(o.load_share * part)
        lp += pulp.lpSum(terms) <= SHARE_SCALE * (e[k] - s[k] - pick(k, "comm"))

    if problem.fluid:  # each fluid load's work: inside executions, or at its top rate outside them
        for item in new_loads:
            kind, ref, av, end = item
            op = ops[ref].op if kind == "w" else ref.op
            if kind == "w":
                groups, need = cap_groups(ref), pick(ref, "load_work")
                most = max(o.load_work for o in ops[ref].options)
            else:
                groups, need, most = [(ref.option.load_cap, None)], ref.option.load_work, 0
            pairs = fluid_pairs.get(op, [])
            for cap, chosen in groups:  # enforced for the chosen option's rate only
                lp += pulp.lpSum(u for u, _ in pairs) + cap * (end - av) - cap * pulp.lpSum(ov for _, ov in pairs) \
                    >= need - (0 if chosen is None else most * (1 - chosen))
        for f in problem.fixed:
            if f.work and f.end > problem.release:
                pairs = fluid_pairs.get(f.op, [])
                length = f.end - max(f.start, problem.release)
                lp += pulp.lpSum(u for u, _ in pairs) + f.cap * length - f.cap * pulp.lpSum(ov for _, ov in pairs) >= f.work

    weight = problem.tail_weight
    lp += e[-1] + pulp.lpSum(item[3] for item in new_loads if item[0] == "f") * (1.0 / weight)
    return MilpWindow(lp, problem, x, s, e, a, weight, starts, ends, work_vars)
