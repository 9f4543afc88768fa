"""Design names -> strategies, with the options each accepts."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from elk.errors import SolverConfigError
from elk.schedule import Schedule
from elk.workload import Workload
from solvers import designs

Strategy = Callable[..., Schedule]

def cpsat(workload: Workload, warm_start: Schedule | None = None, *, window: int = 8, stride: int | None = None,
          time_limit: float = 10.0, workers: int = 2, seed: int = 0, params: dict | None = None,
          reuse: bool = True, deterministic_time: float | None = None, records: str | None = None) -> Schedule:
    """CP-SAT over windows, warm-started by ELK-Full (or ELK-Dyn)."""
    from solvers.windowed import windowed
    warm = warm_start if warm_start is not None else designs.elk_full(workload)
    return windowed(workload, warm, solver="cpsat", window=window, stride=stride, time_limit=time_limit,
                    workers=workers, seed=seed, params=params, reuse=reuse, deterministic_time=deterministic_time,
                    records=records)


def milp(workload: Workload, warm_start: Schedule | None = None, *, window: int = 8, stride: int | None = None,
         time_limit: float = 10.0, workers: int = 2, seed: int = 0, params: dict | None = None,
         backend: str = "highs", reuse: bool = True, records: str | None = None) -> Schedule:
    """The same windows as a MILP (HiGHS or CBC through PuLP), warm-started the same way."""
    from solvers.windowed import windowed
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
