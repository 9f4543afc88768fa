"""Output options' formats, checked before any work: a picture or table elk cannot write is one line now.

A compile or a solve can take minutes; an output name whose format elk cannot
write (``--timeline t.txt``) used to fail only after it, with a traceback, and a
name without a suffix was written under another name than the one printed. Each
output option names the formats it writes; the name is used exactly as given.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from elk.cli.common import check_writable
from elk.errors import ElkError


@dataclass(frozen=True)
class OutputFormat:
    """What an output option writes: the file suffixes it takes (None: any name, one fixed format)."""

    what: str
    suffixes: tuple[str, ...] | None = None
    #: suffix -> Python module it needs (checked now, not after the work)
    needs: tuple[tuple[str, str], ...] = ()


#: Pictures: matplotlib picks the format from the suffix.
IMAGE = OutputFormat("a picture", (".png", ".pdf", ".svg"))
#: Window records and tables: CSV, or Parquet with pyarrow.
TABLE = OutputFormat("a table", (".csv", ".parquet"), needs=((".parquet", "pyarrow"),))
#: JSON documents (reports, traces, schedules) take any name.
JSON = OutputFormat("a JSON document")
CSV = OutputFormat("a CSV file")


def check_format(path: str | os.PathLike, option: str, fmt: OutputFormat) -> Path:
    """Raise ElkError unless ``path``'s suffix is one ``fmt`` writes (and what it needs is installed)."""
    target = Path(path)
    if fmt.suffixes is None:
        return target
    suffix = target.suffix.lower()
    names = ", ".join(fmt.suffixes)
    if suffix not in fmt.suffixes:
        got = f"'{target.suffix}'" if target.suffix else "no suffix"
        raise ElkError(f"{option} {target}: {got}; {option} writes {fmt.what} as one of {names} "
                       f"(the suffix picks the format)")
    for need_suffix, module in fmt.needs:
        if suffix == need_suffix and importlib.util.find_spec(module) is None:
            others = ", ".join(s for s in fmt.suffixes if s != need_suffix)
            raise ElkError(f"{option} {target}: writing {suffix} needs {module}, which is not installed "
                           f"(install it, or use {others})")
    return target


def check_output_files(pairs: list[tuple[str, str | os.PathLike | None, OutputFormat]]) -> None:
    """Writability, then format, of every (option, path, format) whose path is set: before any work."""
    for option, path, fmt in pairs:
        if path:
            check_writable(path, option)
            check_format(path, option, fmt)


def check_output_folder(path: str | os.PathLike, option: str) -> Path:
    """Raise ElkError unless ``path`` is a folder elk can write in, or one it can create (nothing is created)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ElkError(f"{option} {target} is not writable: it is a file, not a folder")
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ElkError(f"{option} {target} is not writable: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ElkError(f"{option} {target} is not writable: {probe} is not a writable folder")
    return target


__all__ = ["OutputFormat", "IMAGE", "TABLE", "JSON", "CSV", "check_format", "check_output_files",
           "check_output_folder"]
