"""``elk sweep``: design-space exploration on the study runner.

    elk sweep --model llama2-70b --vary hbm_tbps=4:16:2 --vary topology=all-to-all,mesh --out out/hbm

Every combination of the ``--vary`` values (START:STOP:STEP ranges include STOP)
is one study point; finished points are skipped on a rerun (same ``--out``).
Prints latency per design, the proven lower bound, each design's certified gap and % of Ideal
(designs default to the paper's five, ``--designs paper``, unlike ``elk compile``), and writes the sweep's rows to
``OUT/sweep.parquet`` (or ``.csv`` without pyarrow).
"""
from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any

from elk.study.point import FLOAT_KNOBS, INT_KNOBS, KNOBS, StudyError

#: Knobs the command sets through its own options rather than --vary.
_FIXED = ("model",)
MAX_VALUES = 10_000


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of compiles (resumable) and tabulate latency per design",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="zoo model or config path (repeatable)")
    p.add_argument("--mode", default="decode", help="decode (default), forward (the Elk paper's training proxy) or "
                                                    "train (one training step: forward, backward, Adam update)")
    p.add_argument("--batch", default="32", help="batch size(s), e.g. 32 or 16,32,64")
    p.add_argument("--seq", default="2048", help="KV length(s) / sequence length(s)")
    p.add_argument("--chip", default="ipu-pod4", help="chip preset or .toml/.json file")
    p.add_argument("--designs", default="paper", help="paper (basic,static,elk-dyn,elk-full,ideal) or a comma list")
    p.add_argument("--vary", action="append", default=[], metavar="KNOB=START:STOP:STEP|v1,v2",
                   help=f"a swept knob (repeatable); knobs: {', '.join(k for k in KNOBS if k not in _FIXED)}")
    p.add_argument("--out", default="elk-sweep", help="results folder (reused: finished points are skipped)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--address", default=None, help="Dask scheduler address (tcp://host:8786) or 'local'")
    p.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for the --address scheduler to answer before giving up (default 5, "
                        "or ELK_DASK_CONNECT_TIMEOUT); checked before the results folder is created")
    p.add_argument("--carry", action="store_true",
                   help="exact designs start from the best schedule of a point with less HBM bandwidth and SRAM "
                        "(it carries over, so their curves never rise); runs the points in this process")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """``hbm_tbps=4:16:2`` -> ("hbm_tbps", [4, 6, ..., 16]); ``topology=mesh,all-to-all`` -> a list."""
    if "=" not in spec:
        raise StudyError(f"--vary {spec!r}: expected KNOB=START:STOP:STEP or KNOB=v1,v2")
    name, text = spec.split("=", 1)
    name = name.strip().replace("-", "_")
    if name not in KNOBS or name in _FIXED:
        raise StudyError(f"--vary: unknown knob {name!r} (known: {', '.join(k for k in KNOBS if k not in _FIXED)})")
    text = text.strip()
    if not text:
        raise StudyError(f"--vary {spec!r}: no values")
    if ":" in text:
        return name, _range(name, text)
    return name, [_value(name, v.strip()) for v in text.split(",") if v.strip()]


def _range(name: str, text: str) -> list[Any]:
    parts = text.split(":")
    if len(parts) != 3 or name not in INT_KNOBS + FLOAT_KNOBS + ("seed",):
        raise StudyError(f"--vary {name}={text}: a range is START:STOP:STEP of a numeric knob")
    try:
        start, stop, step = (Decimal(x) for x in parts)
    except InvalidOperation:
        raise StudyError(f"--vary {name}={text}: START, STOP and STEP must be numbers") from None
    if step <= 0 or stop < start:
        raise StudyError(f"--vary {name}={text}: need STEP > 0 and STOP >= START")
    count = int((stop - start) / step) + 1
    if count > MAX_VALUES:
        raise StudyError(f"--vary {name}={text}: {count} values (at most {MAX_VALUES})")
    return [_value(name, str(start + k * step)) for k in range(count)]  # Decimal: no 0.1 drift


def _value(name: str, text: str) -> Any:
    if name in INT_KNOBS or name == "seed":
        try:
            d = Decimal(text)
        except InvalidOperation:
            d = None
        if d is None or d != d.to_integral_value():
            raise StudyError(f"--vary {name}: {text!r} is not an integer")
        return int(d)
    if name in FLOAT_KNOBS:
        try:
            value = float(text)
        except ValueError:
            raise StudyError(f"--vary {name}: {text!r} is not a number") from None
        return int(value) if value == int(value) else value
    return text


def _ints(option: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise StudyError(f"--{option}: expected integers, got {text!r}") from None
    if not values:
        raise StudyError(f"--{option}: no value")
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    from elk.study import Study, grid, run_study, write_frame

    axes: dict[str, Any] = {"model": args.model, "mode": args.mode, "batch": _ints("batch", args.batch),
                            "seq": _ints("seq", args.seq), "chip": args.chip, "designs": args.designs}
    varied: list[str] = []
    for spec in args.vary:
        name, values = parse_vary(spec)
        if name in varied:
            raise StudyError(f"--vary {name} given twice")
        axes[name] = values
        varied.append(name)
    if args.workers is not None and args.workers < 1:
        raise StudyError(f"--workers must be positive, got {args.workers}")
    points = grid(**axes)
    study = Study("sweep", points)
    if args.carry and args.address is not None:
        raise StudyError("--carry runs the points in this process, chain by chain: it does not take --address")
    from elk.cli.outputs import check_output_folder
    check_output_folder(args.out, "--out")  # before any point runs (run_study creates it)
    if args.address is not None:  # its form, then that it answers: before the results folder exists
        from elk.study.cluster import check_address, connect_timeout, probe_scheduler
        probe_scheduler(check_address(args.address), connect_timeout(args.connect_timeout))
    df = run_study(study, args.out, workers=args.workers, address=args.address, progress=not args.quiet,
                   carry=args.carry)
    print(sweep_table(df, varied))
    failures = failure_lines(df, varied)
    if failures:
        print(f"\n{len(failures)} point(s) failed (the reasons are also in the 'error' column of the table written):")
        print("\n".join(failures))
    written = write_frame(df, _out_path(args.out))
    print(f"\n{len(study.points)} points ({df.attrs['study']['ran']} run now, {df.attrs['study']['skipped']} "
          f"already done); wrote {written}\n(every stored point: elk.study.load_results({str(args.out)!r}))")
    return 0 if (df["status"] == "ok").all() else 1


def _out_path(out: str):
    from pathlib import Path
    return Path(out) / "sweep"


def sweep_table(df, varied: list[str]) -> str:
    """Knobs x designs: latency in ms, the proven bound, each design's certified gap and % of Ideal, one line per point.

    Headers say their unit: ``D gap %`` = latency / bound - 1 (certified), ``D % ideal`` = Ideal / latency.
    """
    from elk.driver.report import table
    knobs = ["model"] + [k for k in ("batch", "seq") if df[k].nunique() > 1] + varied
    designs = list(dict.fromkeys(df["design"]))
    strict = [d for d in designs if d != "ideal"]
    headers = (knobs + [f"{d} ms" for d in designs] + ["bound ms"] + [f"{d} gap %" for d in strict]
               + [f"{d} % ideal" for d in strict])
    rows = []
    for _, g in df.groupby("key", sort=False):
        first = g.iloc[0]
        by = {r["design"]: r for _, r in g.iterrows()}
        cells = [_fmt(first[k]) for k in knobs]
        if first["status"] != "ok":
            cells += [first["status"]] * (len(headers) - len(cells))
        else:
            cells += [f"{by[d]['latency_ms']:.3f}" if d in by else "-" for d in designs]
            bound = first.get("bound_ms")
            cells.append("-" if bound is None or bound != bound else f"{bound:.3f}")
            cells += [_pct(100 * by[d]["gap_to_bound"]) if d in by and "gap_to_bound" in by[d] else "-"
                      for d in strict]
            cells += [_pct(by[d]["pct_of_ideal"]) if d in by else "-" for d in strict]
        rows.append(cells)
    return table(headers, rows, align="l" * len(knobs) + "r" * (len(headers) - len(knobs)))


def failure_lines(df, varied: list[str]) -> list[str]:
    """One line per failed point: its knobs and why it failed (stored with the point, so reruns show it too)."""
    knobs = ["model"] + [k for k in ("batch", "seq") if df[k].nunique() > 1] + varied
    lines = []
    for _, g in df.groupby("key", sort=False):
        first = g.iloc[0]
        if first["status"] != "ok":
            where = " ".join(f"{k}={_fmt(first[k])}" for k in knobs)
            lines.append(f"  {where}: {first['status']}: {first['error']}")
    return lines


def _pct(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.1f}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
