"""Benchmark: a study over both load models with each point proving its own bounds, then with shared proofs.

    python experiments/bench_shared_bounds.py [--model llama2-13b] [--bound lp] [--workers 2]
                                              [--hbm 16,8] [--sram 624,192] [--topology all-to-all,mesh]

The grid is model x topology x HBM x SRAM x {fluid, rigid} with one cheap design (ELK-Dyn), so the bounds are
most of each point's time, as in the gap study (2,821 s of its 9,675 s of point time). Both runs use fresh
results folders and the same warm plan-table cache (an untimed run of the grid at level `closed` builds it first), in one process tree on
this machine, so their ratio is what the sharing saves here. It prints the summed point seconds, the summed
bound seconds and the wall time of each run, and checks that every point's proven bound is the same in both
(the sharing changes who proves, never what is proven).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from elk.study import Study, grid, run_study
from elk.study.store import PointStore


def run(points, out: Path, workers: int, share: bool) -> tuple[float, dict]:
    started = time.perf_counter()
    run_study(Study("bench", points), out, workers=workers, progress=False, share_bounds=share)
    wall = time.perf_counter() - started
    return wall, {r["key"]: r for r in PointStore(out).read_all()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="llama2-13b")
    p.add_argument("--bound", default="lp", choices=("closed", "lp", "layers", "milp"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--hbm", default="16,8")
    p.add_argument("--sram", default="624,192")
    p.add_argument("--topology", default="all-to-all,mesh")
    args = p.parse_args(argv)
    floats = lambda text: [float(x) for x in text.split(",") if x.strip()]  # noqa: E731
    axes = dict(model=args.model, designs="elk-dyn", hbm_tbps=floats(args.hbm), sram_kib=floats(args.sram),
                topology=[t for t in args.topology.split(",") if t], load_model=["fluid", "rigid"])
    points = grid(**axes, bound=args.bound)
    tmp = Path(tempfile.mkdtemp(prefix="elk-bench-bounds-"))
    try:
        run(grid(**axes, bound="closed"), tmp / "warm", args.workers, False)  # every plan table cached, untimed
        rows = []
        results = {}
        for share in (False, True):
            wall, recs = run(points, tmp / ("shared" if share else "own"), args.workers, share)
            results[share] = recs
            rows.append((share, wall, sum(r["point_seconds"] for r in recs.values()),
                         sum(r.get("bound_seconds") or 0.0 for r in recs.values()),
                         sum(1 for r in recs.values() if r.get("bound_shared"))))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(points)} points ({args.model}, bound level {args.bound}, ELK-Dyn, {args.workers} workers)")
    print(f"{'bounds':<10} {'wall s':>8} {'points s':>9} {'bounds s':>9} {'reused':>7}")
    for share, wall, point_s, bound_s, reused in rows:
        print(f"{'shared' if share else 'own':<10} {wall:8.1f} {point_s:9.1f} {bound_s:9.1f} {reused:7d}")
    (_, w0, p0, b0, _), (_, w1, p1, b1, _) = rows
    print(f"shared / own: wall {w1 / w0:.2f}, summed point time {p1 / p0:.2f}, bound time {b1 / max(b0, 1e-9):.2f}")
    same = all(results[True][k]["bound_ms"] == r["bound_ms"] for k, r in results[False].items())
    print("every point's proven bound identical in both runs: " + ("yes" if same else "NO"))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
