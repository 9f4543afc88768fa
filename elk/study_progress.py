"""A one-line progress bar with an ETA, on stderr.

Self-written (a dozen lines) rather than a dependency: the runner only needs
"k of n, elapsed, ETA, what just finished". On a terminal the line is redrawn
in place; in a log (not a TTY) each finished point is one line.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int, title: str = "", enabled: bool = True, stream: TextIO | None = None,
                 width: int = 24) -> None:
        self.total, self.title, self.width = total, title, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.failed = 0
        self.started = time.perf_counter()

    def eta(self) -> float | None:
        """Seconds left at the average rate so far (None before the first point finishes)."""
        if self.done == 0:
            return None
        elapsed = time.perf_counter() - self.started
        return elapsed / self.done * (self.total - self.done)

    def update(self, label: str, seconds: float, status: str = "ok") -> None:
        self.done += 1
        self.failed += status != "ok"
        if not self.enabled:
            return
        frac = self.done / self.total
        bar = "#" * int(frac * self.width) + "-" * (self.width - int(frac * self.width))
        eta = self.eta()
        line = (f"{self.title}[{bar}] {self.done}/{self.total} {100 * frac:3.0f}%"
                f" {_clock(time.perf_counter() - self.started)} elapsed"
                f", ETA {_clock(eta) if eta is not None else '?'}"
                + (f", {self.failed} failed" if self.failed else "")
                + f" | {label}: {status if status != 'ok' else f'{seconds:.1f} s'}")
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A message that must not be overwritten by the next redraw."""
        if self.tty and self.enabled and 0 < self.done < self.total:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
