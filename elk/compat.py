"""The artifact-compatible mode: what elk changes to reproduce the Elk artifact's numbers, bugs included.

elk's Basic and Static follow the artifact's scheduling rules; its numbers
differ from the artifact's because of what the schedulers are given. Each of
those differences is a deliberate elk correction, and each is one switch here:

- ``plan_enumeration``: the artifact's temporal-plan enumeration, which sorts
  its per-index candidate lists and so splits tensors along indices they lack
  (``PlanEnumeration.ARTIFACT``, ELK_ARTIFACT_NOTES.md §3.8). It leaves slow
  plans on the Pareto set that the fixed max-cold rule then picks.
- ``graph_quirks``: an artifact graph file is read the way the artifact's
  parser reads it (``load_artifact_graph(quirks=True)``): among others it
  reads a 2-byte attention mask from HBM between the attention matmuls, where
  Basic stops preloading.
- ``units``: HBM bandwidth in the artifact's "GB/s", which are MiB per ms
  (x 1.048576); per-core interconnect for loads in the same unit, truncated to
  an integer (5 for 5.5) for Basic, Static and ELK-Dyn as the artifact does,
  kept at 5.5 for the other designs.
- ``rigid_loads``: every load at one constant rate over its interval
  (``LoadModel.RIGID``), the artifact's rule.

``ARTIFACT`` has every switch on and ``ELK`` none; ``STEPS`` turns them on one
at a time (the reproduction table of experiments/reproduce_artifact.py). The
mode is never the default: it reproduces the artifact, not the hardware.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from elk.chip import ARTIFACT_GBPS, Chip, LoadModel, PlanEnumeration
from elk.errors import ChipConfigError

#: Designs for which the artifact truncates the per-core load bandwidth to an integer ("int(5.5)").
TRUNCATED_NOC_DESIGNS = ("basic", "static", "elk-dyn")

#: Names of the compatibility modes the command line accepts.
COMPAT_MODES = ("artifact",)


@dataclass(frozen=True)
class Compat:
    """Which of elk's corrections are undone, one switch each (all off: elk itself)."""

    plan_enumeration: bool = False
    graph_quirks: bool = False
    units: bool = False
    rigid_loads: bool = False

    @property
    def any(self) -> bool:
        return any(dataclasses.astuple(self))

    def describe(self) -> str:
        on = [f.name.replace("_", " ") for f in dataclasses.fields(self) if getattr(self, f.name)]
        return "artifact-compatible: " + ", ".join(on) if on else "elk"


ELK = Compat()
ARTIFACT = Compat(plan_enumeration=True, graph_quirks=True, units=True, rigid_loads=True)

#: The corrections undone one at a time, cumulatively, from elk to the artifact (label, mode).
STEPS: tuple[tuple[str, Compat], ...] = (
    ("elk default", ELK),
    ("+ artifact plan enumeration", Compat(plan_enumeration=True)),
    ("+ artifact graph, parser quirks", Compat(plan_enumeration=True, graph_quirks=True)),
    ("+ artifact units", Compat(plan_enumeration=True, graph_quirks=True, units=True)),
    ("+ rigid loads (= compatible mode)", ARTIFACT),
)


def resolve(name: str | None) -> Compat:
    """The mode a ``--compat`` value names (None: elk)."""
    if name is None:
        return ELK
    if name == "artifact":
        return ARTIFACT
    raise ChipConfigError(f"unknown compatibility mode {name!r} (known: {', '.join(COMPAT_MODES)})")


def check_request(compat: Compat, *, topology: str | None = None, mesh: object = None,
                  load_model: str | None = None) -> None:
    """Refuse, before any work, a request the compatible mode cannot honour.

    The artifact models a mesh only as a scalar NoC-to-HBM ratio, never as a
    grid of links, so no mesh shape can be reproduced; with rigid loads on, any
    other load model contradicts the mode.
    """
    if not compat.any:
        return
    if mesh is not None or topology == "mesh":
        shape = f" {mesh}" if mesh is not None else ""
        raise ChipConfigError(f"the artifact-compatible mode cannot model mesh{shape}: the artifact has no "
                              f"mesh topology, only an all-to-all chip")
    if compat.rigid_loads and load_model is not None and load_model != LoadModel.RIGID.value:
        raise ChipConfigError(f"the artifact-compatible mode uses rigid loads (the artifact's rule); "
                              f"load model {load_model!r} contradicts it")


def compat_chip(chip: Chip, compat: Compat) -> Chip:
    """``chip`` as the compatible mode sees it, for designs other than Basic, Static and ELK-Dyn.

    The HBM bandwidth is read in the artifact's unit; the per-core interconnect
    rate too. Raises ``ChipConfigError`` for a chip the mode cannot honour.
    """
    if not compat.any:
        return chip
    check_request(compat, topology=chip.topology.kind,
                  load_model=chip.load_model.value if chip.load_model != LoadModel.FLUID else None)
    changes: dict = {}
    if compat.plan_enumeration:
        changes["plan_enumeration"] = PlanEnumeration.ARTIFACT
    if compat.rigid_loads:
        changes["load_model"] = LoadModel.RIGID
    if compat.units:
        changes["hbm_bytes_per_s"] = chip.hbm_bytes_per_s * ARTIFACT_GBPS / 1e9
        changes["noc_load_bytes_per_s_per_core"] = chip.noc_load_bytes_per_s_per_core * ARTIFACT_GBPS / 1e9
    return dataclasses.replace(chip, **changes)


def design_chip(chip: Chip, compat: Compat, design: str) -> Chip:
    """The chip ``design`` runs on in ``compat`` mode: ``compat_chip`` with the artifact's truncated
    per-core load rate (5 instead of 5.5 of its "GB/s") for Basic, Static and ELK-Dyn."""
    chip = compat_chip(chip, compat)
    if compat.units and design in TRUNCATED_NOC_DESIGNS:
        per_core = math.floor(chip.noc_load_bytes_per_s_per_core / ARTIFACT_GBPS) * ARTIFACT_GBPS
        chip = dataclasses.replace(chip, noc_load_bytes_per_s_per_core=float(per_core))
    return chip


__all__ = ["ARTIFACT", "COMPAT_MODES", "Compat", "ELK", "STEPS", "TRUNCATED_NOC_DESIGNS", "check_request",
           "compat_chip", "design_chip", "resolve"]
