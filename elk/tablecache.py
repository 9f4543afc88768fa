"""Plan tables kept across runs, and built on every core when missing.

A table depends only on the operator's shape signature and the chip fields in
``Chip.plan_key()`` (not on HBM bandwidth), so a sweep over bandwidths or
designs builds each table once. Tables are a few kilobytes: they are stored
as ``.npz`` files named by a hash of (cost-model version, signature, chip key).
The file also holds that key in full and a load checks it: a file copied over
another, or a hash collision, is rebuilt instead of trusted.
Set ``ELK_NO_CACHE=1`` to disable the disk cache, ``ELK_CACHE_DIR`` to move it.

This module stores and loads arrays; it does not know the table type (the
caller, :mod:`elk.plantable`, hands in a builder and wraps what it loads).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np

from elk.atomic import replacing
from elk.chip import Chip
from elk.ir import OpSignature

T = TypeVar("T")
#: a table-building job: (signature, chip) or (signature, chips of one enumeration family)
Job = TypeVar("Job", bound=tuple)

#: Bump whenever plan enumeration or costing changes what a table holds.
COST_MODEL_VERSION = 4

_ARRAYS = ("cold", "hot", "time", "comp", "comm", "warmup", "spatial", "hot_temporal", "cold_temporal",
           "frontier_hot", "frontier_time")


def cache_dir() -> Path | None:
    """Where plan tables are cached (``ELK_CACHE_DIR``, else ~/.cache/elk), or None when ``ELK_NO_CACHE`` is set."""
    if os.environ.get("ELK_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("ELK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "elk")
    return Path(root) / "tables"


def key_text(sig: OpSignature, chip: Chip) -> str:
    """Everything a stored table depends on, spelled out (stored in the file and checked on load)."""
    return repr((COST_MODEL_VERSION, sig, chip.plan_key()))


def table_key(sig: OpSignature, chip: Chip) -> str:
    """The file name of a table: a hash of everything it depends on (operator signature, chip plan key, code version)."""
    return hashlib.sha256(key_text(sig, chip).encode()).hexdigest()[:32]


def load(sig: OpSignature, chip: Chip) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, meta) of the stored table, or None if absent, damaged, or stored under another key."""
    root = cache_dir()
    if root is None:
        return None
    path = root / f"{table_key(sig, chip)}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in _ARRAYS}
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None  # a damaged or foreign file: rebuild
    if not isinstance(meta, dict) or meta.get("key") != key_text(sig, chip):
        return None  # another table's file (copied over, or an older format): rebuild
    return arrays, meta


def store(arrays: dict[str, np.ndarray], meta: dict, sig: OpSignature, chip: Chip) -> None:
    """Save a built table atomically under its key (nothing when the cache is off; a failed write is not an error)."""
    root = cache_dir()
    if root is None:
        return
    try:
        text = json.dumps({**meta, "key": key_text(sig, chip)})
        with replacing(root / f"{table_key(sig, chip)}.npz") as tmp, open(tmp, "xb") as fh:
            np.savez_compressed(fh, meta=np.array(text), **{k: arrays[k] for k in _ARRAYS})
    except OSError:
        pass  # caching is an optimisation; a read-only home must not break compiling


def stored_arrays() -> tuple[str, ...]:
    """Names of the arrays a stored table holds."""
    return _ARRAYS


def default_workers() -> int:
    """Processes for building tables: ``ELK_WORKERS`` if set, else the smaller of 2 and the CPU count."""
    env = os.environ.get("ELK_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def build_many(build: Callable[[Job], T], jobs: Iterable[Job], workers: int | None = None) -> list[T]:
    """``build`` each (signature, chip) or (signature, chips) job, on several processes when worthwhile.

    Results come back in the order of ``jobs``; the largest shapes are started first.
    ``build`` must be a module-level function (it is sent to worker processes).
    """
    jobs = list(jobs)
    by_size = sorted(range(len(jobs)), key=lambda k: -float(np.prod(jobs[k][0].lengths)))
    workers = default_workers() if workers is None else workers
    big = [j for j in jobs if float(np.prod(j[0].lengths)) > 1e6]
    if workers <= 1 or len(big) < 2 or sys.platform != "linux":
        return [build(j) for j in jobs]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        built = list(pool.map(build, [jobs[k] for k in by_size]))
    out: list = [None] * len(jobs)
    for k, table in zip(by_size, built):
        out[k] = table
    return out
