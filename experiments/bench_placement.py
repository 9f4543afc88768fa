"""SRAM placement of compiled schedules: buffers, byte peak vs address peak, fragmentation, repair cost, time.

    python experiments/bench_placement.py [--models llama2-13b,opt-30b,...] [--tight]

Part 1 compiles each model (B32 S2048, the default chip) with the heuristic
designs and places every design's buffers. Part 2 (``--tight``) sweeps a
small SRAM on the tiny model, where schedules that fit in bytes stop fitting
in addresses and get repaired, and prints what the repair cost.
"""
from __future__ import annotations

import argparse
import time

import elk
from elk.driver.report import table


def place_models(models: list[str], batch: int, seq: int) -> None:
    rows = []
    for model in models:
        started = time.perf_counter()
        result = elk.compile(model, batch=batch, seq=seq, designs="basic,static,elk-dyn,elk-full",
                             placement="heuristic")
        for name, d in result.designs.items():
            p = d.placement
            rows.append([model, name, f"{p.buffers:,}", f"{p.byte_peak:,}", f"{p.allocated_peak:,}",
                         f"{p.capacity:,}", f"{100 * p.fragmentation:.2f}", p.status, f"{p.seconds:.2f}"])
        print(f"{model}: compiled and placed in {time.perf_counter() - started:.1f} s", flush=True)
    print(table(["model", "design", "buffers", "byte peak", "address peak", "SRAM", "frag %", "placement", "s"],
                rows))


def tight_sweep(srams: list[int], hbm_tbps: float) -> None:
    rows = []
    for sram in srams:
        overrides = {"sram_per_core": sram, "hbm_bytes_per_s": hbm_tbps * 1e12}
        try:
            result = elk.compile("tiny", chip="ipu-mk2", batch=8, seq=256, chip_overrides=overrides,
                                 designs="basic,static,elk-dyn,elk-full", placement="heuristic")
        except elk.ElkError as err:
            print(f"SRAM {sram}: {err}")
            continue
        for name, d in result.designs.items():
            p = d.placement
            rows.append([sram, name, f"{p.byte_peak:,}", f"{p.unrepaired_peak:,}", f"{p.allocated_peak:,}",
                         p.status, len(p.repairs), f"{p.budget:,}", f"{d.sim.latency_ms:.4f}",
                         f"{p.latency_cost_ms:+.4f}", f"{p.seconds:.2f}"])
    print(table(["SRAM B", "design", "final byte peak", "first address peak", "final address peak", "placement",
                 "repairs", "budget", "latency ms", "repair cost ms", "s"], rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="llama2-13b,llama2-70b,opt-30b,gemma2-27b")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--tight", action="store_true", help="also sweep a tight SRAM on the tiny model")
    p.add_argument("--tight-hbm-tbps", type=float, default=0.02, help="HBM bandwidth of the tight sweep")
    args = p.parse_args()
    if args.models:
        place_models(args.models.split(","), args.batch, args.seq)
    if args.tight:
        tight_sweep([1536, 1792, 2048, 2560, 3072, 4096], args.tight_hbm_tbps)


if __name__ == "__main__":
    main()
