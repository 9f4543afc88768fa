"""Benchmark: compile every one of the Elk artifact's graph files with the five paper designs.

Each file in the folder (default ``../shared/benchmarks/elk-artifact-graphs`` next
to the repository) is imported by :mod:`elk.graphs.artifact` and compiled with
``designs="all"`` on one chip; a file that cannot be compiled gets its one-line
reason instead of latencies. The table: file, mode, operators, unique operator
shapes, layers detected (blocks x operators @ first operator), HBM GB per step,
each design's latency in ms, and the seconds the file took.

Decoders run one decode step (``--batch``, KV length ``--seq``); files named
``prefill_*`` and the BERT encoders run a forward pass at ``--forward-batch`` (the
paper's training batch, 2: a forward pass at batch 32 x 2,048 tokens has
65,536-row matmuls whose plan tables take minutes each), BERT at sequence 512,
its position table's length. Files with no sequence placeholder (ViT, ResNet,
NeRF, RetNet) fix their own token count and run at ``--batch``. Compiles run one
after the other; set ``ELK_WORKERS=1`` on a shared machine so plan tables are
built on one core.

    ELK_WORKERS=1 python experiments/bench_artifact_graphs.py [FOLDER] [--chip ipu-pod4]
        [--batch 32] [--seq 2048] [--forward-batch 2] [--only llama2-13,opt-30] [--quirks] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import elk
from elk.errors import ElkError
from elk.graphs.artifact import load_artifact_graph

DESIGNS = ("basic", "static", "elk-dyn", "elk-full", "ideal")
DEFAULT_FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "elk-artifact-graphs"


def mode_for(stem: str, args: argparse.Namespace) -> tuple[str, int, int]:
    """(mode, batch, seq) a file is compiled in: decode for decoders, a forward pass for prefill graphs and BERT."""
    if stem.startswith("prefill"):
        return "forward", args.forward_batch, args.seq
    if stem.startswith("bert"):
        return "forward", args.forward_batch, min(args.seq, 512)
    return "decode", args.batch, args.seq


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ElkError) else f"{type(exc).__name__}: {text}"


def run_file(path: Path, args: argparse.Namespace) -> dict:
    mode, batch, seq = mode_for(path.stem, args)
    row: dict = {"file": path.name, "mode": mode, "batch": batch, "seq": seq}
    started = time.perf_counter()
    try:
        program = load_artifact_graph(path, batch=batch, seq=seq, mode=mode, quirks=args.quirks)
    except Exception as exc:  # noqa: BLE001 - the table reports every failure as one line
        row.update(error=one_line(exc), seconds=time.perf_counter() - started)
        return row
    layers = program.layers
    row.update(mode=program.meta["mode"], batch=program.meta["batch"], seq=program.meta["seq"],
               operators=len(program.ops), unique=len(program.unique_signatures()),
               layers=f"{layers.count}x{layers.length}@{layers.start}" if layers else "-",
               hbm_gb=program.hbm_bytes / 1e9)
    try:
        result = elk.compile(program, chip=args.chip, designs="all")
        row["designs"] = {n: {"latency_ms": d.sim.latency_ms, "valid": d.sim.valid} for n, d in result.designs.items()}
    except Exception as exc:  # noqa: BLE001
        row["error"] = one_line(exc)
    row["seconds"] = time.perf_counter() - started
    return row


def cell(row: dict, design: str) -> str:
    d = row.get("designs", {}).get(design)
    if d is None:
        return "-"
    return f"{d['latency_ms']:.3f}" + ("" if d["valid"] else " INVALID")


def print_table(rows: list[dict]) -> None:
    headers = ["file", "mode", "B", "S", "ops", "unique", "layers", "HBM GB", *DESIGNS, "s"]
    lines = []
    for r in rows:
        lines.append([r["file"], r["mode"], str(r["batch"]), str(r["seq"] or "-"), str(r.get("operators", "-")),
                      str(r.get("unique", "-")), r.get("layers", "-"), f"{r['hbm_gb']:.2f}" if "hbm_gb" in r else "-",
                      *(cell(r, d) for d in DESIGNS), f"{r['seconds']:.1f}"])
    widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if k < 2 else h.rjust(w) for k, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for r, line in zip(rows, lines):
        print("  ".join(c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(line, widths))))
    failed = [r for r in rows if "error" in r]
    if failed:
        print("\nnot compiled:")
        for r in failed:
            print(f"  {r['file']}: {r['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER), help="folder of the artifact's graph files")
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048, help="KV length (decode) or sequence (forward)")
    p.add_argument("--forward-batch", type=int, default=2, help="batch of the forward-pass files (prefill, BERT)")
    p.add_argument("--only", help="comma list of file stems to run")
    p.add_argument("--quirks", action="store_true", help="reproduce the artifact parser's quirks")
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    files = sorted(folder.glob("*.json"))
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        files = [f for f in files if f.stem in wanted]
    if not files:
        print(f"no graph files in {folder}", file=sys.stderr)
        return 2
    rows = []
    for path in files:
        row = run_file(path, args)
        rows.append(row)
        status = row.get("error") or " ".join(f"{n} {cell(row, n)}" for n in DESIGNS)
        print(f"[{len(rows)}/{len(files)}] {path.name}: {status} ({row['seconds']:.1f} s)", file=sys.stderr)
    print(f"chip {args.chip}; decode at batch {args.batch}, KV {args.seq}; forward files at batch "
          f"{args.forward_batch}; artifact quirks {'on' if args.quirks else 'off'}\n")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
