"""Design names -> strategies, with the options each accepts."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping

from elk.errors import SolverConfigError
from elk.schedule import Schedule
from elk.workload import Workload
from solvers.schedule import designs

Strategy = Callable[..., Schedule]

#: The five designs of the Elk paper ("all" on the command line).
PAPER_DESIGNS = ("basic", "static", "elk-dyn", "elk-full", "ideal")


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


DESIGNS: dict[str, Strategy] = {**designs.DESIGNS, "cpsat": cpsat, "milp": milp}


def run_design(name: str, workload: Workload, done: Mapping[str, Schedule], options: Mapping[str, Any]) -> Schedule:
    """Run one design; designs that refine another receive its schedule."""
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
        for source in ("elk-full", "elk-dyn"):
            if source in done:
                kwargs.setdefault("warm_start", done[source])
                break
    return strategy(workload, **kwargs)


def parse_designs(designs: str | Iterable[str], known: Iterable[str] | None = None) -> list[str]:
    """A comma list (or iterable) of design names, "all" meaning the paper's five; unknown names are errors."""
    known = list(DESIGNS if known is None else known)
    if isinstance(designs, str):
        items = [d.strip() for d in designs.split(",") if d.strip()]
    else:
        items = list(designs)
    out: list[str] = []
    for d in items:
        if d == "all":
            out.extend(PAPER_DESIGNS)
        elif d in known:
            out.append(d)
        else:
            raise SolverConfigError(f"unknown design '{d}' (known: all, {', '.join(known)})")
    if not out:
        raise SolverConfigError("no design requested")
    return list(dict.fromkeys(out))


def dependency_order(names: list[str]) -> list[str]:
    """Run ELK-Dyn before designs that start from it (ELK-Full, exact window solvers)."""
    needs_dyn = any(n in ("elk-full", "cpsat", "milp") for n in names)
    needs_full = any(n in ("cpsat", "milp") for n in names)
    order = [n for n in ("elk-dyn",) if needs_dyn or n in names]
    order += [n for n in ("elk-full",) if needs_full or n in names]
    order += [n for n in names if n not in order]
    return order
