"""A study point: one compile of one model on one chip with a set of designs, as data.

A point is declared with the knobs a user thinks in (``hbm_tbps=8``,
``topology="mesh"``); ``None`` means "the chip's default". It is validated when
it is made, so a grid with a typo fails before anything runs, and it is named
by :meth:`Point.key`: a hash of the *resolved* inputs (the model's architecture,
the whole chip, the canonical design list, the solver settings that can change
the result) plus :data:`SCHEMA_VERSION`. Two spellings of the same run
(``hbm_tbps=None`` and ``hbm_tbps=16`` on the default chip, ``designs="all"``
and ``"paper"``) therefore share one key and run once.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from elk.chip import LOAD_MODELS, Chip, PlanEnumeration, knob_overrides, resolve_chip
from elk.errors import ChipConfigError, ElkError
from solvers.registry import DESIGNS, EXACT, PAPER_DESIGNS
from solvers.solver_options import BOUND_LEVELS, DEFAULT_BOUND, DEFAULT_BOUND_TIME_LIMIT, MILP_BACKENDS, ExactOptions

#: Bump when the meaning of a key's inputs changes, or the stored record does (not for new elk versions:
#: results record those). 2: records carry the proven bound (bound_ms, bound_name) and rows gap_to_bound.
SCHEMA_VERSION = 2

PAPER = PAPER_DESIGNS  # "paper" in a grid
TOPOLOGY_KINDS = ("all-to-all", "mesh")

#: Knobs whose value is a positive integer / a positive number.
INT_KNOBS = ("batch", "seq", "cores", "window", "workers", "periodic_workers")
FLOAT_KNOBS = ("sram_kib", "hbm_tbps", "noc_scale", "noc_tbps", "compute_scale", "time_limit",
               "periodic_time_limit", "periodic_deterministic_time", "guided_time_limit", "bound_time_limit")
#: Solver settings: they only reach the exact designs, so they are dropped from the key otherwise.
SOLVER_KNOBS = ("window", "time_limit", "workers", "seed", "milp_solver", "periodic_time_limit", "periodic_workers",
                "periodic_deterministic_time", "guided_time_limit")
#: Knobs added after schema 2's keys were first stored: hashed only when set, so older points keep their keys.
LATE_KNOBS = ("periodic_time_limit", "periodic_workers", "periodic_deterministic_time", "guided_time_limit")
#: The proven lower bound every point computes unless its ``bound`` / ``bound_time_limit`` say otherwise
#: (DEFAULT_BOUND, DEFAULT_BOUND_TIME_LIMIT: elk.compile's defaults); like the late knobs, hashed only when they
#: differ from these.


class StudyError(ElkError):
    """A study, grid or point is malformed, or its output folder cannot be used."""


@dataclass(frozen=True)
class Point:
    """One run of ``elk.compile``: inputs only (see the module docstring for the key)."""

    model: str
    mode: str = "decode"
    batch: int = 32
    seq: int = 2048
    chip: str = "ipu-pod4"
    cores: int | None = None
    sram_kib: float | None = None
    hbm_tbps: float | None = None
    #: interconnect multiplier (scales core-to-core shifts and HBM-load distribution)
    noc_scale: float | None = None
    #: the same knob as an all-to-all load-distribution bandwidth: cores x 5.5 GB/s x noc_scale
    noc_tbps: float | None = None
    compute_scale: float | None = None
    topology: str | None = None
    #: "ROWSxCOLS" (implies a mesh); None = the most square shape for the core count
    mesh: str | None = None
    #: "fluid" or "rigid" (docs/design.md §5.1); None = the chip's (fluid unless its file says otherwise)
    load_model: str | None = None
    designs: str = "paper"
    window: int | None = None
    time_limit: float | None = None
    workers: int | None = None
    seed: int | None = None
    milp_solver: str | None = None
    #: seconds for the periodic design's CP-SAT model; None = ``time_limit`` (which the windows use)
    periodic_time_limit: float | None = None
    #: CP-SAT workers of the periodic design; None = its own default (8: a portfolio proves the layer optimum
    #: in seconds where 1 or 2 workers can take 10 s or more), not ``workers`` (the windows')
    periodic_workers: int | None = None
    #: CP-SAT deterministic time of the periodic design (its ``max_deterministic_time``): with one worker the
    #: solve, and so the point's result, no longer depends on the machine's load; None = the wall-clock limit alone
    periodic_deterministic_time: float | None = None
    #: seconds for the ``lp-guided`` design's plan-choice MILP; None = ``time_limit`` (the windows'): one MILP over
    #: the whole program needs more than a window does
    guided_time_limit: float | None = None
    #: the proven lower bound computed with the point: "closed", "lp" or "milp" (None = lp, elk.compile's default)
    bound: str | None = None
    #: seconds for the bound's solvers (None = 30, elk.compile's default)
    bound_time_limit: float | None = None
    _resolved: "Resolved" = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_resolved", _resolve(self))

    def key(self) -> str:
        """Stable 20-hex-digit name of this run's inputs (the point file is ``<key>.json``)."""
        return self._resolved.key

    @property
    def resolved(self) -> "Resolved":
        return self._resolved

    def inputs(self) -> dict[str, Any]:
        """The knobs as declared (for storing next to the result)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def label(self) -> str:
        """A short human description: the model, batch, sequence and every knob declared (progress, errors)."""
        k = self._resolved.knobs
        parts = [k["model"], k["mode"] if k["mode"] != "decode" else "", f"b{k['batch']}", f"s{k['seq']}",
                 self.chip if self.chip != "ipu-pod4" else ""]
        for name in ("cores", "sram_kib", "hbm_tbps", "noc_scale", "noc_tbps", "compute_scale", "topology", "mesh",
                     "load_model", "bound"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
        if k["designs"] != "paper":
            parts.append(k["designs"])
        return " ".join(p for p in parts if p)

    def __getstate__(self) -> dict:
        return self.inputs()  # the resolution is recomputed on the other side (it holds a Chip)

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_resolved", _resolve(self))


KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Point) if f.init)


@dataclass(frozen=True)
class Resolved:
    """What a point means: the chip object, the compile arguments, the effective knob values."""

    key: str
    chip: Chip
    model_name: str
    designs: tuple[str, ...]
    #: each exact design's options (solvers.solver_options), as elk.compile's ``design_options``
    design_options: dict[str, ExactOptions]
    #: every knob with its effective value (the result table's input columns)
    knobs: dict
    #: Chip.plan_key() plus the program inputs: points sharing it share plan tables
    table_group: str
    #: Chip.enumeration_key() plus the program inputs: table groups sharing it (a compute/NoC sweep) enumerate
    #: each operator's plans once between them (elk.plantable.tables_for_chips)
    table_family: str = ""
    #: the lower bound level and its time limit (elk.compile's ``bound``, ``bound_time_limit``)
    bound: str = DEFAULT_BOUND
    bound_time_limit: float = DEFAULT_BOUND_TIME_LIMIT


def _resolve(p: Point) -> Resolved:
    model = _check_model(p.model)
    mode = p.mode
    from elk.graphs.zoo import MODES
    if mode not in MODES:
        raise StudyError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    for name in INT_KNOBS:
        _check_int(name, getattr(p, name), optional=name not in ("batch", "seq"))
    for name in FLOAT_KNOBS:
        _check_number(name, getattr(p, name))
    if p.seed is not None and (isinstance(p.seed, bool) or not isinstance(p.seed, int)):
        raise StudyError(f"seed must be an integer, got {p.seed!r}")
    if p.topology is not None and p.topology not in TOPOLOGY_KINDS:
        raise StudyError(f"unknown topology {p.topology!r} (known: {', '.join(TOPOLOGY_KINDS)})")
    if p.load_model is not None and p.load_model not in LOAD_MODELS:
        raise StudyError(f"unknown load_model {p.load_model!r} (known: {', '.join(LOAD_MODELS)})")
    if p.milp_solver is not None and p.milp_solver not in MILP_BACKENDS:
        raise StudyError(f"unknown milp_solver {p.milp_solver!r} (known: {', '.join(MILP_BACKENDS)})")
    if p.noc_scale is not None and p.noc_tbps is not None:
        raise StudyError("give noc_scale or noc_tbps, not both (they are the same knob)")
    if p.bound is not None and p.bound not in BOUND_LEVELS:
        raise StudyError(f"unknown bound {p.bound!r} (known: {', '.join(BOUND_LEVELS)})")
    bound = p.bound or DEFAULT_BOUND
    bound_time_limit = float(p.bound_time_limit or DEFAULT_BOUND_TIME_LIMIT)
    chip = _chip(p)
    designs = _designs(p.designs)
    exact = [d for d in designs if d in EXACT]
    solver = {k: (getattr(p, k) if exact else None) for k in SOLVER_KNOBS}
    if "periodic" not in exact:
        solver["periodic_time_limit"] = solver["periodic_workers"] = solver["periodic_deterministic_time"] = None
    if "lp-guided" not in exact:
        solver["guided_time_limit"] = None
    options = {name: _exact_options(name, solver) for name in exact}
    if model["family"] == "dit":  # one denoising step whatever the mode; the image fixes the token count
        mode, seq = "forward", model["tokens"]
    else:
        seq = p.seq
    topo = chip.topology
    knobs = {"model": model["name"], "mode": mode, "batch": p.batch, "seq": seq, "chip": p.chip,
             "cores": chip.cores, "sram_kib": chip.sram_per_core / 1024, "hbm_tbps": chip.hbm_bytes_per_s / 1e12,
             "noc_scale": chip.noc_scale,
             "noc_tbps": chip.cores * chip.noc_load_bytes_per_s_per_core * chip.noc_scale / 1e12,
             "compute_scale": chip.compute_scale, "topology": topo.kind,
             "mesh": f"{topo.rows}x{topo.cols}" if topo.kind == "mesh" else None,
             "load_model": chip.load_model.value,
             "designs": "paper" if designs == PAPER else ",".join(designs), **solver,
             "bound": bound, "bound_time_limit": bound_time_limit}
    hashed_solver = {k: v for k, v in solver.items() if k not in LATE_KNOBS or v is not None}
    canonical = {"schema": SCHEMA_VERSION, "model": model["config"], "mode": mode, "batch": p.batch, "seq": seq,
                 "chip": _jsonable_chip(chip), "designs": list(designs), "solver": hashed_solver}
    if (bound, bound_time_limit) != (DEFAULT_BOUND, DEFAULT_BOUND_TIME_LIMIT):
        canonical["bound"] = [bound, bound_time_limit]
    if mode == "train":  # "train" once named the forward pass (now "forward"): a training step keys apart
        canonical["step"] = "train"
    key = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:20]
    group = json.dumps([model["config"], mode, p.batch, seq, repr(chip.plan_key())], sort_keys=True)
    family = json.dumps([model["config"], mode, p.batch, seq, repr(chip.enumeration_key())], sort_keys=True)
    return Resolved(key=key, chip=chip, model_name=model["name"], designs=designs, design_options=options,
                    knobs=knobs, table_group=hashlib.sha256(group.encode()).hexdigest()[:16],
                    table_family=hashlib.sha256(family.encode()).hexdigest()[:16], bound=bound,
                    bound_time_limit=bound_time_limit)


def _exact_options(name: str, solver: dict[str, Any]) -> ExactOptions:
    """An exact design's options from the point's solver knobs: ``workers`` and ``time_limit`` are the windows'
    (the periodic design has its own ``periodic_workers``, ``periodic_time_limit`` and deterministic time,
    ``lp-guided`` its own ``guided_time_limit``)."""
    periodic = name == "periodic"
    own = {"periodic": solver["periodic_time_limit"], "lp-guided": solver["guided_time_limit"]}.get(name)
    knobs = {"time_limit": own or solver["time_limit"],
             "workers": solver["periodic_workers"] if periodic else solver["workers"], "seed": solver["seed"],
             "window": solver["window"], "backend": solver["milp_solver"],
             "deterministic_time": solver["periodic_deterministic_time"] if periodic else None}
    try:
        return EXACT[name].options.from_knobs(**knobs)
    except ElkError as err:
        raise StudyError(str(err)) from None


def _check_int(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyError(f"{name} must be a positive integer, got {value!r}")


def _check_number(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise StudyError(f"{name} must be a positive number, got {value!r}")


@functools.lru_cache(maxsize=64)
def _check_model(name: str) -> dict:
    """The model's canonical name and architecture (what the key hashes, not the spelling or the path)."""
    from elk.graphs.zoo import resolve_model
    if not isinstance(name, str) or not name:
        raise StudyError(f"model must be a zoo name or a config path, got {name!r}")
    cfg = resolve_model(name)  # ModelConfigError (an ElkError) names the unknown model
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("source", "display_name")}
    tokens = cfg.tokens_per_image if cfg.family == "dit" else None
    return {"name": cfg.name, "family": cfg.family, "config": json.loads(json.dumps(config)), "tokens": tokens}


def _chip(p: Point) -> Chip:
    base = resolve_chip(p.chip)
    try:
        changes = knob_overrides(base, cores=p.cores, sram_kib=p.sram_kib, hbm_tbps=p.hbm_tbps,
                                 noc_scale=p.noc_scale, noc_tbps=p.noc_tbps, compute_scale=p.compute_scale,
                                 topology=p.topology, mesh=p.mesh, load_model=p.load_model)
    except ChipConfigError as err:
        raise StudyError(str(err)) from None
    return base.with_overrides(**changes) if changes else base


def _jsonable_chip(chip: Chip) -> dict:
    fields = dataclasses.asdict(chip)
    if chip.plan_enumeration == PlanEnumeration.ELK:
        del fields["plan_enumeration"]  # elk's own enumeration: the keys points had before the field existed
    return json.loads(json.dumps(fields, sort_keys=True))


def _designs(spec: Any) -> tuple[str, ...]:
    """Canonical design tuple, in the registry's order (so ``ideal,basic`` == ``basic,ideal``)."""
    from solvers.registry import parse_designs
    if not isinstance(spec, str):
        raise StudyError(f"designs must be a comma-separated string, got {spec!r}")
    try:
        names = parse_designs(spec)  # the same names and errors as elk.compile
    except ElkError as err:
        raise StudyError(str(err)) from None
    return tuple(sorted(names, key=DESIGNS.index))
