"""Helper processes that never outlive the process they work for.

A process killed with SIGKILL runs no cleanup, so its pool workers and
solver helpers must notice on their own. Two mechanisms, both cheap:

* :func:`die_with_parent` (Linux): the kernel sends SIGKILL to this process
  when the thread that forked it ends (``prctl(PR_SET_PDEATHSIG)``). Right for
  helpers forked directly by the process they serve.
* :func:`exit_with` (any POSIX): a daemon thread that ends this process as
  soon as a given process is gone (a pidfd on Linux, else a poll once a
  second). Needed when the parent is an intermediary that itself stays alive,
  e.g. the forkserver that starts a process pool's workers: it lives as long
  as any worker does, so the workers must watch the pool's owner instead.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from typing import Iterator

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent ends; False where that is not available.

    ``expected_parent``: the parent's pid as the parent saw it before forking; if the
    parent is already gone (this process was re-parented before the request), exit now.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
    return True


def exit_with(pid: int, poll_seconds: float = 1.0) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once process ``pid`` has ended."""

    def watch() -> None:
        fd = None
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
            os._exit(1)
        while True:
            time.sleep(poll_seconds)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # it exists (owned by someone else: cannot be ours, but keep going)
                pass

    thread = threading.Thread(target=watch, name=f"elk-exit-with-{pid}", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until its end, then raise KeyboardInterrupt.

    Starting a pool worker through the forkserver is a request and a reply; an interrupt between the
    two lets this process exit while the worker is still being made, and the half-made worker then
    prints a traceback after elk has said "interrupted". Pool submissions run inside this block, so
    an interrupt lands between them. A no-op outside the main thread (where no handler can be set).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


__all__ = ["die_with_parent", "exit_with", "sigint_deferred"]
