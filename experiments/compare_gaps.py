"""Two runs of the gap study side by side: did the headline hold, and which configurations moved?

Solver time limits (the periodic design, the MILP windows, the bounds' MILPs) are wall-clock limits, so two
runs of the same command on the same code can differ where a solve was cut off; a run with other settings
(``--exact-time-limit``, ``--bound``) differs by design. This script says by how much: each run's headline
(certified gap <= 3%, <= 10%, mean, max), and every configuration whose best latency or proven bound moved by
more than ``--tolerance`` percent, with its design and gap in both runs.

    python -m experiments.compare_gaps experiments/results/gap/gaps.csv experiments/results/gap_rerun/gaps.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from experiments.gap_rebound import NoStoredStudy, headline, headline_text, read_stored
from experiments.gap_study import best_rows, label

#: what identifies a configuration across runs (the SRAM asked for: a run may have settled another size)
KEY = ("model", "topology", "hbm_tbps", "sram_requested_kib", "load_model")


class NotAGapStudy(ValueError):
    """A file that is not a readable gaps.csv."""


def read_best(path: Path):
    """The ``best`` rows of a gaps.csv, one per configuration, indexed by KEY (the table checked as a
    re-certification checks it, plus the columns this comparison reads)."""
    if not path.is_file():
        raise NotAGapStudy(f"{path}: no such file")
    try:
        frame = read_stored(path)
    except NoStoredStudy as exc:
        raise NotAGapStudy(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise NotAGapStudy(f"cannot read {path}: {exc}") from None
    missing = [c for c in ("certified_gap_pct", "best_design") if c not in frame]
    if missing:
        raise NotAGapStudy(f"{path} has no column {', '.join(missing)}: not a gap study's table")
    return best_rows(frame).set_index(list(KEY))


def moved(before, after, tolerance_pct: float):
    """Both runs' configurations joined, and those whose best latency or bound changed by more than
    ``tolerance_pct``, sorted by the latency's change (negative: the second run is faster)."""
    both = before.add_suffix("_a").join(after.add_suffix("_b"), how="inner")
    both["latency_change_pct"] = (both["latency_ms_b"] / both["latency_ms_a"] - 1) * 100
    both["bound_change_pct"] = (both["bound_ms_b"] / both["bound_ms_a"] - 1) * 100
    changed = both[(both["latency_change_pct"].abs() > tolerance_pct) | (both["bound_change_pct"].abs() > tolerance_pct)]
    return both, changed.sort_values("latency_change_pct")


def report(a: Path, b: Path, tolerance_pct: float = 0.01) -> list[str]:
    before, after = read_best(a), read_best(b)
    both, changed = moved(before, after, tolerance_pct)
    lines = [f"A: {a}: {headline_text(headline(before))}", f"B: {b}: {headline_text(headline(after))}",
             f"{len(both)} configurations in both; {len(changed)} moved by more than {tolerance_pct:g}% "
             f"(best latency or bound):", "",
             "| configuration | A best ms (design) | B best ms (design) | latency % | bound % | A gap % | B gap % |",
             "|---|---|---|---|---|---|---|"]
    for key, row in changed.iterrows():
        name = label({**dict(zip(KEY, key)), "sram_kib": key[3]})
        lines.append(f"| {name} | {row['latency_ms_a']:.3f} ({row['best_design_a']}) | {row['latency_ms_b']:.3f} "
                     f"({row['best_design_b']}) | {row['latency_change_pct']:+.2f} | {row['bound_change_pct']:+.2f} | "
                     f"{row['certified_gap_pct_a']:.2f} | {row['certified_gap_pct_b']:.2f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="the first run's gaps.csv")
    p.add_argument("b", type=Path, help="the second run's gaps.csv")
    p.add_argument("--tolerance", type=float, default=0.01, help="percent change below which a configuration "
                                                                 "counts as unmoved (0.01)")
    args = p.parse_args(argv)
    if not args.tolerance >= 0:
        print(f"compare_gaps: error: --tolerance must be a percentage >= 0, got {args.tolerance}", file=sys.stderr)
        return 2
    try:
        lines = report(args.a, args.b, args.tolerance)
    except NotAGapStudy as exc:
        print(f"compare_gaps: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
