"""One real training step (forward, backward, optimizer update, HBM writes) on the default chip, and its figure.

    python -m experiments.train_step [--model llama2-13b] [--batch 2] [--seq 2048] [--out DIR]
                                     [--compute-scales 0.75,1,1.5] [--smoke]

For the paper's training point (Llama2-13B, batch 2, sequence 2048, IPU-POD4) it compiles:

* the training step with every checkpointing policy (``none``: every saved activation stored to HBM and
  read back, under fluid and rigid loads; ``layer``: only each layer's input stored, the layer recomputed
  before its backward, fluid loads), with the default designs and the proven bound; every schedule is judged
  by the simulator (byte budgets only: SRAM addresses are left to ``elk compile``'s placement, which costs a
  re-run per repair on 6,671 operators);
* the one-pass forward proxy (``--mode forward``, the Elk paper's Fig. 24 program) on the same chip, in the
  same run, so that the step's compile time is compared with the forward's on one machine;
* the step's achieved TFLOPS against the chip's available TFLOPS at each compute scale, beside the forward
  proxy's (Fig. 24 for the real step).

Writes ``train_step.csv`` (one row per program, load model and design), ``train_step.md`` (the tables
quoted in the README) and ``fig_train_tflops.png`` to ``--out`` (default
``experiments/results/train_step``). ``--smoke`` runs the tiny model at B1 S64 (seconds).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import elk
from elk.chip import preset
from elk.graphs.training import TrainingOptions

OUT = Path(__file__).resolve().parent / "results" / "train_step"
DESIGNS = "default"


@dataclass(frozen=True)
class Case:
    """One program to compile: the forward proxy or the step under a checkpointing policy."""

    label: str
    mode: str
    checkpoint: str | None = None

    def training(self) -> TrainingOptions | None:
        return TrainingOptions(checkpoint=self.checkpoint) if self.mode == "train" else None


CASES = (Case("forward proxy", "forward"), Case("step", "train", "none"), Case("step, checkpoint layer", "train",
                                                                               "layer"))


def compile_case(case: Case, model: str, batch: int, seq: int, load_model: str, compute_scale: float = 1.0,
                 designs: str = DESIGNS):
    chip = preset("ipu-pod4").with_overrides(load_model=load_model, compute_scale=compute_scale)
    started = time.perf_counter()
    result = elk.compile(model, chip=chip, batch=batch, seq=seq, mode=case.mode, designs=designs,
                         training=case.training(), workers=2, placement=None)
    return result, time.perf_counter() - started


def rows_of(result, case: Case, load_model: str, seconds: float, compute_scale: float = 1.0) -> list[dict]:
    program = result.program
    meta = program.meta
    base = {"program": case.label, "load_model": load_model, "compute_scale": compute_scale,
            "peak_tflops": result.chip.peak_flops / 1e12,
            "operators": len(program.ops), "flops": program.flops, "hbm_read_bytes": program.hbm_bytes,
            "hbm_write_bytes": program.hbm_write_bytes, "compile_s": seconds,
            "table_s": result.table_seconds, "bound_ms": result.bound_ms,
            "bound": result.bound.name if result.bound is not None else None}
    for key in ("forward_flops", "backward_flops", "optimizer_flops", "recompute_flops"):
        base[key] = meta.get(key)
    for key, value in meta.items():
        if key.startswith("hbm_") and isinstance(value, (int, float)):
            base[key] = value
    out = []
    for r in result.rows():
        out.append({**base, "design": r["design"], "latency_ms": r["latency_ms"], "valid": r["valid"],
                    "gap_to_bound": r.get("gap_to_bound"), "achieved_tflops": r["achieved_tflops"],
                    "hbm_read_utilisation": r.get("hbm_read_utilisation", r["hbm_utilisation"]),
                    "hbm_write_utilisation": r.get("hbm_write_utilisation", 0.0),
                    "relaxation": r["relaxation"]})
    return out


def markdown(frame: pd.DataFrame, sweep: pd.DataFrame) -> str:
    lines = ["# One training step on the default chip", ""]
    step = frame[frame["compute_scale"] == 1.0]
    for (program, lm), g in step.groupby(["program", "load_model"], sort=False):
        first = g.iloc[0]
        lines += [f"## {program}, {lm} loads", "",
                  f"{int(first['operators']):,} operators, {first['flops'] / 1e12:.1f} TFLOP, "
                  f"{first['hbm_read_bytes'] / 1e9:.1f} GB read and {first['hbm_write_bytes'] / 1e9:.1f} GB "
                  f"written per step; bound {first['bound_ms']:.3f} ms ({first['bound']}); compile "
                  f"{first['compile_s']:.0f} s (plan tables {first['table_s']:.0f} s)", "",
                  "| design | latency ms | gap % | TFLOPS | HBM read util | HBM write util | valid |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in g.iterrows():
            gap = "-" if pd.isna(r["gap_to_bound"]) else f"{100 * r['gap_to_bound'] + 0.0:.2f}".replace("-0.00", "0.00")
            lines.append(f"| {r['design']} | {r['latency_ms']:.3f} | {gap} | {r['achieved_tflops']:.1f} | "
                         f"{100 * r['hbm_read_utilisation']:.2f}% | {100 * r['hbm_write_utilisation']:.2f}% | "
                         f"{'yes' if r['valid'] else 'NO'} |")
        lines.append("")
    if len(sweep):
        lines += ["## Achieved TFLOPS vs compute scale (fluid loads)", "",
                  "| program | compute scale | " + " | ".join(sorted(sweep["design"].unique())) + " |",
                  "|---|---|" + "---|" * sweep["design"].nunique()]
        piv = sweep.pivot_table(index=["program", "compute_scale"], columns="design", values="achieved_tflops")
        for (program, scale), row in piv.iterrows():
            lines.append(f"| {program} | {scale:g} | " + " | ".join(f"{v:.1f}" for v in row.values) + " |")
    return "\n".join(lines) + "\n"


def figure(sweep: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for (program, design), g in sweep.groupby(["program", "design"]):
        if design not in ("static", "elk-full", "ideal"):
            continue
        g = g.sort_values("compute_scale")
        ax.plot(g["compute_scale"], g["achieved_tflops"], marker="o",
                linestyle="-" if program.startswith("step") else "--", label=f"{program}: {design}")
    ax.set_xlabel("compute scale (x the chip's nominal compute)")
    ax.set_ylabel("achieved TFLOPS (model FLOPs / step time)")
    ax.set_title("Llama2-13B B2 S2048 on IPU-POD4: training step vs forward proxy")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llama2-13b")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--compute-scales", default="0.75,1,1.5")
    p.add_argument("--smoke", action="store_true", help="tiny model, B1 S64")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.batch, args.seq = "tiny", 1, 64
    scales = [float(x) for x in args.compute_scales.split(",") if x]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in CASES:
        for lm in ("fluid", "rigid") if case.checkpoint != "layer" else ("fluid",):
            result, seconds = compile_case(case, args.model, args.batch, args.seq, lm)
            rows += rows_of(result, case, lm, seconds)
            print(f"{case.label:24s} {lm:5s} compile {seconds:7.1f} s: " + ", ".join(
                f"{r['design']} {r['latency_ms']:.3f} ms{'' if r['valid'] else ' INVALID'}" for r in result.rows()),
                flush=True)
    for case in CASES[:2]:
        for scale in scales:
            if scale == 1.0:
                continue
            result, seconds = compile_case(case, args.model, args.batch, args.seq, "fluid", scale)
            rows += rows_of(result, case, "fluid", seconds, scale)
            print(f"{case.label:24s} compute x{scale:g}: compile {seconds:.1f} s", flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "train_step.csv", index=False)
    sweep = frame[(frame["load_model"] == "fluid") & frame["program"].isin([c.label for c in CASES[:2]])]
    (args.out / "train_step.md").write_text(markdown(frame, sweep))
    figure(sweep, args.out / "fig_train_tflops.png")
    fwd = frame[(frame["program"] == "forward proxy") & (frame["compute_scale"] == 1.0)]["compile_s"]
    stp = frame[(frame["program"] == "step") & (frame["compute_scale"] == 1.0)]["compile_s"]
    print(f"compile time, step / forward proxy (same machine, same run): {stp.mean() / fwd.mean():.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
