"""Design names -> strategies, and the run plan every front door builds from them.

Heuristic designs are functions of a workload (solvers.schedule.designs).
Exact designs refine a warm start; each has a kind in :data:`EXACT`: a frozen
options dataclass (solvers.solver_options: every search knob a named field,
checked when made) and a runner. To add an exact design:

1. write its options dataclass, a subclass of ``ExactOptions`` (in
   solvers.solver_options or next to the design);
2. add one entry ``"name": ExactKind(TheOptions, run)`` to :data:`EXACT`, where
   ``run(workload, warm, options)`` returns a Schedule. Its position in the
   dict is its place in the run order (later exact designs may start from it).

The CLI, ``elk.compile`` and the study runner then accept the name, its
options (``design_options``, ``--time-limit``...) and its warm start; nothing
else lists the exact designs.

:class:`RunPlan` is what a compile runs: which designs, in which order, each
exact design's options and warm start, decided and checked before any work.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Union

from elk.chip import Chip
from elk.errors import SolverConfigError
from elk.ir import Program
from elk.schedule import Schedule
from elk.workload import Workload
from solvers.schedule import designs
from solvers.schedule.fallback import keep_faster
from solvers.schedule.from_bound import GuidedOptions
from solvers.schedule.lns import LnsSettings
from solvers.schedule.optimal import OptimalOptions
from solvers.schedule.stores import StorePlacementError, place_stores
from solvers.solver_options import CpsatOptions, ExactOptions, MilpOptions, PeriodicOptions, WindowOptions

Strategy = Callable[..., Schedule]

#: The five designs of the Elk paper ("paper" on the command line; "all" is an older spelling of the same five).
PAPER_DESIGNS = ("basic", "static", "elk-dyn", "elk-full", "ideal")
#: What a compile runs unless told otherwise ("default"): the paper's five and the periodic design, the
#: strongest search that finishes in seconds on the zoo's LLMs (its certified gap is what users come for).
DEFAULT_DESIGNS = PAPER_DESIGNS + ("periodic",)
#: Names that stand for a list of designs (``--designs``, ``elk.compile(designs=...)``, study points).
DESIGN_SETS = {"default": DEFAULT_DESIGNS, "paper": PAPER_DESIGNS, "all": PAPER_DESIGNS}
#: What each set name means, for help texts and errors.
SET_HELP = "'default' = the paper's five and periodic, 'paper' = the paper's five ('all' = 'paper', an older name)"


def _periodic(workload: Workload, warm: Schedule, o: PeriodicOptions) -> Schedule:
    from solvers.schedule.periodic import periodic
    return periodic(workload, warm, time_limit=o.time_limit, workers=o.workers, seed=o.seed,
                    deterministic_time=o.deterministic_time)


def _lns(workload: Workload, warm: Schedule, o: Any) -> Schedule:
    from solvers.schedule.lns import lns
    return lns(workload, warm, o, records=o.records)


def _windows(workload: Workload, warm: Schedule, o: WindowOptions,
             placeable: Callable[[Schedule], bool] | None = None) -> Schedule:
    from solvers.schedule.windowed import windowed_with
    return windowed_with(workload, warm, o, placeable=placeable)


def _lp_guided(workload: Workload, warm: Schedule, o: Any) -> Schedule:
    from solvers.schedule.from_bound import lp_guided
    return lp_guided(workload, warm, o)


def _optimal(workload: Workload, warm: Schedule, o: Any) -> Schedule:
    from solvers.schedule.optimal import optimal
    return optimal(workload, warm, o)


def _optimal_precheck(program: Program, chip: Chip, o: Any) -> None:
    from solvers.schedule.optimal import check_program
    check_program(program, chip, o)


@dataclass(frozen=True)
class ExactKind:
    """An exact design: its options type, how it runs from a warm start, and (optionally) what it refuses
    before any work: ``precheck(program, chip, options)`` runs before plan tables are built."""

    options: type[ExactOptions]
    run: Callable[..., Schedule]
    precheck: Callable[[Program, Chip, Any], None] | None = None
    #: ``run`` also takes ``placeable`` (a check that a schedule's buffers get SRAM addresses) and keeps to it
    placement_aware: bool = False


#: The exact designs, in the order they run (each may start from the ones before it).
EXACT: dict[str, ExactKind] = {
    "periodic": ExactKind(PeriodicOptions, _periodic),
    "cpsat": ExactKind(CpsatOptions, _windows, placement_aware=True),
    "milp": ExactKind(MilpOptions, _windows, placement_aware=True),
    "lp-guided": ExactKind(GuidedOptions, _lp_guided),
    "lns": ExactKind(LnsSettings, _lns),
    "optimal": ExactKind(OptimalOptions, _optimal, _optimal_precheck),
}
EXACT_DESIGNS = tuple(EXACT)
#: designs made by the inductive heuristics (all five of the paper's, Ideal among them)
HEURISTIC_DESIGNS: dict[str, Strategy] = dict(designs.DESIGNS)
#: designs whose schedules are timed under relaxed rules (not valid schedules: no warm start, nothing to save)
RELAXED_DESIGNS = ("ideal",)
#: the heuristics whose schedules are valid (strict): the ones an exact design may start from
STRICT_HEURISTICS = tuple(n for n in HEURISTIC_DESIGNS if n not in RELAXED_DESIGNS)
#: every design name, in run order: heuristics (ELK-Dyn before ELK-Full, which reuses it), then the exact ones
DESIGNS: tuple[str, ...] = tuple(HEURISTIC_DESIGNS) + EXACT_DESIGNS

#: An exact design's warm start: a design's name, a schedule (from a file, a neighbouring point), or None
#: for the fastest strict schedule run before it.
WarmStart = Union[str, Schedule, None]


def parse_designs(designs: str | Iterable[str]) -> list[str]:
    """A comma list (or iterable) of design names and set names (:data:`DESIGN_SETS`); unknown names are errors."""
    items = [d.strip() for d in designs.split(",") if d.strip()] if isinstance(designs, str) else list(designs)
    out: list[str] = []
    for d in items:
        if d in DESIGN_SETS:
            out.extend(DESIGN_SETS[d])
        elif d in DESIGNS:
            out.append(d)
        else:
            raise SolverConfigError(f"unknown design '{d}' (known: {', '.join(DESIGNS)}; or {SET_HELP})")
    if not out:
        raise SolverConfigError("no design requested")
    return list(dict.fromkeys(out))


def heuristic_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A heuristic design's keyword options (e.g. ELK-Full's ``space``), checked against its function."""
    accepted = set(inspect.signature(HEURISTIC_DESIGNS[name]).parameters) - {"workload", "dyn", "workers"}
    unknown = set(options) - accepted
    if unknown:
        raise SolverConfigError(f"design '{name}' has no option(s) {', '.join(sorted(unknown))} "
                                f"(it accepts: {', '.join(sorted(accepted)) or 'none'})")
    return dict(options)


def exact_options(name: str, options: ExactOptions | Mapping[str, Any] | None) -> ExactOptions:
    """Design ``name``'s options as its kind's dataclass (a mapping is converted once, here)."""
    kind = EXACT[name].options
    if options is None:
        return kind()
    if isinstance(options, ExactOptions):
        if not isinstance(options, kind):
            raise SolverConfigError(f"design '{name}' takes {kind.__name__}, not {type(options).__name__}")
        return options
    return kind.from_mapping(name, {k: v for k, v in options.items() if k != "warm_start"})


def check_warm_start(name: str, warm: WarmStart) -> None:
    """The rules for exact design ``name`` starting from ``warm`` (a design name, a Schedule or None)."""
    if warm is None or isinstance(warm, Schedule):
        return
    if not isinstance(warm, str) or warm not in DESIGNS:
        raise SolverConfigError(f"{name}: warm start {warm!r} is neither a design ({', '.join(DESIGNS)}) "
                                f"nor a Schedule")
    if warm == name:
        raise SolverConfigError(f"{name} cannot warm-start from itself")
    if warm in RELAXED_DESIGNS:
        raise SolverConfigError(f"{name} cannot warm-start from {warm}: {warm} is a relaxed schedule, not a valid "
                                f"one to start from")
    if warm in EXACT and EXACT_DESIGNS.index(warm) > EXACT_DESIGNS.index(name):
        raise SolverConfigError(f"{name} cannot warm-start from {warm}: it runs first "
                                f"(exact designs run in the order {', '.join(EXACT_DESIGNS)})")


def shared_warm_start(exact: Iterable[str], warm: WarmStart) -> dict[str, WarmStart]:
    """One warm start for several exact designs (``--warm-start``): a design name reaches the exact designs that
    run after it (an exact one does not start from itself, nor reach those before it); a Schedule reaches all."""
    exact = list(exact)
    if isinstance(warm, str) and warm in EXACT:
        later = [n for n in exact if EXACT_DESIGNS.index(n) > EXACT_DESIGNS.index(warm)]
        if not later:
            raise SolverConfigError(f"{warm}: no other exact design runs after it "
                                    f"(they run in the order {', '.join(EXACT_DESIGNS)})")
        return {n: warm for n in later}
    if isinstance(warm, str) and warm in RELAXED_DESIGNS:
        raise SolverConfigError(f"{warm} is a relaxed schedule, not a valid one to start from")
    return {n: warm for n in exact}


@dataclass(frozen=True)
class RunPlan:
    """What a compile runs, decided and checked before any work.

    ``requested``: the designs reported, in the order asked for. ``order``: every
    design to run, in run order, with the ones they need (an exact design with
    no strict design to start from gets ELK-Full; a named warm start runs too).
    ``exact``: each exact design's options; ``warm_starts``: each exact design's
    warm start (None = the fastest strict schedule run before it);
    ``heuristic``: keyword options of heuristic designs (ELK-Full's ``space``).
    """

    requested: tuple[str, ...]
    order: tuple[str, ...]
    exact: Mapping[str, ExactOptions] = field(default_factory=dict)
    warm_starts: Mapping[str, WarmStart] = field(default_factory=dict)
    heuristic: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, designs: str | Iterable[str],
              options: Mapping[str, ExactOptions | Mapping[str, Any]] | None = None,
              warm_start: WarmStart = None) -> "RunPlan":
        """The plan for ``designs`` (names and set names), with per-design ``options`` (an exact design's
        dataclass, or a mapping that may hold its ``warm_start``) and one ``warm_start`` for every exact design
        (see :func:`shared_warm_start`)."""
        requested = parse_designs(designs)
        options = dict(options or {})
        for name in options:
            if name not in DESIGNS:
                raise SolverConfigError(f"options for unknown design '{name}' (known: {', '.join(DESIGNS)})")
        warm: dict[str, WarmStart] = {}
        if warm_start is not None:
            warm.update(shared_warm_start([n for n in EXACT if n in requested], warm_start))
        for name, opts in options.items():
            if name in EXACT and isinstance(opts, Mapping) and opts.get("warm_start") is not None:
                warm[name] = opts["warm_start"]
        for name, w in warm.items():
            check_warm_start(name, w)
        named = [w for w in warm.values() if isinstance(w, str) and w not in requested]
        wanted = requested + list(dict.fromkeys(named))
        order = _run_order(wanted, warm)
        exact = {n: exact_options(n, options.get(n)) for n in order if n in EXACT}
        heuristic = {n: heuristic_options(n, options[n]) for n in order if n in HEURISTIC_DESIGNS and n in options}
        return cls(tuple(requested), tuple(order), exact, {n: warm.get(n) for n in exact}, heuristic)

    def check_program(self, program: Program, chip: Chip) -> None:
        """What an exact design refuses about this program and chip, said before any plan table is built."""
        for name, options in self.exact.items():
            if EXACT[name].precheck is not None:
                EXACT[name].precheck(program, chip, options)

    def options_of(self, name: str) -> ExactOptions | Mapping[str, Any] | None:
        """Design ``name``'s options: its dataclass (exact), its keyword options (heuristic) or None."""
        return self.exact[name] if name in self.exact else self.heuristic.get(name)


def _run_order(wanted: list[str], warm: Mapping[str, WarmStart]) -> list[str]:
    """Heuristics first (ELK-Dyn before ELK-Full, which reuses it), then the exact designs in registry order.

    An exact design that starts from the fastest schedule run before it, with no strict heuristic to run, gets
    ELK-Full (and its ELK-Dyn) as a hidden dependency.
    """
    wanted = list(wanted)
    defaulted = [n for n in wanted if n in EXACT and warm.get(n) is None]
    if defaulted and not any(n in STRICT_HEURISTICS for n in wanted):
        # an earlier exact design could be its warm start only if it had one itself: the first one needs ELK-Full
        wanted.append("elk-full")
    if "elk-full" in wanted and "elk-dyn" not in wanted:
        wanted.append("elk-dyn")
    return [n for n in DESIGNS if n in wanted]


def run_design(name: str, workload: Workload, done: Mapping[str, Schedule],
               options: ExactOptions | Mapping[str, Any] | None = None, warm_start: WarmStart = None,
               workers: int | None = None) -> Schedule:
    """Run one design. A heuristic gets its keyword options (ELK-Full reuses ELK-Dyn's schedule from ``done``)
    and, if it fans passes out, ``workers`` (None: elk.tablecache.default_workers()); an exact design starts from
    ``warm_start`` (or its options mapping's ``warm_start``): a Schedule, a design in ``done``, or by default the
    fastest strict schedule in ``done``."""
    if name not in DESIGNS:
        raise SolverConfigError(f"unknown design '{name}' (known: {', '.join(DESIGNS)})")
    if name in EXACT:
        if warm_start is None and isinstance(options, Mapping):
            warm_start = options.get("warm_start")
        opts = exact_options(name, options)
        check_warm_start(name, warm_start)
        return run_exact(name, workload, pick_warm_start(workload, done, warm_start)[1], opts)
    kwargs = heuristic_options(name, options or {})
    accepted = inspect.signature(HEURISTIC_DESIGNS[name]).parameters
    if "dyn" in accepted and "elk-dyn" in done:
        kwargs.setdefault("dyn", done["elk-dyn"])
    if "workers" in accepted and workers is not None:
        kwargs["workers"] = workers
    return place_stores(workload, HEURISTIC_DESIGNS[name](workload, **kwargs))


def run_exact(name: str, workload: Workload, warm: Schedule, options: ExactOptions,
              placeable: Callable[[Schedule], bool] | None = None) -> Schedule:
    """Exact design ``name`` from ``warm``. On a program that stores (docs/design.md §5.2) the design plans on the
    store-free view its model knows, its stores are placed afterwards, and its promise is kept on the program
    itself: a result whose stores cannot be placed, or which ends slower than ``warm``, gives way to ``warm``.
    ``placeable``: a check that a schedule's buffers get SRAM addresses, for the designs that keep to one
    (``placement_aware``; on programs without stores)."""
    if not workload.has_store.any():
        if placeable is not None and EXACT[name].placement_aware:
            return EXACT[name].run(workload, warm, options, placeable=placeable)
        return EXACT[name].run(workload, warm, options)
    planned = EXACT[name].run(workload.without_stores(), warm, options)
    try:
        placed = place_stores(workload, planned)
    except StorePlacementError as err:
        return warm.renamed(name, planned.info.copy(kept_warm_start=f"stores could not be placed: {err}"))
    kept, reason = keep_faster(workload, placed, warm)
    if reason:
        return warm.renamed(name, planned.info.copy(kept_warm_start=reason))
    return placed


def pick_warm_start(workload: Workload, done: Mapping[str, Schedule], wanted: WarmStart) -> tuple[str, Schedule]:
    """(its name, the schedule) an exact design begins from: ``wanted`` (a Schedule, or a design in ``done``), or
    the fastest strict schedule in ``done``."""
    from elk.simulator import simulate
    if isinstance(wanted, Schedule):
        return "", wanted
    if wanted is not None:
        if wanted not in done:
            raise SolverConfigError(f"warm start '{wanted}' was not run (run it too, e.g. --designs {wanted},...)")
        return wanted, done[wanted]
    strict = {n: s for n, s in done.items() if s.relaxation.strict}
    if not strict:
        raise SolverConfigError("an exact design needs a warm start: no strict schedule was run before it")
    best = min(strict, key=lambda n: simulate(workload, strict[n]).latency_cycles)
    return best, strict[best]


def dependency_order(names: list[str], warm_start: WarmStart = None) -> list[str]:
    """The order to run ``names`` in, with what they need (see :class:`RunPlan`); ``warm_start`` is every exact
    design's."""
    return list(RunPlan.build(names, warm_start=warm_start).order)
