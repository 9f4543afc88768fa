"""Shared test setup and helpers.

* plan tables are cached in a per-session temporary directory, never in ~/.cache;
* ``user_error`` and the ``no_compile`` fixture check the command line's one-line errors (``from conftest
  import user_error``);
* ``shared_file`` (and the ``shared`` fixture) find a benchmark file in ``../shared/benchmarks`` next to the
  repository: skipped when that folder is absent (a user's clone), failed when it is present but the file
  is missing (so a moved benchmark cannot turn checks into skips).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared next to the repository: the project's machines have it, a user's clone does not
SHARED_ROOT = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session", autouse=True)
def _isolated_table_cache(tmp_path_factory):
    """Point ELK_CACHE_DIR at a fresh directory for the whole session (and restore it after)."""
    saved = {k: os.environ.get(k) for k in ("ELK_CACHE_DIR", "ELK_NO_CACHE")}
    os.environ["ELK_CACHE_DIR"] = str(tmp_path_factory.mktemp("elk-cache"))
    os.environ.pop("ELK_NO_CACHE", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def shared_file(*parts: str, root: Path | None = None) -> Path:
    """``../shared/benchmarks/<parts>``: skip the test when ``../shared`` is absent, fail it when ``../shared``
    is present but the file (or folder) is not. ``root`` replaces ``../shared`` (for testing this rule)."""
    root = SHARED_ROOT if root is None else root
    if not root.is_dir():
        pytest.skip(f"no ../shared in this clone ({root})")
    path = root.joinpath("benchmarks", *parts)
    if not path.exists():
        pytest.fail(f"{path} is missing although ../shared is present")
    return path


@pytest.fixture
def shared():
    """``shared("minimalloc", "challenging", "A.1048576.csv")``: :func:`shared_file` as a fixture."""
    return shared_file


def user_error(capsys, argv, *needles) -> str:
    """Run ``elk`` in-process on ``argv`` and check the mistake is one line ``elk: error: ...`` naming every
    needle, with exit status 2 and no traceback; returns the line."""
    from elk.cli.main import main
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("elk: error:")
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_compile(monkeypatch):
    """Make any compile fail loudly: these mistakes must be caught before one starts."""
    import elk.driver.api

    def refuse(*args, **kwargs):
        raise AssertionError("the compile started although the command line was wrong")

    monkeypatch.setattr(elk.driver.api, "compile", refuse)


@pytest.fixture
def no_work(monkeypatch):
    """Make any compile, allocation or study fail loudly: the checks under test must come before them."""
    import elk.driver.api
    import elk.study
    import solvers.alloc.allocate

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the output options were checked")
    monkeypatch.setattr(elk.driver.api, "compile", refuse)
    monkeypatch.setattr(solvers.alloc.allocate, "allocate", refuse)
    monkeypatch.setattr(elk.study, "run_study", refuse)
