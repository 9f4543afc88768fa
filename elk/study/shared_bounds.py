"""One proof of a chip's lower bounds for every point of a study that shares it.

A bound depends on the program and the chip, not on the load model: every family holds under fluid and rigid
loads (``solvers.schedule.bounds``; a family that did not would say so in its ``load_models``, and is applied
only where it holds). A study that sweeps the load model therefore proved the same bounds twice per chip; the
gap study spent 2,821 s of its 9,675 s of point time on bounds, half of it on such repeats.

While a study runs, its points keep each proof in ``<results>/bounds/<key>.json`` (``ELK_STUDY_BOUNDS`` names
the folder; ``elk.study.runner.run_study`` sets it for its own processes). The key is the program, the chip
with its load model set aside, the bound level and its time limit. A point that finds its chip's proof reuses
it; one that finds another process proving it compiles its designs first and reads the proof after (waiting
only if it is still running), so two workers never prove the same chip at once and rarely wait. The folder
belongs to one study's results: a new study folder never reads a proof older code made, and a resumed study
reuses the proofs in its folder as it reuses its finished points. Points that run elsewhere (a Dask cluster
without the folder) prove their own, as before.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock, Timeout

from elk.atomic import write_text
from elk.chip import Chip, LoadModel

#: environment variable naming the folder of a running study's shared proofs
BOUND_CACHE_ENV = "ELK_STUDY_BOUNDS"


def bound_key(table_group: str, chip: Chip, level: str, time_limit: float) -> str:
    """The proof's key: the program (a point's table group names it with its batch, sequence and mode), the
    chip with fluid loads (every field but the load model), the bound level and its time limit."""
    fields = dataclasses.asdict(chip.with_overrides(load_model=LoadModel.FLUID))
    text = json.dumps([table_group, fields, level, float(time_limit)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def report_to_json(report) -> dict[str, Any]:
    return {"bounds": [dataclasses.asdict(b) for b in report.bounds], "seconds": report.seconds,
            "warnings": list(report.warnings)}


def report_from_json(data: dict[str, Any], load_model: str):
    """The stored proof as a ``BoundReport`` for a point under ``load_model`` (families that do not hold under
    it left out)."""
    from solvers.schedule.bounds import Bound, BoundReport
    bounds = [Bound(**{**b, "load_models": tuple(b["load_models"])}) for b in data["bounds"]]
    return BoundReport([b for b in bounds if load_model in b.load_models], float(data["seconds"]),
                       list(data["warnings"]))


class SharedBounds:
    """The proofs folder of one study run (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def read(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or torn by a crash before the atomic rename: proven again

    def get_or_prove(self, key: str, prove: Callable[[], Any], *, wait: bool) -> tuple[dict[str, Any] | None, bool]:
        """(the proof, whether this call proved it). Without ``wait``, (None, False) when another process holds
        the key's lock (it is proving it now)."""
        lock = FileLock(str(self._path(key)) + ".lock")
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return None, False
        try:
            have = self.read(key)
            if have is not None:
                return have, False
            data = report_to_json(prove())
            write_text(self._path(key), json.dumps(data))
            return data, True
        finally:
            lock.release()


def shared_from_env() -> SharedBounds | None:
    folder = os.environ.get(BOUND_CACHE_ENV)
    return SharedBounds(folder) if folder else None


@contextmanager
def sharing(folder: str | os.PathLike) -> Iterator[None]:
    """``ELK_STUDY_BOUNDS`` set to ``folder`` inside the block (a study's run; pool workers inherit it)."""
    before = os.environ.get(BOUND_CACHE_ENV)
    os.environ[BOUND_CACHE_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BOUND_CACHE_ENV, None)
        else:
            os.environ[BOUND_CACHE_ENV] = before


__all__ = ["BOUND_CACHE_ENV", "SharedBounds", "bound_key", "report_from_json", "report_to_json", "shared_from_env",
           "sharing"]
