"""Where study results live: one JSON file per finished point, written atomically.

``OUT/points/<key>.json`` holds a point's declared inputs, its effective knobs,
its status and one row per design. A file is written to a temporary name in the
same folder and renamed over the final name (``os.replace``), so a killed run
leaves either the whole file or none: a point is finished exactly when its file
exists and parses. A file that does not parse or does not hold what a point
file must (a truncated copy, an editor's mess, a different schema) is moved
aside to ``<key>.json.corrupt`` and reported; the runner then redoes the point.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from elk.study.point import SCHEMA_VERSION, StudyError

#: Statuses a point file may hold. "error": the input cannot be compiled (an ElkError, final);
#: "crash": anything else went wrong (a bug, out of memory): redone on the next run.
STATUSES = ("ok", "error", "crash")
_REQUIRED = ("schema", "key", "status", "knobs", "rows", "inputs")


class PointStore:
    """The ``points/`` folder of a study output directory."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        self.points = self.root / "points"

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
        return self.points / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        """Store one point's record atomically (temporary file + fsync + rename)."""
        final = self.path(record["key"])
        text = json.dumps(record, indent=1, allow_nan=False)
        fd, tmp = tempfile.mkstemp(dir=self.points, prefix=f".{record['key']}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
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

    def quarantine(self, key: str) -> Path:
        """Move a corrupt file aside (kept for inspection, out of the runner's way)."""
        path = self.path(key)
        dest = path.with_name(path.name + ".corrupt")
        os.replace(path, dest)
        return dest

    def keys(self) -> list[str]:
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


class CorruptPoint(Exception):
    """A point file that exists but cannot be used."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(path, why)
        self.path, self.why = path, why

    def __str__(self) -> str:
        return f"corrupt point file {self.path}: {self.why}"


def parse_record(path: Path, text: str, expected_key: str) -> dict[str, Any]:
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
