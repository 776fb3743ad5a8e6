"""Masking of sensitive fields (SPEC §7: names, phones, ID numbers, addresses, passwords, accounts)
for logs, listings and the admin API. Masking keeps a hint (first and last character) so an
operator can tell two values apart without seeing them.
"""

from __future__ import annotations

from typing import Any

from hub.paths import copy_json

ALWAYS_SENSITIVE = frozenset({"password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "authorization"})


def mask_value(value: Any) -> Any:
    if value is None:
        return None
    text = str(value)
    if len(text) <= 2:
        return "*" * len(text)
    return f"{text[0]}{'*' * min(len(text) - 2, 8)}{text[-1]}"


def _mask_path(node: Any, parts: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _mask_path(item, parts)
        return
    if not isinstance(node, dict) or not parts:
        return
    head, rest = parts[0], parts[1:]
    if head not in node:
        return
    if rest:
        _mask_path(node[head], rest)
    elif isinstance(node[head], list):
        node[head] = [mask_value(v) for v in node[head]]
    else:
        node[head] = mask_value(node[head])


def _mask_secrets(node: Any) -> None:
    """Iterative (stored payloads may nest deep; recursion must not be what fails)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if k.lower() in ALWAYS_SENSITIVE and not isinstance(v, dict | list):
                    item[k] = "***"
                else:
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def mask(data: Any, paths: list[str] | tuple[str, ...]) -> Any:
    """Copy of ``data`` with each dotted path masked (lists are walked: ``addresses.detail``)
    and every password/secret/token key replaced whatever its path."""
    out = copy_json(data)
    for path in paths:
        _mask_path(out, path.split("."))
    _mask_secrets(out)
    return out
