"""Readable text reports for the CLI."""
from __future__ import annotations

import math
from typing import Sequence

from elk.chip import Chip
from elk.ir import Program
from elk.plantable import PlanTable


def fmt_bytes(n: float) -> str:
    """A byte count in SI units (GB, MB, KB, B) for reports."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A plain-text table: ``align`` has one letter per column, ``l`` or ``r`` (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = []
    for n, row in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def program_header(program: Program, chip: Chip) -> str:
    """The two header lines of a compile report: the program and the chip, then operators, HBM bytes and FLOPs."""
    meta = program.meta
    mode = meta.get("mode", "")
    shape = f"batch {meta.get('batch')}" + (f", KV {meta.get('seq')}" if mode == "decode" else
                                             f", sequence {meta.get('seq')}" if meta.get("seq") else "")
    writes = program.hbm_write_bytes
    hbm_ms = (program.hbm_bytes + writes) / chip.hbm_bytes_per_s * 1e3
    moved = f"{fmt_bytes(program.hbm_bytes)} from HBM" + (f" and {fmt_bytes(writes)} to HBM" if writes else "")
    return (f"elk: {program.name} {mode} ({shape}) on {chip.describe()}\n"
            f"program: {len(program.ops):,} operators ({len(program.unique_signatures())} unique shapes), "
            f"{moved} per step, {fmt_tflop(program.flops)} TFLOP; "
            f"HBM time alone {fmt_ms(hbm_ms)} ms" + graph_inputs_line(meta) + training_line(meta))


def training_line(meta: dict) -> str:
    """For a training step: what it holds (optimizer, checkpointing) and its FLOPs by part."""
    if meta.get("step") != "train":
        return ""
    parts = [f"{name} {fmt_tflop(meta[key])}" for name, key in
             (("forward", "forward_flops"), ("backward", "backward_flops"), ("optimizer", "optimizer_flops"),
              ("recompute", "recompute_flops")) if meta.get(key)]
    knobs = ", ".join(f"{k} {meta[k]}" for k in ("optimizer", "master_weights", "checkpoint") if k in meta)
    return f"\ntraining step: {knobs}; TFLOP by part: " + ", ".join(parts)


def graph_inputs_line(meta: dict) -> str:
    """For an artifact graph: its inputs (ids no node has), so a reference to a wrong id shows as one more."""
    found = meta.get("graph_inputs")
    if not found or not found.get("count"):  # none, or declared as Parameter/Constant nodes
        return ""
    return (f"\ninputs: {found['count']:,} graph inputs (ids read that no node has), {found['read_from_hbm']:,} "
            f"loaded from HBM, {fmt_bytes(found['bytes'])} per step")


def compile_report(result) -> str:
    """The table `elk compile` prints (``result`` is an :class:`elk.driver.api.CompileResult`)."""
    rows = []
    for r in result.rows():
        b = lambda k: f"{abs(r[k + '_ms']) if abs(r[k + '_ms']) >= 5e-4 else 0.0:.3f}"  # noqa: E731
        rows.append([r["design"], f"{r['latency_ms']:.3f}",
                     f"{100 * r['gap_to_bound']:.1f}" if r.get("gap_to_bound") is not None else "-",
                     f"{r['pct_of_ideal']:.1f}" if r["pct_of_ideal"] is not None else "-",
                     b("overlapped"), b("preload_only"), b("execute_only"), b("stall"),
                     _hbm_cell(r), f"{100 * r['noc_utilisation']:.1f}%",
                     f"{r['achieved_tflops']:.1f}", f"{r['peak_sram_bytes'] / 1024:.0f}",
                     _placed_kib(r), f"{100 * r['fragmentation']:.1f}" if "fragmentation" in r else "-",
                     f"{r['compile_seconds']:.2f}", "yes" if r["valid"] else "NO"])
    out = [program_header(result.program, result.chip),
           f"plan tables: {len(set(id(t) for t in result.workload.tables))} unique operators in "
           f"{result.table_seconds:.2f} s (built or loaded from the cache)"]
    out += bound_lines(result)
    out += ["",
           table(["design", "latency ms", "gap %", "% ideal", "overlap ms", "preload ms", "execute ms", "stall ms",
                  "HBM util", "NoC util", "TFLOPS", "SRAM KiB", "alloc KiB", "frag %", "compile s", "valid"],
                 rows)]
    notes = []
    for name, d in result.designs.items():
        info = d.schedule.info
        if info.warm_start is not None:
            notes.append(warm_start_note(name, d))
        p = d.placement
        if p is not None and p.status == "repaired":
            notes.append(f"{name}: its first schedule's buffers needed {p.unrepaired_peak / 1024:.0f}"
                         f" KiB of addresses (SRAM {p.capacity / 1024:.0f} KiB); re-scheduled under a "
                         f"{p.budget / 1024:.0f} KiB byte budget to fit, costing {p.latency_cost_ms:+.3f} ms")
        elif p is not None and p.status == "unplaced":
            notes.append(f"{name} NOT PLACEABLE: its buffers need {p.allocated_peak / 1024:.0f} KiB of addresses, "
                         f"SRAM holds {p.capacity / 1024:.0f} KiB, and {len(p.repairs)} repairs did not fit")
        if not d.sim.relaxation.strict:
            notes.append(f"{name} is a relaxed schedule, not a bound (nothing proves a valid schedule cannot beat "
                         f"it), timed under: {d.sim.relaxation.describe()}")
        if not d.sim.valid:
            notes.append(f"{name} INVALID: {d.sim.violations[0].message(result.chip.clock_hz)}")
    if notes:
        out += [""] + [f"note: {n}" for n in notes]
    out += ["", f"compile: {result.total_seconds:.2f} s in all (plan tables, designs, placement, bound)", "", LEGEND]
    return "\n".join(out)


def _hbm_cell(row: dict) -> str:
    """HBM utilisation; for a program that stores, reads + writes."""
    if "hbm_write_utilisation" in row:
        return f"{100 * row['hbm_read_utilisation']:.1f}+{100 * row['hbm_write_utilisation']:.1f}%"
    return f"{100 * row['hbm_utilisation']:.1f}%"


def warm_start_note(name: str, d) -> str:
    """An exact design against the schedule it started from: the end-to-end change, then how it searched."""
    info = d.schedule.info
    after = d.sim.latency_ms
    before = d.warm_start_ms
    if before is not None and before > 0:
        digits = _ms_digits(before)
        delta = after - before
        delta_text = f"{delta:+.4f} ms" if abs(delta) >= 1e-4 or delta == 0 else f"{1e3 * delta:+.3f} us"
        change = (f"{before:.{digits}f} -> {after:.{digits}f} ms end to end ({delta_text}, "
                  f"{100 * (after / before - 1):+.2f}%) against its warm start {info.warm_start}")
    else:
        change = f"{fmt_ms(after)} ms, from the warm start {info.warm_start}"
    parts = [f"{name}: {change}"]
    if info.records:
        from elk.driver.api import window_summary
        w = window_summary(info.records)
        parts.append(f"{w['windows']} windows of {info.window} ops ({w['solved']} solved, {w['reused']} reused "
                     f"from identical windows), {w['proven_optimal_pct']:.0f}% of solved windows proven optimal; "
                     f"{w['solve_seconds']:.1f} s in {w['solver']} ({w['version']})")
    layer = info.search.get("layer_solve")
    if layer:  # the periodic design's CP-SAT model of one layer
        workers = f"{layer['workers']} worker{'' if layer['workers'] == 1 else 's'}"
        if layer["status"] == "OPTIMAL":
            found = "period proven optimal"
        elif layer["period"]:
            found = (f"{layer['status']}, period at most {100 * (1 - layer['bound'] / layer['period']):.1f}% above "
                     f"its proven bound")
        else:
            found = f"{layer['status']}, no period found"
        parts.append(f"layer model: {found} in {layer['seconds']:.1f} s ({workers}, {layer['version']})")
    if info.kept_warm_start:
        parts.append(f"kept the warm start: {info.kept_warm_start}")
    return "; ".join(parts)


def _ms_digits(ms: float) -> int:
    if ms != ms or abs(ms) >= 1 or ms == 0 or math.isinf(ms):
        return 3
    return max(3, 3 - math.floor(math.log10(abs(ms))))


def fmt_ms(ms: float) -> str:
    """Milliseconds with three decimals, or four significant digits below 1 ms (a tiny model's 0.0002 ms)."""
    return f"{ms:.{_ms_digits(ms)}f}"


def fmt_tflop(flops: float) -> str:
    """FLOPs in TFLOP: three decimals, or two significant digits below 0.01 (tiny's 0.00047, not 0.000)."""
    tf = flops / 1e12
    if tf >= 0.01 or tf <= 0:
        return f"{tf:.3f}"
    return f"{tf:.{1 - math.floor(math.log10(tf))}f}"


LEGEND = ("design = the strategy that made the schedule (ideal: a relaxed schedule, see the note above). "
          "latency ms = simulated time from the first event (load or execution) to the end of the last execution "
          "(or store). "
          "gap % = certified gap, latency / proven lower bound - 1 (no valid schedule is faster than the bound); "
          "% ideal = Ideal latency / design latency (Ideal is a relaxed schedule). Time breakdown in ms: "
          "overlap = executing while an HBM load runs; preload = loading only; execute = executing only; "
          "stall = neither at full rate (interconnect contention or idle); they add up to the latency. "
          "HBM util = HBM bytes / (bandwidth x latency), reads+writes for a program that stores; NoC util = interconnect cycles used by loads and "
          "communication / latency. TFLOPS = model FLOPs / latency. SRAM KiB = most bytes live on a core at once; alloc KiB = highest SRAM address the "
          "placed buffers use ((r) repaired, (!) not placeable); frag % = 1 - SRAM / alloc; compile s = time "
          "to schedule (and place) the design; valid = passes the simulator under the chip's load model.")


def bound_lines(result) -> list[str]:
    """The proven lower bound, which family binds, and where Ideal (a relaxed schedule) sits against it."""
    reports = result.bounds
    if reports is None:
        return ["bound: not computed (--bound none): gaps are not certified"]
    lines = []
    best = reports.best
    if best is not None:
        others = ", ".join(f"{b.name} {b.ms:.3f}" for b in reports.bounds if b is not best)
        solver = f", {best.solver}" if best.solver else ""
        lines.append(f"bound: {best.ms:.3f} ms proven by the {best.name} bound ({best.status}{solver}); "
                     f"others: {others}; {reports.seconds:.2f} s")
        ideal = result.ideal_ms
        if ideal is not None and ideal < best.ms * (1 - 1e-9):
            lines.append(f"ideal ({ideal:.3f} ms) is below the proven bound by {100 * (1 - ideal / best.ms):.1f}%: "
                         f"it ignores rules no valid schedule may ignore")
    for w in reports.warnings:
        lines.append(f"warning: {w}")
    return lines


def _placed_kib(row: dict) -> str:
    if "allocated_peak_bytes" not in row:
        return "-"
    mark = {"repaired": " (r)", "unplaced": " (!)"}.get(row["placement"], "")
    return f"{row['allocated_peak_bytes'] / 1024:.0f}{mark}"


def plan_table_report(op_name: str, table_: PlanTable, chip: Chip, limit: int = 40, cached: bool = False) -> str:
    """``elk plans``: an operator's plan counts, its execution Pareto frontier and its cold-hot rows (``limit`` rows
    each); ``cached``: the table came from the cache, so its build time is not this run's."""
    sig = table_.sig
    built = (f"from the cache (built earlier in {table_.build_seconds:.3f} s)" if cached
             else f"built in {table_.build_seconds:.3f} s")
    head = (f"{op_name}: {sig.describe()} on {chip.cores} core{'s' if chip.cores != 1 else ''}\n"
            f"{table_.n_plans:,} plans ({table_.n_spatial:,} spatial), {len(table_.frontier_hot)} on the "
            f"execution Pareto frontier, {len(table_)} cold-hot rows; {built}\n"
            f"min cold {table_.min_cold:,} B/core (HBM load {fmt_bytes(table_.min_cold * chip.cores)}), "
            f"fastest {table_.time[table_.fastest]:,.2f} cycles")
    front = table(["hot B/core", "time cycles"],
                  [[f"{int(h):,}", f"{t:,.2f}"] for h, t in zip(table_.frontier_hot, table_.frontier_time)])
    rows = [[f"{int(c):,}", f"{int(h):,}", f"{t:,.2f}", f"{cp:,.1f}", f"{cm:,.1f}", f"{w:,.1f}",
             "x".join(str(int(x)) for x in s)]
            for c, h, t, cp, cm, w, s in zip(table_.cold, table_.hot, table_.time, table_.comp, table_.comm,
                                             table_.warmup, table_.spatial)]
    shown = rows[:limit]
    cold_hot = table(["cold B/core", "hot B/core", "time", "compute", "comm", "warm-up", "spatial"], shown)
    more = f"\n... {len(rows) - limit} more rows" if len(rows) > limit else ""
    return f"{head}\n\nexecution Pareto frontier:\n{front}\n\ncold -> hot table:\n{cold_hot}{more}"
