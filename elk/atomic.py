"""Atomic file replacement: write a temporary file next to the target, then ``os.replace`` it.

Why one helper: schedule files, study points, study tables and manifests all promise that a reader
sees either the old file or the whole new one, never half of it, even when a run is killed mid-write
or two runs write into one folder. The temporary name is unique per process and thread and created
with the usual file mode (``mkstemp`` would make it 0600). ``OSError`` propagates; callers turn it
into their own one-line error.
"""
from __future__ import annotations

import contextlib
import os
import threading
import uuid
from pathlib import Path
from typing import ContextManager, Iterator


def temp_name(path: Path) -> Path:
    """A temporary name next to ``path`` that no other process or thread uses."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}.tmp")


def remove_quietly(path: str | os.PathLike) -> None:
    """Delete ``path`` if it exists; a leftover temporary file is not worth an error."""
    try:
        os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def replacing(path: str | os.PathLike, lock: ContextManager | None = None,
              make_parent: bool = True) -> Iterator[Path]:
    """Yield a temporary path to fill; on normal exit it replaces ``path`` (under ``lock`` if given).

    If the body raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    if make_parent:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        with (lock if lock is not None else contextlib.nullcontext()):
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            remove_quietly(tmp)


def write_text(path: str | os.PathLike, text: str, lock: ContextManager | None = None,
               durable: bool = False) -> Path:
    """Replace ``path`` with ``text`` atomically; ``durable`` fsyncs the data before the rename."""
    target = Path(path)
    with replacing(target, lock) as tmp:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    return target
