"""Which side of each open certified gap is loose, as far as the ground truth can tell.

A gap study's configuration whose best schedule stays more than 3% above its
proven bound has a loose schedule, a loose bound, or both; only a known optimum
separates them. Whole programs do not close in CP-SAT here, but the ground
truth (``experiments.ground_truth``) solves real-shape pieces of the same
model on the same chip (the attention and FFN halves, the head, and smaller
parts of them) and states, per solved piece, how far the best heuristic is
above the optimum (the schedule's side) and how far elk's best bound on that
piece is below it (the bound's side). A piece's bounds are the ``milp`` level's,
the whole-load MILP among them: the relaxation that a whole program's layer
bounds solve per layer or block of layers (not over the whole program), so a
tight piece bound says that relaxation is tight on the piece.

This joins the two: for every open configuration, the solved pieces of its
model and chip (under its load model where the ground truth ran it, else the
fluid pieces), the largest loss on each side and where, and a verdict. Every
piece with a proven interval counts, solved or not: its optimum lies in
``[lower, upper]``, so the best heuristic is at least ``heuristic / upper - 1``
above it and elk's bound at least ``lower / bound - 1`` below it (on a solved
piece, width <= 0.1%, these are the true values).

- ``schedule`` or ``bound``: the side whose largest loss on the pieces is the
  larger, where that loss is at least ``SIDE_PCT``;
- ``between pieces``: both sides within ``SIDE_PCT`` on every piece, so what
  keeps the whole program's gap open is in how the pieces and layers follow
  each other (the steady state: loads of the next layer running through this
  one), which no piece holds;
- ``no ground truth``: no piece of this model and chip is solved.

A verdict is evidence from parts, not a proof about the whole program: a
program's gap mixes its pieces and their interplay.

    python -m experiments.which_side                       # the committed study and ground truth
    python -m experiments.which_side --gaps OUT/gaps.csv --ground-truth A.csv,B.csv --out OUT/which_side.md
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from elk.atomic import write_text
from experiments.gap_study import CLOSED_PCT, best_rows, label, md_table

#: a side counts as loose on the pieces from this loss on (percent)
SIDE_PCT = 1.0
GAPS = Path("experiments/results/gap/gaps.csv")
GROUND_TRUTH = (Path("experiments/results/ground_truth/ground_truth.csv"),
                Path("experiments/results/ground_truth_open/ground_truth.csv"))


@dataclass(frozen=True)
class Evidence:
    """What the solved pieces of one model and chip say of a configuration's open gap."""

    label: str
    gap_pct: float  # the configuration's best certified gap (whole program)
    binding: str  # the whole program's binding bound family
    pieces_load_model: str  # load model of the pieces used ("" when none)
    pinned: int  # pieces with a proven interval on their optimum
    solved: int  # of which solved (width <= 0.1%)
    tried: int
    schedule_pct: float  # largest proven excess of the best heuristic over a piece's optimum
    schedule_piece: str
    bound_pct: float  # largest proven slack of elk's best bound below a piece's optimum
    bound_piece: str

    @property
    def verdict(self) -> str:
        if not self.pinned:
            return "no ground truth"
        if max(self.schedule_pct, self.bound_pct) < SIDE_PCT:
            return "between pieces"
        return "schedule" if self.schedule_pct >= self.bound_pct else "bound"


def load_ground_truth(paths) -> pd.DataFrame:
    """The ground-truth rows of every existing CSV in ``paths`` (one instance key once: the first file wins)."""
    frames = [pd.read_csv(p) for p in paths if Path(p).exists()]
    if not frames:
        return pd.DataFrame(columns=["key", "model", "topology", "sram_kib", "hbm_tbps", "load_model", "solved"])
    frame = pd.concat(frames, ignore_index=True).drop_duplicates("key", keep="first")
    if "load_model" not in frame:
        frame["load_model"] = "fluid"
    frame["load_model"] = frame["load_model"].fillna("fluid")
    return frame


#: what a piece needs to count: a proven interval on its optimum, its best heuristic and elk's bound (ms)
PINNED_COLUMNS = ("optimum_lower_ms", "optimum_upper_ms", "best_heuristic_ms", "bound_ms")


def pinned(frame: pd.DataFrame) -> pd.Series:
    """Whether each instance has a proven interval on its optimum, a heuristic and a bound."""
    if any(c not in frame for c in PINNED_COLUMNS):
        return pd.Series(False, index=frame.index)
    values = frame[list(PINNED_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    return (values > 0).all(axis=1)


def pieces_of(truth: pd.DataFrame, row) -> tuple[pd.DataFrame, str]:
    """The instances of the configuration's model and chip: under its load model if any is pinned, else fluid."""
    same = truth[(truth["model"] == row["model"]) & (truth["topology"] == row["topology"])
                 & (truth["sram_kib"].astype(float) == float(row["sram_kib"]))
                 & (truth["hbm_tbps"].astype(float) == float(row["hbm_tbps"]))]
    for load_model in dict.fromkeys((row["load_model"], "fluid")):
        mine = same[same["load_model"] == load_model]
        if pinned(mine).any():
            return mine, load_model
    return same.iloc[0:0], ""


def evidence(truth: pd.DataFrame, row) -> Evidence:
    """The pinned pieces' largest proven loss on each side, for one open configuration (a ``best`` row of
    gaps.csv)."""
    pieces, load_model = pieces_of(truth, row)
    known = pieces[pinned(pieces)]
    common = dict(label=label(row), gap_pct=float(row["certified_gap_pct"]), binding=str(row["bound_name"]),
                  pieces_load_model=load_model, pinned=len(known), tried=len(pieces))
    if not len(known):
        return Evidence(**common, solved=0, schedule_pct=0.0, schedule_piece="", bound_pct=0.0, bound_piece="")
    ms = {c: known[c].astype(float) for c in PINNED_COLUMNS}

    def largest(losses: pd.Series) -> tuple[float, str]:
        losses = (100.0 * losses).clip(lower=0.0)
        at = losses.idxmax()
        return float(losses[at]), str(known.loc[at, "piece"])

    schedule_pct, schedule_piece = largest(ms["best_heuristic_ms"] / ms["optimum_upper_ms"] - 1)
    bound_pct, bound_piece = largest(ms["optimum_lower_ms"] / ms["bound_ms"] - 1)
    return Evidence(**common, solved=int(known["solved"].fillna(False).astype(bool).sum()),
                    schedule_pct=schedule_pct, schedule_piece=schedule_piece, bound_pct=bound_pct,
                    bound_piece=bound_piece)


def open_evidence(gaps: pd.DataFrame, truth: pd.DataFrame, open_pct: float = CLOSED_PCT) -> list[Evidence]:
    """Evidence for every configuration whose best certified gap is above ``open_pct``, largest gap first."""
    best = best_rows(gaps)
    best = best[best["certified_gap_pct"].astype(float) > open_pct].sort_values("certified_gap_pct", ascending=False)
    return [evidence(truth, row) for _, row in best.iterrows()]


def report(items: list[Evidence], sources: list[str]) -> str:
    """The markdown report: one line per open configuration, then the count per verdict."""
    table = pd.DataFrame([{
        "configuration": e.label, "best gap %": f"{e.gap_pct:.2f}", "binding bound": e.binding,
        "pieces (solved)": f"{e.pinned} ({e.solved}) of {e.tried}"
                           + (f", {e.pieces_load_model}" if e.pieces_load_model else ""),
        "schedule side % (piece)": f">= {e.schedule_pct:.2f} ({e.schedule_piece})" if e.pinned else "",
        "bound side % (piece)": f">= {e.bound_pct:.2f} ({e.bound_piece})" if e.pinned else "",
        "verdict": e.verdict} for e in items])
    counts = pd.Series([e.verdict for e in items]).value_counts() if items else pd.Series(dtype=int)
    lines = ["# Which side of each open gap is loose, from the ground truth's pieces", "",
             f"Sources: {', '.join(sources)}. Open: best certified gap above {CLOSED_PCT:g}%. Pieces: the ground "
             "truth's instances of the same model and chip with a proven interval [lower, upper] on their optimum "
             "(solved: width <= 0.1%), under the configuration's load model where it ran, else fluid. Schedule side: "
             "the largest proven excess of the best heuristic over a piece's optimum (heuristic / upper - 1); bound "
             "side: the largest proven slack of elk's best bound on a piece (lower / bound - 1; a piece's bounds "
             "include the whole-load MILP, the relaxation a whole program's layer bounds solve per layer or block "
             "of layers, not over the whole program); the larger of the "
             "two if it is at least "
             f"{SIDE_PCT:g}%, else `between pieces` (both sides close on every piece: the open gap is in how pieces "
             "and layers follow each other, which no piece holds). Evidence from parts, not a proof about the "
             "whole program.", ""]
    lines += [md_table(table) if items else "No configuration is open.", ""]
    lines += ["Verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items()) + ".", ""] if items else []
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaps", type=Path, default=GAPS, help="a gap study's gaps.csv")
    ap.add_argument("--ground-truth", default=",".join(map(str, GROUND_TRUTH)),
                    help="comma list of ground_truth.csv files (missing ones are skipped)")
    ap.add_argument("--out", type=Path, default=GAPS.parent / "which_side.md")
    args = ap.parse_args(argv)
    if not args.gaps.is_file():
        print(f"elk: error: no gap study at {args.gaps}", file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.ground_truth.split(",") if p]
    try:
        gaps = pd.read_csv(args.gaps)
        truth = load_ground_truth(paths)
        items = open_evidence(gaps, truth)
    except (pd.errors.ParserError, KeyError, ValueError) as err:
        print(f"elk: error: cannot read the gap study or the ground truth: {err}", file=sys.stderr)
        return 2
    text = report(items, [str(args.gaps)] + [str(p) for p in paths if p.exists()])
    try:
        write_text(args.out, text)
    except OSError as err:
        print(f"elk: error: cannot write {args.out}: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
