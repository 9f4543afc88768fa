"""Shared test setup: plan tables are cached in a per-session temporary directory, never in ~/.cache."""
from __future__ import annotations

import os

import pytest


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
