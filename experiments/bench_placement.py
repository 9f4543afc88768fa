"""SRAM placement of compiled schedules: buffers, byte peak vs address peak, fragmentation, repair cost, time.

    python -m experiments.bench_placement [--models llama2-13b,opt-30b,...] [--tight] [--allocators]

Part 1 compiles each model (B32 S2048, the default chip) with the heuristic
designs and places every design's buffers. Part 2 (``--tight``) sweeps a
small SRAM on the tiny model, where schedules that fit in bytes stop fitting
in addresses and get repaired, and prints what the repair cost. Part 3
(``--allocators``) compiles ELK-Full at gap-study chips with 192 KiB cores
(experiments.gap_study's chip and program) twice in one run: placed by the
greedy allocator alone (``heuristic``, the old default) and by the default
(``search`` under its work limit, asked only where the greedy one overflows),
and prints latency, placement and compile time side by side.
"""
from __future__ import annotations

import argparse
import time

import elk
from elk.driver.report import table
from solvers.solver_options import DEFAULT_PLACEMENT, DEFAULT_PLACEMENT_WORK_LIMIT

#: gap-study configurations (model, topology, HBM TB/s, SRAM KiB, load model) for part 3: the two where the
#: greedy allocator's overflow was seen to cost latency, and two where it was seen not to
ALLOCATOR_POINTS = (("llama2-13b", "mesh", 4.0, 192.0, "rigid"), ("llama2-13b", "mesh", 16.0, 192.0, "rigid"),
                    ("llama2-13b", "all-to-all", 4.0, 192.0, "rigid"), ("llama2-70b", "mesh", 8.0, 192.0, "fluid"))


def place_models(models: list[str], batch: int, seq: int) -> None:
    rows = []
    for model in models:
        started = time.perf_counter()
        result = elk.compile(model, batch=batch, seq=seq, designs="basic,static,elk-dyn,elk-full",
                             placement=DEFAULT_PLACEMENT)
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
                                 designs="basic,static,elk-dyn,elk-full", placement=DEFAULT_PLACEMENT)
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


def allocator_sweep(points=ALLOCATOR_POINTS) -> None:
    from experiments.gap_study import Config, Settings
    rows = []
    for model, topology, hbm, sram, load_model in points:
        config = Config(model=model, topology=topology, hbm_tbps=hbm, sram_requested_kib=sram,
                        load_model=load_model, sram_kib=sram)
        point = config.point(Settings())
        by = {}
        for placement in ("heuristic", DEFAULT_PLACEMENT):
            started = time.perf_counter()
            result = elk.compile(point.model, chip=point.resolved.chip, batch=point.batch, seq=point.seq,
                                 mode=point.mode, designs="elk-full", bound=None, workers=1, placement=placement,
                                 placement_work_limit=DEFAULT_PLACEMENT_WORK_LIMIT)
            by[placement] = (result.designs["elk-full"], time.perf_counter() - started)
        (old, old_s), (new, new_s) = by["heuristic"], by[DEFAULT_PLACEMENT]
        rows.append([f"{model} {topology} {hbm:g} TB/s {sram:g} KiB {load_model}",
                     f"{old.sim.latency_ms:.3f} ({old.placement.status})",
                     f"{new.sim.latency_ms:.3f} ({new.placement.status})",
                     f"{100 * (new.sim.latency_ms / old.sim.latency_ms - 1):+.2f}",
                     f"{old_s:.1f}", f"{new_s:.1f}", f"{new_s / old_s:.2f}x"])
        print(rows[-1][0], "done", flush=True)
    print(table(["ELK-Full at", "heuristic ms", f"{DEFAULT_PLACEMENT} ms", "change %", "heuristic s",
                 f"{DEFAULT_PLACEMENT} s", "time"], rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="llama2-13b,llama2-70b,opt-30b,gemma2-27b")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--tight", action="store_true", help="also sweep a tight SRAM on the tiny model")
    p.add_argument("--tight-hbm-tbps", type=float, default=0.02, help="HBM bandwidth of the tight sweep")
    p.add_argument("--allocators", action="store_true",
                   help="compare the greedy allocator with the default at gap-study chips with 192 KiB cores")
    args = p.parse_args()
    if args.models:
        place_models(args.models.split(","), args.batch, args.seq)
    if args.tight:
        tight_sweep([1536, 1792, 2048, 2560, 3072, 4096], args.tight_hbm_tbps)
    if args.allocators:
        allocator_sweep()


if __name__ == "__main__":
    main()
