"""One row per window solve: what the heuristic had, what the exact solver found and proved."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from elk.errors import SolverConfigError


@dataclass
class WindowRecord:
    """One window solve: what was solved, by which solver, what it found and proved, and whether it was kept."""

    model: str
    window: int
    first_op: int
    last_op: int
    solver: str
    version: str
    status: str  # OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, REUSED, HINT-ONLY...
    heuristic_cycles: float  # the warm start's makespan in this window problem (cycles from the window origin)
    exact_cycles: float  # best makespan the solver found (= heuristic if it found nothing better)
    bound_cycles: float  # proven lower bound on the makespan
    gap: float  # (exact - bound) / exact
    seconds: float
    workers: int
    seed: int
    time_limit: float
    params: str  # JSON of solver-specific parameters
    # how far the window's last execution ends before the warm start's (cycles); unlike the makespans,
    # which each start from the stitched state, this is what carries through to the latency
    ahead_cycles: float = 0.0
    reused: bool = False
    accepted: bool = False  # the exact solution replaced the warm start in this window
    note: str = ""
    first_improvement_s: float | None = None
    anytime: list = field(default_factory=list)  # [(seconds, incumbent, bound)] when requested

    def row(self) -> dict:
        """The record as a flat dict (one CSV row; the anytime trace as JSON)."""
        d = asdict(self)
        d["anytime"] = json.dumps(d["anytime"])
        return d


def records_frame(records: Iterable[WindowRecord]):
    """The records as a pandas DataFrame, one row per window."""
    import pandas as pd
    return pd.DataFrame([r.row() for r in records])


def write_records(records: Iterable[WindowRecord], path: str | Path) -> Path:
    """CSV, or Parquet when the path ends in .parquet and a Parquet engine is installed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = records_frame(records)
    if path.suffix == ".parquet":
        try:
            frame.to_parquet(path)
        except ImportError as exc:
            raise SolverConfigError(f"cannot write {path}: {exc} (install pyarrow, or use a .csv path)") from None
    else:
        frame.to_csv(path, index=False)
    return path
