"""Ground truth: proven optima of real-shape programs, every design's true gap and every bound's slack.

A certified gap (latency / best bound - 1) says how far a schedule *might* be
from optimal; it cannot say whether the schedule or the bound is loose. On a
program whose optimum is pinned down, both sides are measured: a design's true
gap is ``latency / optimum - 1`` and a bound's slack ``optimum / bound - 1``.

Instances are pieces of the zoo's LLMs at full width (decode, batch 32, KV
2048 by default), cut from a one-layer build of each model: the attention half
of the layer (norm to output projection), the FFN half (residual, norm, FFN,
residual), the head (final norm and LM head), the whole layer, and the whole
one-layer program (embedding, layer, head). Each piece is a program of its own
(its first inputs on chip, its loads starting from an empty channel), on the
gap study's chips: all-to-all or mesh, 624 or 192 KiB, 4/8/16 TB/s, fluid loads.
The optimum is pinned to an interval: above, the best valid schedule (the
heuristics, and CP-SAT's best solution of the whole-program model, each timed by
the simulator); below, the best of elk's proven bounds and CP-SAT's bound on the
integer-cycle model less the rounding allowance (``solvers.schedule.optimal``).
An instance whose interval is narrower than ``SOLVED_WIDTH`` is solved and
enters the truth table; the others are listed with the interval left open.

Run: ``python experiments/ground_truth.py --out experiments/results/ground_truth``
(``--quick`` for a smoke run). Resumable: instances already in the CSV are skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from elk.atomic import write_text
from elk.chip import LoadModel, preset
from elk.errors import OperatorDoesNotFitError
from elk.graphs.zoo import build_program, resolve_model
from elk.ir import Program
from elk.simulator import simulate
from elk.workload import Workload
from solvers.schedule import designs
from solvers.schedule.bounds import compute_bounds
from solvers.schedule.optimal import OptimalOptions, prove_optimal

MODELS = ("llama2-13b", "llama2-70b", "opt-30b", "gemma2-27b")
PIECES = ("attention", "ffn", "head", "layer", "program", "qkv", "attn-core", "ffn-up", "ffn-down")
#: the smaller pieces (each a part of the attention or FFN half, still at full width), added so that CP-SAT can
#: prove more real-shape instances than the halves alone allow; their rows say ``series`` = "small"
SMALL_PIECES = ("qkv", "attn-core", "ffn-up", "ffn-down")
HEURISTICS = ("basic", "static", "elk-dyn", "elk-full")
#: the default chips: the default (all-to-all, 624 KiB, 16 TB/s), then the gap study's hard corners
CHIPS = (("all-to-all", 624, 16.0), ("mesh", 624, 16.0), ("all-to-all", 192, 16.0), ("mesh", 192, 16.0),
         ("all-to-all", 624, 4.0), ("mesh", 192, 8.0))
#: an instance is solved when its optimum is known to within this relative width
SOLVED_WIDTH = 1e-3


@dataclass(frozen=True)
class Instance:
    model: str
    piece: str
    topology: str
    sram_kib: int
    hbm_tbps: float
    load_model: str = "fluid"

    @property
    def key(self) -> str:
        rigid = "" if self.load_model == "fluid" else f"/{self.load_model}"  # fluid keys as the first runs wrote them
        return f"{self.model}/{self.piece}/{self.topology}/{self.sram_kib}/{self.hbm_tbps:g}{rigid}"


def piece_range(names: list[str], piece: str) -> tuple[int, int]:
    """[start, stop) of a piece in a one-layer program, found from the builders' operator names.

    The small pieces split the halves where their data flow narrows: attention into its norm, QKV projection
    and rope (``qkv``) and its scores to output projection (``attn-core``, with Gemma's post-attention norm);
    the FFN half into everything before the down projection (``ffn-up``: residual, norm, up/gate projection,
    activation) and the down projection with what follows it (``ffn-down``).
    """
    layer = [i for i, n in enumerate(names) if n.startswith("l0.")]
    first, last = layer[0], layer[-1] + 1
    res = names.index("l0.attn_res")
    down = next(i for i, n in enumerate(names) if n in ("l0.down", "l0.fc2"))
    if piece == "attention":
        return first, res
    if piece == "qkv":
        return first, names.index("l0.scores")
    if piece == "attn-core":
        return names.index("l0.scores"), res
    if piece == "ffn":
        return res, names.index("l0.ffn_res") + 1
    if piece == "ffn-up":
        return res, down
    if piece == "ffn-down":
        return down, names.index("l0.ffn_res") + 1
    if piece == "head":
        return last, len(names)
    if piece == "layer":
        return first, last
    return 0, len(names)


def series(piece: str) -> str:
    """Which set of pieces an instance belongs to: the halves and head of the first run, or the small pieces."""
    return "small" if piece in SMALL_PIECES else "halves"


def workload_of(inst: Instance, batch: int, seq: int) -> Workload:
    cfg = dataclasses.replace(resolve_model(inst.model), layers=1)
    program = build_program(cfg, batch=batch, seq=seq)
    chip = preset("ipu-pod4").with_overrides(hbm_bytes_per_s=inst.hbm_tbps * 1e12,
                                             sram_per_core=inst.sram_kib * 1024, topology_kind=inst.topology,
                                             load_model=LoadModel(inst.load_model))
    start, stop = piece_range([op.name for op in program.ops], inst.piece)
    if (start, stop) != (0, len(program.ops)):  # the piece alone: a head too large for the chip spoils no other
        program = Program(f"{program.name}[{program.ops[start].name}..{program.ops[stop - 1].name}]",
                          tuple(program.ops[start:stop]), dict(program.meta))
    return Workload.build(program, chip)


def instance_of(rec: dict) -> Instance:
    """The instance a stored row describes (rows of the first runs have no load model: fluid)."""
    lm = rec.get("load_model")
    return Instance(rec["model"], rec["piece"], rec["topology"], int(rec["sram_kib"]), float(rec["hbm_tbps"]),
                    lm if isinstance(lm, str) else "fluid")


def run_instance(inst: Instance, opts: OptimalOptions, batch: int, seq: int) -> dict:
    started = time.perf_counter()
    w = workload_of(inst, batch, seq)
    ms = w.chip.cycles_to_ms
    row: dict = {"key": inst.key, **dataclasses.asdict(inst), "series": series(inst.piece), "operators": len(w),
                 "loads": int(w.has_load.sum())}
    scheds = {}
    for name in HEURISTICS:
        try:
            s = designs.DESIGNS[name](w)
        except Exception as err:  # a design that cannot schedule this piece is recorded, not fatal
            row[f"{name}_error"] = str(err).splitlines()[0]
            continue
        v = simulate(w, s)
        if v.valid:
            scheds[name] = (s, v.latency_cycles)
            row[f"{name}_ms"] = ms(v.latency_cycles)
    best = min(scheds, key=lambda d: scheds[d][1])
    row["best_heuristic"], row["best_heuristic_ms"] = best, ms(scheds[best][1])
    bound_columns(row, w)
    res = prove_optimal(w, scheds[best][0], opts)
    row.update(status=res.status, options=res.options, solve_seconds=res.seconds,
               cpsat_bound_ms=None if res.bound_cycles is None else ms(res.bound_cycles),
               cpsat_lower_ms=None if res.lower_cycles is None else ms(res.lower_cycles),
               best_found_ms=None if res.objective_cycles is None else ms(res.objective_cycles),
               solver=res.solver, workers=res.workers, seed=res.seed, presolve=opts.presolve)
    upper = min(lat for _, lat in scheds.values())
    if res.found is not None:  # the model's best solution, proven or not: a valid schedule all the same
        found = simulate(w, res.found)
        if found.valid:
            upper = min(upper, found.latency_cycles)
            row["optimal_design_ms"] = ms(found.latency_cycles)
    row["optimum_upper_ms"] = ms(upper)
    derive(row)
    row["instance_seconds"] = time.perf_counter() - started
    return row


def bound_columns(row: dict, w: Workload, level: str = "milp") -> None:
    """Every bound family's value on the instance (at ``level``: a lower level recomputes only its families and
    keeps the row's others, which stay proven), the best one and the family that binds."""
    report = compute_bounds(w, level=level, time_limit=30.0)
    for b in report.bounds:
        row[f"bound_{b.name.replace('-', '_')}_ms"] = w.chip.cycles_to_ms(b.cycles)
    families = bound_families(row)
    best = max(families, key=families.get)
    row["bound_name"], row["bound_ms"] = best.replace("_", "-"), families[best]


def bound_families(row: dict) -> dict[str, float]:
    """The row's proven value of each bound family (``bound_<family>_ms`` columns, family names with ``_``)."""
    return {k[len("bound_"):-len("_ms")]: v for k, v in row.items()
            if k.startswith("bound_") and k.endswith("_ms") and k != "bound_ms" and isinstance(v, float) and v == v}


def derive(row: dict) -> None:
    """The optimum's interval and what it says of each side, from the stored latencies and bounds (ms).

    Lower end: the best of elk's bounds and CP-SAT's bound on the integer model less its rounding; upper end:
    the best valid schedule. Design gaps are measured against the upper end and bound slacks against the lower
    end, so both are lower estimates, off by at most the interval's width.
    """
    bounds = bound_families(row)
    lower = max([row["bound_ms"]] + [v for v in [row.get("cpsat_lower_ms")] if isinstance(v, float) and v == v])
    upper = row["optimum_upper_ms"]
    row["optimum_lower_ms"] = lower
    row["width_pct"] = (upper / lower - 1) * 100
    row["solved"] = upper <= lower * (1 + SOLVED_WIDTH)
    row["bound_above_schedule"] = any(v > upper * (1 + 1e-9) for v in bounds.values())
    for name in HEURISTICS:
        lat = row.get(f"{name}_ms")
        if isinstance(lat, float) and lat == lat:
            row[f"{name}_true_gap_pct"] = (lat / upper - 1) * 100
    for name, v in bounds.items():
        row[f"bound_{name}_slack_pct"] = (lower / v - 1) * 100
    row["best_heuristic_true_gap_pct"] = (row["best_heuristic_ms"] / upper - 1) * 100
    row["bound_slack_pct"] = (lower / row["bound_ms"] - 1) * 100
    row["certified_gap_pct"] = (min(row["best_heuristic_ms"], upper) / row["bound_ms"] - 1) * 100
    row["heuristic_certified_gap_pct"] = (row["best_heuristic_ms"] / row["bound_ms"] - 1) * 100


def rebound(frame: pd.DataFrame, batch: int, seq: int, level: str = "milp") -> pd.DataFrame:
    """Stored instances with every bound proved again (after the bounds improve); the solver results stay.

    The stored lower end of the optimum stays valid whatever it came from, so it is kept as CP-SAT's share."""
    rows = []
    for rec in frame.to_dict("records"):
        if rec.get("status") == "DOES-NOT-FIT":
            rows.append(rec)
            continue
        inst = instance_of(rec)
        if not isinstance(rec.get("cpsat_lower_ms"), float) or rec["cpsat_lower_ms"] != rec["cpsat_lower_ms"]:
            rec["cpsat_lower_ms"] = rec["optimum_lower_ms"]
        bound_columns(rec, workload_of(inst, batch, seq), level)
        derive(rec)
        rows.append(rec)
        print(f"rebound {inst.key}: bound {rec['bound_ms']:.4f} ({rec['bound_name']}), optimum in "
              f"[{rec['optimum_lower_ms']:.4f}, {rec['optimum_upper_ms']:.4f}]", flush=True)
    return pd.DataFrame(rows)


def milp_check(frame: pd.DataFrame, batch: int, seq: int, time_limit: float) -> pd.DataFrame:
    """The instances CP-SAT proved, solved again as the MILP of the same problem (HiGHS through PuLP, warm-started
    from the same hint): ``milp_status``, ``milp_ms`` and whether the two optima agree (to one model unit)."""
    from elk.simulator import simulate as judge
    from solvers.exact_backends import solve_milp
    from solvers.schedule.optimal import optimal_problem
    from solvers.solver_options import SolverSettings
    rows = []
    for rec in frame.to_dict("records"):
        checked = isinstance(rec.get("milp_status"), str)  # checked before: a rerun adds only the new instances
        inst = instance_of(rec)
        rigid = inst.load_model != "fluid"  # a rigid load's work is a product: no MILP of it
        if rec.get("status") == "OPTIMAL" and not checked and not rigid:
            w = workload_of(inst, batch, seq)
            runs = [(judge(w, s).latency_cycles, s) for s in (designs.DESIGNS[d](w) for d in HEURISTICS)]
            latency, warm = min((r for r in runs if r[0] == r[0]), key=lambda r: r[0])
            ticks = OptimalOptions().ticks
            problem, _, hint = optimal_problem(w, warm, latency, ticks)
            out = solve_milp(problem, SolverSettings(solver="milp", time_limit=time_limit, workers=1), hint)
            rec["milp_status"] = out.status
            rec["milp_ms"] = None if out.makespan is None else w.chip.cycles_to_ms(out.makespan / ticks)
            rec["milp_agrees"] = out.status == "OPTIMAL" and abs(out.makespan / ticks - w.chip.clock_hz
                                                                   * rec["best_found_ms"] / 1e3) <= 1.0 / ticks + 1e-6
            print(f"milp {inst.key}: {out.status} {rec['milp_ms']} ms (CP-SAT {rec['best_found_ms']:.6f})", flush=True)
        rows.append(rec)
    return pd.DataFrame(rows)


def instances(quick: bool, pieces: tuple[str, ...], full: bool = False,
              load_models: tuple[str, ...] = ("fluid",),
              chips: tuple[tuple[str, int, float], ...] | None = None) -> list[Instance]:
    """The instances to run: ``chips`` when given, else every chip of the gap study (``full``) or ``CHIPS``."""
    if quick:
        return [Instance("llama2-13b", "attention", "all-to-all", 624, 16.0)]
    if chips is None:
        chips = tuple(itertools.product(("all-to-all", "mesh"), (624, 192), (16.0, 8.0, 4.0))) if full else CHIPS
    return [Instance(m, p, *c, lm) for lm, m, p, c in itertools.product(load_models, MODELS, pieces, chips)]


def parse_chips(text: str) -> tuple[tuple[str, int, float], ...]:
    """``TOPOLOGY:SRAM_KIB:HBM_TBPS`` items, comma-separated, as (topology, KiB, TB/s); ValueError names a bad one."""
    chips = []
    for item in (x for x in text.split(",") if x):
        parts = item.split(":")
        try:
            topology, sram, hbm = parts[0], int(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise ValueError(f"{item!r} is not TOPOLOGY:SRAM_KIB:HBM_TBPS") from None
        if len(parts) != 3 or topology not in ("all-to-all", "mesh") or sram <= 0 or not hbm > 0:
            raise ValueError(f"{item!r} is not TOPOLOGY:SRAM_KIB:HBM_TBPS (all-to-all or mesh, positive sizes)")
        chips.append((topology, sram, hbm))
    if not chips:
        raise ValueError("no chip given")
    return tuple(chips)


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule] + body)


def rigid_section(frame: pd.DataFrame) -> list[str]:
    """What rigid loads cost on the instances run under both load models, and which side of a rigid gap is loose.

    The rigid price is pinned between ``rigid lower / fluid upper - 1`` and ``rigid upper / fluid lower - 1``
    (rigid optimum >= its lower end, fluid optimum <= its upper end, and the other way round)."""
    rigid = frame[frame["load_model"] == "rigid"]
    if not len(rigid):
        return []
    fluid = frame[frame["load_model"] == "fluid"].set_index("key")
    rows = []
    for rec in rigid.to_dict("records"):
        twin = rec["key"][:-len("/rigid")]
        if twin not in fluid.index or rec.get("status") == "DOES-NOT-FIT":
            continue
        f = fluid.loc[twin]
        # a rigid-valid schedule is fluid-valid and a fluid lower end bounds rigid schedules: each side's interval
        # tightens the other's
        fluid_upper = min(f["optimum_upper_ms"], rec["optimum_upper_ms"])
        rigid_lower = max(rec["optimum_lower_ms"], f["optimum_lower_ms"])
        rigid_upper = rec["optimum_upper_ms"]
        rows.append({"model": rec["model"], "piece": rec["piece"], "topology": rec["topology"],
                     "sram_kib": rec["sram_kib"], "hbm_tbps": rec["hbm_tbps"], "status": rec["status"],
                     "fluid_upper_ms": fluid_upper, "rigid_lower_ms": rigid_lower, "rigid_upper_ms": rigid_upper,
                     "rigid_width_pct": (rigid_upper / rigid_lower - 1) * 100,
                     "rigid_price_min_pct": (rigid_lower / fluid_upper - 1) * 100,
                     "rigid_price_max_pct": (rigid_upper / f["optimum_lower_ms"] - 1) * 100,
                     "rigid_heuristic_true_gap_pct": (rec["best_heuristic_ms"] / rigid_upper - 1) * 100,
                     "rigid_bound_slack_pct": (rigid_lower / rec["bound_ms"] - 1) * 100})
    if not rows:
        return []
    table = pd.DataFrame(rows)
    solved = table[table["rigid_width_pct"] <= SOLVED_WIDTH * 100]
    proven = rigid[rigid["status"] == "OPTIMAL"]
    costly = table[table["rigid_price_min_pct"] > SOLVED_WIDTH * 100]
    return ["## Rigid loads", "",
            f"{len(table)} rigid instances: {len(proven)} proven OPTIMAL for the rigid integer model, {len(solved)} "
            f"solved to within {SOLVED_WIDTH * 100:g}% (both load models' intervals combined). The rigid price (the "
            "rigid optimum over the fluid optimum of the same piece) is proven above "
            f"{SOLVED_WIDTH * 100:g}% at {len(costly)} instances"
            + (f" (up to {costly['rigid_price_min_pct'].max():.3f}%)" if len(costly) else "")
            + f"; its upper end is {table['rigid_price_max_pct'].median():.3f}% at the median instance. "
            "The best rigid heuristic's true gap: mean "
            f"{table['rigid_heuristic_true_gap_pct'].mean():.3f}%, max {table['rigid_heuristic_true_gap_pct'].max():.3f}%; "
            f"elk's bound's slack under rigid loads: mean {table['rigid_bound_slack_pct'].mean():.3f}%, max "
            f"{table['rigid_bound_slack_pct'].max():.3f}%.", "", md_table(table.round(4)), ""]


def summary(frame: pd.DataFrame) -> str:
    lm = frame["load_model"] if "load_model" in frame.columns else pd.Series("fluid", index=frame.index)
    frame = frame.assign(series=frame["piece"].map(series), load_model=lm.fillna("fluid"))
    solved = frame[frame["solved"] == True]  # noqa: E712 - pandas column of booleans
    proven = frame[frame["status"] == "OPTIMAL"]
    by_series = "; ".join(
        f"{lm}: " + ", ".join(f"{int(((proven['series'] == s) & (proven['load_model'] == lm)).sum())} of "
                              f"{int(((frame['series'] == s) & (frame['load_model'] == lm)).sum())} {s}"
                              for s in ("halves", "small") if ((frame["series"] == s) & (frame["load_model"] == lm)).any())
        for lm in ("fluid", "rigid") if (frame["load_model"] == lm).any())
    lines = ["# Ground truth: optima of real-shape programs, known to within "
             f"{SOLVED_WIDTH * 100:g}%", "",
             f"{len(solved)} of {len(frame)} instances solved: the best valid schedule (any design, or the optimal "
             "design's CP-SAT solution, timed by the simulator) is within "
             f"{SOLVED_WIDTH * 100:g}% of a proven lower bound (elk's bounds, or CP-SAT's bound on the "
             "integer-cycle whole-program model less its rounding allowance). Load models: "
             + ", ".join(f"{int((frame['load_model'] == x).sum())} {x}" for x in ("fluid", "rigid")
                         if (frame["load_model"] == x).any())
             + " (rigid: the same model with one product row per (execution, load) pair, and its lower end from "
             "the rows' relaxation).", "",
             f"{len(proven)} instances proven OPTIMAL by CP-SAT ({by_series}; `series` small = the smaller "
             "pieces qkv, attn-core, ffn-up, ffn-down).", "",
             "`best_heuristic_true_gap_pct` = best heuristic / best valid schedule - 1 (the schedule's side); "
             "`bound_slack_pct` = proven lower bound on the optimum / elk's best bound - 1 (the bound's side). Both "
             "are lower estimates; the optimum's interval (`width_pct`) is what either may still hide.", ""]
    cols = ["series", "load_model", "model", "piece", "topology", "sram_kib", "hbm_tbps", "operators", "optimum_upper_ms", "width_pct",
            "best_heuristic", "best_heuristic_true_gap_pct", "bound_name", "bound_slack_pct",
            "heuristic_certified_gap_pct"]
    if len(solved):
        lines += ["## Solved instances: which side is loose", "", md_table(solved[cols].round(3)), ""]
        gap_cols = [c for c in solved.columns if c.endswith("_true_gap_pct")]
        slack_cols = [c for c in solved.columns if c.endswith("_slack_pct")]
        means = solved[gap_cols + slack_cols].mean().round(3).to_frame("mean %").reset_index()
        lines += ["## Means over the solved instances", "", md_table(means), ""]
    if "milp_status" in frame.columns:
        checked = frame[frame["milp_status"].notna()]
        proved = checked[checked["milp_status"] == "OPTIMAL"]
        differ = proved[proved["milp_agrees"] != True]  # noqa: E712
        lines += [f"MILP cross-check (HiGHS, same problem and hint): of {len(checked)} instances CP-SAT proved, the "
                  f"MILP proved {len(proved)} and agrees on {len(proved) - len(differ)}; it left "
                  f"{len(checked) - len(proved)} FEASIBLE at its limit."
                  + (f" Where both proved and differ ({', '.join(differ['key'])}), the MILP's optimum is the lower "
                     "makespan of the same integer model: its solution passes the window checker and the simulator "
                     "(above the instance's proven lower end), so CP-SAT's OPTIMAL there is not the model's "
                     "optimum." if len(differ) else ""), ""]
    lines += rigid_section(frame)
    bad = frame[frame["bound_above_schedule"] == True]  # noqa: E712
    lines += [f"Bounds above a valid schedule's latency (bugs): {len(bad)}.", ""]
    infeasible = frame[frame["status"] == "INFEASIBLE"]
    if len(infeasible):  # the warm start is valid, so the model must have a solution: a bug to find
        lines += [f"CP-SAT INFEASIBLE on the whole-program model although a valid warm start exists (bugs): "
                  f"{len(infeasible)} ({', '.join(infeasible['key'])}).", ""]
    open_ = frame[frame["solved"] != True]  # noqa: E712
    if len(open_):
        lines += ["## Not solved within the limit", "",
                  md_table(open_[cols[:8] + ["status", "optimum_lower_ms", "optimum_upper_ms", "width_pct",
                                             "best_heuristic_true_gap_pct", "bound_slack_pct"]].round(4)), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("experiments/results/ground_truth"))
    ap.add_argument("--quick", action="store_true", help="one small instance (a smoke run)")
    ap.add_argument("--pieces", default="attention,head,ffn", help=f"comma list of {', '.join(PIECES)}")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--load-models", default="fluid", help="comma list of fluid, rigid (rigid rows: key/rigid)")
    ap.add_argument("--rebound", action="store_true",
                    help="prove every stored instance's bounds again (the solver results stay) and rewrite the report")
    ap.add_argument("--rebound-level", default="milp", choices=("closed", "lp", "milp"),
                    help="with --rebound: recompute the bound families of this level only (the others are kept)")
    ap.add_argument("--milp-check", type=float, metavar="SECONDS", default=None,
                    help="solve every CP-SAT-proven instance again as a MILP (HiGHS) with this limit and compare")
    ap.add_argument("--full-grid", action="store_true", help="every chip of the gap study (12), not the 6 default")
    ap.add_argument("--chips", default=None, metavar="TOPOLOGY:SRAM_KIB:HBM_TBPS,...",
                    help="these chips only (e.g. all-to-all:192:8,mesh:624:8), instead of the default six")
    ap.add_argument("--time-limit", type=float, default=60.0, help="CP-SAT seconds per instance")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=2048)
    args = ap.parse_args(argv)
    pieces = tuple(p for p in args.pieces.split(",") if p)
    unknown = [p for p in pieces if p not in PIECES]
    if unknown:
        print(f"elk: error: unknown piece(s) {', '.join(unknown)} (known: {', '.join(PIECES)})", file=sys.stderr)
        return 2
    try:
        chips = parse_chips(args.chips) if args.chips is not None else None
    except ValueError as err:
        print(f"elk: error: --chips: {err}", file=sys.stderr)
        return 2
    opts = OptimalOptions(time_limit=args.time_limit, workers=args.workers, max_operators=256)
    csv = args.out / "ground_truth.csv"
    frame = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    if args.rebound:
        frame = rebound(frame, args.batch, args.seq, args.rebound_level)
        write_text(csv, frame.to_csv(index=False))
    if args.milp_check is not None:
        frame = milp_check(frame, args.batch, args.seq, args.milp_check)
        write_text(csv, frame.to_csv(index=False))
    done = set(frame["key"]) if len(frame) else set()
    models = set(args.models.split(","))
    load_models = tuple(x for x in args.load_models.split(",") if x)
    if any(x not in ("fluid", "rigid") for x in load_models):
        print(f"elk: error: --load-models takes fluid and/or rigid, got {args.load_models!r}", file=sys.stderr)
        return 2
    todo = [] if args.rebound or args.milp_check is not None else \
        [i for i in instances(args.quick, pieces, args.full_grid, load_models, chips) if i.key not in done and i.model in models]
    todo.sort(key=lambda i: pieces.index(i.piece))  # piece by piece, in the order asked (a budget may stop a run)
    for k, inst in enumerate(todo):
        try:
            row = run_instance(inst, opts, args.batch, args.seq)
        except OperatorDoesNotFitError as err:  # recorded, so a rerun does not try it again
            row = {"key": inst.key, **dataclasses.asdict(inst), "series": series(inst.piece),
                   "status": "DOES-NOT-FIT", "solved": False,
                   "note": str(err)}
            frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
            write_text(csv, frame.to_csv(index=False))
            print(f"[{k + 1}/{len(todo)}] {inst.key}: does not fit ({err})", flush=True)
            continue
        frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
        write_text(csv, frame.to_csv(index=False))
        print(f"[{k + 1}/{len(todo)}] {inst.key}: {row['status']} best heuristic {row['best_heuristic_ms']:.4f} ms, "
              f"optimum in [{row['optimum_lower_ms']:.4f}, {row['optimum_upper_ms']:.4f}], bound {row['bound_ms']:.4f} "
              f"({row['bound_name']}) in {row['instance_seconds']:.0f} s", flush=True)
    if len(frame):
        write_text(args.out / "ground_truth.md", summary(frame))
        print(summary(frame))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
