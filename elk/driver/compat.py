"""Compile in the artifact-compatible mode (elk.compat): the paper's designs as the Elk artifact computes them.

Separate from ``elk.compile`` because the mode gives designs different chips:
the artifact truncates the per-core load bandwidth for Basic, Static and
ELK-Dyn only (``elk.compat.design_chip``), so each design gets the workload of
its own chip. Plan tables do not depend on that rate and are built once.
Placement and bounds are left out: the artifact has neither, and the mode
exists to compare numbers with it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from elk.chip import Chip, resolve_chip
from elk.compat import Compat, check_request, design_chip
from elk.ir import Program
from elk.schedule import NocMode
from elk.simulator import SimResult, simulate
from elk.workload import Workload
from solvers.registry import PAPER_DESIGNS

#: The designs of the paper, the ones the artifact computes.


@dataclass
class CompatDesign:
    """One design's schedule judged by the simulator on the chip the mode gives it."""

    name: str
    chip: Chip
    sim: SimResult
    seconds: float

    @property
    def latency_ms(self) -> float:
        return self.sim.latency_ms


@dataclass
class CompatResult:
    model: str
    compat: Compat
    program: Program
    designs: dict[str, CompatDesign]
    seconds: float

    def latencies(self) -> dict[str, float]:
        return {name: d.latency_ms for name, d in self.designs.items()}


def compat_program(model: str | Path | Program, compat: Compat, *, batch: int = 32, seq: int = 2048,
                   mode: str = "decode") -> Program:
    """The program of ``model``: an artifact graph file is read with the parser's quirks iff the mode says so."""
    if isinstance(model, Program):
        return model
    from elk.graphs.artifact import load_artifact_graph
    from elk.graphs.zoo import artifact_graph_path, build_program
    graph = artifact_graph_path(model)
    if graph is not None:
        return load_artifact_graph(graph, batch=batch, seq=seq, mode=mode, quirks=compat.graph_quirks)
    return build_program(model, batch=batch, seq=seq, mode=mode)


#: ELK-Full's NoC modes in the compatible mode: the paper's stretch and push, and hybrid; not yield, which moves
#: rigid loads out of the way of exchange-bound operators and is elk's own correction of the paper's passes
COMPAT_FULL_MODES = (NocMode.STRETCH, NocMode.PUSH, NocMode.HYBRID)


def paper_design(name: str):
    """The paper's design ``name``: elk's, except that ELK-Full keeps the paper's one interconnect share limit
    (elk's searches several under rigid loads, which the compatible mode always uses)."""
    from solvers.registry import HEURISTIC_DESIGNS
    if name == "elk-full":
        from solvers.schedule.designs import PAPER_THETA, elk_full
        return lambda w: elk_full(w, thetas=(PAPER_THETA,), modes=COMPAT_FULL_MODES,
                                  screen_modes=(NocMode.STRETCH, NocMode.PUSH), group_thetas=None)
    return HEURISTIC_DESIGNS[name]


def compile_compat(model: str | Path | Program, compat: Compat, *, chip: str | Chip | None = None,
                   batch: int = 32, seq: int = 2048, mode: str = "decode",
                   designs: tuple[str, ...] = PAPER_DESIGNS) -> CompatResult:
    """Every design of ``designs`` on ``model`` with ``compat``'s corrections undone, timed by the simulator.

    Raises ``ChipConfigError`` before building anything when the chip is one
    the mode cannot honour (a mesh).
    """
    started = time.perf_counter()
    base = resolve_chip(chip)
    check_request(compat, topology=base.topology.kind)
    unknown = [d for d in designs if d not in PAPER_DESIGNS]
    if unknown:
        from elk.errors import SolverConfigError
        raise SolverConfigError(f"the artifact-compatible mode runs the paper's designs only "
                                f"({', '.join(PAPER_DESIGNS)}), not {', '.join(unknown)}")
    program = compat_program(model, compat, batch=batch, seq=seq, mode=mode)
    workloads: dict[Chip, Workload] = {}
    results: dict[str, CompatDesign] = {}
    for name in designs:
        t0 = time.perf_counter()
        the_chip = design_chip(base, compat, name)
        if the_chip not in workloads:
            workloads[the_chip] = Workload.build(program, the_chip)
        workload = workloads[the_chip]
        sim = simulate(workload, paper_design(name)(workload))
        results[name] = CompatDesign(name, the_chip, sim, time.perf_counter() - t0)
    return CompatResult(program.name, compat, program, results, time.perf_counter() - started)


__all__ = ["CompatDesign", "CompatResult", "PAPER_DESIGNS", "compat_program", "compile_compat"]
