"""Design names -> strategies, with the options each accepts."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from elk.errors import SolverConfigError
from elk.schedule import Schedule
from elk.workload import Workload
from solvers import designs

Strategy = Callable[..., Schedule]

DESIGNS: dict[str, Strategy] = dict(designs.DESIGNS)


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
