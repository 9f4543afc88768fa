"""elk: an optimizing compiler for inter-core connected AI chips.

Quick use from Python::

    import elk
    result = elk.compile("llama2-13b", chip="ipu-pod4", batch=32, seq=2048)
    print(result.to_frame())

``import elk`` loads the core only (chip, IR, plan tables, schedule,
simulator); ``elk.compile`` and its result types are loaded on first use from
:mod:`elk.driver.api`, which brings in the strategies. See README.md for the
concepts (plan tables, schedules, the simulator's rules).
"""
from typing import Any

from elk.chip import PRESETS, Chip, Topology, load_chip, preset, resolve_chip
from elk.errors import ElkError
from elk.ir import OpKind, Operator, Program, einsum_op
from elk.schedule import Schedule
from elk.simulator import SimResult, simulate
from elk.workload import Workload

__version__ = "0.1.0"

_DRIVER = ("compile", "CompileResult", "DesignResult")

__all__ = ["compile", "CompileResult", "DesignResult", "Chip", "Topology", "PRESETS", "preset", "load_chip",
           "resolve_chip", "ElkError", "OpKind", "Operator", "Program", "einsum_op", "Schedule", "SimResult",
           "simulate", "Workload", "__version__"]


def __getattr__(name: str) -> Any:
    """``elk.compile`` and its result types, imported when first used (they pull in the strategies)."""
    if name in _DRIVER:
        from elk.driver import api
        return getattr(api, name)
    raise AttributeError(f"module 'elk' has no attribute {name!r}")
