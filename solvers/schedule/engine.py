"""The inductive (backward) scheduling pass shared by every heuristic design.

Operators are placed from the last to the first. For operator ``i`` the
already-placed HBM loads form a chain in time; choosing how many of the
earliest of them may be *resident* while ``i`` runs sets ``i``'s deadline (it
must end before the next load starts) and its memory budget (SRAM minus the
cold bytes of the resident loads). Designs differ only in how they pick that
depth and the plan:

* ELK (Dyn/Full): try every depth, choose the plan cost-aware under each
  budget, keep the depth that lets ``i`` start latest;
* Basic / Static / Ideal: take the deepest depth a fixed memory rule allows
  and a fixed plan rule.

Interconnect sharing is exact under the simulator's rule 3: in ``stretch``
mode an operator is lengthened until the interconnect share the overlapping
loads leave carries its communication; in ``push`` mode the operator keeps its
plan time and the overlapping loads move earlier instead; ``hybrid`` tries
both for every candidate. Every schedule this pass returns satisfies the
simulator's four rules by construction; the simulator still checks it.

Candidates are compared by a lookahead key: the latest of ``start - (fastest
execution of the operators still to place)`` and ``frontier - (HBM time of
the loads still to place)``, then the latest start. With loads fixed
(stretch mode) this picks exactly the artifact's "latest start"; it is what
lets push and hybrid modes see the price of moving loads earlier.

Load order: loads are placed in reverse *load order*, each ending before its
own operator starts and before the next load in the order. With a permuted
order an operator whose execution is placed but whose load is still blocked
behind another operator's is a *forced resident* of everything placed until
its load goes in (the Elk paper's "uncommitted loads").
"""
from __future__ import annotations

import weakref
from bisect import bisect_right
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, Sequence

import numpy as np

from elk.chip import LoadModel
from elk.errors import ScheduleError, SolverConfigError
from elk.schedule import STRICT, NocMode, Provenance, Relaxation, Schedule
from elk.workload import Workload
from solvers.schedule import fluid as fl


class Chooser(Protocol):
    """Picks an operator's plan-table row under a byte budget (None: nothing fits)."""
    def choose(self, op: int, budget: float) -> int | None: ...


class DepthRule(str, Enum):
    """How deep the resident loads of an operator go.

    ``best-start`` (ELK): every depth, the one that lets the operator start
    latest wins; ``greedy`` (Basic, Static, Ideal): the deepest depth whose
    resident cold bytes fit the preload room.
    """

    BEST_START = "best-start"
    GREEDY = "greedy"


class PreloadRule(str, Enum):
    """The greedy rule's preload room: SRAM minus the execution region (``static``), minus the
    operator's smallest hot size (``min-hot``), or minus the smallest hot size of its smallest cold layout."""

    STATIC = "static"
    MIN_HOT = "min-hot"
    MIN_HOT_OF_MIN_COLD = "min-hot-of-min-cold"


class PlanBudget(str, Enum):
    """The bytes the operator's plan may use: SRAM minus resident colds, or the fixed execution region."""

    REMAINING = "remaining"
    EXEC_REGION = "exec-region"


def _enum(kind: type[Enum], value: object) -> Enum:
    try:
        return kind(value)
    except ValueError:
        raise SolverConfigError(f"unknown {kind.__name__} {value!r} (known: {', '.join(m.value for m in kind)})") \
            from None


@dataclass(frozen=True)
class PassConfig:
    """How one backward pass decides (an unknown rule name is an error, not a silent default).

    ``max_residents`` caps the greedy depth (Basic: 1). ``charge_min_cold``:
    preloads and their traffic are charged at the minimum cold size (Ideal).
    """

    theta: float = 0.9
    noc_mode: NocMode = NocMode.STRETCH
    depth: DepthRule = DepthRule.BEST_START
    max_residents: int | None = None
    preload: PreloadRule = PreloadRule.MIN_HOT
    plan_budget: PlanBudget = PlanBudget.REMAINING
    exec_region: float = 0.0
    charge_min_cold: bool = False
    #: ``NocMode.YIELD``: an operator whose communication takes at least this share of its plan time is
    #: exchange-bound, and the loads move out of its way instead of stretching it
    yield_share: float = 0.9
    #: rigid loads: one interconnect share limit per operator (its load's), replacing ``theta`` for that load;
    #: None: ``theta`` for every load
    load_thetas: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "noc_mode", NocMode.parse(self.noc_mode))
        for name, kind in (("depth", DepthRule), ("preload", PreloadRule), ("plan_budget", PlanBudget)):
            object.__setattr__(self, name, _enum(kind, getattr(self, name)))
        if not (isinstance(self.yield_share, (int, float)) and 0 < self.yield_share < float("inf")):
            raise SolverConfigError(f"yield share must be a positive number, got {self.yield_share!r}")
        if self.load_thetas is not None:
            object.__setattr__(self, "load_thetas", tuple(float(x) for x in self.load_thetas))
            if not all(0 < x <= 1 for x in self.load_thetas):
                raise SolverConfigError("every load's share limit must be in (0, 1]")


class _Lists:
    """Per-table Python lists (fast scalar access in the pass), shared between identical shapes."""

    def __init__(self, workload: Workload):
        cache: dict[object, tuple] = {}  # by operator shape: one workload's identical operators share a table
        self.time, self.comm, self.cold = [], [], []
        smallest: list[float] = []
        for t in workload.tables:
            if t.sig not in cache:
                cache[t.sig] = (t.time.tolist(), t.comm.tolist(), t.cold.tolist(), float(t.footprint().min()))
            tm, cm, cd, fp = cache[t.sig]
            self.time.append(tm)
            self.comm.append(cm)
            self.cold.append(cd)
            smallest.append(fp)
        #: per operator, the smallest budget under which some plan fits (its smallest footprint)
        self.min_footprint = np.array(smallest)


#: the lists of the last few workloads passed over, found by identity through a weak reference (a workload that
#: is gone can never match, unlike a reused id)
_LISTS: list[tuple[weakref.ref, _Lists]] = []
_KEEP_LISTS = 4


def _lists(workload: Workload) -> _Lists:
    for ref, lists in _LISTS:
        if ref() is workload:
            return lists
    lists = _Lists(workload)
    _LISTS[:] = [(r, x) for r, x in _LISTS if r() is not None][-(_KEEP_LISTS - 1):] + [(weakref.ref(workload), lists)]
    return lists


def backward_pass(workload: Workload, chooser: Chooser, cfg: PassConfig, *, design: str,
                  load_order: Sequence[int] | None = None, max_depth: int | None = None,
                  relaxation: Relaxation = STRICT) -> Schedule:
    """One inductive pass; returns a schedule whose last execution ends at time 0."""
    n = len(workload)
    lists = _lists(workload)
    sram = float(workload.chip.sram_per_core)
    has_load = workload.load_bytes > 0
    hbm = workload.hbm_cycles.tolist()
    load_bytes = workload.load_bytes.astype(float).tolist()
    min_cold = workload.min_cold.astype(float).tolist()
    min_hot = workload.min_hot.astype(float).tolist()
    cap = workload.noc_load_bytes_per_cycle
    theta = cfg.theta
    load_thetas = cfg.load_thetas
    if load_thetas is not None and len(load_thetas) != n:
        raise ScheduleError(f"{len(load_thetas)} load share limits for {n} operators")
    order = [op for op in (range(n) if load_order is None else load_order) if has_load[op]]
    if load_order is not None and sorted(load_order) != list(range(n)):
        raise ScheduleError("load order must be a permutation of the operators")
    depth_cap = max_depth if max_depth is not None else n
    fixed = getattr(chooser, "smallest_hot_of_smallest_cold", None)

    fastest = [float(t.time.min()) for t in workload.tables]
    exec_left = [0.0] * (n + 1)  # fastest execution of ops 0..i-1
    for k in range(n):
        exec_left[k + 1] = exec_left[k] + fastest[k]
    hbm_left = float(sum(hbm[op] for op in order))  # HBM time of loads not placed yet

    # stores (docs/design.md §5.2): an operator whose output a later load reads back ends early enough for its
    # store to finish before that load starts; solvers.schedule.stores then places the store itself
    writers, readers = workload.round_trips
    read_back: dict[int, list[int]] = {}
    for p, j in zip(writers.tolist(), readers.tolist()):
        read_back.setdefault(p, []).append(j)
    store_cycles = workload.store_cycles.tolist()
    load_placed = [False] * n
    # an operator leaves room for the output its predecessor is still writing to HBM, so that the store can run
    # while it executes instead of in a pause (solvers.schedule.stores)
    pending = [0.0] + workload.store_cold[:-1].astype(float).tolist()

    exec_s = [0.0] * n
    exec_e = [0.0] * n
    load_s = [0.0] * n
    load_e = [0.0] * n
    entry = [0] * n
    cold_of = [0.0] * n  # cold bytes charged while waiting
    noc_of = [0.0] * n  # interconnect cycles of the load
    # chain of placed loads, latest first: chain[-1] is the earliest in time
    chain: list[int] = []
    idx = len(order) - 1
    forced = 0.0
    next_start = 0.0
    # fluid loads: a load's rate may vary inside its interval (elk/noc.py); the bookkeeping is in fluid.py
    fluid = workload.chip.load_model is LoadModel.FLUID and cfg.noc_mode is not NocMode.NONE
    st = fl.FluidLoads.empty(n) if fluid else None
    stretching = cfg.noc_mode in (NocMode.STRETCH, NocMode.HYBRID, NocMode.YIELD)
    pushing = cfg.noc_mode in (NocMode.PUSH, NocMode.HYBRID)
    yielding = cfg.noc_mode is NocMode.YIELD
    yield_share = cfg.yield_share
    no_noc = cfg.noc_mode is NocMode.NONE
    lists_time, lists_comm = lists.time, lists.comm
    choose = chooser.choose
    greedy = cfg.depth is DepthRule.GREEDY

    full_sram = sram
    if load_order is not None and not greedy:
        check_held_colds(workload, order, full_sram - np.array(pending), lists.min_footprint)
    for i in range(n - 1, -1, -1):
        sram = full_sram - pending[i]
        m = len(chain)
        best = None  # (key, start, deadline, row, push_from, push_by)
        open_ops = fl.open_loads(chain, load_s, next_start) if fluid else []
        needy = fl.needy(open_ops, st) if fluid else []
        # a load starting at or after a candidate's deadline does all its work in the gap: only the rest matter
        needy_starts = [-load_s[op] for op in needy]
        if greedy:
            if cfg.preload is PreloadRule.STATIC:
                preload_room = sram - cfg.exec_region
            elif cfg.preload is PreloadRule.MIN_HOT_OF_MIN_COLD and fixed is not None:
                preload_room = sram - fixed(i)
            else:
                preload_room = sram - min_hot[i]
            preload_room -= forced
            # the greedy rule keeps only its deepest admissible depth: find it first, weigh the NoC for it alone
            r_pick, resident = _greedy_depth(i, cfg, chain, min(m, depth_cap), forced, preload_room, cold_of,
                                             load_s, next_start, sram, choose)
            depths = range(r_pick, r_pick + 1) if r_pick >= 0 else range(0)
        else:
            resident = forced
            depths = range(0, min(m, depth_cap) + 1)
        store_cap = min((load_s[j] for j in read_back.get(i, ()) if load_placed[j]), default=np.inf) - \
            store_cycles[i] if i in read_back else np.inf
        for r in depths:
            if r > 0 and not greedy:
                resident += cold_of[chain[m - r]]
            if r < m:
                ls = load_s[chain[m - 1 - r]]
                last = ls >= next_start
                deadline = next_start if last else ls
            else:
                last = True
                deadline = next_start
            if deadline > store_cap:
                deadline = store_cap
            if greedy:
                budget = cfg.exec_region if cfg.plan_budget is PlanBudget.EXEC_REGION else sram - resident
            else:
                budget = sram - resident
            row = choose(i, budget)
            if row is None:
                break
            t_plan = lists_time[i][row]
            start = deadline - t_plan
            options = []  # (start, push_from, push_by); fluid push: (start, Push, frontier)
            # yield: an exchange-bound operator is pushed past, never stretched
            bound_by_exchange = yielding and lists_comm[i][row] >= yield_share * t_plan
            stretch_here = stretching and not bound_by_exchange
            push_here = pushing or bound_by_exchange
            if fluid:
                comm = lists_comm[i][row]
                overlapping = needy[bisect_right(needy_starts, -deadline):]
                if stretch_here:
                    s_fit = fl.stretch_start(deadline, t_plan, comm, overlapping, next_start, load_s, load_e, st)
                    options.append((min(start, s_fit), -1, 0.0))
                if push_here:
                    move = fl.push_loads(start, deadline, comm, overlapping, next_start, open_ops, load_s, load_e, st)
                    options.append((start, move, move.frontier))
            elif stretch_here:
                comm = lists_comm[i][row]
                options.append((min(start, _noc_start(deadline, comm, chain, m, r, load_s, load_e, noc_of)),
                                -1, 0.0))
            if not fluid and push_here:
                comm = lists_comm[i][row]
                push_from, push_by = _push(start, deadline, t_plan - comm, chain, m, r, load_s, load_e, noc_of)
                options.append((start, push_from, push_by))
            if no_noc:
                options.append((start, -1, 0.0))
            for opt_start, push_from, push_by in options:
                if isinstance(push_from, fl.Push):  # fluid push: the chain's new start
                    frontier = push_by if m else opt_start
                else:
                    frontier = (load_s[chain[-1]] - (push_by if push_from >= 0 else 0.0)) if m else opt_start
                key = (min(opt_start - exec_left[i], frontier - hbm_left), opt_start)
                if greedy or best is None or key > best[0]:
                    best = (key, opt_start, deadline, row, push_from, push_by)
            if last:
                break
        if best is None:
            raise ScheduleError(f"operator {i} ({workload.program.ops[i].name}) has no plan that fits the "
                                f"{int(sram - forced)} bytes of SRAM left by preloads already committed")
        _, start, deadline, row, push_from, push_by = best
        if fluid:
            if isinstance(push_from, fl.Push) and push_from.op >= 0:
                fl.apply_push(push_from, open_ops, load_s, load_e)
            fl.account(i, start, deadline, lists.comm[i][row], needy, next_start, load_s, load_e, st)
        elif push_from >= 0 and push_by > 0:
            for q in range(push_from, m):  # the load where the budget ran out and every earlier one
                op = chain[q]
                load_s[op] -= push_by
                load_e[op] -= push_by
        exec_s[i], exec_e[i], entry[i] = start, deadline, row
        next_start = start
        if has_load[i]:
            c = min_cold[i] if cfg.charge_min_cold else lists.cold[i][row]
            cold_of[i] = c
            noc_of[i] = load_bytes[i] * (c / min_cold[i]) / cap
            forced += c
        # place every load whose turn has come in the load order
        while idx >= 0 and order[idx] >= i:
            op = order[idx]
            end = exec_s[op]
            if chain:
                end = min(end, load_s[chain[-1]])
            if fluid:
                rate = noc_of[op] / hbm[op] if hbm[op] > 0 else 1.0
                st.cap[op] = rate if rate < 1.0 else 1.0
                st.plan_rate[op] = st.cap[op] if st.cap[op] < theta else theta
                placed = []  # executions already placed that the load reaches into, latest first
                k = i
                while k < n and exec_s[k] < end:
                    placed.append(k)
                    k += 1
                load_e[op] = end
                load_s[op] = fl.place_load(op, end, exec_s[i], placed[::-1], exec_s, exec_e, noc_of[op], st)
            else:
                dur = max(hbm[op], noc_of[op] / (theta if load_thetas is None else load_thetas[op]))
                load_e[op], load_s[op] = end, end - dur
            chain.append(op)
            load_placed[op] = True
            forced -= cold_of[op]
            hbm_left -= hbm[op]
            idx -= 1

    for op in range(n):
        if not has_load[op]:
            load_s[op] = load_e[op] = exec_s[op]
    return Schedule(design, np.array(entry), np.array(exec_s), np.array(exec_e), np.array(load_s),
                    np.array(load_e), relaxation, info=Provenance(theta=theta, noc_mode=cfg.noc_mode))


def held_cold_slack(order: Sequence[int], n: int, sram_left: np.ndarray, min_footprint: np.ndarray,
                    min_cold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each forced resident is held, and the SRAM each operator can spare when every hold is smallest.

    The pass places the load at position ``p`` of ``order`` right after executing the operator
    ``min(order[p:])`` (every later load in the order must be placed first), so operator ``j``'s cold bytes are
    resident through the executions of ``held_from[j] .. j-1`` (an empty range when ``held_from[j] == j``, as
    under the identity order). ``slack[i]``: operator ``i``'s SRAM (``sram_left[i]``) minus its smallest plan
    footprint and the smallest cold layouts of the operators held through it.
    """
    ops = np.asarray(order, dtype=np.int64)
    held_from = np.arange(n, dtype=np.int64)
    if ops.size:
        held_from[ops] = np.minimum.accumulate(ops[::-1])[::-1]
    held = np.flatnonzero(held_from < np.arange(n))
    delta = np.zeros(n + 1)
    np.add.at(delta, held_from[held], min_cold[held].astype(float))
    np.add.at(delta, held, -min_cold[held].astype(float))
    return held_from, sram_left - min_footprint - np.cumsum(delta)[:n]


def check_held_colds(workload: Workload, order: list[int], sram_left: np.ndarray, min_footprint: np.ndarray) -> None:
    """Reject, before the pass, a load order that fails whatever plans are chosen.

    An operator's budget at depth 0 is its SRAM minus the cold bytes of the operators held through it, at least
    their smallest cold layouts; a budget below the operator's smallest footprint admits no plan (choosers only
    return rows that fit their budget), and the pass fails there. A negative :func:`held_cold_slack` is exactly
    that case. At 192 KiB this is most of ELK-Full's orders (233 of 268 screened ones on Llama2-70B on a mesh
    at 8 TB/s: a down projection's load ordered before the gate/up projection's holds its cold bytes through
    it); the message names the operators, and the pass does no work first.
    """
    n = len(workload)
    held_from, slack = held_cold_slack(order, n, sram_left, min_footprint, workload.min_cold)
    short = np.flatnonzero(slack < 0)
    if short.size:
        k = int(short[-1])  # the pass meets the last one first
        held = np.flatnonzero((held_from <= k) & (k < np.arange(n)))
        names = ", ".join(workload.program.ops[j].name for j in held) or "no operator"
        raise ScheduleError(f"the load order holds the cold bytes of {names} through operator {k} "
                            f"({workload.program.ops[k].name}): its smallest plan needs {int(min_footprint[k])} bytes, "
                            f"they leave at most {int(slack[k] + min_footprint[k])}")


def _greedy_depth(i: int, cfg: PassConfig, chain: list[int], top: int, forced: float, preload_room: float,
                  cold_of: list[float], load_s: list[float], next_start: float, sram: float,
                  choose) -> tuple[int, float]:
    """The deepest depth (<= ``top``) the greedy rule admits for operator ``i``, and its resident bytes.

    Greedy designs keep the last admissible depth of the walk, so weighing the
    interconnect (the costly part) for the shallower ones is wasted; the walk
    stops where the resident colds overflow the preload room, the plan no longer
    fits, or the chain's loads no longer start before the frontier. Returns
    (-1, forced) if not even depth 0 admits a plan.
    """
    m = len(chain)
    resident = forced
    found, found_resident = -1, forced
    fixed_budget = cfg.plan_budget is PlanBudget.EXEC_REGION  # the plan's budget does not shrink with depth
    if fixed_budget and choose(i, cfg.exec_region) is None:
        return found, found_resident
    if cfg.max_residents is not None:
        top = min(top, cfg.max_residents)
    for r in range(0, top + 1):
        if r > 0:
            resident += cold_of[chain[m - r]]
            if resident - forced > preload_room + 1e-9:
                break
        if not fixed_budget and choose(i, sram - resident) is None:
            break
        found, found_resident = r, resident
        if r >= m or load_s[chain[m - 1 - r]] >= next_start:
            break
    return found, found_resident


def _noc_start(deadline: float, comm: float, chain: list[int], m: int, r: int, load_s: list[float],
               load_e: list[float], noc_of: list[float]) -> float:
    """Latest start such that the interconnect left free by the resident loads carries ``comm``."""
    need = comm
    t = deadline
    for q in range(m - r, m):  # resident loads, latest first
        op = chain[q]
        a, b = load_s[op], load_e[op]
        if a >= t:
            continue
        end = b if b < t else t
        gap = t - end
        if gap >= need:
            return t - need
        need -= gap
        t = end
        length = b - a
        free_rate = 1.0 - (noc_of[op] / length if length > 0 else 0.0)
        free = (t - a) * free_rate
        if free >= need:
            return t - need / free_rate if free_rate > 0 else t
        need -= free
        t = a
    return t - need


def _push(start: float, deadline: float, budget: float, chain: list[int], m: int, r: int,
          load_s: list[float], load_e: list[float], noc_of: list[float]) -> tuple[int, float]:
    """Loads-yield mode: how far the overlapping loads must move earlier.

    The operator keeps ``[start, deadline)``; loads may use the interconnect
    only for ``budget`` (its compute cycles) in that window. Walking the
    resident loads latest first, the load where the budget runs out is moved so
    that its overlap uses exactly what is left, and every earlier load moves with
    it. Returns (chain position of that load, shift), or (-1, 0).
    """
    left = budget
    for q in range(m - r, m):
        op = chain[q]
        a, b = load_s[op], load_e[op]
        lo, hi = max(a, start), min(b, deadline)
        if hi <= lo:
            if b <= start:
                break
            continue
        length = b - a
        rate = noc_of[op] / length if length > 0 else 0.0
        use = (hi - lo) * rate
        if use <= left + 1e-9:
            left -= use
            continue
        # after the move the load ends ``left / rate`` into the window and starts before it
        return q, max(b - (start + left / rate), 0.0)
    return -1, 0.0
