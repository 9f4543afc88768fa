"""Wall time and peak memory of a run, including the pool workers it starts.

The evaluation's budget is on the whole process tree (the runner's pool
workers hold the plan tables), so a background thread samples the resident
memory of this process and all of its descendants and keeps the peak of the
sum. Without psutil it falls back to ``getrusage``, which only knows the
largest single process (this one, or one reaped child), and says so.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass


@dataclass
class Usage:
    wall_seconds: float = 0.0
    #: Peak of the summed RSS of this process and its descendants (bytes), sampled.
    peak_tree_bytes: int = 0
    #: Peak RSS of the largest single process (bytes).
    peak_process_bytes: int = 0
    method: str = ""

    def describe(self) -> str:
        gib = 1024 ** 3
        if self.method == "psutil":
            return (f"{self.peak_tree_bytes / gib:.2f} GiB peak for the process tree (sampled every "
                    f"{Monitor.INTERVAL:g} s); largest single process {self.peak_process_bytes / gib:.2f} GiB")
        return (f"largest single process {self.peak_process_bytes / gib:.2f} GiB (getrusage; "
                "psutil not installed, so concurrent workers are not summed)")


class Monitor:
    """``with Monitor() as m: ...`` then ``m.usage``."""

    INTERVAL = 0.5

    def __init__(self) -> None:
        self.usage = Usage()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        try:
            import psutil
            self._psutil = psutil
            self.usage.method = "psutil"
        except ImportError:
            self._psutil = None
            self.usage.method = "getrusage"

    def __enter__(self) -> "Monitor":
        self._t0 = time.perf_counter()
        if self._psutil is not None:
            self._thread = threading.Thread(target=self._sample_loop, name="elk-memory-monitor", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.usage.wall_seconds = time.perf_counter() - self._t0
        rusage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024  # kB on Linux
        self.usage.peak_process_bytes = max(self.usage.peak_process_bytes, rusage)
        self.usage.peak_tree_bytes = max(self.usage.peak_tree_bytes, self.usage.peak_process_bytes
                                         if self._psutil is None else 0)

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self._sample()

    def _sample(self) -> None:
        if self._psutil is None:
            return
        try:
            me = self._psutil.Process(os.getpid())
            procs = [me, *me.children(recursive=True)]
        except self._psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except self._psutil.Error:
                continue
            total += rss
            self.usage.peak_process_bytes = max(self.usage.peak_process_bytes, rss)
        self.usage.peak_tree_bytes = max(self.usage.peak_tree_bytes, total)
