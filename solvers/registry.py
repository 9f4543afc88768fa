"""Design names -> strategies, with the options each accepts."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping

from elk.errors import SolverConfigError
from elk.schedule import Schedule
from elk.workload import Workload
from solvers.schedule import designs

Strategy = Callable[..., Schedule]

#: The five designs of the Elk paper ("paper", or "all" as before, on the command line).
PAPER_DESIGNS = ("basic", "static", "elk-dyn", "elk-full", "ideal")
#: What a compile runs unless told otherwise ("default"): the paper's five and the periodic design, the
#: strongest search that finishes in seconds on the zoo's LLMs (its certified gap is what users come for).
DEFAULT_DESIGNS = PAPER_DESIGNS + ("periodic",)


def cpsat(workload: Workload, warm_start: Schedule | None = None, *, window: int = 8, stride: int | None = None,
          time_limit: float = 10.0, workers: int = 2, seed: int = 0, params: dict | None = None,
          reuse: bool = True, deterministic_time: float | None = None, records: str | None = None) -> Schedule:
    """CP-SAT over windows, warm-started by ELK-Full (or ELK-Dyn)."""
    from solvers.schedule.windowed import windowed
    warm = warm_start if warm_start is not None else designs.elk_full(workload)
    return windowed(workload, warm, solver="cpsat", window=window, stride=stride, time_limit=time_limit,
                    workers=workers, seed=seed, params=params, reuse=reuse, deterministic_time=deterministic_time,
                    records=records)


def milp(workload: Workload, warm_start: Schedule | None = None, *, window: int = 8, stride: int | None = None,
         time_limit: float = 10.0, workers: int = 2, seed: int = 0, params: dict | None = None,
         backend: str = "highs", reuse: bool = True, records: str | None = None) -> Schedule:
    """The same windows as a MILP (HiGHS or CBC through PuLP), warm-started the same way."""
    from solvers.schedule.windowed import windowed
    warm = warm_start if warm_start is not None else designs.elk_full(workload)
    return windowed(workload, warm, solver="milp", backend=backend, window=window, stride=stride,
                    time_limit=time_limit, workers=workers, seed=seed, params=params, reuse=reuse, records=records)


def periodic(workload: Workload, warm_start: Schedule | None = None, *, time_limit: float = 10.0, workers: int = 8,
             seed: int = 0, deterministic_time: float | None = None) -> Schedule:
    """One repeated layer solved as a modulo schedule with CP-SAT, replayed on the whole program."""
    from solvers.schedule.periodic import periodic as run
    return run(workload, warm_start, time_limit=time_limit, workers=workers, seed=seed,
               deterministic_time=deterministic_time)


def lns(workload: Workload, warm_start: Schedule | None = None, *, iterations: int = 12, budget: float = 40.0,
        time_limit: float = 3.0, workers: int = 1, seed: int = 0, deterministic_time: float | None = None,
        window: int = 8, pull: int = 4, stall: bool = True, exposed: bool = True, starved: bool = True,
        stretch: bool = True, records: str | None = None) -> Schedule:
    """Large-neighbourhood search over the whole program (CP-SAT repairs, simulator acceptance), from the
    fastest schedule run before it; ``time_limit`` is per neighbourhood, ``budget`` the whole search."""
    from solvers.schedule.lns import LnsSettings, lns as run
    warm = warm_start if warm_start is not None else designs.elk_full(workload)
    settings = LnsSettings(window=window, pull=pull, iterations=iterations, budget=budget, time_limit=time_limit,
                           workers=workers, seed=seed, deterministic_time=deterministic_time, stall=stall,
                           exposed=exposed, starved=starved, stretch=stretch)
    return run(workload, warm, settings, records=records)


DESIGNS: dict[str, Strategy] = {**designs.DESIGNS, "periodic": periodic, "cpsat": cpsat, "milp": milp, "lns": lns}
#: designs that refine a warm start (a schedule of another design, or one read from a file)
EXACT_DESIGNS = ("periodic", "cpsat", "milp", "lns")
HEURISTICS = ("basic", "static", "elk-dyn", "elk-full")
#: designs whose schedules are timed under relaxed rules (not valid schedules: no warm start, nothing to save)
RELAXED_DESIGNS = ("ideal",)


def run_design(name: str, workload: Workload, done: Mapping[str, Schedule], options: Mapping[str, Any]) -> Schedule:
    """Run one design; designs that refine another receive its schedule.

    An exact design's ``warm_start`` option may name a design already run (or
    be a Schedule); by default it is the fastest strict schedule run so far
    (heuristics and earlier exact designs), ELK-Full when nothing else ran.
    """
    if name not in DESIGNS:
        raise SolverConfigError(f"unknown design '{name}' (known: {', '.join(DESIGNS)})")
    strategy = DESIGNS[name]
    accepted = set(inspect.signature(strategy).parameters) - {"workload"}
    unknown = set(options) - accepted
    if unknown:
        raise SolverConfigError(f"design '{name}' has no option(s) {', '.join(sorted(unknown))} "
                                f"(it accepts: {', '.join(sorted(accepted)) or 'none'})")
    kwargs = dict(options)
    if "dyn" in accepted and "elk-dyn" in done:
        kwargs.setdefault("dyn", done["elk-dyn"])
    if "warm_start" in accepted:
        kwargs["warm_start"] = pick_warm_start(workload, done, kwargs.get("warm_start"))
    return strategy(workload, **kwargs)


def pick_warm_start(workload: Workload, done: Mapping[str, Schedule], wanted: Schedule | str | None) -> Schedule:
    """The warm start an exact design begins from (see run_design)."""
    from elk.simulator import simulate
    if isinstance(wanted, Schedule):
        return wanted
    if wanted is not None:
        if wanted not in done:
            raise SolverConfigError(f"warm start '{wanted}' was not run (run it too, e.g. --designs {wanted},...)")
        return done[wanted]
    strict = {n: s for n, s in done.items() if s.relaxation.strict}
    if not strict:
        raise SolverConfigError("an exact design needs a warm start: no strict schedule was run before it")
    return min(strict.values(), key=lambda s: simulate(workload, s).latency_cycles)


def parse_designs(designs: str | Iterable[str], known: Iterable[str] | None = None) -> list[str]:
    """A comma list (or iterable) of design names; "paper" (or "all") is the paper's five, "default" adds
    periodic; unknown names are errors."""
    known = list(DESIGNS if known is None else known)
    if isinstance(designs, str):
        items = [d.strip() for d in designs.split(",") if d.strip()]
    else:
        items = list(designs)
    out: list[str] = []
    for d in items:
        if d in ("all", "paper"):
            out.extend(PAPER_DESIGNS)
        elif d == "default":
            out.extend(x for x in DEFAULT_DESIGNS if x in known)
        elif d in known:
            out.append(d)
        else:
            raise SolverConfigError(f"unknown design '{d}' (known: default, paper, all, {', '.join(known)})")
    if not out:
        raise SolverConfigError("no design requested")
    return list(dict.fromkeys(out))


def dependency_order(names: list[str], warm_start: str | Schedule | None = None) -> list[str]:
    """The order to run designs in: heuristics first (ELK-Dyn before ELK-Full, which reuses it), then the
    exact designs in the order periodic, cpsat, milp (each may start from the ones before).

    An exact design with no heuristic requested (and no warm start given) gets ELK-Full (and its ELK-Dyn)
    as a hidden dependency; a warm start named by design is run first; a Schedule needs nothing run.
    """
    wanted = list(names)
    if isinstance(warm_start, str) and warm_start in DESIGNS and warm_start not in wanted:
        wanted.append(warm_start)
    exact = [n for n in EXACT_DESIGNS if n in wanted]
    # an exact design named as the warm start needs one of its own
    unstarted = warm_start is None or (isinstance(warm_start, str) and warm_start in EXACT_DESIGNS)
    if exact and unstarted and not any(n in HEURISTICS for n in wanted):
        wanted.append("elk-full")
    if "elk-full" in wanted and "elk-dyn" not in wanted:
        wanted.append("elk-dyn")
    ranked = [n for n in ("basic", "static", "elk-dyn", "elk-full", "ideal") + EXACT_DESIGNS if n in wanted]
    return ranked + [n for n in wanted if n not in ranked]
