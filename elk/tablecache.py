"""Plan tables kept across runs, and built on every core when missing.

A table depends only on the operator's shape signature and the chip fields in
``Chip.plan_key()`` (not on HBM bandwidth), so a sweep over bandwidths or
designs builds each table once. Tables are a few kilobytes: they are stored
as ``.npz`` files named by a hash of (cost-model version, signature, chip key).
Set ``ELK_NO_CACHE=1`` to disable the disk cache, ``ELK_CACHE_DIR`` to move it.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np

from elk.chip import Chip
from elk.ir import OpSignature

#: Bump whenever plan enumeration or costing changes what a table holds.
COST_MODEL_VERSION = 4

_ARRAYS = ("cold", "hot", "time", "comp", "comm", "warmup", "spatial", "hot_temporal", "cold_temporal",
           "frontier_hot", "frontier_time")


def cache_dir() -> Path | None:
    if os.environ.get("ELK_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("ELK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "elk")
    return Path(root) / "tables"


def table_key(sig: OpSignature, chip: Chip) -> str:
    text = repr((COST_MODEL_VERSION, sig, chip.plan_key()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(sig: OpSignature, chip: Chip):
    from elk.plantable import PlanTable
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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged or foreign file: rebuild
    return PlanTable(sig=sig, **arrays, n_plans=meta["n_plans"], n_spatial=meta["n_spatial"],
                     build_seconds=meta["build_seconds"])


def store(table, chip: Chip) -> None:
    root = cache_dir()
    if root is None:
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"n_plans": table.n_plans, "n_spatial": table.n_spatial,
                           "build_seconds": table.build_seconds})
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp.npz")
        os.close(fd)
        np.savez_compressed(tmp, meta=np.array(meta), **{k: getattr(table, k) for k in _ARRAYS})
        os.replace(tmp, root / f"{table_key(table.sig, chip)}.npz")
    except OSError:
        pass  # caching is an optimisation; a read-only home must not break compiling


def _build_one(args: tuple[OpSignature, Chip]):
    from elk.plantable import build_plan_table
    sig, chip = args
    return build_plan_table(sig, chip)


def default_workers() -> int:
    env = os.environ.get("ELK_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def build_many(jobs: Iterable[tuple[OpSignature, Chip]], workers: int | None = None) -> list:
    """Build tables for (signature, chip) jobs, on several processes when worthwhile.

    Results come back in the order of ``jobs``; the largest shapes are started first.
    """
    jobs = list(jobs)
    by_size = sorted(range(len(jobs)), key=lambda k: -float(np.prod(jobs[k][0].lengths)))
    workers = default_workers() if workers is None else workers
    big = [j for j in jobs if float(np.prod(j[0].lengths)) > 1e6]
    if workers <= 1 or len(big) < 2 or sys.platform != "linux":
        return [_build_one(j) for j in jobs]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        built = list(pool.map(_build_one, [jobs[k] for k in by_size]))
    out: list = [None] * len(jobs)
    for k, table in zip(by_size, built):
        out[k] = table
    return out
