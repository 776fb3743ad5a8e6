"""Declarative field mapping: partner field names and codes → canonical ones (and back).

A partner's ``order_schema.field_map`` renames dotted paths (``custInfo.name`` → ``customer.name``);
``value_map`` translates codes (``scenario: {"1": open}``). Unmapped fields pass through unchanged,
so a partner already speaking the canonical model needs no mapping at all.

Copies are made without recursion (:func:`copy_json`): ``copy.deepcopy`` recursed once per level
and raised ``RecursionError`` on a body nested ~300 deep, turning a bad request into a 500.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def copy_json(value: Any) -> Any:
    """Deep copy of a JSON-like value (dicts and lists; everything else is shared, as JSON
    scalars are immutable), iteratively so depth costs memory, never the call stack."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for key, item in items:
            if isinstance(item, dict | list):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, child))
            else:
                child = item
            if isinstance(dst, dict):
                dst[key] = child
            else:
                dst.append(child)
    return root


def get_path(data: Any, path: str, default: Any = _MISSING) -> Any:
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            if default is _MISSING:
                raise KeyError(path)
            return default
    return cur


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    cur = data
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def pop_path(data: dict[str, Any], path: str) -> Any:
    parts = path.split(".")
    cur: Any = data
    for part in parts[:-1]:
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    if isinstance(cur, dict) and parts[-1] in cur:
        return cur.pop(parts[-1])
    return _MISSING


def apply_mapping(
    payload: dict[str, Any], field_map: dict[str, str], value_map: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Return a canonical-shaped copy of ``payload`` (the input is never modified)."""
    out = copy_json(payload)
    for src, dst in field_map.items():
        value = pop_path(out, src)
        if value is not _MISSING:
            set_path(out, dst, value)
    for path, codes in value_map.items():
        value = get_path(out, path, None)
        if isinstance(value, str | int) and str(value) in codes:
            set_path(out, path, codes[str(value)])
    return out
