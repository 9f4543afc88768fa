"""elk: an optimizing compiler for inter-core connected AI chips.

Quick use from Python::

    import elk
    result = elk.compile("llama2-13b", chip="ipu-pod4", batch=32, seq=2048)
    print(result.to_frame())

See README.md for the concepts (plan tables, schedules, the simulator's rules).
"""
from elk.api import CompileResult, DesignResult, compile
from elk.chip import PRESETS, Chip, Topology, load_chip, preset, resolve_chip
from elk.errors import ElkError
from elk.ir import OpKind, Operator, Program, einsum_op
from elk.schedule import Schedule
from elk.simulator import SimResult, simulate
from elk.workload import Workload

__version__ = "0.1.0"

__all__ = ["compile", "CompileResult", "DesignResult", "Chip", "Topology", "PRESETS", "preset", "load_chip",
           "resolve_chip", "ElkError", "OpKind", "Operator", "Program", "einsum_op", "Schedule", "SimResult",
           "simulate", "Workload", "__version__"]
