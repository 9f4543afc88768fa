"""The chip as data: a frozen, validated description of an ICCA chip.

Units are SI throughout (bytes, bytes per second, hertz); times inside elk are
chip clock cycles. The Elk artifact quotes HBM bandwidth in "GB/s" that are
really MiB per millisecond (1.048576e9 B/s); :data:`ARTIFACT_GBPS` converts
when a user wants to reproduce its numbers exactly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from elk.errors import ChipConfigError
from elk.jsonsafe import loads_json, loads_toml

#: One artifact "GB/s" in bytes per second (it is MiB per millisecond).
ARTIFACT_GBPS = 1024 * 1024 * 1000

TOPOLOGIES = ("all-to-all", "mesh")


class LoadModel(str, Enum):
    """How an HBM load may use its interval (docs/design.md §5.1; the simulator checks either exactly).

    ``fluid``: its rate may vary inside the interval (at most the HBM
    bandwidth), so it can pause while the running operator exchanges data:
    the IPU's bulk-synchronous exchange phases own the fabric and HBM streams
    are throttled DMA. ``rigid``: one constant rate for the whole interval
    (conservative: every rigid-valid schedule is fluid-valid).
    """

    FLUID = "fluid"
    RIGID = "rigid"


LOAD_MODELS = tuple(m.value for m in LoadModel)


class PlanEnumeration(str, Enum):
    """Which temporal plans an operator's plan table is built from (elk.plans).

    ``elk``: a variable is split only along indices it has. ``artifact``: the
    Elk artifact's enumeration, which sorts its per-index candidate lists and
    so hands each index another index's candidates (ELK_ARTIFACT_NOTES.md
    §3.8); only for reproducing the artifact's numbers (elk.compat), never the
    default.
    """

    ELK = "elk"
    ARTIFACT = "artifact"


PLAN_ENUMERATIONS = tuple(m.value for m in PlanEnumeration)


@dataclass(frozen=True)
class Topology:
    """How cores are connected.

    ``all-to-all`` is the IPU exchange: any core reaches any other at the
    per-core shift rate. ``mesh`` is a rows x cols grid of point-to-point links
    of ``link_bytes_per_cycle`` each way; its costs depend on hop distance (see
    :mod:`elk.topology`).
    """

    kind: str = "all-to-all"
    rows: int = 0
    cols: int = 0
    link_bytes_per_cycle: float = 32.0

    def describe(self) -> str:
        """``all-to-all`` or ``mesh RxC (B B/cycle links)``, for reports."""
        if self.kind == "mesh":
            return f"mesh {self.rows}x{self.cols} ({self.link_bytes_per_cycle:g} B/cycle links)"
        return "all-to-all"


@dataclass(frozen=True)
class Chip:
    """An ICCA chip (or a multi-chip system treated as one pool of cores).

    Defaults are the IPU-POD4 of the Elk paper: four IPU-Mk2 chips.
    """

    name: str = "ipu-pod4"
    cores: int = 5888
    sram_per_core: int = 624 * 1024
    clock_hz: float = 1.325e9
    hbm_bytes_per_s: float = 16e12
    #: Cycles to move one byte between cores (0.56 per 2-byte element).
    shift_cycles_per_byte: float = 0.28
    #: One barrier synchronisation.
    sync_cycles: float = 118.0
    #: Interconnect bandwidth available to spread HBM data over the cores.
    noc_load_bytes_per_s_per_core: float = 5.5e9
    #: Cores on one physical chip; plans spanning more pay ``inter_chip_comm_factor``.
    cores_per_chip: int = 1472
    inter_chip_comm_factor: float = 1.25
    #: Design-space knobs: >1 means a faster interconnect / faster cores.
    noc_scale: float = 1.0
    compute_scale: float = 1.0
    topology: Topology = field(default_factory=Topology)
    #: how loads use their intervals (scheduling and checking only: plan tables do not depend on it)
    load_model: LoadModel = LoadModel.FLUID
    #: which temporal plans tables are built from (the artifact's only to reproduce its numbers)
    plan_enumeration: PlanEnumeration = PlanEnumeration.ELK

    def __post_init__(self) -> None:
        if not isinstance(self.plan_enumeration, PlanEnumeration):
            if self.plan_enumeration not in PLAN_ENUMERATIONS:
                raise ChipConfigError(f"chip '{self.name}': unknown plan enumeration {self.plan_enumeration!r} "
                                      f"(known: {', '.join(PLAN_ENUMERATIONS)})")
            object.__setattr__(self, "plan_enumeration", PlanEnumeration(self.plan_enumeration))
        if not isinstance(self.load_model, LoadModel):
            if self.load_model not in LOAD_MODELS:
                raise ChipConfigError(f"chip '{self.name}': unknown load model {self.load_model!r} "
                                      f"(known: {', '.join(LOAD_MODELS)})")
            object.__setattr__(self, "load_model", LoadModel(self.load_model))
        _validate(self)

    # ---- derived quantities -------------------------------------------------
    @property
    def hbm_bytes_per_cycle(self) -> float:
        """HBM bandwidth per clock cycle (bytes)."""
        return self.hbm_bytes_per_s / self.clock_hz

    @property
    def sram_total(self) -> int:
        """SRAM of all cores together (bytes)."""
        return self.sram_per_core * self.cores

    @property
    def multi_chip(self) -> bool:
        """Whether the cores span more than one physical chip (plans across chips pay ``inter_chip_comm_factor``)."""
        return self.cores > self.cores_per_chip

    @property
    def peak_flops(self) -> float:
        """fp16 peak the matmul cost model tends to: 64 MAC/cycle/core."""
        return self.cores * 2 * 64 * self.clock_hz * self.compute_scale

    def cycles_to_ms(self, cycles: float) -> float:
        """Cycles of this chip's clock in milliseconds."""
        return cycles / self.clock_hz * 1e3

    def plan_key(self) -> tuple:
        """Everything a per-operator plan table depends on (for caching)."""
        return (self.cores, self.sram_per_core, self.shift_cycles_per_byte, self.sync_cycles,
                self.cores_per_chip, self.inter_chip_comm_factor, self.noc_scale,
                self.compute_scale, self.topology) + self._enumeration_suffix()

    def enumeration_key(self) -> tuple:
        """``plan_key()`` without the compute and NoC scales.

        Chips that agree on it enumerate the same plans with the same costs
        before the scales divide them, so one enumeration can serve a whole
        compute/NoC sweep (``elk.plantable.build_plan_tables``).
        """
        return (self.cores, self.sram_per_core, self.shift_cycles_per_byte, self.sync_cycles,
                self.cores_per_chip, self.inter_chip_comm_factor, self.topology) + self._enumeration_suffix()

    def _enumeration_suffix(self) -> tuple:
        """The plan enumeration as a key part, empty for elk's own: default tables keep their cache keys."""
        if self.plan_enumeration == PlanEnumeration.ELK:
            return ()
        return (("plan_enumeration", self.plan_enumeration.value),)

    def with_overrides(self, **changes: Any) -> "Chip":
        """A copy with some fields changed; validated like any other chip. ``topology`` may be a topology's name
        (``"mesh"``: the most square shape for the core count), as the knobs take it."""
        if isinstance(changes.get("topology"), str):
            kind = changes.pop("topology")
            changes["topology_kind"] = kind
            if kind == "mesh":
                changes.update(rows=0, cols=0)
        topo_changes = {k: changes.pop(k) for k in list(changes)
                        if k in ("topology_kind", "rows", "cols", "link_bytes_per_cycle")}
        unknown = set(changes) - {f.name for f in dataclasses.fields(Chip)}
        if unknown:
            raise ChipConfigError(f"unknown chip field(s): {', '.join(sorted(unknown))}")
        if topo_changes:
            topo = self.topology
            kind = topo_changes.pop("topology_kind", topo.kind)
            topo = dataclasses.replace(topo, kind=kind, **topo_changes)
            if topo.kind == "mesh" and (topo.rows == 0 or topo.cols == 0):
                cores = changes.get("cores", self.cores)
                topo = dataclasses.replace(topo, **dict(zip(("rows", "cols"), default_mesh_shape(cores))))
            changes["topology"] = topo
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line naming the chip and its knobs, as reports print it."""
        return (f"{self.name}: {self.cores} cores x {self.sram_per_core / 1024:g} KiB SRAM, "
                f"HBM {self.hbm_bytes_per_s / 1e12:g} TB/s, {self.topology.describe()}"
                + (f", NoC x{self.noc_scale:g}" if self.noc_scale != 1 else "")
                + (f", compute x{self.compute_scale:g}" if self.compute_scale != 1 else "")
                + f", {self.load_model.value} loads"
                + (f", {self.plan_enumeration.value} plan enumeration"
                   if self.plan_enumeration != PlanEnumeration.ELK else ""))

    def to_dict(self) -> dict:
        """The chip as plain data (JSON reports): every field, plus ``hbm_tbps``, the load model by name."""
        d = dataclasses.asdict(self)
        d["hbm_tbps"] = self.hbm_bytes_per_s / 1e12
        d["load_model"] = self.load_model.value
        d["plan_enumeration"] = self.plan_enumeration.value
        return d


def default_mesh_shape(cores: int) -> tuple[int, int]:
    """The most square rows x cols factorisation of ``cores`` (rows <= cols)."""
    best = (1, cores)
    for r in range(1, int(math.isqrt(cores)) + 1):
        if cores % r == 0:
            best = (r, cores // r)
    return best


def _validate(chip: Chip) -> None:
    def positive(name: str, value: float) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or value <= 0:
            raise ChipConfigError(f"chip '{chip.name}': {name} must be a positive number, got {value!r}")

    for name in ("cores", "sram_per_core", "cores_per_chip"):
        value = getattr(chip, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ChipConfigError(f"chip '{chip.name}': {name} must be an integer, got {value!r}")
    for name in ("cores", "sram_per_core", "clock_hz", "hbm_bytes_per_s", "shift_cycles_per_byte",
                 "noc_load_bytes_per_s_per_core", "cores_per_chip", "noc_scale", "compute_scale",
                 "inter_chip_comm_factor"):
        positive(name, getattr(chip, name))
    if isinstance(chip.sync_cycles, bool) or not isinstance(chip.sync_cycles, (int, float)) \
            or not math.isfinite(chip.sync_cycles) or chip.sync_cycles < 0:
        raise ChipConfigError(f"chip '{chip.name}': sync_cycles must be >= 0 and finite, got {chip.sync_cycles!r}")
    if chip.inter_chip_comm_factor < 1:
        raise ChipConfigError(f"chip '{chip.name}': inter_chip_comm_factor must be >= 1")
    topo = chip.topology
    if not isinstance(topo, Topology):
        raise ChipConfigError(f"chip '{chip.name}': topology must be one of {', '.join(TOPOLOGIES)} "
                              f"or a Topology, got {topo!r}")
    if topo.kind not in TOPOLOGIES:
        raise ChipConfigError(f"chip '{chip.name}': unknown topology '{topo.kind}' "
                              f"(choose from {', '.join(TOPOLOGIES)})")
    if topo.kind == "mesh":
        if not (isinstance(topo.rows, int) and isinstance(topo.cols, int)) or topo.rows < 1 or topo.cols < 1:
            raise ChipConfigError(f"chip '{chip.name}': mesh needs positive integer rows and cols, "
                                  f"got {topo.rows}x{topo.cols}")
        if topo.rows * topo.cols != chip.cores:
            raise ChipConfigError(f"chip '{chip.name}': mesh {topo.rows}x{topo.cols} has "
                                  f"{topo.rows * topo.cols} cores but the chip has {chip.cores}")
        positive("link_bytes_per_cycle", topo.link_bytes_per_cycle)


def knob_overrides(base: "Chip", *, cores: int | None = None, sram_kib: float | None = None,
                   hbm_tbps: float | None = None, noc_scale: float | None = None, noc_tbps: float | None = None,
                   compute_scale: float | None = None, topology: str | None = None,
                   mesh: str | tuple[int, int] | None = None,
                   link_bytes_per_cycle: float | None = None, load_model: str | None = None) -> dict[str, Any]:
    """The ``Chip.with_overrides`` changes that the user-facing knobs ask of ``base`` (None = unchanged).

    The one translation from the knobs users type (CLI flags, study axes) to
    chip fields: KiB to bytes, TB/s to bytes/s, a NoC bandwidth in TB/s to a
    scale of ``base``'s, ``ROWSxCOLS`` to a mesh, and a mesh re-derived for a
    new core count when no shape is given.
    """
    changes: dict[str, Any] = {}
    if cores is not None:
        changes["cores"] = cores
    if sram_kib is not None:
        changes["sram_per_core"] = int(sram_kib * 1024)
    if hbm_tbps is not None:
        changes["hbm_bytes_per_s"] = float(hbm_tbps) * 1e12
    if noc_scale is not None and noc_tbps is not None:
        raise ChipConfigError("give noc_scale or noc_tbps, not both (they are the same knob)")
    if noc_scale is not None:
        changes["noc_scale"] = float(noc_scale)
    if noc_tbps is not None:
        n = cores if cores is not None else base.cores
        changes["noc_scale"] = float(noc_tbps) * 1e12 / (n * base.noc_load_bytes_per_s_per_core)
    if compute_scale is not None:
        changes["compute_scale"] = float(compute_scale)
    if mesh is not None:
        if topology == "all-to-all":
            raise ChipConfigError(f"mesh={mesh!r} contradicts topology='all-to-all'")
        rows, cols = parse_mesh(mesh)
        changes.update(topology_kind="mesh", rows=rows, cols=cols)
    elif topology is not None:
        if topology not in TOPOLOGIES:
            raise ChipConfigError(f"unknown topology {topology!r} (known: {', '.join(TOPOLOGIES)})")
        changes["topology_kind"] = topology
        if topology == "mesh":
            changes.update(rows=0, cols=0)  # the most square shape for the core count
    if link_bytes_per_cycle is not None:
        changes["link_bytes_per_cycle"] = float(link_bytes_per_cycle)
    if load_model is not None:
        if load_model not in LOAD_MODELS:
            raise ChipConfigError(f"unknown load model {load_model!r} (known: {', '.join(LOAD_MODELS)})")
        changes["load_model"] = LoadModel(load_model)
    if cores is not None and base.topology.kind == "mesh" and "rows" not in changes:
        changes.update(rows=0, cols=0)  # re-derive the mesh shape for the new core count
    return changes


def parse_mesh(mesh: str | tuple[int, int]) -> tuple[int, int]:
    """``"ROWSxCOLS"`` (or a pair) as two positive integers."""
    try:
        rows, cols = (int(x) for x in (mesh if isinstance(mesh, tuple) else str(mesh).lower().split("x")))
    except (ValueError, TypeError):
        raise ChipConfigError(f"mesh shape must look like ROWSxCOLS, got {mesh!r}") from None
    if rows < 1 or cols < 1:
        raise ChipConfigError(f"mesh shape must be positive, got {mesh!r}")
    return rows, cols


PRESETS: dict[str, Chip] = {
    "ipu-mk2": Chip(name="ipu-mk2", cores=1472),
    "ipu-pod4": Chip(name="ipu-pod4", cores=5888),
}
DEFAULT_CHIP = "ipu-pod4"


def preset(name: str) -> Chip:
    """The named preset chip (``ipu-pod4``, ``ipu-mk2``); an unknown name is a :class:`ChipConfigError`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ChipConfigError(f"unknown chip preset '{name}' (known: {', '.join(PRESETS)})") from None


def chip_from_mapping(data: Mapping[str, Any], source: str = "chip config") -> Chip:
    """Build a chip from a parsed TOML/JSON mapping.

    Optional ``base = "<preset>"`` starts from a preset; ``hbm_tbps`` is
    accepted as a friendlier spelling of ``hbm_bytes_per_s``; a ``[topology]``
    table sets kind/rows/cols/link_bytes_per_cycle.
    """
    if not isinstance(data, Mapping):
        raise ChipConfigError(f"{source}: expected a table of chip fields")
    data = dict(data)
    base_name = data.pop("base", DEFAULT_CHIP)
    if not isinstance(base_name, str):
        raise ChipConfigError(f"{source}: base must be a preset name, got {base_name!r}")
    base = preset(base_name)
    if "hbm_tbps" in data:
        data["hbm_bytes_per_s"] = _number(data.pop("hbm_tbps"), "hbm_tbps", source) * 1e12
    if "sram_kib" in data:
        data["sram_per_core"] = int(_number(data.pop("sram_kib"), "sram_kib", source) * 1024)
    if "cores" in data and (isinstance(data["cores"], bool) or not isinstance(data["cores"], int)):
        raise ChipConfigError(f"{source}: cores must be an integer, got {data['cores']!r}")
    topo_data = data.pop("topology", None)
    fields = {f.name for f in dataclasses.fields(Chip)} - {"topology"}
    unknown = set(data) - fields
    if unknown:
        raise ChipConfigError(f"{source}: unknown chip field(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = dict(data)
    if topo_data is not None:
        if isinstance(topo_data, str):
            topo_data = {"kind": topo_data}
        if not isinstance(topo_data, Mapping):
            raise ChipConfigError(f"{source}: 'topology' must be a table or a string")
        tfields = {f.name for f in dataclasses.fields(Topology)}
        bad = set(topo_data) - tfields
        if bad:
            raise ChipConfigError(f"{source}: unknown topology field(s): {', '.join(sorted(bad))}")
        topo = Topology(**{**dataclasses.asdict(base.topology), **topo_data})
        if topo.kind == "mesh" and (topo.rows == 0 or topo.cols == 0):
            rows, cols = default_mesh_shape(changes.get("cores", base.cores))
            topo = dataclasses.replace(topo, rows=rows, cols=cols)
        changes["topology"] = topo
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as exc:  # pragma: no cover - guarded by the field check above
        raise ChipConfigError(f"{source}: {exc}") from None


def _number(value: Any, name: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ChipConfigError(f"{source}: {name} must be a number (finite), got {value!r}")
    return float(value)


def load_chip(path: str | Path) -> Chip:
    """Load a chip from a ``.toml`` or ``.json`` file."""
    path = Path(path)
    data = load_chip_mapping(path)
    data.setdefault("name", path.stem)
    return chip_from_mapping(data, source=str(path))


def load_chip_mapping(path: Path) -> dict:
    """The chip fields a ``.toml`` or ``.json`` chip file holds (its ``[chip]`` table if it has one)."""
    if not path.is_file():
        raise ChipConfigError(f"chip config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = loads_json(text, ChipConfigError, f"chip config {path}")
        else:
            data = loads_toml(text, ChipConfigError, f"chip config {path}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ChipConfigError(f"malformed chip config {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ChipConfigError(f"malformed chip config {path}: expected a table of chip fields, "
                              f"got {type(data).__name__}")
    if "chip" in data and isinstance(data["chip"], Mapping):
        data = data["chip"]
    return dict(data)


def resolve_chip(spec: str | Chip | None) -> Chip:
    """A preset name, a path to a TOML/JSON file, or a Chip."""
    if spec is None:
        return preset(DEFAULT_CHIP)
    if isinstance(spec, Chip):
        return spec
    if spec in PRESETS:
        return PRESETS[spec]
    if spec.endswith((".toml", ".json")) or Path(spec).is_file():
        return load_chip(spec)
    raise ChipConfigError(f"unknown chip preset '{spec}' (known: {', '.join(PRESETS)}; "
                          f"or give a path to a .toml/.json chip file)")
