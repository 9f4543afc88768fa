"""The README is true: its snippets run as written, every option is documented, figures say where they come from."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from elk.cli.main import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_python_snippets_import_what_they_use(block):
    """A snippet that calls ``elk.something`` imports elk itself (a reader pastes one block at a time)."""
    if re.search(r"(?<![\w.])elk\.\w+\(", block):
        assert re.search(r"^import elk\b", block, flags=re.M), block


def subcommand_options() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return [(name, opt) for name, p in sub.choices.items() for a in p._actions for opt in a.option_strings
            if opt.startswith("--") and opt != "--help"]


@pytest.mark.parametrize("command,option", subcommand_options())
def test_every_option_is_in_the_readme(command, option):
    assert re.search(re.escape(option) + r"(?![\w-])", README), f"elk {command} {option} is not documented"


def test_alloc_capacity_and_minimize_do_not_read_as_exclusive():
    assert "[--capacity C | --minimize]" not in README


def test_speed_table_figures_name_the_machine_and_their_command():
    start = README.index("Speed and memory")
    section = README[start:README.index("\n## ", start)]
    assert "2-core AMD EPYC" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| |")
            and "---" not in line]
    assert rows and all("experiments/bench_" in row or "`elk " in row for row in rows), rows


def test_minimalloc_speed_agrees_with_the_allocation_table():
    """The speed table's range for the 11 instances reaches the slowest time of the allocation table."""
    times = [float(t) for t in re.findall(r"^\| [A-K] \|.*?\| ([\d.]+) s \|", README, flags=re.M)]
    assert len(times) == 11
    row = next(line for line in README.splitlines() if line.startswith("| MiniMalloc's 11 challenging"))
    low, high = map(float, re.search(r"([\d.]+)-([\d.]+) s each", row).groups())
    assert high == max(times) and low == min(times)


def test_sweep_is_documented_with_its_default_designs_and_gap_columns():
    assert "unlike `elk compile`" in README and "gap %" in README
