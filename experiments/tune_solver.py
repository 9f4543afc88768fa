"""Solver tuning on a fixed set of window problems: which CP-SAT / HiGHS / CBC settings prove optimality fastest.

The windows are the ones ``solvers.schedule.windowed`` would solve when every earlier
window keeps the warm start (so the set is reproducible and independent of the
settings under test): by default the ``--windows`` largest CP-SAT models among
the windows of the first ``--layers`` layers, or an explicit ``--window-ids``.
Every setting solves every window from the same complete warm-start hint.

``--problems whole`` tunes the ``optimal`` design's model instead: the whole
program (the model's ``--layers``-layer build, at most 64 operators) as one
problem with its prefix cuts (solvers.schedule.optimal.optimal_problem), hinted
by the warm start mapped into its integers; the MILP families solve the same
problem without the cuts. (``lp-guided`` has no solver parameters to tune: its
HiGHS MILP takes only a thread count and a time limit.)

Settings are a one-factor-at-a-time sweep around the baseline the project runs
(2 workers, the solver's own defaults), or ``--full-grid`` for the cartesian
product per solver family; ``--quick`` keeps three settings (for tests).
Levels equal to the installed solver's default are folded into the baseline.

    python -m experiments.tune_solver [--model llama2-13b] [--windows 12] [--time-limit 10]
                                      [--families cpsat,highs,cbc] [--full-grid] [--out out/tune]
                                      [--problems windows|whole]

Resumable: one row per (setting, window) is appended to ``OUT/tune.csv`` and
flushed as soon as it is solved; a rerun skips the rows already there for the
same model, windows and limits. Prints the settings ranked by mean time to a
proven optimum (over the windows each proved), then % proven optimal, then
mean final gap; draws ``OUT/tune.png`` (mean solve time per setting).
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.gap_study import CsvLog, save, split_list

FAMILIES = ("cpsat", "highs", "cbc")
BASE_WORKERS = 2  # what solvers.schedule.windowed runs by default

#: factor -> levels; the first level is the baseline. A level is a dict of solver parameters, where the
#: key "workers" sets SolverSettings.workers (CP-SAT num_workers, MILP threads) instead of a parameter.
CPSAT_FACTORS: dict[str, list[dict[str, Any]]] = {
    "workers": [{"workers": 2}, {"workers": 1}],
    "linearization_level": [{"linearization_level": 1}, {"linearization_level": 0}, {"linearization_level": 2}],
    "search_branching": [{"search_branching": "AUTOMATIC_SEARCH"}, {"search_branching": "FIXED_SEARCH"},
                         {"search_branching": "PORTFOLIO_SEARCH"}],
    "symmetry_level": [{"symmetry_level": 2}, {"symmetry_level": 0}],
    "overload_checker": [{"use_overload_checker_in_cumulative": False},
                         {"use_overload_checker_in_cumulative": True}],
    "timetable_edge_finding": [{"use_timetable_edge_finding_in_cumulative": False},
                               {"use_timetable_edge_finding_in_cumulative": True}],
    "hint": [{"fix_variables_to_their_hinted_value": False}, {"repair_hint": True}, {"hint_conflict_limit": 10}],
}
HIGHS_FACTORS: dict[str, list[dict[str, Any]]] = {
    "threads": [{"workers": 2}, {"workers": 1}],
    "mip_heuristic_effort": [{"mip_heuristic_effort": 0.05}, {"mip_heuristic_effort": 0.3}],
    "presolve": [{}, {"presolve": "on"}, {"presolve": "off"}],
}
#: CBC takes command-line words ("cuts off"); its defaults cannot be queried, so the baseline is "no word"
CBC_FACTORS: dict[str, list[dict[str, Any]]] = {
    "cuts": [{}, {"cuts": "off"}],
    "heuristics": [{}, {"heuristics": "off"}],
}
FACTORS = {"cpsat": CPSAT_FACTORS, "highs": HIGHS_FACTORS, "cbc": CBC_FACTORS}
QUICK = ("cpsat w2 default", "cpsat w2 linearization_level=2", "highs w2 default")

#: what is tuned: the window designs' problems, or the optimal design's whole-program model
PROBLEMS = ("windows", "whole")

ROW_KEY = ("model", "problems", "warm", "batch", "seq", "window_size", "time_limit", "seed", "setting", "window")
FIELDS = list(ROW_KEY) + ["family", "workers", "params", "first_op", "last_op", "size", "hint_ok",
                          "heuristic_cycles", "status", "makespan", "bound", "gap", "seconds", "time_to_optimal",
                          "first_improvement_s", "improved"]


# -- settings --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One solver configuration; its id is derived from its content, so reruns find their rows again."""

    family: str
    workers: int
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def ident(self) -> str:
        body = " ".join(f"{k}={v}" for k, v in self.params) or "default"
        return f"{self.family} w{self.workers} {body}"

    def solver_settings(self, time_limit: float, seed: int):
        from solvers.solver_options import SolverSettings

        solver, backend = ("cpsat", "highs") if self.family == "cpsat" else ("milp", self.family)
        return SolverSettings(solver=solver, time_limit=time_limit, workers=self.workers, seed=seed,
                              params=dict(self.params), backend=backend)


@functools.cache
def installed_default(family: str, name: str) -> Any:
    """The installed solver's own default for a parameter (None when it cannot be asked, as for CBC)."""
    if family == "cpsat":
        from ortools.sat import sat_parameters_pb2

        message = sat_parameters_pb2.SatParameters()
        field = message.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            return None
        value = getattr(message, name)
        return field.enum_type.values_by_number[value].name if field.enum_type is not None else value
    if family == "highs":
        import highspy

        h = highspy.Highs()
        status, value = h.getOptionValue(name)
        return value if status == highspy.HighsStatus.kOk else None
    return None


def make_setting(family: str, levels: Sequence[Mapping[str, Any]]) -> Setting:
    """Merge one level per factor, dropping parameters that equal the solver's default (same model run)."""
    merged: dict[str, Any] = {}
    for level in levels:
        merged.update(level)
    workers = int(merged.pop("workers", BASE_WORKERS))
    params = tuple(sorted((k, v) for k, v in merged.items() if installed_default(family, k) != v))
    return Setting(family, workers, params)


def one_factor_at_a_time(family: str) -> list[Setting]:
    """The baseline, then each factor's other levels with every other factor at its baseline.

    A level that equals the installed default gives the baseline again; it is
    reported and not run twice.
    """
    factors = list(FACTORS[family].values())
    base = [levels[0] for levels in factors]
    out = [make_setting(family, base)]
    for i, levels in enumerate(factors):
        for level in levels[1:]:
            setting = make_setting(family, base[:i] + [level] + base[i + 1:])
            if setting in out:
                print(f"note: {family} {level} is the installed default: covered by '{setting.ident}'")
            else:
                out.append(setting)
    return out


def full_grid(family: str) -> list[Setting]:
    """Every combination of levels, each distinct setting once."""
    out: list[Setting] = []
    for combo in itertools.product(*FACTORS[family].values()):
        setting = make_setting(family, combo)
        if setting not in out:
            out.append(setting)
    return out


def settings_to_run(families: Sequence[str], grid: bool, quick: bool) -> list[Setting]:
    """The settings to evaluate, in order (``quick``: the three of ``QUICK`` that the families allow)."""
    settings = [s for family in families for s in (full_grid(family) if grid else one_factor_at_a_time(family))]
    return [s for s in settings if s.ident in QUICK] if quick else settings


# -- the fixed window set --------------------------------------------------------------------------------------

@dataclass
class TuneWindow:
    """One window problem with the warm start's complete assignment as its hint."""

    index: int
    first: int
    last: int
    problem: Any
    hint: Any
    hint_ok: bool
    heuristic: float  # warm start's makespan, in the rounded model's units when expressible there
    size: int  # CP-SAT variables + constraints: what "largest" means when picking windows
    whole: bool = False  # the optimal design's whole-program model (CP-SAT solves it with its prefix cuts)
    #: whole: every CP-SAT variable's value at the hint, as the optimal design completes it (None: not completed)
    values: list[int] | None = None


def model_size(problem) -> int:
    from formulations.schedule.cpsat_window import build_cpsat

    proto = build_cpsat(problem).model.proto
    return len(proto.variables) + len(proto.constraints)


def build_windows(workload, warm, window: int, count: int) -> list[TuneWindow]:
    """The first ``count`` windows, each built after the earlier ones kept the warm start.

    That is what the windowed driver sees when no earlier window improves, so
    the problems do not depend on which settings solved the windows before.
    """
    from solvers.schedule.windowed import window_problems

    out, sizes = [], {}  # repeated layers repeat problems: size each distinct one once
    for index, built in enumerate(window_problems(workload, warm, window, count)):
        heuristic = float(built.hint.makespan()) if built.hint_ok else float(built.heuristic_makespan)
        key = built.problem.signature()
        if key not in sizes:
            sizes[key] = model_size(built.problem)
        first, stop = built.problem.ops[0].op, built.problem.ops[-1].op + 1
        out.append(TuneWindow(index, first, stop - 1, built.problem, built.hint, built.hint_ok, heuristic,
                              sizes[key]))
    return out


def distinct(windows: Sequence[TuneWindow]) -> int:
    return len({w.problem.signature() for w in windows})


def windows_in_layers(workload, window: int, layers: int) -> int:
    """How many windows lie within the preamble and the first ``layers`` layers."""
    from solvers.schedule.windowed import window_ranges

    ranges = window_ranges(workload, window)
    structure = workload.program.layers
    if structure is None:
        return len(ranges)
    cut = structure.start + max(1, layers) * structure.length
    return sum(1 for _, stop, _ in ranges if stop <= cut)


def pick_windows(candidates: Sequence[TuneWindow], count: int, ids: Sequence[int] | None) -> list[TuneWindow]:
    """The explicit ids, or the ``count`` largest distinct problems (identical repeats add nothing)."""
    if ids:
        by_index = {w.index: w for w in candidates}
        missing = [i for i in ids if i not in by_index]
        if missing:
            raise SystemExit(f"window ids {missing} out of range (0..{len(candidates) - 1})")
        return [by_index[i] for i in ids]
    seen, chosen = set(), []
    for w in sorted(candidates, key=lambda w: (-w.size, w.index)):
        key = w.problem.signature()
        if key not in seen:
            seen.add(key)
            chosen.append(w)
    return sorted(chosen[:count], key=lambda w: w.index)


def whole_program(args) -> list[TuneWindow]:
    """The ``--layers``-layer build of the model as the optimal design's one problem, with the warm start as hint."""
    import dataclasses

    from elk.chip import preset
    from elk.graphs.zoo import build_program, resolve_model
    from elk.simulator import simulate
    from elk.workload import Workload
    from formulations.schedule.window import check
    from solvers.schedule.designs import elk_dyn, elk_full
    from solvers.schedule.optimal import OptimalOptions, complete_hint, optimal_problem

    cfg = dataclasses.replace(resolve_model(args.model), layers=args.layers)
    chip = preset(args.chip).with_overrides(hbm_bytes_per_s=args.hbm_tbps * 1e12)
    workload = Workload.build(build_program(cfg, batch=args.batch, seq=args.seq, mode="decode"), chip)
    limit = OptimalOptions().max_operators
    if len(workload) > limit:
        raise SystemExit(f"{args.model} with {args.layers} layer(s) has {len(workload)} operators; the optimal "
                         f"design's model takes at most {limit} (use --layers 1)")
    warm = elk_dyn(workload) if args.warm == "elk-dyn" else elk_full(workload)
    problem, _, hint = optimal_problem(workload, warm, simulate(workload, warm).latency_cycles,
                                       OptimalOptions().ticks)
    ok = not check(problem, hint)
    # CP-SAT uses a hint only when it is complete: fill in the auxiliary variables as the optimal design does
    values = complete_hint(problem, hint, OptimalOptions(workers=1, seed=args.seed), args.time_limit) if ok else None
    heuristic = float(hint.makespan())
    print(f"{args.model}: {len(workload)} operators as one problem, {args.warm} warm start "
          f"({'a feasible' if ok else 'an infeasible'} hint{'' if values is not None else ', not completed'})")
    return [TuneWindow(0, 0, len(workload) - 1, problem, hint, ok, heuristic, model_size(problem), whole=True,
                       values=values)]


def whole_model(values: list[int] | None):
    """What the optimal design adds to the built CP-SAT model: its prefix cuts, then the completed hint."""
    from formulations.schedule.whole_program import add_prefix_cuts

    def extend(built) -> None:
        add_prefix_cuts(built)
        if values is not None:
            m = built.model
            m.clear_hints()
            for i, value in enumerate(values):
                m.add_hint(m.get_int_var_from_proto_index(i), value)
    return extend


def prepare_windows(args) -> list[TuneWindow]:
    from elk.chip import preset
    from elk.workload import Workload
    from elk.graphs.zoo import build_program
    from solvers.schedule.designs import elk_dyn, elk_full
    from solvers.schedule.windowed import window_ranges

    started = time.perf_counter()
    chip = preset(args.chip).with_overrides(hbm_bytes_per_s=args.hbm_tbps * 1e12)
    workload = Workload.build(build_program(args.model, batch=args.batch, seq=args.seq, mode="decode"), chip)
    warm = elk_dyn(workload) if args.warm == "elk-dyn" else elk_full(workload)
    ids = [int(x) for x in split_list(args.window_ids, what="window id")] if args.window_ids else None
    count = max(ids) + 1 if ids else windows_in_layers(workload, args.window, args.layers)
    candidates = build_windows(workload, warm, args.window, count)
    if not ids and distinct(candidates) < args.windows:
        # identical layers give identical windows: look further for the distinct problems asked for
        print(f"note: only {distinct(candidates)} distinct windows in the first {args.layers} layer(s); "
              f"picking from the whole program")
        candidates = build_windows(workload, warm, args.window, len(window_ranges(workload, args.window)))
    chosen = pick_windows(candidates, args.windows, ids)
    print(f"{args.model}: {len(workload)} operators, {args.warm} warm start; {len(chosen)} windows "
          f"(of {len(candidates)} candidates, {distinct(candidates)} distinct) in "
          f"{time.perf_counter() - started:.1f} s")
    return chosen


def print_windows(windows: Sequence[TuneWindow]) -> None:
    print(f"{'window':>6} {'ops':>9} {'size':>6} {'warm makespan':>14} {'hint ok':>7}")
    for w in windows:
        print(f"{w.index:>6} {f'{w.first}-{w.last}':>9} {w.size:>6} {w.heuristic:>14.0f} "
              f"{'yes' if w.hint_ok else 'no':>7}")


# -- solving ---------------------------------------------------------------------------------------------------

def reset_highs_threads() -> None:
    """Let the next HiGHS solve pick its own thread count.

    HiGHS sizes one global thread pool at its first solve in a process and then
    refuses ("NOT SOLVED") any solve asking for another count, so a sweep over
    threads would silently fail without this reset.
    """
    import highspy

    highspy.Highs.resetGlobalScheduler(True)


def solve(setting: Setting, window: TuneWindow, time_limit: float, seed: int):
    from solvers.exact_backends import solve_cpsat, solve_milp

    settings = setting.solver_settings(time_limit, seed)
    if setting.family == "cpsat":
        return solve_cpsat(window.problem, settings, window.hint,
                           extend=whole_model(window.values) if window.whole else None)
    if setting.family == "highs":
        reset_highs_threads()
    return solve_milp(window.problem, settings, window.hint)


def result_row(keys: Mapping[str, Any], setting: Setting, window: TuneWindow, outcome) -> dict[str, Any]:
    """One CSV row; the bound is capped by the incumbent (a MILP log may report a looser final value)."""
    nan = float("nan")
    makespan = outcome.makespan
    bound = outcome.bound
    if bound is not None and makespan is not None:
        bound = min(bound, makespan)
    gap = (makespan - bound) / makespan if makespan and bound is not None else nan
    return {**keys, "family": setting.family, "workers": setting.workers,
            "params": json.dumps(dict(setting.params), sort_keys=True), "first_op": window.first,
            "last_op": window.last, "size": window.size, "hint_ok": window.hint_ok,
            "heuristic_cycles": window.heuristic, "status": outcome.status,
            "makespan": nan if makespan is None else makespan, "bound": nan if bound is None else bound,
            "gap": gap, "seconds": outcome.seconds,
            "time_to_optimal": outcome.seconds if outcome.status == "OPTIMAL" else nan,
            "first_improvement_s": nan if outcome.first_improvement_s is None else outcome.first_improvement_s,
            "improved": makespan is not None and makespan < window.heuristic - 1e-6}


def row_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in ROW_KEY)


def run_grid(settings: Sequence[Setting], windows: Sequence[TuneWindow], base: Mapping[str, Any],
             log: CsvLog) -> int:
    """Solve what is not in the log yet, appending each row as it finishes; returns how many were skipped."""
    done = {row_key(r) for r in log.read()}
    skipped = 0
    for setting in settings:
        solved, optimal, spent = 0, 0, 0.0
        for window in windows:
            keys = {**base, "setting": setting.ident, "window": window.index}
            if row_key(keys) in done:
                skipped += 1
                continue
            row = result_row(keys, setting, window, solve(setting, window, base["time_limit"], base["seed"]))
            log.append([row])
            solved, optimal, spent = solved + 1, optimal + (row["status"] == "OPTIMAL"), spent + row["seconds"]
        if solved:
            print(f"{setting.ident}: {solved} windows, {optimal} proven optimal, {spent:.1f} s", flush=True)
    return skipped


# -- summaries -------------------------------------------------------------------------------------------------

def load_rows(log: CsvLog, base: Mapping[str, Any], settings: Sequence[Setting], windows: Sequence[TuneWindow]):
    """This configuration's rows as a typed DataFrame (other models / limits in the same file are ignored)."""
    import pandas as pd

    wanted = {row_key({**base, "setting": s.ident, "window": w.index}) for s in settings for w in windows}
    rows = [r for r in log.read() if row_key(r) in wanted]
    frame = pd.DataFrame(rows, columns=log.fields)
    for col in ("workers", "window", "size", "heuristic_cycles", "makespan", "bound", "gap", "seconds",
                "time_to_optimal", "first_improvement_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["optimal"] = frame["status"].eq("OPTIMAL")
    frame["improved"] = frame["improved"].astype(str).str.lower().eq("true")
    return frame


def summarise(frame, order: Sequence[str]):
    """Per setting: % proven optimal, time to optimal (own and common windows), solve time, gaps; ranked.

    The ranking key is the brief's: mean time to optimal over the windows each
    setting proved (NaN last), then % proven optimal, then mean final gap. A
    setting that proves only easy windows can look fast on the first key, so
    ``tto common`` (over windows every setting proved) is shown next to it.
    """
    import pandas as pd

    proved_by_all = frame.groupby("window")["optimal"].all()
    common = set(proved_by_all[proved_by_all].index)
    rows = []
    for ident in order:
        mine = frame[frame["setting"] == ident]
        if mine.empty:
            continue
        rows.append({"setting": ident, "windows": len(mine),
                     "% optimal": 100.0 * mine["optimal"].mean(),
                     "tto mean s": mine["time_to_optimal"].mean(),
                     "tto common s": mine.loc[mine["window"].isin(common), "time_to_optimal"].mean(),
                     "solve mean s": mine["seconds"].mean(),
                     "gap mean": mine["gap"].mean(), "gap max": mine["gap"].max(),
                     "improved": int(mine["improved"].sum()), "no solution": int(mine["makespan"].isna().sum())})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_k1"] = table["tto mean s"].fillna(math.inf)
    table["_k3"] = table["gap mean"].fillna(math.inf)
    table = table.sort_values(["_k1", "% optimal", "_k3"], ascending=[True, False, True], kind="stable")
    table = table.drop(columns=["_k1", "_k3"]).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def print_ranking(table, common: int) -> None:
    if table.empty:
        print("no results")
        return
    shown = table.copy()
    fmt = {"% optimal": "{:.1f}", "tto mean s": "{:.3f}", "tto common s": "{:.3f}", "solve mean s": "{:.3f}",
           "gap mean": "{:.4f}", "gap max": "{:.4f}"}
    for col, pattern in fmt.items():
        shown[col] = [pattern.format(v) if math.isfinite(v) else "-" for v in shown[col]]
    print(f"\nsettings ranked (tto = time to proven optimum; 'common' = the {common} windows every setting proved):")
    print(shown.to_string(index=False))


def figure_times(table, path: Path) -> None:
    """Mean solve time per setting (ranked order), coloured by solver family, % optimal written on each bar."""
    from matplotlib.figure import Figure

    colours = {"cpsat": "tab:blue", "highs": "tab:orange", "cbc": "tab:green"}
    fig = Figure(figsize=(8.5, 0.32 * len(table) + 1.6))
    ax = fig.subplots()
    y = list(range(len(table)))[::-1]
    ax.barh(y, table["solve mean s"], color=[colours[s.split()[0]] for s in table["setting"]])
    for yi, (_, row) in zip(y, table.iterrows()):
        ax.text(row["solve mean s"], yi, f" {row['% optimal']:.0f}% opt", va="center", fontsize=7)
    ax.set_yticks(y, table["setting"], fontsize=7)
    ax.set_xlabel("mean solve seconds per window (time limit included)")
    ax.set_title("solver settings, best rank at the top (blue CP-SAT, orange HiGHS, green CBC)", fontsize=9)
    save(fig, path)


# -- entry point -----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/tune", help="output folder (default out/tune)")
    p.add_argument("--model", default="llama2-13b")
    p.add_argument("--warm", default="elk-full", choices=("elk-full", "elk-dyn"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--chip", default="ipu-pod4")
    p.add_argument("--hbm-tbps", type=float, default=16.0)
    p.add_argument("--window", type=int, default=8, help="operators per window")
    p.add_argument("--windows", type=int, default=12, help="how many of the largest windows to tune on")
    p.add_argument("--layers", type=int, default=2,
                   help="pick them among the first LAYERS layers (--problems whole: the program's layers)")
    p.add_argument("--problems", choices=PROBLEMS, default="windows",
                   help="windows (the cpsat/milp designs' window problems, default) or whole (the optimal design's "
                        "whole-program model)")
    p.add_argument("--window-ids", default="", help="explicit window indices, e.g. 3,5,9 (overrides --windows)")
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds per solve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", default=",".join(FAMILIES), help="cpsat, highs, cbc")
    p.add_argument("--full-grid", action="store_true", help="cartesian product instead of one factor at a time")
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)} (smoke tests)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    families = split_list(args.families, FAMILIES, "solver family")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "tune.csv", FIELDS)
    settings = settings_to_run(families, args.full_grid, args.quick)
    windows = whole_program(args) if args.problems == "whole" else prepare_windows(args)
    print_windows(windows)
    # the whole program's "window" is all its operators (which also tells layer counts apart)
    size = len(windows[0].problem.ops) if args.problems == "whole" else args.window
    base = {"model": args.model, "problems": args.problems, "warm": args.warm, "batch": args.batch, "seq": args.seq,
            "window_size": size, "time_limit": args.time_limit, "seed": args.seed}
    print(f"{len(settings)} settings x {len(windows)} windows, {args.time_limit:g} s limit each", flush=True)
    skipped = run_grid(settings, windows, base, log)
    if skipped:
        print(f"skipped {skipped} (setting, window) runs already in {log.path}")
    frame = load_rows(log, base, settings, windows)
    table = summarise(frame, [s.ident for s in settings])
    proved_by_all = frame.groupby("window")["optimal"].all()
    print_ranking(table, int(proved_by_all.sum()))
    if not table.empty:
        figure_times(table, out / "tune.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
