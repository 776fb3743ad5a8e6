"""Declarative field mapping: partner field names and codes → canonical ones (and back).

A partner's ``order_schema.field_map`` renames dotted paths (``custInfo.name`` → ``customer.name``);
``value_map`` translates codes (``scenario: {"1": open}``). Unmapped fields pass through unchanged,
so a partner already speaking the canonical model needs no mapping at all.

Paths are read and written by the core's one dotted-path helper (:mod:`hub.paths`); copies are
made without recursion (:func:`hub.paths.copy_json`): ``copy.deepcopy`` recursed once per level
and raised ``RecursionError`` on a body nested ~300 deep, turning a bad request into a 500.
"""

from __future__ import annotations

from typing import Any

from hub import paths


def apply_mapping(
    payload: dict[str, Any], field_map: dict[str, str], value_map: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Return a canonical-shaped copy of ``payload`` (the input is never modified)."""
    out = paths.copy_json(payload)
    for src, dst in field_map.items():
        value = paths.pop(out, src)
        if value is not paths.MISSING:
            paths.set(out, dst, value)
    for path, codes in value_map.items():
        value = paths.get(out, path)
        if isinstance(value, str | int) and str(value) in codes:
            paths.set(out, path, codes[str(value)])
    return out
