"""Per-token latency of every design over models, batches and KV lengths (the paper's Fig. 17 study).

Resumable: every finished run is appended as one row to a CSV at once, and a
rerun skips the (model, batch, seq, chip knobs) rows already there, so an
interrupted study loses at most the run in progress.

    python experiments/end2end.py --out out/end2end.csv [--models ...] [--batches 16,32,64] [--seqs 2048,4096]

Prints, per model, each design's latency and % of Ideal, and the average
ELK-Full / Ideal over the models.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import elk

FIELDS = ["model", "batch", "seq", "chip", "hbm_tbps", "topology", "design", "latency_ms", "pct_of_ideal",
          "valid", "overlapped_ms", "preload_only_ms", "execute_only_ms", "stall_ms", "hbm_utilisation",
          "noc_utilisation", "achieved_tflops", "peak_sram_bytes", "compile_seconds", "table_seconds"]


def done_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    with path.open() as f:
        return {(r["model"], r["batch"], r["seq"], r["chip"], r["hbm_tbps"], r["topology"]) for r in csv.DictReader(f)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/end2end.csv")
    p.add_argument("--models", default="llama2-13b,llama2-70b,opt-30b,gemma2-27b")
    p.add_argument("--batches", default="32")
    p.add_argument("--seqs", default="2048")
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--hbm-tbps", type=float, default=16.0)
    p.add_argument("--topology", default="all-to-all", choices=("all-to-all", "mesh"))
    p.add_argument("--designs", default="all")
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    finished = done_keys(out)
    new_file = not out.is_file()
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for model in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                for seq in (int(s) for s in args.seqs.split(",")):
                    key = (model, str(batch), str(seq), args.chip, str(args.hbm_tbps), args.topology)
                    if key in finished:
                        print(f"skip {key} (done)")
                        continue
                    t0 = time.perf_counter()
                    overrides = {"hbm_bytes_per_s": args.hbm_tbps * 1e12}
                    if args.topology == "mesh":
                        overrides.update(topology_kind="mesh", rows=0, cols=0)
                    r = elk.compile(model, chip=args.chip, batch=batch, seq=seq, designs=args.designs,
                                    chip_overrides=overrides)
                    for row in r.rows():
                        writer.writerow({"model": model, "batch": batch, "seq": seq, "chip": args.chip,
                                         "hbm_tbps": args.hbm_tbps, "topology": args.topology,
                                         "table_seconds": r.table_seconds,
                                         **{k: row[k] for k in FIELDS if k in row}})
                    f.flush()
                    print(f"done {key} in {time.perf_counter() - t0:.1f} s: " + ", ".join(
                        f"{d['design']} {d['latency_ms']:.3f} ms" for d in r.rows()), flush=True)
    summarize(out)


def summarize(path: Path) -> None:
    import pandas as pd
    df = pd.read_csv(path)
    if df.empty:
        return
    table = df.pivot_table(index=["model", "batch", "seq", "hbm_tbps", "topology"], columns="design",
                           values="pct_of_ideal")
    print("\n% of Ideal (Ideal latency / design latency):")
    print(table.round(1).to_string())
    print("\naverage over rows:")
    print(table.mean().round(1).to_string())
    invalid = df[~df["valid"].astype(bool)]
    if len(invalid):
        print(f"\n{len(invalid)} INVALID schedules:\n{invalid[['model', 'design']].to_string()}")


if __name__ == "__main__":
    main()
