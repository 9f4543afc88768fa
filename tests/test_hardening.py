"""Hardening (issue 18): each input that used to give a traceback, a silent wrong model or late failure.

One test per case, run through the command line (``main([...])``) where the user meets it: one
``elk: error:`` line and exit status 2 before any work, nothing left behind.
"""
from __future__ import annotations

import json

import pytest

from elk.cli.main import main

DEEP = 10_000


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``elk ARGV``; returns (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("elk: error: "), err[-2000:]
    return lines[0]


# ---------------------------------------------------------------- row 2: nested 10,000 deep
@pytest.mark.parametrize("name,text,where", [
    ("graph.json", "[" * DEEP + "]" * DEEP, "model"),
    ("config.json", '{"model_type": "llama", "x": ' + "[" * DEEP + "]" * DEEP + "}", "model"),
    ("chip.toml", "x = " + "[" * DEEP + "]" * DEEP, "chip"),
    ("chip.json", '{"x": ' + "[" * DEEP + "]" * DEEP + "}", "chip"),
    ("chip2.toml", "x." * 2000 + "y = 1", "chip"),  # dotted keys nest without brackets
])
def test_deeply_nested_inputs_are_one_line(tmp_path, capsys, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    argv = ["compile", str(path)] if where == "model" else ["compile", "tiny", "--chip", str(path)]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "nested" in one_error_line(err)
