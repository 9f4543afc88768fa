"""Independent backward passes on every core: a design's search fans its passes out to forked workers.

Static's split sweep and ELK-Full's order screening are hundreds of passes
that share nothing but the (read-only) workload. Forked workers inherit the
workload and the pass function from this process (nothing large is pickled),
return one small value per pass, in order, so the result is the same as a
serial loop's. Serial when ``workers`` is 1 (a study worker passes 1: its
siblings use the other cores), off Linux, inside a daemonic process, or for a
handful of passes; ``workers=None`` is elk.tablecache.default_workers().
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Callable, TypeVar

from elk.tablecache import default_workers

T = TypeVar("T")
_TASK: Callable[[int], object] | None = None


def _call(index: int):
    assert _TASK is not None
    return _TASK(index)


def _init(owner: int) -> None:
    from elk.procs import die_with_parent
    die_with_parent(owner)


def map_passes(task: Callable[[int], T], count: int, workers: int | None = None) -> list[T]:
    """``[task(0), ..., task(count - 1)]``, on forked workers when that pays."""
    global _TASK
    workers = default_workers() if workers is None else workers
    if (workers <= 1 or count < 8 or sys.platform != "linux" or multiprocessing.current_process().daemon
            or _TASK is not None):  # no nesting: a task that fans out again runs its passes here
        return [task(k) for k in range(count)]
    _TASK = task
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(workers, count), initializer=_init, initargs=(os.getpid(),)) as pool:
            return pool.map(_call, range(count), chunksize=max(1, count // (4 * workers)))
    finally:
        _TASK = None
