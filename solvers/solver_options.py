"""Validated solver settings: names are checked against the installed solvers, not a list in elk.

CP-SAT parameter names change between OR-Tools versions, so they are looked
up in the installed ``SatParameters`` protobuf; HiGHS options in the installed
highspy; CBC options must be given as CBC command-line words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from elk.errors import SolverConfigError

SOLVERS = ("cpsat", "milp")
MILP_BACKENDS = ("highs", "cbc")


@dataclass(frozen=True)
class SolverSettings:
    solver: str = "cpsat"
    time_limit: float = 10.0  # seconds per window
    workers: int = 2  # CP-SAT num_workers / MILP threads
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)  # solver-specific extras
    backend: str = "highs"  # MILP backend
    deterministic_time: float | None = None  # CP-SAT max_deterministic_time (reproducible runs)

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise SolverConfigError(f"unknown solver '{self.solver}' (choose from {', '.join(SOLVERS)})")
        if isinstance(self.time_limit, bool) or not isinstance(self.time_limit, (int, float)) \
                or not math.isfinite(self.time_limit) or self.time_limit <= 0:
            raise SolverConfigError(f"time limit must be a positive number of seconds, got {self.time_limit!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise SolverConfigError(f"workers must be a positive integer, got {self.workers!r} "
                                    "(CP-SAT's 0 = all cores is not accepted: say how many)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SolverConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.solver == "milp" and self.backend not in MILP_BACKENDS:
            raise SolverConfigError(f"unknown MILP backend '{self.backend}' (choose from {', '.join(MILP_BACKENDS)})")
        if self.deterministic_time is not None and not self.deterministic_time > 0:
            raise SolverConfigError("deterministic time must be positive")
        validate_params(self.solver, self.backend, self.params)

    @property
    def name(self) -> str:
        return "cp-sat" if self.solver == "cpsat" else f"milp-{self.backend}"


def cpsat_field_names() -> set[str]:
    from ortools.sat import sat_parameters_pb2
    return set(sat_parameters_pb2.SatParameters.DESCRIPTOR.fields_by_name)


def validate_params(solver: str, backend: str, params: Mapping[str, Any]) -> None:
    if not params:
        return
    if solver == "cpsat":
        known = cpsat_field_names()
        for name, value in params.items():
            if name not in known:
                close = sorted(n for n in known if name.split("_")[0] in n)[:6]
                raise SolverConfigError(f"unknown CP-SAT parameter '{name}' for this OR-Tools version"
                                        + (f" (similar: {', '.join(close)})" if close else ""))
        apply_cpsat_params(_fresh_cpsat_params(), params)  # type errors surface here
    elif backend == "highs":
        import highspy
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        for name in params:
            status, _ = h.getOptionValue(name)
            if status != highspy.HighsStatus.kOk:
                raise SolverConfigError(f"unknown HiGHS option '{name}'")
    else:
        for name in params:
            if not isinstance(name, str) or not name.replace("_", "").isalnum():
                raise SolverConfigError(f"bad CBC option '{name}'")


def _fresh_cpsat_params():
    from ortools.sat.python import cp_model
    return cp_model.CpSolver().parameters


def apply_cpsat_params(target, params: Mapping[str, Any]) -> None:
    """Set SatParameters fields; enum values may be given by name ("FIXED_SEARCH") or number.

    OR-Tools 9.15's ``solver.parameters`` is a pybind11 wrapper, not a protobuf
    message: field metadata comes from the protobuf descriptor, enum values are
    wrapped in the wrapper's own enum type.
    """
    from ortools.sat import sat_parameters_pb2
    fields = sat_parameters_pb2.SatParameters.DESCRIPTOR.fields_by_name
    for name, value in params.items():
        try:
            field_desc = fields[name]
            if field_desc.enum_type is not None:
                number = field_desc.enum_type.values_by_name[value].number if isinstance(value, str) else int(value)
                current = getattr(target, name)
                value = number if isinstance(current, int) else type(current)(number)
            setattr(target, name, value)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SolverConfigError(f"CP-SAT parameter '{name}' cannot take {value!r}: {exc}") from None


def solver_version(settings: SolverSettings) -> str:
    if settings.solver == "cpsat":
        import ortools
        return f"ortools {ortools.__version__}"
    import pulp
    if settings.backend == "highs":
        import highspy
        h = highspy.Highs()
        return f"pulp {pulp.__version__} / HiGHS {h.version()}"
    return f"pulp {pulp.__version__} / CBC (bundled)"
