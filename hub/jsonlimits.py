"""Nesting limits for partner JSON and XML, checked *before* anything recursive touches the body.

Why: ``json.loads``, ``copy.deepcopy``, pydantic and MongoDB all recurse or cap nesting
(pydantic-core's JSON parser stops at 200 levels, BSON at 100). A body nested deeper than those
either crashed the handler (``RecursionError`` → 500 and a traceback per request) or, worse, was
accepted and then failed in the router. One cheap iterative scan over the raw bytes refuses it
first, with an answer that names the limit.

The scan skips JSON strings (brackets inside ``"…"`` do not count) and stops at the first level
over the limit, so a 500,000-deep array costs ``limit`` steps, not 500,000.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hub.errors import ValidationFailed

DEFAULT_MAX_DEPTH = 64
"""Default for ``HUB_INTAKE_MAX_DEPTH``: far above any real order (≈5 levels), far below the
limits of the libraries behind intake (BSON 100, pydantic 200, Python recursion ~1000)."""

# a JSON string (unrolled loop: linear, no backtracking) or one bracket
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


class TooDeep(ValidationFailed):
    """A body nests deeper than the configured limit; the message names the limit."""

    def __init__(self, limit: int, what: str = "JSON body") -> None:
        self.limit = limit
        super().__init__(
            f"{what} nests deeper than the limit of {limit} levels",
            [{"field": "(body)", "message": f"nesting deeper than {limit} levels", "type": "too_deep"}],
        )


def json_depth_exceeds(raw: bytes | str, limit: int) -> bool:
    """True when ``raw`` (JSON text, possibly invalid) opens more than ``limit`` nested arrays or
    objects at some point. Unbalanced or malformed input is left for the JSON parser to report."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:  # the common case: cannot be too deep
        return False
    depth = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(raw: bytes | str, limit: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`TooDeep` (a ValidationFailed) instead of recursing past
    ``limit``. JSON syntax errors still raise ``json.JSONDecodeError`` so callers keep their
    line/column messages."""
    if json_depth_exceeds(raw, limit):
        raise TooDeep(limit)
    return json.loads(raw)


def value_depth(value: Any) -> int:
    """Nesting depth of a decoded JSON-like value (dicts and lists), computed without recursion."""
    return inspect(value)[0]


def inspect(value: Any) -> tuple[int, str | None]:
    """(nesting depth, first key that contains a NUL character) of a decoded JSON-like value, in one
    iterative walk. A NUL in a key is valid JSON but no BSON document can hold it: stored as is,
    the order's record and document inserts would fail after the partner was answered."""
    deepest, bad, stack = 0, None, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            if bad is None:
                bad = next((k for k in item if "\x00" in k), None)
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest, bad
