"""Benchmark the study runner on a representative slice of the paper's evaluation; extrapolate to all of it.

    python experiments/bench_study.py --out out/bench_study [--workers 2] [--subset bench|fig17|all]

The paper's evaluation (artifact notes §8: Figs. 17-24, ~268 runs, heuristic designs) is declared
here as study points. ``--subset bench`` (default) runs Fig. 17's 24 points (each its own plan-table
group: cold tables), 8 Fig. 19 points that reuse Fig. 17's tables (warm), and two Fig. 23 DiT and two
Fig. 24 training points, with a fresh table cache. It prints the wall time, per-point seconds (cold =
the point built its own tables; warm = its tables came from the cache), the table tasks, and the peak
resident memory summed over this process and all its children (sampled from /proc every 0.25 s: an
upper bound, since forked workers share pages). Then it estimates the whole evaluation: per-model
warm point times x the number of points, plus per-model table builds x the number of table groups,
spread over the workers with the efficiency this run achieved.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from elk.study import Point, Study, run_study

LLMS = ("llama2-13b", "llama2-70b", "opt-30b", "gemma2-27b")
TOPOLOGIES = ("all-to-all", "mesh")


def paper_points() -> list[tuple[str, Point]]:
    """(figure, point) for the paper's evaluation, heuristic designs (duplicates across figures kept)."""
    out: list[tuple[str, Point]] = []
    for m in LLMS:
        for b in (16, 32, 64):
            for s in (2048, 4096):
                out.append(("fig17", Point(m, batch=b, seq=s, hbm_tbps=16)))
        for topo in TOPOLOGIES:
            for hbm in range(4, 17):
                out.append(("fig19", Point(m, hbm_tbps=hbm, topology=topo)))
            for hbm in range(2, 19):
                out.append(("fig21", Point(m, hbm_tbps=hbm, topology=topo)))
            for k in range(3, 8):  # cores 2,208-5,152, HBM scaled per core
                cores = 736 * k
                out.append(("fig23", Point(m, cores=cores, hbm_tbps=round(cores * 4 / 1472, 6), topology=topo)))
    for topo in TOPOLOGIES:
        for noc in (0.75, 1.0, 1.25, 1.5):
            for hbm in (8, 10, 12, 14):
                out.append(("fig22", Point("llama2-70b", hbm_tbps=hbm, noc_scale=noc, topology=topo)))
        for k in range(3, 9):  # DiT-XL/2 on 552-1,472 cores
            cores = 184 * k
            out.append(("fig23", Point("dit-xl-2", mode="forward", cores=cores,
                                       hbm_tbps=round(cores * 1 / 1472, 6), topology=topo)))
        for comp in (0.75, 1.0, 1.25, 1.5):
            for noc in (1.0, 1.5):
                for hbm in (0.3, 0.4):
                    out.append(("fig24", Point("llama2-13b", mode="forward", batch=2, seq=2048, compute_scale=comp,
                                               noc_scale=noc, hbm_tbps=hbm, topology=topo)))
    return out


def subset(name: str) -> list[Point]:
    pts = paper_points()
    if name == "all":
        return [p for _, p in pts]
    chosen = [p for f, p in pts if f == "fig17"]
    if name == "fig17":
        return chosen
    chosen += [p for f, p in pts if f == "fig19" and p.topology == "all-to-all" and p.hbm_tbps in (8, 12)]
    chosen += [p for f, p in pts if f == "fig23" and p.model == "dit-xl-2" and p.topology == "all-to-all"
               and p.cores in (1104, 1472)]
    chosen += [p for f, p in pts if f == "fig24" and p.topology == "all-to-all" and p.compute_scale == 1.0
               and p.noc_scale == 1.0]
    return chosen


class RssSampler(threading.Thread):
    """Peak of the summed VmRSS of this process and its descendants."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.peak_procs = interval, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total, n = tree_rss(os.getpid())
            if total > self.peak:
                self.peak, self.peak_procs = total, n
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def tree_rss(root: int) -> tuple[int, int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parent.items() if p == pid and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total, len(tree)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench_study")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--subset", default="bench", choices=("bench", "fig17", "all"))
    ap.add_argument("--keep", action="store_true", help="keep earlier results and table cache (default: fresh)")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        os.environ["ELK_CACHE_DIR"] = tempfile.mkdtemp(prefix="elk-bench-cache-")
    points = subset(args.subset)
    study = Study(f"bench-{args.subset}", points)
    print(f"{len(study.points)} points, {len({p.resolved.table_group for p in study.points})} table groups, "
          f"{args.workers} workers; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    df = run_study(study, out, workers=args.workers)
    wall = time.perf_counter() - t0
    sampler.stop()
    report(df, wall, sampler, args.workers)


def report(df, wall: float, sampler: RssSampler, workers: int) -> None:
    info = df.attrs["study"]
    pts = df.drop_duplicates("key").copy()
    shared = Counter(pts["table_group"])
    pts["tables"] = ["warm" if shared[g] > 1 else "cold" for g in pts["table_group"]]
    pts["family"] = [m if mode == "decode" else f"{m}-{mode}" for m, mode in zip(pts["model"], pts["mode"])]
    tasks = info["table_tasks"]
    work = pts["point_seconds"].sum() + sum(t[1] for t in tasks)
    cpu = pts["cpu_seconds"].sum() + sum(t[2] for t in tasks)
    print(f"\nwall {wall:.0f} s for {info['ran']} points ({info['skipped']} skipped); "
          f"work {work:.0f} s (points {pts['point_seconds'].sum():.0f} s + {len(tasks)} table tasks "
          f"{sum(t[1] for t in tasks):.0f} s), CPU {cpu:.0f} s; busy {work / (wall * workers):.0%} of {workers} "
          f"workers; peak RSS {sampler.peak / 2**30:.2f} GiB summed over {sampler.peak_procs} processes; "
          f"load average now {os.getloadavg()[0]:.1f}")
    stats = pts.groupby(["family", "tables"]).agg(points=("key", "size"), wall_s=("point_seconds", "mean"),
                                                   cpu_s=("cpu_seconds", "mean"),
                                                   tables_s=("table_seconds", "mean"),
                                                   max_wall_s=("point_seconds", "max"))
    print("\nper-point seconds (cold: the point built its own plan tables; warm: a table task or an earlier "
          "run had cached them)")
    print(stats.round(2).to_string())
    failed = pts[pts["status"] != "ok"]
    if len(failed):
        print(f"\n{len(failed)} failed points:")
        for _, r in failed.iterrows():
            print(f"  {r['model']} b{r['batch']} s{r['seq']}: {r['error'][:160]}")
    ok = pts[pts["status"] == "ok"]
    family = dict(zip(pts["table_group"], pts["family"]))
    task_by_family = {"point_seconds": {}, "cpu_seconds": {}}
    for group, seconds, cpu_s in tasks:
        task_by_family["point_seconds"].setdefault(family.get(group), []).append(seconds)
        task_by_family["cpu_seconds"].setdefault(family.get(group), []).append(cpu_s)
    extrapolate(ok, "point_seconds", task_by_family["point_seconds"], wall, work, workers,
                "wall seconds as measured (contended)")
    extrapolate(ok, "cpu_seconds", task_by_family["cpu_seconds"], wall, work, workers,
                "CPU seconds (what an uncontended machine would need)")


def extrapolate(pts, column: str, task_seconds: dict, wall: float, work: float, workers: int, what: str) -> None:
    """Estimate the whole evaluation from this run's per-model times: warm point times x points,
    plus the measured table-building share x table groups, over the workers at this run's busy fraction."""
    full = Study("all", [p for _, p in paper_points()]).points
    share = (pts["table_seconds"] / pts["point_seconds"]).where(pts["tables"] == "cold")
    per = pts.assign(sched=pts[column] * (1 - share.fillna(0)), tables=pts[column] * share)
    warm = per.groupby("family")["sched"].mean()
    cold = per[per["tables"].notna()].groupby("family")["tables"].mean().to_dict()
    for fam, secs in task_seconds.items():  # families measured only through table tasks
        cold.setdefault(fam, sum(secs) / len(secs))
    groups: Counter = Counter()
    est, missing = 0.0, set()
    for p in full:
        fam = p.resolved.knobs["model"] + ("" if p.resolved.knobs["mode"] == "decode" else f"-{p.resolved.knobs['mode']}")
        if fam not in warm:
            missing.add(fam)
            continue
        est += warm[fam]
        groups[(fam, p.resolved.table_group)] += 1
    est += sum(cold.get(fam, 0.0) for fam, _ in groups)
    busy = work / (wall * workers)
    print(f"\nwhole evaluation from {what}: {len(full)} distinct points, {len(groups)} table groups"
          + (f" (no estimate for {', '.join(sorted(missing))})" if missing else ""))
    print(f"  work {est / 60:.0f} min -> wall ~{est / workers / busy / 60:.0f} min on {workers} workers "
          f"({busy:.0%} busy as in this run)")


if __name__ == "__main__":
    sys.exit(main())
