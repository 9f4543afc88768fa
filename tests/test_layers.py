"""The house rules: one-way layers, no cycles, no private names across modules, a light ``import elk``.

The layers themselves are import-linter contracts in ``setup.cfg`` (docs/design.md §2):
front doors (``elk.cli`` > ``elk.study`` > ``elk.driver``) > strategies (``solvers``) >
exact models (``formulations``) and graph builders (``elk.graphs``) > the core
(the modules and packages directly in ``elk/`` that are not a layer above). import-linter checks direct and indirect
imports, including imports inside functions.
"""
from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("elk", "solvers", "formulations")
SCANNED = PACKAGES + ("experiments", "tests")


def _config() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_import_linter_contracts_hold():
    importlinter_cli = pytest.importorskip("importlinter.cli")
    assert importlinter_cli.lint_imports(config_filename=str(ROOT / "setup.cfg")) == 0, \
        "an import breaks the layers in setup.cfg (run `lint-imports setup.cfg` for the offending lines)"


def test_every_core_module_is_in_the_core_contract():
    """A new module (or package) directly in elk/ that is not a layer of its own is core; it must be named in
    the contract or it escapes the check."""
    cfg = _config()
    listed = set(cfg["importlinter:contract:core"]["source_modules"].split())
    layers = {name.strip() for line in cfg["importlinter:contract:layers"]["layers"].split("\n")
              for name in line.split("|") if name.strip()}
    core = {f"elk.{p.stem}" for p in (ROOT / "elk").glob("*.py") if p.stem != "__init__"}
    core |= {f"elk.{p.parent.name}" for p in (ROOT / "elk").glob("*/__init__.py")} - layers
    assert core == listed, f"missing from setup.cfg: {sorted(core - listed)}; stale: {sorted(listed - core)}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_uses(path: Path) -> list[str]:
    """``from m import _x`` and ``m._x`` where ``m`` is one of elk's modules imported by this file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"line {node.lineno}: {base.id}.{node.attr}")
    return found


def test_no_private_name_is_taken_from_another_module():
    offenders = {}
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            uses = private_uses(path)
            if uses:
                offenders[_module_name(path)] = uses
    assert not offenders, f"private names used across modules: {offenders}"


def test_private_use_detector_sees_both_forms(tmp_path):
    probe = tmp_path / "_probe_private.py"
    probe.write_text("from elk.workload import _hidden\nfrom elk import plantable\nplantable._MEMORY.clear()\n")
    assert len(private_uses(probe)) == 2


def test_import_elk_stays_light():
    """``import elk`` is the core: no strategies, solvers, dataframes or plotting."""
    heavy = ["solvers", "formulations", "ortools", "pulp", "highspy", "pandas", "matplotlib", "elk.driver"]
    code = ("import sys, elk; heavy = %r; print(','.join(m for m in heavy if m in sys.modules))" % heavy)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"import elk pulled in: {out.stdout.strip()}"
    code = "import elk; print(elk.compile.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "elk.driver.api"
