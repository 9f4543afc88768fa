"""The ``elk`` command line.

Every user mistake is an ElkError: printed as one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Sequence

from elk.chip import LOAD_MODELS, PRESETS, knob_overrides, parse_mesh, resolve_chip
from elk.cli.common import OneLineParser
from elk.cli.outputs import IMAGE, JSON, TABLE, check_output_files
from elk.compat import COMPAT_MODES
from elk.errors import ElkError
from solvers.alloc.allocate import ALLOC_SOLVERS
from solvers.registry import DESIGNS, SET_HELP
from solvers.solver_options import (BOUND_LEVELS, DEFAULT_BOUND, DEFAULT_BOUND_TIME_LIMIT, DEFAULT_PLACEMENT,
                                    DEFAULT_PLACEMENT_WORK_LIMIT, DEFAULT_TIME_LIMIT, MILP_BACKENDS)


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
    """The chip options every subcommand that compiles shares (a preset or file, then knobs over it)."""
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
    g.add_argument("--load-model", choices=LOAD_MODELS,
                   help="how HBM loads use their intervals: fluid (default: the rate may vary, so a load can "
                        "pause while an operator exchanges data) or rigid (one constant rate)")


def chip_from_args(args: argparse.Namespace):
    """The chip the options describe: the preset or file, with the knobs given applied over it."""
    chip = resolve_chip(args.chip)
    changes = knob_overrides(chip, cores=args.cores, sram_kib=args.sram_kib, hbm_tbps=args.hbm_tbps,
                             noc_scale=args.noc_scale, compute_scale=args.compute_scale, topology=args.topology,
                             mesh=args.mesh, link_bytes_per_cycle=args.link_bytes_per_cycle,
                             load_model=args.load_model)
    chip = chip.with_overrides(**changes) if changes else chip
    from elk.chiplabel import chip_label  # the banner names the base preset and every field changed
    return dataclasses.replace(chip, name=chip_label(chip, args.chip))


def _dim(text: str) -> tuple[str, int]:
    """``--dim NAME=VALUE``: a symbolic dimension of an ONNX model and its positive length."""
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return name.strip(), _positive_int(value)


def add_dim_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dim", type=_dim, action="append", default=[], metavar="NAME=VALUE",
                   help="bind a symbolic dimension of an ONNX model (repeatable; --batch and --seq bind the usual "
                        "names: batch, batch_size, seq, sequence_length, ...)")


def build_model(args: argparse.Namespace):
    """The program of ``args.model`` (zoo name, config, artifact graph or ONNX file) with --dim bindings."""
    from elk.graphs.zoo import build_program
    dims = dict(getattr(args, "dim", None) or [])
    return build_program(args.model, batch=args.batch, seq=args.seq, mode=args.mode,
                         **({"dims": dims} if dims else {}), **training_kwargs(args), **kv_append_kwargs(args))


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The training step's options (``--mode train``, docs/design.md §9.1)."""
    g = p.add_argument_group("training step (--mode train)")
    g.add_argument("--optimizer", default=None, metavar="{adam,sgd}",
                   help="the optimizer update after the backward pass (default adam)")
    g.add_argument("--master-weights", default=None, action=argparse.BooleanOptionalAction,
                   help="keep an fp32 master copy of the weights and optimizer state (default: with 2-byte weights)")
    p.add_argument("--kv-append", action="store_true",
                   help="decode: also write each layer's new key and value to the KV cache in HBM (stores; the Elk "
                        "paper's decode step writes nothing)")
    g.add_argument("--checkpoint", default=None, metavar="{none,layer}",
                   help="activation checkpointing: none (default: every saved activation is stored to HBM and "
                        "reloaded) or layer (only each layer's input; the backward recomputes the layer)")


def kv_append_kwargs(args: argparse.Namespace) -> dict:
    """``{"kv_append": True}`` when ``--kv-append`` was given (decode only: another mode is one error line)."""
    return {"kv_append": True} if getattr(args, "kv_append", False) else {}


def training_kwargs(args: argparse.Namespace) -> dict:
    """``{"training": TrainingOptions}`` for ``--mode train`` (values checked here, before any work), else {}.

    The options given with another mode are checked too, then a note says they do not apply (as --seq for a DiT).
    """
    from elk.graphs.training import TrainingOptions
    given = {k: getattr(args, k, None) for k in ("optimizer", "master_weights", "checkpoint")}
    given = {k: v for k, v in given.items() if v is not None}
    options = TrainingOptions(**given)  # an unknown optimizer or policy: one error line
    if args.mode == "train":
        return {"training": options}
    if given and not getattr(args, "training_noted", False):
        args.training_noted = True
        flags = " and ".join("--" + k.replace("_", "-") for k in given)
        print(f"note: {flags} {'applies' if len(given) == 1 else 'apply'} to --mode train only; "
              f"mode {args.mode} ignores {'it' if len(given) == 1 else 'them'}")
    return {}


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model and program options (zoo name or config path, batch, sequence, mode)."""
    p.add_argument("model", help="zoo model name (see `elk models`) or a path to a config.json, an Elk artifact "
                                 "graph or an ONNX model (.onnx)")
    p.add_argument("--batch", type=_positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--seq", type=_positive_int, default=None,
                   help=f"KV length (decode) or sequence (forward, train); default {MODEL_DEFAULTS['seq']}")
    p.add_argument("--mode", default=None, choices=("decode", "train", "forward"),
                   help="decode (default): one token step; forward: a full-sequence forward pass (the Elk paper's "
                        "training proxy); train: one training step (forward, backward, optimizer update); a DiT's "
                        "decode and forward are one forward denoising step")
    add_dim_arg(p)
    add_training_args(p)
    p.set_defaults(fill_model_defaults=True)


#: --seq and --mode when not given (None in the parser, so a note can say which were given but do not apply).
MODEL_DEFAULTS = {"seq": 2048, "mode": "decode"}


def fill_model_defaults(args: argparse.Namespace) -> None:
    """Record which of --seq/--mode the user gave (``args.given``), then fill in the defaults."""
    args.given = {k for k in MODEL_DEFAULTS if getattr(args, k) is not None}
    for key, value in MODEL_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def not_applied_note(program, args: argparse.Namespace) -> str | None:
    """A note naming the options the user gave that the model does not use (a DiT ignores --seq and --mode)."""
    skipped = {k: v for k, v in program.meta.get("not_applied", {}).items() if k in getattr(args, "given", ())}
    if not skipped:
        return None
    options = " and ".join(f"--{k} {v}" for k, v in skipped.items())
    return (f"note: {options} {'does' if len(skipped) == 1 else 'do'} not apply to {program.name}: it runs one "
            f"forward denoising step over {program.meta.get('batch')} images of {program.meta.get('seq')} tokens")


def _finite_positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text}")
    return value


def _warm_start_arg(value: str | None, compiled: list[str]) -> tuple[str, str] | None:
    """``--warm-start``: ("design", NAME) or ("file", PATH), checked against the designs compiled (no work); the
    rules of who may start from whom are the run plan's (solvers.registry.RunPlan)."""
    from solvers.registry import DESIGNS, EXACT_DESIGNS, shared_warm_start
    if value is None:
        return None
    exact = [d for d in EXACT_DESIGNS if d in compiled]
    if not exact:
        raise ElkError(f"--warm-start {value}: only the exact designs ({', '.join(EXACT_DESIGNS)}) start from a "
                       f"warm start, and none is among the designs compiled ({', '.join(compiled)})")
    if value in DESIGNS:
        if value not in compiled:
            raise ElkError(f"--warm-start {value}: {value} is not among the designs compiled "
                           f"({', '.join(compiled)}); add it to --designs")
        try:
            shared_warm_start(exact, value)
        except ElkError as err:
            raise ElkError(f"--warm-start {value}: {err}") from None
        return "design", value
    path = Path(value)
    if path.suffix.lower() != ".json" and not path.exists():
        raise ElkError(f"--warm-start {value}: neither a design ({', '.join(DESIGNS)}) nor a schedule file (.json)")
    return "file", value


def _save_targets(values: list[str], compiled: list[str]) -> list[tuple[str | None, str]]:
    """``--save-schedule [DESIGN=]PATH`` values as (design or None for the best strict one, path), checked."""
    import re

    from solvers.registry import DESIGNS, RELAXED_DESIGNS
    out: list[tuple[str | None, str]] = []
    for value in values or []:
        name, sep, rest = value.partition("=")
        if sep and name in DESIGNS:
            design, path = name, rest
        elif sep and re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise ElkError(f"--save-schedule {value}: unknown design '{name}' (known: {', '.join(DESIGNS)})")
        else:
            design, path = None, value
        if not path:
            raise ElkError(f"--save-schedule {value}: no file name")
        if design is not None and design not in compiled:
            raise ElkError(f"--save-schedule {value}: {design} is not among the designs compiled "
                           f"({', '.join(compiled)})")
        if design in RELAXED_DESIGNS:
            raise ElkError(f"--save-schedule {value}: {design} is a relaxed schedule, not a valid one to save")
        if design is None and not [d for d in compiled if d not in RELAXED_DESIGNS]:
            raise ElkError(f"--save-schedule {value}: saves the best valid design, and only relaxed ones are "
                           f"compiled ({', '.join(compiled)})")
        out.append((design, path))
    paths = [str(Path(p).resolve()) for _, p in out]
    if len(set(paths)) != len(paths):
        raise ElkError("--save-schedule: two schedules into one file")
    if sum(1 for d, _ in out if d is None) > 1:
        raise ElkError("--save-schedule: more than one PATH without a DESIGN= (the best design is saved once)")
    return out


def cmd_compile(args: argparse.Namespace) -> int:
    """``elk compile``: every check that needs no plan table, the run plan, the compile, then the outputs."""
    if args.compat is not None:  # the artifact's numbers, bugs included: its own path (elk/cli/compat.py)
        from elk.cli.compat import cmd_compile_compat
        return cmd_compile_compat(args, chip_from_args)
    from elk.driver.api import compile as compile_model
    from elk.driver.report import compile_report

    from solvers.registry import RunPlan, parse_designs

    chip = chip_from_args(args)
    compiled = parse_designs(args.designs)  # the run plan below is built from them, before any work
    if args.trace_design is not None and args.trace_design not in compiled:
        raise ElkError(f"--trace-design '{args.trace_design}' is not among the designs compiled "
                       f"({', '.join(compiled)})")
    records = _records_targets(args.records, compiled)
    warm = _warm_start_arg(args.warm_start, compiled)
    saves = _save_targets(args.save_schedule, compiled)
    check_output_files([("--json", args.json, JSON), ("--trace", args.trace, JSON), ("--timeline", args.timeline, IMAGE)]
                       + [("--records", r, TABLE) for r in records.values()]
                       + [("--save-schedule", p, JSON) for _, p in saves])
    options = _design_options(args, compiled, records)  # each checked when made
    training = training_kwargs(args)  # checked before any work
    # a training step is built here, so that its refusals (no trainable weights...) come before any work
    model = build_model(args) if args.dim or args.mode == "train" or args.kv_append else args.model
    warm_start = warm[1] if warm is not None else None
    if warm is not None and warm[0] == "file":
        # every refusal that needs no plan table first, then the simulator's verdict on this workload
        from elk.schedule_file import check_schedule_file, schedule_from_document
        from elk.workload import Workload
        model = build_model(args)
        doc = check_schedule_file(warm[1], model, chip)
        warm_start = schedule_from_document(doc, warm[1], Workload.build(model, chip))
    plan = RunPlan.build(compiled, options, warm_start)
    result = compile_model(model, chip=chip, batch=args.batch, seq=args.seq, mode=args.mode, designs=plan, **training,
                           placement=None if args.placement == "none" else args.placement,
                           placement_work_limit=args.placement_work_limit,
                           bound=None if args.bound == "none" else args.bound,
                           bound_time_limit=args.bound_time_limit)
    note = not_applied_note(result.program, args)
    if note:
        print(note)
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
    for name, path in records.items():
        print(f"wrote {path} ({name}: one row per window solve)")
    unsaved = _save_schedules(result, saves)
    invalid = [n for n, d in result.designs.items() if not d.sim.valid]
    return 1 if invalid or unsaved else 0


def _records_targets(path: str | None, compiled: list[str]) -> dict[str, str]:
    """``--records FILE``: the file each design that keeps per-window records writes (FILE-DESIGN.csv each when
    more than one does)."""
    from solvers.registry import EXACT
    windows = [d for d in compiled if d in EXACT and "records" in _field_names(EXACT[d].options)]
    if path is None:
        return {}
    if not windows:
        raise ElkError(f"--records: per-window records come from {' or '.join(_window_designs())}, and none is "
                       f"among the designs compiled ({', '.join(compiled)})")
    stem = Path(path)
    return {n: str(stem.with_name(f"{stem.stem}-{n}{stem.suffix}")) if len(windows) > 1 else path for n in windows}


def _window_designs() -> list[str]:
    from solvers.registry import EXACT
    return [d for d, kind in EXACT.items() if "records" in _field_names(kind.options)]


def _field_names(cls) -> set[str]:
    import dataclasses
    return {f.name for f in dataclasses.fields(cls)}


def _design_options(args: argparse.Namespace, compiled: list[str], records: dict[str, str]) -> dict:
    """Each compiled exact design's options from the command line (a knob its kind has no field for, such as
    --window for periodic, does not reach it), and ELK-Full's load-order space."""
    from solvers.registry import EXACT
    options: dict = {"elk-full": {"space": args.order_space}} if args.order_space else {}
    for name in (d for d in compiled if d in EXACT):
        options[name] = EXACT[name].options.from_knobs(time_limit=args.time_limit, workers=args.workers,
                                                       seed=args.seed, window=args.window,
                                                       backend=args.milp_solver, records=records.get(name))
    return options


def _save_schedules(result, saves: list[tuple[str | None, str]]) -> int:
    """Write the ``--save-schedule`` files; returns how many could not be written (invalid schedules)."""
    from elk.schedule_file import write_schedule
    failed = 0
    for design, path in saves:
        if design is None:
            valid = {n: d for n, d in result.designs.items() if d.schedule.relaxation.strict and d.sim.valid}
            if not valid:
                print(f"elk: {path} not written: no design produced a valid schedule", file=sys.stderr)
                failed += 1
                continue
            design = min(valid, key=lambda n: valid[n].sim.latency_cycles)
        d = result.designs[design]
        if not d.sim.valid:
            print(f"elk: {path} not written: {design}'s schedule is not valid", file=sys.stderr)
            failed += 1
            continue
        write_schedule(path, result.workload, d.schedule, d.sim)
        print(f"wrote {path} ({design}'s schedule, {d.sim.latency_ms:.3f} ms; start an exact design from it "
              f"with --warm-start {shlex.quote(str(path))})")
    return failed


def cmd_plans(args: argparse.Namespace) -> int:
    """``elk plans``: the unique operators of a model, or one operator's plan table."""
    from elk.plantable import plan_table
    from elk.driver.report import plan_table_report, table
    chip = chip_from_args(args)
    program = build_model(args)
    note = not_applied_note(program, args)
    if note:
        print(note)
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
    from elk.plantable import is_cached
    cached = is_cached(op.signature, chip)  # asked before: plan_table() stores what it builds
    print(plan_table_report(f"{index}:{op.name}", plan_table(op.signature, chip), chip, limit=args.limit,
                            cached=cached))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``elk models``: the model zoo with operator counts, HBM bytes and FLOPs."""
    from elk.driver.report import fmt_bytes, fmt_tflop, table
    from elk.graphs.zoo import build_program, list_models

    if args.paths:
        return _model_summaries(args)
    training = training_kwargs(args)
    rows = []
    for name in list_models():
        mode = "forward" if name.startswith("dit") and args.mode == "decode" else args.mode
        program = build_program(name, batch=args.batch, seq=args.seq, mode=mode,
                                **(training if mode == "train" else {}))
        layers = program.layers
        rows.append([name, mode, f"{len(program.ops):,}", len(program.unique_signatures()),
                     f"{layers.count}x{layers.length}" if layers else "-", fmt_bytes(program.hbm_bytes),
                     fmt_tflop(program.flops)])
    print(f"batch {args.batch}, KV/sequence {args.seq}")
    print(table(["model", "mode", "operators", "unique", "layers", "HBM/step", "TFLOP/step"], rows))
    print("\nunique = distinct operator shapes (one plan table each); layers = repeated blocks x operators per "
          "block (40x42: 40 layers of 42 operators); HBM/step = bytes loaded from HBM per step; TFLOP/step = "
          "floating-point operations per step (10^12)")
    return 0


def training_summary(program) -> str:
    """What a training step holds: operators and FLOPs by phase, HBM bytes read and written by category."""
    from elk.driver.report import fmt_bytes, fmt_tflop
    m = program.meta
    reads, writes = m["hbm_read_bytes"], m["hbm_write_bytes"]
    lines = [f"  training step: {m['optimizer']}, master weights {'on' if m['master_weights'] else 'off'}, "
             f"checkpoint {m['checkpoint']}; {m['parameters']:,} parameters in {m['trainable_weights']} weights",
             f"  operators: forward {m['forward_ops']:,}, backward {m['backward_ops']:,}"
             + (f" (recompute {m['recompute_ops']:,} of them)" if m["recompute_ops"] else "") + ", optimizer "
             f"{m['optimizer_ops']:,}; TFLOP: forward {fmt_tflop(m['forward_flops'])}, backward "
             f"{fmt_tflop(m['backward_flops'])}, recompute {fmt_tflop(m['recompute_flops'])}, optimizer "
             f"{fmt_tflop(m['optimizer_flops'])}",
             "  HBM read:  " + ", ".join(f"{k.replace('_', ' ')} {fmt_bytes(v)}" for k, v in reads.items() if v),
             "  HBM write: " + ", ".join(f"{k.replace('_', ' ')} {fmt_bytes(v)}" for k, v in writes.items() if v),
             f"  activations held in HBM between forward and backward {fmt_bytes(m['saved_activation_bytes'])}, "
             f"peak {fmt_bytes(m['peak_activation_hbm_bytes'])}"]
    return "\n".join(lines)


def _model_summaries(args: argparse.Namespace) -> int:
    """``elk models PATH...``: what elk builds from each file (operators by kind, layers, bytes, FLOPs)."""
    from collections import Counter

    from elk.driver.report import fmt_bytes, fmt_tflop, table
    from elk.graphs.zoo import build_program
    dims = dict(args.dim or [])
    training = training_kwargs(args)
    programs = [build_program(path, batch=args.batch, seq=args.seq, mode=args.mode, **({"dims": dims} if dims else {}),
                              **training)
                for path in args.paths]  # every file is checked before anything is printed
    for path, program in zip(args.paths, programs):
        layers = program.layers
        kinds = Counter(op.kind.value for op in program.ops)
        meta = program.meta
        print(f"{path}: {meta.get('format', meta.get('family', 'model'))}, {meta.get('mode', args.mode)}"
              + (f", dims {', '.join(f'{k}={v}' for k, v in meta['dims'].items())}" if meta.get("dims") else "")
              + (f", opset {meta['opset']}" if meta.get("opset") else ""))
        rows = [[f"{len(program.ops):,}", len(program.unique_signatures()),
                 f"{layers.count}x{layers.length}" if layers else "-", fmt_bytes(program.hbm_bytes),
                 fmt_tflop(program.flops), ", ".join(f"{k} {n}" for k, n in kinds.most_common())]]
        print(table(["operators", "unique", "layers", "HBM/step", "TFLOP/step", "by kind"], rows))
        extra = {k: meta[k] for k in ("onnx_nodes", "folded", "layout_removed", "embedding_loads") if k in meta}
        if extra:
            print("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in extra.items()))
        if meta.get("step") == "train":
            print(training_summary(program))
        print()
    return 0


def cmd_chips(args: argparse.Namespace) -> int:
    """``elk chips``: the chip presets."""
    for chip in PRESETS.values():
        print(chip.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``elk`` argument parser with every subcommand (usage mistakes become one-line errors)."""
    parser = OneLineParser(prog="elk", description="Compile DL models for inter-core connected AI chips.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model with the paper's designs and report latency")
    add_model_args(p)
    add_chip_args(p)
    p.add_argument("--designs", default="default",
                   help=f"comma list of {','.join(DESIGNS)}, or {SET_HELP}; default: default")
    p.add_argument("--order-space", choices=("complete", "artifact"), help="ELK-Full load orders (default complete)")
    p.add_argument("--window", type=_positive_int, help="operators per exact-solver window (cpsat, milp)")
    p.add_argument("--time-limit", type=_finite_positive,
                   help="seconds per exact solve: each window (cpsat, milp), the layer model (periodic); "
                        f"default {DEFAULT_TIME_LIMIT:g}")
    p.add_argument("--workers", type=_positive_int,
                   help="CP-SAT workers / MILP threads of the exact designs; default 8 for periodic, 2 for windows, 1 for lns and lp-guided")
    p.add_argument("--seed", type=int, help="solver random seed of the exact designs")
    p.add_argument("--milp-solver", choices=MILP_BACKENDS, help="MILP backend")
    p.add_argument("--records", help="write per-window solve records of cpsat/milp (.csv, or .parquet with "
                                     "pyarrow; FILE-DESIGN.csv each when both run); none unless asked")
    p.add_argument("--warm-start", metavar="DESIGN|FILE.json",
                   help="what the exact designs (periodic, cpsat, milp, lp-guided, lns, optimal) start from: a design compiled too, or a "
                        "schedule file written by --save-schedule (default: the fastest design run before them)")
    p.add_argument("--save-schedule", action="append", default=[], metavar="[DESIGN=]FILE.json",
                   help="write a design's schedule to a file (repeatable; without DESIGN=, the fastest valid one)")
    p.add_argument("--bound", default=DEFAULT_BOUND, choices=("none",) + BOUND_LEVELS,
                   help="proven lower bound for certified gaps: closed (closed forms), lp (+ the LP and the layer "
                        "bound; default), layers (+ blocks of layers: stronger where SRAM binds, takes its time "
                        "limit there), milp (+ the MILP over plan choices); none skips it")
    p.add_argument("--bound-time-limit", type=_finite_positive, default=DEFAULT_BOUND_TIME_LIMIT,
                   help=f"seconds for the bound's solver (default {DEFAULT_BOUND_TIME_LIMIT:g})")
    p.add_argument("--placement", default=DEFAULT_PLACEMENT, choices=ALLOC_SOLVERS + ("none",),
                   help="allocator giving each design's buffers SRAM addresses (default search: the greedy "
                        "allocator, and the exact search only where its placement overflows, before any schedule "
                        "is repaired; none = byte budgets only)")
    p.add_argument("--placement-work-limit", type=_finite_positive, default=DEFAULT_PLACEMENT_WORK_LIMIT,
                   help="work units (about core-seconds) for each exact placement: deterministic, so the result does "
                        f"not depend on the machine's speed (default {DEFAULT_PLACEMENT_WORK_LIMIT:g})")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--trace", help="write a Chrome trace-event JSON (Perfetto)")
    p.add_argument("--timeline", help="write a PNG timeline")
    p.add_argument("--trace-design", help="design to trace (default elk-full or elk-dyn)")
    p.add_argument("--compat", choices=COMPAT_MODES,
                   help="artifact: reproduce the Elk artifact's numbers, bugs included (its plan enumeration, "
                        "units, rigid loads, its parser's quirks on its graph files; paper designs only); "
                        "never the default")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plans", help="show one operator's plan table")
    add_model_args(p)
    add_chip_args(p)
    p.add_argument("--op", help="operator name or index (omit to list unique operators)")
    p.add_argument("--limit", type=int, default=40, help="rows of the cold-hot table to print")
    p.set_defaults(func=cmd_plans)

    p = sub.add_parser("models", help="list the model zoo, or summarise model files (PATH ...)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="model files to summarise (config.json, artifact graph, .onnx) instead of the zoo")
    p.add_argument("--batch", type=_positive_int, default=32)
    p.add_argument("--seq", type=_positive_int, default=2048)
    p.add_argument("--mode", default="decode", choices=("decode", "train", "forward"))
    add_dim_arg(p)
    add_training_args(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("chips", help="list chip presets")
    p.set_defaults(func=cmd_chips)

    from elk.cli.sweep import add_sweep_parser  # design-space sweeps on the study runner (elk.study)
    add_sweep_parser(sub)

    from elk.cli.alloc import add_alloc_parser  # on-chip memory allocation of a buffer CSV (elk.cli.alloc)
    add_alloc_parser(sub)
    return parser


def warn_if_cache_off() -> None:
    """One warning line when the plan-table cache cannot be written: otherwise every run silently rebuilds."""
    from elk.tablecache import cache_problem
    problem = cache_problem()
    if problem is not None:
        print(f"elk: warning: plan-table cache off, every run rebuilds its tables: cannot write {problem} "
              f"(set ELK_CACHE_DIR to a writable folder, or ELK_NO_CACHE=1 to silence this)", file=sys.stderr)


def quiet_broken_pipe() -> int:
    """The reader of our output left (``elk models | head -3``): stop quietly, as Unix tools do.

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again; the
    status is the shell's for a process ended by SIGPIPE (128 + 13).
    """
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to redirect
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``elk`` command line; a user mistake is one ``elk: error:`` line and exit status 2."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # a usage mistake raises UsageError (one line, below)
        if getattr(args, "fill_model_defaults", False):
            fill_model_defaults(args)
        if args.command in ("compile", "plans", "sweep"):  # the commands that build plan tables
            warn_if_cache_off()
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        return quiet_broken_pipe()
    except ElkError as exc:
        print(f"elk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
