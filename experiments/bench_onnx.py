"""Benchmark: import every ONNX file elk is tested on, and optionally compile it.

The files: the nine ``light_*.onnx`` CNNs that the ``onnx`` package ships
(``onnx/backend/test/data/light``) and the transformer exports in
``../shared/benchmarks/onnx`` next to the repository (or ``--folder``). For each
file it prints the import time (read, shapes, mapping and layer detection: the
best of ``--repeat`` runs), operators, unique shapes, layers, HBM GB and GFLOP per
step. With ``--compile`` it also compiles each file with ``--designs`` and prints
every design's latency and whether the simulator accepts it; with ``--compare``
it builds the decoder exports' ``NAME.config.json`` with elk's own builder at the
same batch and sequence (forward mode) and prints both side by side, with the HBM
reads of each split into inputs no operator produces (weights, masks, tables) and
activations read back.

    python experiments/bench_onnx.py [--folder DIR] [--batch 4] [--seq 512] [--repeat 3]
        [--compile] [--compare] [--designs default] [--only bert,vit] [--json out.json]

Set ``ELK_WORKERS=1`` on a shared machine so plan tables are built on one core.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "onnx"


def light_models() -> list[Path]:
    """The real CNN graphs the onnx wheel ships (weights replaced by ConstantOfShape)."""
    import onnx
    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return sorted(folder.glob("light_*.onnx"))


def offchip_split(program) -> tuple[float, float]:
    """(MB of inputs no operator produces: weights, tables, ids; MB of activations read back from HBM)."""
    produced = {op.output.tensor for op in program.ops}
    inputs = activations = 0
    for op in program.ops:
        for o in op.inputs:
            if o.offchip:
                n = op.tensor_elements(o) * op.bytes_per_element
                if o.tensor in produced:
                    activations += n
                else:
                    inputs += n
    return inputs / 1e6, activations / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--designs", default="default")
    ap.add_argument("--only", default="")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import elk
    from elk.errors import ElkError
    from elk.graphs import build_program
    from elk.graphs.onnx_import import load_onnx

    files = light_models() + (sorted(args.folder.glob("*.onnx")) if args.folder.is_dir() else [])
    if args.only:
        keep = set(args.only.split(","))
        files = [f for f in files if f.stem in keep]
    rows = []
    print(f"batch {args.batch}, sequence {args.seq}; import time = best of {args.repeat}")
    for path in files:
        best = float("inf")
        program = None
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            program = load_onnx(path, batch=args.batch, seq=args.seq)
            best = min(best, time.perf_counter() - t0)
        assert program is not None
        layers = program.layers
        row = {"file": path.name, "import_s": round(best, 3), "ops": len(program.ops),
               "unique": len(program.unique_signatures()),
               "layers": f"{layers.count}x{layers.length}" if layers else "-",
               "hbm_gb": program.hbm_bytes / 1e9, "gflop": program.flops / 1e9}
        line = (f"{path.name:26s} import {best:6.3f} s  ops {row['ops']:5d}  unique {row['unique']:4d}  layers "
                f"{row['layers']:>6s}  HBM {row['hbm_gb']:8.4f} GB  {row['gflop']:10.2f} GFLOP")
        if args.compile:
            t0 = time.perf_counter()
            try:
                result = elk.compile(program, designs=args.designs)
                row["designs"] = {n: {"latency_ms": d.sim.latency_ms, "valid": bool(d.sim.valid)}
                                  for n, d in result.designs.items()}
                line += "  " + " ".join(f"{n} {d.sim.latency_ms:.3f}{'' if d.sim.valid else '(!)'}"
                                        for n, d in result.designs.items())
            except ElkError as exc:
                row["error"] = str(exc)
                line += f"  error: {exc}"
            row["compile_s"] = round(time.perf_counter() - t0, 1)
            line += f"  ({row['compile_s']} s)"
        print(line, flush=True)
        config = path.with_name(path.stem + ".config.json")
        if args.compare and config.is_file():
            try:
                ref = build_program(config, batch=args.batch, seq=args.seq, mode="forward")
            except ElkError as exc:
                print(f"  {config.name}: {exc}")
            else:
                row["config"] = {"ops": len(ref.ops), "hbm_gb": ref.hbm_bytes / 1e9, "gflop": ref.flops / 1e9}
                print(f"  {config.name:24s} ops {len(ref.ops):5d}  HBM {ref.hbm_bytes / 1e9:8.4f} GB "
                      f"({100 * (program.hbm_bytes / ref.hbm_bytes - 1):+.2f}%)  {ref.flops / 1e9:10.2f} GFLOP "
                      f"({100 * (program.flops / ref.flops - 1):+.3f}%)")
                (ci, ca), (ri, ra) = offchip_split(program), offchip_split(ref)
                row["offchip_mb"] = {"onnx": {"inputs": ci, "activations": ca},
                                     "config": {"inputs": ri, "activations": ra}}
                print(f"  HBM reads, MB: inputs (weights, tables) {ci:.2f} vs {ri:.2f} ({ci - ri:+.2f}); "
                      f"activations read back {ca:.2f} vs {ra:.2f} ({ca - ra:+.2f})")
                if args.compile:
                    result = elk.compile(ref, designs=args.designs)
                    row["config"]["designs"] = {n: {"latency_ms": d.sim.latency_ms, "valid": bool(d.sim.valid)}
                                                for n, d in result.designs.items()}
                    print("  " + " ".join(f"{n} {d.sim.latency_ms:.3f}{'' if d.sim.valid else '(!)'}"
                                          for n, d in result.designs.items()), flush=True)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
