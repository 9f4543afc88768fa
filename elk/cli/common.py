"""What every ``elk`` subcommand shares: usage mistakes as one line, output paths checked before any work."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from elk.errors import ElkError


class UsageError(ElkError):
    """A command line argparse rejects (unknown option, bad value, missing argument)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one ``elk: error:`` line (the caller prints it), not a usage block.

    Subparsers made from it are of the same class, so every subcommand behaves alike.
    """

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise UsageError(f"{message} (see '{self.prog} --help')")


def check_writable(path: str | os.PathLike, option: str) -> Path:
    """Prove now that ``path`` can be written later (by creating and removing a probe file), or raise ElkError.

    A missing folder is fine if it can be created (the writers create it): the
    nearest existing ancestor must be a writable folder. An existing ``path``
    must be a file that opens for writing; it is not modified.
    """
    target = Path(path)
    where = f"cannot write {option} {target}"
    if target.is_dir():
        raise ElkError(f"{where}: it is a folder")
    if target.exists():
        try:
            with open(target, "ab"):
                pass
        except OSError as exc:
            raise ElkError(f"{where}: {exc.strerror or exc}") from None
        return target
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ElkError(f"{where}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".elk-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ElkError(f"{where}: {exc.strerror or exc}") from None
    return target


__all__ = ["OneLineParser", "UsageError", "check_writable"]
