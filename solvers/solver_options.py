"""Validated solver settings: names are checked against the installed solvers, not a list in elk.

CP-SAT parameter names change between OR-Tools versions, so they are looked
up in the installed ``SatParameters`` protobuf; HiGHS options in the installed
highspy; CBC options must be given as CBC command-line words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Mapping

from elk.errors import SolverConfigError

SOLVERS = ("cpsat", "milp")
MILP_BACKENDS = ("highs", "cbc")


#: The proven lower bounds a compile can compute (solvers.schedule.bounds): closed forms, + the plan-choice LP
#: and the layer bound, + the steady state and blocks of layers, + the MILP; the level every front door uses unless told otherwise, and its solver time limit in seconds.
BOUND_LEVELS = ("closed", "lp", "layers", "milp")
DEFAULT_BOUND = "lp"
DEFAULT_BOUND_TIME_LIMIT = 30.0

#: The allocator that gives a compile's schedules SRAM addresses unless told otherwise, and its work limit (work
#: units, about core-seconds: solvers.alloc.exact). ``search`` places with the greedy allocator first and asks
#: elk's exact search only when the greedy placement overflows the SRAM, before any schedule is repaired for it:
#: a repair costs latency (Llama2-13B mesh 4 TB/s 192 KiB rigid: 22.26 ms repaired against 20.22 ms placed by
#: the search). The work limit, not the clock, ends that search, so the default compile is reproducible.
DEFAULT_PLACEMENT = "search"
DEFAULT_PLACEMENT_WORK_LIMIT = 2.0

#: Seconds per exact solve unless told otherwise: each window (cpsat, milp), the layer model (periodic).
DEFAULT_TIME_LIMIT = 10.0


def check_seconds(value: object, what: str = "time limit") -> None:
    """A solver time limit: a positive, finite number of seconds (no bool, no NaN, no infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SolverConfigError(f"{what} must be a positive number of seconds, got {value!r}")


def check_positive(value: object, what: str) -> None:
    """A positive, finite number (a work or deterministic-time limit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SolverConfigError(f"{what} must be a positive number, got {value!r}")


def check_count(value: object, what: str) -> None:
    """A positive integer (workers, a window size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SolverConfigError(f"{what} must be a positive integer, got {value!r}")


def check_seed(value: object) -> None:
    """A random seed: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SolverConfigError(f"seed must be a non-negative integer, got {value!r}")


def check_backend(backend: object) -> None:
    """A MILP backend PuLP is driven with."""
    if backend not in MILP_BACKENDS:
        raise SolverConfigError(f"unknown MILP backend '{backend}' (choose from {', '.join(MILP_BACKENDS)})")


def check_common(time_limit: object, workers: object, seed: object) -> None:
    """The settings every solver run shares (schedule windows, the periodic model, allocators)."""
    check_seconds(time_limit)
    check_count(workers, "workers")
    check_seed(seed)


def check_bound(level: str | None, time_limit: object) -> None:
    """A bound level (or None: no bound) and its solver time limit."""
    if level is not None and level not in BOUND_LEVELS:
        raise SolverConfigError(f"unknown bound level '{level}' ({', '.join(BOUND_LEVELS)} or None)")
    check_seconds(time_limit, "bound time limit")


@dataclass(frozen=True)
class SolverSettings:
    """One window backend run: which solver, its limits, and its own parameters (checked against it)."""

    solver: str = "cpsat"
    time_limit: float = DEFAULT_TIME_LIMIT  # seconds per window
    workers: int = 2  # CP-SAT num_workers / MILP threads
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)  # solver-specific extras
    backend: str = "highs"  # MILP backend
    deterministic_time: float | None = None  # CP-SAT max_deterministic_time (reproducible runs)

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise SolverConfigError(f"unknown solver '{self.solver}' (choose from {', '.join(SOLVERS)})")
        check_common(self.time_limit, self.workers, self.seed)
        if self.solver == "milp":
            check_backend(self.backend)
        if self.deterministic_time is not None:
            check_positive(self.deterministic_time, "deterministic time")
        validate_params(self.solver, self.backend, self.params)

    @property
    def name(self) -> str:
        return "cp-sat" if self.solver == "cpsat" else f"milp-{self.backend}"


@dataclass(frozen=True, kw_only=True)
class ExactOptions:
    """What every exact design takes, checked once when made (a bad value never reaches a solver).

    One frozen dataclass per exact design kind, each search knob a named
    field; the registry (solvers.registry.EXACT) maps a design name to its
    kind. ``time_limit`` is per solve: each window for cpsat/milp, the layer
    model for periodic.
    """

    time_limit: float = DEFAULT_TIME_LIMIT
    workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        check_common(self.time_limit, self.workers, self.seed)

    def without_outputs(self) -> "ExactOptions":
        """The same search writing no files (a placement repair re-runs the design under a smaller budget)."""
        return self

    @classmethod
    def from_knobs(cls, **knobs: Any) -> "ExactOptions":
        """The options from front-door knobs: None means this kind's default; knobs it has no field for
        (a window size for periodic, a MILP backend for cpsat) do not apply to it and are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in knobs.items() if v is not None and k in names})

    @classmethod
    def from_mapping(cls, design: str, options: Mapping[str, Any]) -> "ExactOptions":
        """The options from a ``{"field": value}`` mapping (elk.compile's ``design_options``); unknown names are
        an error that lists the known ones."""
        names = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise SolverConfigError(f"design '{design}' has no option(s) {', '.join(unknown)} "
                                    f"(its options: {', '.join(names)})")
        return cls(**options)


@dataclass(frozen=True, kw_only=True)
class PeriodicOptions(ExactOptions):
    """The periodic design: one CP-SAT modulo model of a layer. 8 workers by default: the CP-SAT portfolio proves
    the layer optimum in 1-5 s where 2 workers may not in 20 s."""

    workers: int = 8
    #: CP-SAT max_deterministic_time (reproducible runs); None = the wall-clock limit alone
    deterministic_time: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deterministic_time is not None:
            check_positive(self.deterministic_time, "deterministic time")


@dataclass(frozen=True, kw_only=True)
class WindowOptions(ExactOptions):
    """The window designs: consecutive operators re-planned ``window`` at a time, ``stride`` apart."""

    #: which window model the kind solves (cpsat or milp)
    solver: ClassVar[str] = ""
    window: int = 8
    #: operators committed per window; None = the window size (no overlap)
    stride: int | None = None
    #: the backend's own parameters, checked against the installed solver
    params: Mapping[str, Any] = field(default_factory=dict)
    #: reuse the solution of an identical window model (repeated layers) instead of solving it again
    reuse: bool = True
    #: file for one record per window solve (.csv, or .parquet with pyarrow); None = not written
    records: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_count(self.window, "window size")
        if self.stride is not None and (isinstance(self.stride, bool) or not isinstance(self.stride, int)
                                        or not 1 <= self.stride <= self.window):
            raise SolverConfigError(f"stride must be between 1 and the window size {self.window}, "
                                    f"got {self.stride!r}")
        self.settings()  # the backend's checks (its parameters among them)

    def without_outputs(self) -> "WindowOptions":
        return replace(self, records=None)

    def settings(self) -> SolverSettings:
        """The backend run these options ask for."""
        return SolverSettings(solver=self.solver, time_limit=self.time_limit, workers=self.workers, seed=self.seed,
                              params=dict(self.params), backend=getattr(self, "backend", "highs"),
                              deterministic_time=getattr(self, "deterministic_time", None))


@dataclass(frozen=True, kw_only=True)
class CpsatOptions(WindowOptions):
    """The cpsat design: windows as CP-SAT models."""

    solver: ClassVar[str] = "cpsat"
    #: CP-SAT max_deterministic_time per window (reproducible runs)
    deterministic_time: float | None = None


@dataclass(frozen=True, kw_only=True)
class MilpOptions(WindowOptions):
    """The milp design: the same windows as MILPs through PuLP."""

    solver: ClassVar[str] = "milp"
    #: the MILP solver PuLP drives (highs or cbc)
    backend: str = "highs"


def cpsat_field_names() -> set[str]:
    """The parameter names the installed OR-Tools' SatParameters knows."""
    from ortools.sat import sat_parameters_pb2
    return set(sat_parameters_pb2.SatParameters.DESCRIPTOR.fields_by_name)


def validate_params(solver: str, backend: str, params: Mapping[str, Any]) -> None:
    """Check a backend's own parameters against the installed solver (unknown names, bad values)."""
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
    """The solver and version a window backend run uses, for the per-window records."""
    if settings.solver == "cpsat":
        import ortools
        return f"ortools {ortools.__version__}"
    import pulp
    if settings.backend == "highs":
        import highspy
        h = highspy.Highs()
        return f"pulp {pulp.__version__} / HiGHS {h.version()}"
    return f"pulp {pulp.__version__} / CBC (bundled)"
