"""Reproduce the Elk artifact's numbers at its reference point, and show what each of elk's corrections is worth.

The reference point: Llama2-13B decode, batch 32, KV 2048, 5,888 cores, 624 KiB,
16 TB/s, all-to-all (the default chip). The table has the artifact's own
numbers (re-run on a 2-core machine), then elk with its corrections undone one
at a time (``elk.compat.STEPS``), from elk's default (the zoo's ``llama2-13b``,
fluid loads, SI units, elk's plan enumeration) to the artifact-compatible mode
(the artifact's ``llama2-13.json`` read with its parser's quirks, its units,
rigid loads, its plan enumeration). Each row gives every design's latency and
its change from the row above: what that correction is worth. Every number is
the simulator's, on a schedule it accepts.

    ELK_WORKERS=1 python experiments/reproduce_artifact.py [--graphs FOLDER] [--designs basic,static]
        [--alone] [--json out.json]

``--alone`` adds one row per correction undone on its own (from elk's default).
``FOLDER`` holds the artifact's graph files (default
``../shared/benchmarks/elk-artifact-graphs`` next to the repository).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from elk.compat import ARTIFACT, ELK, STEPS, Compat
from elk.driver.compat import PAPER_DESIGNS, compile_compat

DEFAULT_FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "elk-artifact-graphs"

#: The artifact's own latencies at the reference point (ms), re-run on a 2-core machine. Its ELK-Full was
#: not re-run (it needs a process pool of cpu//3 workers, none on two cores).
ARTIFACT_MS = {"basic": 12.4978, "static": 9.2096, "elk-dyn": 8.2665, "ideal": 6.6993}
LABELS = {"basic": "Basic", "static": "Static", "elk-dyn": "ELK-Dyn", "elk-full": "ELK-Full", "ideal": "Ideal"}


def model_for(compat: Compat, folder: Path) -> str:
    """The artifact's graph file once its graph is in play, else elk's own Llama2-13B."""
    return str(folder / "llama2-13.json") if compat.graph_quirks else "llama2-13b"


def run(designs: tuple[str, ...], folder: Path, alone: bool) -> list[dict]:
    steps = list(STEPS)
    if alone:
        for field in dataclasses.fields(Compat):
            steps.append((f"only {field.name.replace('_', ' ')}", dataclasses.replace(ELK, **{field.name: True})))
    rows = []
    for label, compat in steps:
        result = compile_compat(model_for(compat, folder), compat, designs=designs)
        invalid = [n for n, d in result.designs.items() if not d.sim.valid]
        if invalid:
            raise SystemExit(f"{label}: the simulator rejects {', '.join(invalid)}")
        rows.append({"step": label, "compat": dataclasses.asdict(compat), "latency_ms": result.latencies(),
                     "seconds": result.seconds})
        print(f"  {label}: {result.seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], designs: tuple[str, ...]) -> str:
    head = "| | " + " | ".join(LABELS[d] for d in designs) + " |"
    lines = [head, "|---" * (len(designs) + 1) + "|",
             "| artifact (re-run) | " + " | ".join(f"{ARTIFACT_MS[d]:.4f}" if d in ARTIFACT_MS else "-"
                                                   for d in designs) + " |"]
    prev = None
    for row in rows:
        cells = []
        for d in designs:
            ms = row["latency_ms"][d]
            cumulative = prev is not None and row["step"].startswith("+")
            cells.append(f"{ms:.4f} ({ms - prev[d]:+.2f})" if cumulative else f"{ms:.4f}")
        lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
        if row["step"].startswith(("+", "elk default")):
            prev = row["latency_ms"]
    compat = next(r for r in rows if r["compat"] == dataclasses.asdict(ARTIFACT))
    lines.append("| compatible mode vs artifact | " + " | ".join(
        f"{100 * (compat['latency_ms'][d] / ARTIFACT_MS[d] - 1):+.2f}%" if d in ARTIFACT_MS else "-"
        for d in designs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=Path, default=DEFAULT_FOLDER, help="folder of the artifact's graph files")
    parser.add_argument("--designs", default=",".join(PAPER_DESIGNS), help="comma-separated paper designs")
    parser.add_argument("--alone", action="store_true", help="also undo each correction on its own")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    designs = tuple(d.strip() for d in args.designs.split(",") if d.strip())
    bad = [d for d in designs if d not in PAPER_DESIGNS]
    if bad:
        parser.error(f"unknown design(s) {', '.join(bad)} (known: {', '.join(PAPER_DESIGNS)})")
    if not (args.graphs / "llama2-13.json").is_file():
        parser.error(f"no llama2-13.json in {args.graphs} (give the artifact's graph folder with --graphs)")
    rows = run(designs, args.graphs, args.alone)
    print(table(rows, designs))
    if args.json:
        args.json.write_text(json.dumps({"artifact_ms": ARTIFACT_MS, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
