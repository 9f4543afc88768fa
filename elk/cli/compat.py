"""``elk compile --compat artifact``: the paper's designs as the Elk artifact computes them, bugs included.

Everything the mode cannot honour is refused here, before a plan table is
built: a mesh (the artifact has none), a load model other than rigid, designs
the artifact does not have, and the outputs of elk's own compile (placement,
traces, schedule files) that the mode does not produce.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from elk.chip import Chip
from elk.cli.outputs import JSON, check_output_files
from elk.compat import check_request, compat_chip, resolve
from elk.errors import ElkError

#: compile options that belong to elk's own compile, with what they would have needed
_UNSUPPORTED = (("trace", "--trace"), ("timeline", "--timeline"), ("records", "--records"),
                ("warm_start", "--warm-start"), ("order_space", "--order-space"), ("trace_design", "--trace-design"))


def compat_designs(spec: str) -> tuple[str, ...]:
    """The paper designs ``--designs`` names (``default``, ``paper`` and ``all`` are all five)."""
    from elk.driver.compat import PAPER_DESIGNS
    if spec in ("default", "paper", "all"):
        return PAPER_DESIGNS
    names = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    bad = [n for n in names if n not in PAPER_DESIGNS]
    if bad or not names:
        raise ElkError(f"--compat: the artifact-compatible mode runs the paper's designs only "
                       f"({', '.join(PAPER_DESIGNS)}), not {', '.join(bad) or 'none'}")
    return names


def cmd_compile_compat(args: argparse.Namespace, chip_from_args: Callable[[argparse.Namespace], Chip]) -> int:
    """Compile in the compatible mode and print one line per design; 1 if the simulator rejects one.

    ``chip_from_args`` is the compile command's own reading of the chip flags.
    """
    compat = resolve(args.compat)
    check_request(compat, topology=args.topology, mesh=None if args.mesh is None else "x".join(map(str, args.mesh)),
                  load_model=args.load_model)
    for attr, flag in _UNSUPPORTED:
        if getattr(args, attr, None):
            raise ElkError(f"{flag} is not available with --compat {args.compat} (it reports latencies only)")
    if args.save_schedule:
        raise ElkError(f"--save-schedule is not available with --compat {args.compat} (it reports latencies only)")
    designs = compat_designs(args.designs)
    chip = chip_from_args(args)
    check_request(compat, topology=chip.topology.kind)
    check_output_files([("--json", args.json, JSON)])

    from elk.driver.compat import compile_compat
    result = compile_compat(args.model, compat, chip=chip, batch=args.batch, seq=args.seq, mode=args.mode,
                            designs=designs)
    seen = compat_chip(chip, compat)  # the chip as the mode reads it (per-design load rates in the table)
    print(f"elk: {result.model} ({args.mode}, batch {args.batch}, seq {args.seq}) on {seen.describe()}")
    print(f"{compat.describe()}: reproduces the Elk artifact, bugs included (not elk's own numbers)")
    if compat.graph_quirks and result.program.meta.get("artifact_quirks") is None:
        print(f"(the parser's quirks apply to the artifact's graph files; {args.model} is read as elk reads it)")
    print(f"{'design':<10} {'latency_ms':>11}  valid  load model, HBM, per-core load rate")
    for name, d in result.designs.items():
        c = d.chip
        print(f"{name:<10} {d.latency_ms:>11.4f}  {'yes' if d.sim.valid else 'NO':<5}  {c.load_model.value}, "
              f"{c.hbm_bytes_per_s / 1e12:.4g} TB/s, {c.noc_load_bytes_per_s_per_core / 1e9:.4g} GB/s")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"model": result.model, "compat": args.compat, "mode": args.mode, "batch": args.batch, "seq": args.seq,
               "designs": {n: {"latency_ms": d.latency_ms, "valid": d.sim.valid, "chip": d.chip.to_dict()}
                           for n, d in result.designs.items()}}
        path.write_text(json.dumps(doc, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0 if all(d.sim.valid for d in result.designs.values()) else 1


__all__ = ["cmd_compile_compat", "compat_designs"]
