"""Masking of sensitive fields (SPEC §7: names, phones, ID numbers, addresses, passwords, accounts)
for logs, listings, dry runs and the audit trail: the one masking mechanism of the hub.

A :class:`Masker` is a *classification* of field names, each with the :data:`Rule` that masks it:

* ``fields``: dotted paths (``customer.name``, ``addresses.detail``), relative — applied at every
  object of a document, because an order can sit anywhere (an envelope's ``payload``, an order
  document's ``order``, a call's ``request``); a list on the way is walked (every address);
* ``keys``: key names masked wherever they occur, case-insensitively (``password``, ``token``).

The value at a sensitive path is masked whole: a scalar by its rule, a list or object by masking
every scalar inside it (so classifying ``customer`` hides all of it, rather than nothing).
:func:`hint` keeps the first and last character so an operator can tell two values apart without
seeing them; :func:`redact` keeps nothing. A new classification (issue 17: by field class) is a
new mapping of names to rules, not a new walker. The input is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.paths import copy_json, split, targets

__all__ = ["SECRET_KEYS", "Masker", "Rule", "hint", "mask", "redact"]

Rule = Callable[[Any], Any]
"""Masks one scalar value (never called with a dict or a list)."""


def hint(value: Any) -> Any:
    """``Zhang San`` → ``Z*******n``: first and last character, at most 8 stars; ``None`` stays."""
    if value is None:
        return None
    text = str(value)
    if len(text) <= 2:
        return "*" * len(text)
    return f"{text[0]}{'*' * min(len(text) - 2, 8)}{text[-1]}"


def redact(value: Any) -> Any:
    """Nothing of the value is kept (credentials: even a hint helps guessing)."""
    return "***"


SECRET_KEYS: Mapping[str, Rule] = {
    key: redact
    for key in ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "authorization")
}
"""Keys redacted wherever they occur, whatever a partner declares."""


def _mask_whole(value: Any, rule: Rule) -> Any:
    """``value`` masked by ``rule``; containers are copies already, masked in place."""
    if not isinstance(value, dict | list):
        return rule(value)
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in list(items):
            if isinstance(item, dict | list):
                stack.append(item)
            else:
                node[key] = rule(item)
    return value


@dataclass(frozen=True)
class Masker:
    """Masks a copy of a document: every classified path at every object, every secret key anywhere."""

    fields: Mapping[str, Rule] = field(default_factory=dict)
    keys: Mapping[str, Rule] = field(default_factory=lambda: dict(SECRET_KEYS))

    @classmethod
    def of(cls, paths: Iterable[str], rule: Rule = hint, *, keys: Mapping[str, Rule] | None = None) -> Masker:
        """Every path in ``paths`` masked by one ``rule`` (the partners' ``sensitive_fields``)."""
        return cls(fields={p: rule for p in sorted(set(paths))}, keys=dict(SECRET_KEYS if keys is None else keys))

    def __call__(self, data: Any) -> Any:
        out = copy_json(data)
        keys = {k.lower(): rule for k, rule in self.keys.items()}
        fields = [(path, split(path)[0], rule) for path, rule in self.fields.items()]
        stack: list[Any] = [out]
        while stack:  # iterative: stored payloads may nest deep, recursion must not be what fails
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            for key, value in node.items():
                rule = keys.get(key.lower()) if isinstance(key, str) else None
                if rule is not None and not isinstance(value, dict | list):
                    node[key] = rule(value)
            for path, first, rule in fields:
                if first not in node:  # the cheap test first: most objects hold none of the paths
                    continue
                for container, at in list(targets(node, path)):
                    holder: Any = container  # a dict with a str key, or a list with an int index
                    holder[at] = _mask_whole(holder[at], rule)
            stack.extend(node.values())
        return out


def mask(data: Any, paths: Iterable[str] = ()) -> Any:
    """A masked copy of ``data``: ``paths`` hinted wherever they occur, secret keys redacted."""
    return Masker.of(paths)(data)
