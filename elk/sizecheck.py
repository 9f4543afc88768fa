"""Operators too large for the chip, found from their sizes alone, before any plan table is built.

Every element of every tensor an operator touches is in some core's SRAM while it runs, so no
partition plan needs fewer than ``ceil(total tensor bytes / cores)`` bytes on its fullest core.
On the zoo's models this bound equals the smallest footprint the plan enumeration finds, so
checking it first refuses an impossible size (``--batch 1000000000``) in milliseconds with the
same message the tables would give after minutes of enumeration (and a cache full of tables).
"""
from __future__ import annotations

import math

from elk.chip import Chip
from elk.errors import OperatorDoesNotFitError
from elk.ir import Operator, Program


def min_footprint_bound(op: Operator, cores: int) -> int:
    """Bytes the fullest core holds at least, whatever the plan: every tensor spread over every core."""
    total = sum(op.tensor_elements(t) * op.bytes_per_element for t in (op.output, *op.inputs))
    return math.ceil(total / cores)


def plural(n: int, word: str) -> str:
    """``1 core``, ``2 cores``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def check_program_fits(program: Program, chip: Chip) -> None:
    """Raise OperatorDoesNotFitError for the operator whose bound is furthest over SRAM, naming it."""
    worst: tuple[int, Operator] | None = None
    seen = set()
    for op in program.ops:
        if op.signature in seen:
            continue
        seen.add(op.signature)
        need = min_footprint_bound(op, chip.cores)
        if need > chip.sram_per_core and (worst is None or need > worst[0]):
            worst = (need, op)
    if worst is None:
        return
    need, op = worst
    like = sum(1 for o in program.ops if o.signature == op.signature) - 1
    more = f" and {like} more like it" if like else ""
    raise OperatorDoesNotFitError(
        f"operator {op.name}{more}: {op.signature.describe()} needs at least {need} bytes per core even fully "
        f"partitioned over {plural(chip.cores, 'core')}, but a core has {chip.sram_per_core} bytes of SRAM",
        op.signature)


__all__ = ["min_footprint_bound", "check_program_fits", "plural"]
