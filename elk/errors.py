"""Errors that elk raises on purpose.

Every problem a user can cause (a bad model file, an impossible chip, a solver
option that does not exist) surfaces as an :class:`ElkError` subclass whose
message names the offending thing. The CLI prints that message on one line and
exits non-zero; anything else escaping is a bug in elk.
"""
from __future__ import annotations


class ElkError(Exception):
    """Base class: a problem with the user's input or request, not an elk bug."""


class ChipConfigError(ElkError):
    """The chip description is malformed or physically impossible."""


class ModelConfigError(ElkError):
    """The model name or architecture config is unknown or malformed."""


class OperatorDoesNotFitError(ElkError):
    """An operator cannot fit in per-core SRAM even when fully partitioned.

    Carries the operator's shape signature in ``args`` (so it survives a
    process pool) for the caller to name the operator.
    """

    def __init__(self, message: str, signature: object = None):
        super().__init__(message, signature)

    @property
    def signature(self) -> object:
        """The signature of the operator that does not fit."""
        return self.args[1]

    def __str__(self) -> str:
        return str(self.args[0])


class ScheduleError(ElkError):
    """A strategy could not produce a schedule (e.g. nothing fits in SRAM)."""


class SolverConfigError(ElkError):
    """A solver name, parameter or limit is invalid."""


class AllocationError(ElkError):
    """Base class for on-chip memory allocation problems (input or placement)."""


class AllocationInputError(AllocationError):
    """An allocation problem is malformed: a bad CSV row, a buffer larger than the capacity, duplicate ids."""


class InvalidPlacementError(AllocationError):
    """A placement breaks the allocation rules: overlap, over capacity, misaligned, or a fixed buffer moved."""
