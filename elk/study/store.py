"""Where study results live: one JSON file per finished point, written atomically.

``OUT/points/<key>.json`` holds a point's declared inputs, its effective knobs,
its status and one row per design. A file is written to a temporary name in the
same folder and renamed over the final name (``os.replace``), so a killed run
leaves either the whole file or none: a point is finished exactly when its file
exists and parses. A file that does not parse or does not hold what a point
file must (a truncated copy, an editor's mess, a different schema) is moved
aside to ``<key>.json.corrupt`` and reported; the runner then redoes the point.

Several runs may share one folder at the same time (two identical sweeps, a
study and its rerun): temporary files have unique names, and renames into
place, moving a corrupt file aside and the run's shared files (manifest,
``sweep.csv``) happen under one lock per folder (``OUT/.elk.lock``), so a file
is moved aside only if it is still the corrupt one, never a point another
run has just finished. A folder that stops being writable mid-run is a
:class:`StudyError` naming it; every point finished before stays.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from elk.atomic import write_text
from elk.study.point import SCHEMA_VERSION, StudyError

LOCK_NAME = ".elk.lock"
LOCK_WAIT = 120.0

#: Statuses a point file may hold. "error": the input cannot be compiled (an ElkError, final);
#: "crash": anything else went wrong (a bug, out of memory): redone on the next run.
STATUSES = ("ok", "error", "crash")
_REQUIRED = ("schema", "key", "status", "knobs", "rows", "inputs")


class PointStore:
    """The ``points/`` folder of a study output directory."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        self.points = self.root / "points"
        self._lock = None

    def lock(self):
        """The folder's lock between processes (re-entrant within this store)."""
        if self._lock is None:
            self._lock = folder_lock(self.root)
        return self._lock

    def prepare(self) -> None:
        """Create the folder and prove it is writable now, not after an hour of compiling."""
        try:
            self.points.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.points, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StudyError(f"output folder {self.root} is not writable: {exc.strerror or exc}") from None

    def path(self, key: str) -> Path:
        """The file of the point with this key."""
        return self.points / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        """Store one point's record atomically (temporary file + fsync + rename under the folder lock)."""
        final = self.path(record["key"])
        text = json.dumps(record, indent=1, allow_nan=False)
        try:
            write_text(final, text, lock=self.lock(), durable=True)
        except OSError as exc:
            raise StudyError(f"cannot write to the output folder {self.root}: {exc.strerror or exc} (every point "
                             "finished before is stored; make the folder writable and rerun to resume)") from None
        return final

    def read(self, key: str) -> dict[str, Any] | None:
        """The stored record, or None if the point has no file. Raises CorruptPoint for a bad file."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptPoint(path, str(exc)) from None
        return parse_record(path, text, expected_key=key)

    def read_or_quarantine(self, key: str, report=None) -> tuple[dict[str, Any] | None, bool]:
        """(record or None, whether a corrupt file was moved aside): the check and the move under the lock."""
        try:
            return self.read(key), False
        except CorruptPoint:
            pass
        try:
            with self.lock():
                try:  # another run may have replaced it meanwhile: move it only if it is still corrupt
                    return self.read(key), False
                except CorruptPoint as exc:
                    dest = self.quarantine(key)
                    print(f"elk study: {exc}; moved to {dest.name}, redoing it", file=report or sys.stderr)
                    return None, True
        except OSError as exc:
            raise StudyError(f"cannot move a corrupt point file aside in {self.points}: "
                             f"{exc.strerror or exc}") from None

    def quarantine(self, key: str) -> Path:
        """Move a corrupt file aside (kept for inspection, out of the runner's way)."""
        path = self.path(key)
        dest = path.with_name(path.name + ".corrupt")
        os.replace(path, dest)
        return dest

    def keys(self) -> list[str]:
        """Keys of every stored point, sorted."""
        if not self.points.is_dir():
            return []
        return sorted(p.stem for p in self.points.glob("*.json"))

    def read_all(self, keys: Iterable[str] | None = None, report=None) -> list[dict[str, Any]]:
        """Every readable record; a corrupt file is reported (never silently skipped)."""
        report = report if report is not None else sys.stderr
        out = []
        for key in (self.keys() if keys is None else keys):
            try:
                rec = self.read(key)
            except CorruptPoint as exc:
                print(f"elk study: skipping {exc}", file=report)
                continue
            if rec is not None:
                out.append(rec)
        return out


def folder_lock(folder: str | os.PathLike):
    """An exclusive lock between processes on ``folder`` (its ``.elk.lock`` file)."""
    from filelock import FileLock
    # held only for a rename or two; a lock not granted in LOCK_WAIT seconds is an OSError (filelock.Timeout)
    return FileLock(str(Path(folder) / LOCK_NAME), timeout=LOCK_WAIT)


class CorruptPoint(Exception):
    """A point file that exists but cannot be used."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(path, why)
        self.path, self.why = path, why

    def __str__(self) -> str:
        return f"corrupt point file {self.path}: {self.why}"


def parse_record(path: Path, text: str, expected_key: str) -> dict[str, Any]:
    """A stored point's JSON checked against the schema and its expected key; anything else is :class:`CorruptPoint`."""
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptPoint(path, f"not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
        raise CorruptPoint(path, "missing fields")
    if rec["schema"] != SCHEMA_VERSION:
        raise CorruptPoint(path, f"schema {rec['schema']!r}, expected {SCHEMA_VERSION}")
    if rec["key"] != expected_key:
        raise CorruptPoint(path, f"holds key {rec['key']!r}")
    if rec["status"] not in STATUSES:
        raise CorruptPoint(path, f"unknown status {rec['status']!r}")
    if not isinstance(rec["rows"], list) or not rec["rows"] or not all(isinstance(r, dict) and "design" in r
                                                                      for r in rec["rows"]):
        raise CorruptPoint(path, "no design rows")
    return rec
