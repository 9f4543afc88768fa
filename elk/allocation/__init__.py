"""On-chip memory allocation problems: buffers with fixed live ranges that need addresses.

An allocation problem (dynamic storage allocation) is a set of buffers, each
live over a half-open interval ``[lower, upper)`` and ``size`` address units
tall, optionally with an ``alignment`` (its offset must be a multiple) and a
fixed offset. A placement gives every buffer an offset so that buffers live
at the same time occupy disjoint address ranges ``[offset, offset + size)``
and every ``offset + size <= capacity``. Its *peak* is the largest
``offset + size``.

This package is the problem side only: the data class, the common CSV format
(``id,lower,upper,size[,alignment][,offset]``, as used by MiniMalloc and
idealloc), the validator every placement elk returns must pass, and the
max-load lower bound, in three modules (``problem``, ``csvfile``, ``check``) whose
public names all import from here. Allocators live in ``solvers/`` (``solvers.alloc.allocate``).
"""
from __future__ import annotations

from elk.allocation.check import (first_overlap, is_valid, load_profile, lower_bound, max_load_lower_bound,
                                  maximal_sections, peak_of, validate)
from elk.allocation.csvfile import capacity_from_name, read_csv, read_placement, write_csv
from elk.allocation.problem import (MAX_VALUE, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, STATUSES, AllocationProblem,
                                    AllocationResult)

__all__ = ["MAX_VALUE", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "STATUSES", "AllocationProblem", "AllocationResult",
           "capacity_from_name", "first_overlap", "is_valid", "load_profile", "lower_bound", "max_load_lower_bound",
           "maximal_sections", "peak_of", "read_csv", "read_placement", "validate", "write_csv"]
