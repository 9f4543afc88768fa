"""The name a compiled chip goes by in reports: its base preset and every field changed from it.

A chip file named ``empty.toml`` made the banner say "on empty:", and ``--cores 5887`` left it
saying "ipu-pod4": neither said what was compiled for. The label names the preset the chip
starts from, the file it came through, and each field that differs from the preset.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from elk.chip import DEFAULT_CHIP, PRESETS, Chip, preset

#: Friendlier spellings of chip fields (the chip-file / option names), with the unit conversion.
_SHOWN = {"sram_per_core": ("sram_kib", lambda v: v / 1024), "hbm_bytes_per_s": ("hbm_tbps", lambda v: v / 1e12)}


def _fmt(value: Any) -> str:
    if hasattr(value, "describe"):
        return value.describe()
    if hasattr(value, "value"):  # an enum
        return str(value.value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def changed_fields(chip: Chip, base: Chip) -> list[str]:
    """``name=value`` for every field of ``chip`` that differs from ``base`` (the name aside)."""
    out = []
    for f in dataclasses.fields(Chip):
        if f.name == "name":
            continue
        value, was = getattr(chip, f.name), getattr(base, f.name)
        if value != was:
            name, conv = _SHOWN.get(f.name, (f.name, lambda v: v))
            out.append(f"{name}={_fmt(conv(value))}")
    return out


def file_base(path: str | Path) -> str:
    """The preset a chip file starts from (its ``base``; the default when it names none)."""
    from elk.chip import load_chip_mapping
    data = load_chip_mapping(Path(path))
    base = data.get("base", DEFAULT_CHIP)
    return base if isinstance(base, str) and base in PRESETS else DEFAULT_CHIP


def chip_label(chip: Chip, spec: str | None) -> str:
    """``ipu-pod4``, ``ipu-pod4 with cores=5887``, ``ipu-pod4 from empty.toml``, ``fast = ipu-mk2 from f.toml with ...``.

    ``spec`` is what the user named (None: the default preset; a preset name; a chip file path).
    """
    if spec is None or spec in PRESETS:
        base_name, source, named = spec or DEFAULT_CHIP, "", None
    else:
        base_name, source = file_base(spec), f" from {Path(spec).name}"
        named = chip.name if chip.name != Path(spec).stem else None  # the file gave its own name
    changes = changed_fields(chip, preset(base_name))
    label = base_name + source + (f" with {', '.join(changes)}" if changes else "")
    return f"{named} = {label}" if named else label


__all__ = ["changed_fields", "chip_label", "file_base"]
