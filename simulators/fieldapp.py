"""The field app's sample answers for a v2 manual stage (a ``user`` node), for ``hub demo``.

Why here: the demo plays the people who submit manual stages. A v2 stage says what it accepts as
field rules (flows/graph/rules.py: type, enum, regex, list length, defaults, locks), so sample values
are derived from those rules instead of a list per stage — a stage added to a blueprint (the internet
line's 业务验证, the 5G LAN construction's dates) is filled without touching the demo.
"""

from __future__ import annotations

import re
from typing import Any

from flows.graph.rules import FieldRule

__all__ = ["sample_fields"]

#: text samples tried against a field's regex, first match wins (plain text, phones, dates, URLs)
_TEXT = ["demo", "13800000000", "2026-01-05", "2026-01-05 09:00:00", "https://example.com/demo", "1",
         "https://example.com/demo.pdf", "sftp://example.com/demo.pdf"]


def _text(rule: FieldRule) -> str:
    if rule.regex is None:
        return f"demo-{rule.name}"
    return next((t for t in _TEXT if re.fullmatch(rule.regex, t)), f"demo-{rule.name}")


def sample_fields(rules: list[FieldRule], also: set[str] | None = None) -> dict[str, Any]:
    """A value for every field that has no default: the first enum value, else one of its type
    (lists as long as ``min_items`` asks). Defaults and locks are left to the rules themselves, except
    for the fields named in ``also`` (the stage answered that they are required after all: a lock or
    default whose condition did not hold)."""
    out: dict[str, Any] = {}
    for rule in rules:
        if (rule.default or rule.lock) and rule.name not in (also or set()):
            continue
        if rule.enum:
            out[rule.name] = rule.enum[0]
        elif rule.type == "list":
            out[rule.name] = [f"demo-{rule.name}-{i + 1}" for i in range(max(1, rule.min_items or 0))]
        elif rule.type in ("int", "float"):
            out[rule.name] = 1
        elif rule.type == "bool":
            out[rule.name] = True
        else:
            out[rule.name] = _text(rule)
    return out
