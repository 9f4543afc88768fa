"""Depth-limited JSON and TOML parsing for every file elk reads.

Python's parsers recurse once per nesting level, so a file nested thousands deep
ends in a ``RecursionError`` (a traceback of thousands of lines) inside the parser
or in whatever walks the result later. No elk input is more than a few levels deep,
so a reader refuses anything deeper than :data:`MAX_DEPTH` as malformed, with its
own error class and one line, before the structure reaches the rest of elk.
"""
from __future__ import annotations

import json
import tomllib
from typing import Any, Callable

from elk.errors import ElkError

#: Deepest nesting of lists/objects an elk input may have (the deepest real one is ~5).
MAX_DEPTH = 64


class NestingError(ValueError):
    """The text nests lists/objects deeper than :data:`MAX_DEPTH`."""


def value_depth(value: Any) -> int:
    """Nesting depth of a parsed value (lists and dicts), iteratively: a deep value cannot overflow the stack."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _guarded(parse: Callable[[str], Any], text: str, error: type[ElkError], where: str) -> Any:
    try:
        value = parse(text)
    except RecursionError:
        raise error(f"{where}: malformed: nested too deeply (more than {MAX_DEPTH} levels)") from None
    if value_depth(value) > MAX_DEPTH:  # so nothing that walks it later can overflow the stack either
        raise error(f"{where}: malformed: nested too deeply (more than {MAX_DEPTH} levels)")
    return value


def loads_json(text: str, error: type[ElkError], where: str, **kwargs: Any) -> Any:
    """``json.loads`` that raises ``error`` (one line, naming ``where``) for text nested too deeply.

    ``json.JSONDecodeError`` still propagates: each reader words its own malformed-JSON message.
    """
    return _guarded(lambda t: json.loads(t, **kwargs), text, error, where)


def loads_toml(text: str, error: type[ElkError], where: str) -> Any:
    """``tomllib.loads`` that raises ``error`` for text nested too deeply (TOMLDecodeError still propagates)."""
    return _guarded(tomllib.loads, text, error, where)


__all__ = ["MAX_DEPTH", "value_depth", "loads_json", "loads_toml"]
