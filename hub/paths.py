"""Dotted paths into JSON-like trees: the one reader and writer of ``customer.name`` style paths.

Why one module: the partner field maps, route transforms, request templates, success rules, flow
conditions, the admin console's columns and the masking of listings all name values by dotted
path. Four hand-written walkers had drifted apart (one indexed lists, one read attributes, one
raised ``KeyError``); here every one of them means the same thing:

* a segment names a key of a dict (``customer.name``);
* a segment of digits indexes a list (``addresses.0.city``) when the node is a list;
* on anything else that is not a JSON scalar (a zeep result object) a segment is an attribute;
* a path that does not resolve reads as ``default``; writes create the dicts on the way.

:func:`targets` is for the readers that mean "every": a list met on the way is fanned out, so
``addresses.detail`` reaches the detail of every address (masking). :func:`copy_json` lives here
too, because every writer works on a copy and ``copy.deepcopy`` recursed once per level.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["MISSING", "copy_json", "get", "nest", "pop", "set", "split", "targets"]

MISSING: Any = object()
"""Sentinel default of :func:`pop`: tells "absent" from a stored ``None``."""

_SCALARS = (str, bytes, int, float, bool)


_SPLIT: dict[str, tuple[str, ...]] = {}
_SPLIT_MAX = 4096


def split(path: str) -> tuple[str, ...]:
    """The segments of a path, cached: templates, rules and maps read the same few paths for every
    message (a bounded cache: paths come from configuration, not from messages)."""
    parts = _SPLIT.get(path)
    if parts is None:
        parts = tuple(path.split("."))
        if len(_SPLIT) < _SPLIT_MAX:
            _SPLIT[path] = parts
    return parts


def _step(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part, MISSING)
    if isinstance(node, list | tuple):
        return node[int(part)] if part.isdigit() and int(part) < len(node) else MISSING
    if node is None or isinstance(node, _SCALARS):
        return MISSING
    return getattr(node, part, MISSING)


def get(data: Any, path: str, default: Any = None) -> Any:
    """The value at ``path``, or ``default`` when any segment does not resolve."""
    node = data
    for part in _SPLIT.get(path) or split(path):
        node = node.get(part, MISSING) if type(node) is dict else _step(node, part)  # dicts first: most nodes
        if node is MISSING:
            return default
    return node


def set(data: dict[str, Any], path: str, value: Any) -> None:
    """Write ``value`` at ``path``, creating dicts on the way. A list on the way is entered when the
    next segment is one of its indexes; anything else in the way (a scalar, a list the segment
    cannot index) is replaced by a dict, as a field map moving a value onto that path expects."""
    parts = split(path)
    node: Any = data
    for i, part in enumerate(parts):
        key: Any = int(part) if isinstance(node, list) else part  # a list is entered only by an index
        if i == len(parts) - 1:
            node[key] = value
            return
        child: Any = node[key] if isinstance(node, list) or key in node else None
        if not (isinstance(child, dict) or (isinstance(child, list) and _indexes(child, parts[i + 1]))):
            child = node[key] = {}
        node = child


def _indexes(node: list[Any], part: str) -> bool:
    return part.isdigit() and int(part) < len(node)


def pop(data: Any, path: str, default: Any = MISSING) -> Any:
    """Remove the value at ``path`` and return it; ``default`` (:data:`MISSING`) when absent."""
    parts = split(path)
    node = data
    for part in parts[:-1]:
        node = _step(node, part)
        if node is MISSING:
            return default
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        return node.pop(last)
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node.pop(int(last))
    return default


def nest(path: str, value: Any) -> dict[str, Any]:
    """A new tree holding only ``value`` at ``path`` (``a.b`` → ``{"a": {"b": value}}``)."""
    out: dict[str, Any] = {}
    set(out, path, value)
    return out


def targets(data: Any, path: str) -> Iterator[tuple[dict[str, Any] | list[Any], str | int]]:
    """Every ``(container, key)`` holding a value at ``path``, lists on the way fanned out.

    Iterative, so a deep tree costs memory, never the call stack. A digit segment on a list picks
    that item instead of fanning out; the last segment is always a key of a dict (or an index)."""
    parts = split(path)
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):
            part = parts[depth]
            if part.isdigit() and int(part) < len(node):
                if depth == len(parts) - 1:
                    yield node, int(part)
                else:
                    stack.append((node[int(part)], depth + 1))
            else:
                stack.extend((item, depth) for item in reversed(node))
            continue
        if not isinstance(node, dict) or parts[depth] not in node:
            continue
        if depth == len(parts) - 1:
            yield node, parts[depth]
        else:
            stack.append((node[parts[depth]], depth + 1))


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
