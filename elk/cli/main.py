"""The ``elk`` command line.

Every user mistake is an ElkError: printed as one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from elk.chip import PRESETS, knob_overrides, parse_mesh, resolve_chip
from elk.cli.common import OneLineParser, check_outputs
from elk.errors import ElkError
from solvers.alloc.allocate import ALLOC_SOLVERS
from solvers.solver_options import MILP_BACKENDS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _mesh_shape(text: str) -> tuple[int, int]:
    try:
        return parse_mesh(text)
    except ElkError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_chip_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("chip")
    g.add_argument("--chip", default=None, help=f"preset ({', '.join(PRESETS)}; default ipu-pod4) or a .toml/.json file")
    g.add_argument("--cores", type=_positive_int, help="number of cores")
    g.add_argument("--sram-kib", type=_positive_float, help="SRAM per core in KiB")
    g.add_argument("--hbm-tbps", type=_positive_float, help="HBM bandwidth in TB/s (10^12 B/s)")
    g.add_argument("--noc-scale", type=_positive_float, help="interconnect bandwidth multiplier")
    g.add_argument("--compute-scale", type=_positive_float, help="per-core compute multiplier")
    g.add_argument("--topology", choices=("all-to-all", "mesh"), help="interconnect topology")
    g.add_argument("--mesh", type=_mesh_shape, metavar="ROWSxCOLS", help="mesh shape (implies --topology mesh)")
    g.add_argument("--link-bytes-per-cycle", type=_positive_float, help="mesh link bandwidth")


def chip_from_args(args: argparse.Namespace):
    chip = resolve_chip(args.chip)
    changes = knob_overrides(chip, cores=args.cores, sram_kib=args.sram_kib, hbm_tbps=args.hbm_tbps,
                             noc_scale=args.noc_scale, compute_scale=args.compute_scale, topology=args.topology,
                             mesh=args.mesh, link_bytes_per_cycle=args.link_bytes_per_cycle)
    return chip.with_overrides(**changes) if changes else chip


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model name (see `elk models`) or a path to a config.json")
    p.add_argument("--batch", type=_positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--seq", type=_positive_int, default=2048, help="KV length (decode) or sequence (train)")
    p.add_argument("--mode", default="decode", choices=("decode", "train", "forward"),
                   help="decode: one token step; train: full-sequence forward")


def cmd_compile(args: argparse.Namespace) -> int:
    from elk.driver.api import compile as compile_model
    from elk.driver.report import compile_report

    from solvers.registry import DESIGNS, parse_designs

    chip = chip_from_args(args)
    requested = [d.strip() for d in args.designs.split(",")]
    compiled = parse_designs(args.designs, DESIGNS)  # (the compile checks them again: this is before any work)
    if args.trace_design is not None and args.trace_design not in compiled:
        raise ElkError(f"--trace-design '{args.trace_design}' is not among the designs compiled "
                       f"({', '.join(compiled)})")
    exact = [d for d in ("cpsat", "milp") if d in requested]
    if exact and args.records is None:  # the per-window table is part of the result: keep it by default
        args.records = f"{Path(str(args.model)).stem}-windows.csv"
    stem = Path(args.records or ".")  # the records files written below: one per exact design when both run
    records = [str(stem.with_name(f"{stem.stem}-{n}{stem.suffix}")) for n in exact] if len(exact) > 1 else \
        [args.records] * len(exact)
    check_outputs([("--json", args.json), ("--trace", args.trace), ("--timeline", args.timeline)]
                  + [("--records", r) for r in records])
    options: dict = {}
    if args.order_space:
        options.setdefault("elk-full", {})["space"] = args.order_space
    for name in ("cpsat", "milp"):
        opts = {}
        if args.window is not None:
            opts["window"] = args.window
        if args.time_limit is not None:
            opts["time_limit"] = args.time_limit
        if args.workers is not None:
            opts["workers"] = args.workers
        if args.seed is not None:
            opts["seed"] = args.seed
        if args.records is not None:
            opts["records"] = args.records
        if name == "milp" and args.milp_solver is not None:
            opts["backend"] = args.milp_solver
        if args.records is not None and len(exact) > 1:
            stem = Path(args.records)
            opts["records"] = str(stem.with_name(f"{stem.stem}-{name}{stem.suffix}"))
        if opts:
            options[name] = opts
    options = {k: v for k, v in options.items() if k in requested or ("all" in requested and k == "elk-full")}
    result = compile_model(args.model, chip=chip, batch=args.batch, seq=args.seq, mode=args.mode,
                           designs=args.designs, design_options=options,
                           placement=None if args.placement == "none" else args.placement)
    print(compile_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2))
        print(f"\nwrote {args.json}")
    if args.trace or args.timeline:
        name = args.trace_design or next(iter(n for n in ("elk-full", "elk-dyn") if n in result.designs),
                                         next(iter(result.designs)))
        if name not in result.designs:
            raise ElkError(f"--trace-design '{name}' was not compiled (designs: {', '.join(result.designs)})")
        d = result.designs[name]
        if args.trace:
            from elk.driver.trace import write_chrome_trace
            write_chrome_trace(args.trace, result.workload, d.schedule, d.sim)
            print(f"wrote {args.trace} ({name}; open in https://ui.perfetto.dev)")
        if args.timeline:
            from elk.driver.timeline_plot import plot_timeline
            plot_timeline(args.timeline, result.workload, d.schedule, d.sim)
            print(f"wrote {args.timeline} ({name})")
    for name in exact:
        path = options.get(name, {}).get("records")
        if path:
            print(f"wrote {path} ({name}: one row per window solve)")
    invalid = [n for n, d in result.designs.items() if not d.sim.valid]
    return 1 if invalid else 0


def cmd_plans(args: argparse.Namespace) -> int:
    from elk.plantable import plan_table
    from elk.driver.report import plan_table_report, table
    from elk.graphs.zoo import build_program

    chip = chip_from_args(args)
    program = build_program(args.model, batch=args.batch, seq=args.seq, mode=args.mode)
    if args.op is None:
        rows = []
        seen: dict = {}
        for i, op in enumerate(program.ops):
            if op.signature in seen:
                seen[op.signature][1] += 1
                continue
            seen[op.signature] = [i, 1]
        for sig, (i, count) in seen.items():
            rows.append([i, program.ops[i].name, count, sig.describe()])
        print(table(["first op", "name", "count", "operator"], rows, align="rlrl"))
        print("\nshow one with: elk plans MODEL --op NAME_OR_INDEX")
        return 0
    ops = program.ops
    index = None
    if args.op.isdigit():
        index = int(args.op)
        if index >= len(ops):
            raise ElkError(f"operator index {index} out of range (the program has {len(ops)} operators)")
    else:
        matches = [i for i, op in enumerate(ops) if op.name == args.op]
        if not matches:
            close = [op.name for op in ops if args.op in op.name][:8]
            raise ElkError(f"no operator named '{args.op}'" + (f" (did you mean: {', '.join(close)})" if close else ""))
        index = matches[0]
    op = ops[index]
    print(plan_table_report(f"{index}:{op.name}", plan_table(op.signature, chip), chip, limit=args.limit))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from elk.driver.report import fmt_bytes, table
    from elk.graphs.zoo import build_program, list_models

    rows = []
    for name in list_models():
        mode = "forward" if name.startswith("dit") else "decode"
        program = build_program(name, batch=args.batch, seq=args.seq, mode=mode)
        layers = program.layers
        rows.append([name, mode, f"{len(program.ops):,}", len(program.unique_signatures()),
                     f"{layers.count}x{layers.length}" if layers else "-", fmt_bytes(program.hbm_bytes),
                     f"{program.flops / 1e12:.3f}"])
    print(f"batch {args.batch}, KV/sequence {args.seq}")
    print(table(["model", "mode", "operators", "unique", "layers", "HBM/step", "TFLOP"], rows))
    return 0


def cmd_chips(args: argparse.Namespace) -> int:
    for chip in PRESETS.values():
        print(chip.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="elk", description="Compile DL models for inter-core connected AI chips.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model with the paper's designs and report latency")
    add_model_args(p)
    add_chip_args(p)
    p.add_argument("--designs", default="all",
                   help="comma list of basic,static,elk-dyn,elk-full,ideal,cpsat,milp or 'all' (the five paper designs)")
    p.add_argument("--order-space", choices=("complete", "artifact"), help="ELK-Full load orders (default complete)")
    p.add_argument("--window", type=int, help="operators per exact-solver window")
    p.add_argument("--time-limit", type=float, help="seconds per exact window solve")
    p.add_argument("--workers", type=int, help="CP-SAT workers / MILP threads")
    p.add_argument("--seed", type=int, help="solver random seed")
    p.add_argument("--milp-solver", choices=MILP_BACKENDS, help="MILP backend")
    p.add_argument("--records", help="per-window solve records (.csv, or .parquet with pyarrow); "
                                     "default MODEL-windows[-DESIGN].csv when cpsat/milp run")
    p.add_argument("--placement", default="heuristic", choices=ALLOC_SOLVERS + ("none",),
                   help="allocator giving each design's buffers SRAM addresses (none = byte budgets only)")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--trace", help="write a Chrome trace-event JSON (Perfetto)")
    p.add_argument("--timeline", help="write a PNG timeline")
    p.add_argument("--trace-design", help="design to trace (default elk-full or elk-dyn)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plans", help="show one operator's plan table")
    add_model_args(p)
    add_chip_args(p)
    p.add_argument("--op", help="operator name or index (omit to list unique operators)")
    p.add_argument("--limit", type=int, default=40, help="rows of the cold-hot table to print")
    p.set_defaults(func=cmd_plans)

    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--batch", type=_positive_int, default=32)
    p.add_argument("--seq", type=_positive_int, default=2048)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("chips", help="list chip presets")
    p.set_defaults(func=cmd_chips)

    from elk.cli.sweep import add_sweep_parser  # design-space sweeps on the study runner (elk/study.py)
    add_sweep_parser(sub)

    from elk.cli.alloc import add_alloc_parser  # on-chip memory allocation of a buffer CSV (elk/alloc_cli.py)
    add_alloc_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # a usage mistake raises UsageError (one line, below)
        return args.func(args)
    except ElkError as exc:
        print(f"elk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
