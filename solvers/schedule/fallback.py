"""The exact designs' promise, written once: never slower than the warm start they were given."""
from __future__ import annotations

from elk.schedule import Schedule
from elk.simulator import simulate
from elk.workload import Workload


def keep_faster(workload: Workload, new: Schedule | None, warm: Schedule, *, tie: str = "new") -> tuple[Schedule, str]:
    """(the schedule to keep, why the warm start was kept or ""): ``new`` unless it is missing, invalid or slower
    than ``warm`` (by the simulator, on ``workload``).

    ``tie`` says which one an equally fast pair keeps: "new" (a window search's stitched result) or "warm"
    (a design that only counts as better when it gains something).
    """
    if new is None:
        return warm, "no schedule"
    verdict = simulate(workload, new)
    if not verdict.valid:
        return warm, "invalid: " + verdict.violations[0].message(workload.chip.clock_hz)
    warm_cycles = simulate(workload, warm).latency_cycles
    if verdict.latency_cycles > warm_cycles + 1e-6 or (tie == "warm" and verdict.latency_cycles >= warm_cycles - 1e-6):
        return warm, "slower than the warm start" if verdict.latency_cycles > warm_cycles + 1e-6 else "no faster"
    return new, ""
