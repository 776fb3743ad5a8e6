"""Masking of sensitive fields (SPEC §7: names, phones, ID numbers, addresses, passwords, accounts)
for logs, listings, dry runs and the audit trail: the one masking mechanism of the hub.

A :class:`Masker` is a *classification* of field names, each with the :data:`Rule` that masks it:

* ``fields``: dotted paths (``customer.name``, ``addresses.detail``), relative — applied at every
  object of a document, because an order can sit anywhere (an envelope's ``payload``, an order
  document's ``order``, a call's ``request``); a list on the way is walked (every address);
* ``keys``: key names masked wherever they occur, case-insensitively (``password``, ``token``);
* ``classify``: the classification by field *name* (:mod:`hub.field_classes`, D.2.1): a scalar
  under ``phone``, ``designer_phone``, ``联系电话``, ``idCard``, ``customer.name`` … is masked wherever
  it sits, whatever path it came by (the probe found phones outside ``customer.*`` in clear).
  An explicit ``fields`` rule wins over the classification for the value it reaches.

The value at a sensitive path is masked whole: a scalar by its rule, a list or object by masking
every scalar inside it (so classifying ``customer`` hides all of it, rather than nothing).
:func:`hint` keeps the first and last character so an operator can tell two values apart without
seeing them; :func:`redact` keeps nothing (credentials). :meth:`Masker.at` masks one value by the
path it would be written at (a replay patch's ``/payload/addresses/0/detail``: indexes do not
matter). The input is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.field_classes import FieldClass, classify, depends_on_parent
from hub.paths import copy_json, get, nest, split, targets

__all__ = ["CLASS_RULES", "SECRET_KEYS", "Masker", "Rule", "by_class", "hint", "mask", "redact"]

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


CLASS_RULES: Mapping[FieldClass, Rule] = {"credential": redact}
"""The rule of each field class that is not :func:`hint`."""

Classifier = Callable[[str, "str | None"], "Rule | None"]
"""``(key, parent key)`` → the rule masking a scalar under that key, or ``None``."""


def by_class(key: str, parent: str | None) -> Rule | None:
    """The default classification (:func:`hub.field_classes.classify`): credentials redacted, the rest hinted."""
    cls = classify(key, parent)
    return None if cls is None else CLASS_RULES.get(cls, hint)


def _maskable(value: Any) -> bool:
    """A scalar worth masking: text or a number (``None`` and booleans say nothing, under any key)."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _mask_items(items: list[Any], rule: Rule | None) -> None:
    """The scalars of a list held under a classified key, masked in place (objects are walked later)."""
    if rule is not None:
        for i, item in enumerate(items):
            if _maskable(item):
                items[i] = rule(item)


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
    """Masks a copy of a document: every classified path at every object, every secret key and every
    field classified by its name anywhere."""

    fields: Mapping[str, Rule] = field(default_factory=dict)
    keys: Mapping[str, Rule] = field(default_factory=lambda: dict(SECRET_KEYS))
    classify: Classifier | None = by_class

    @classmethod
    def of(cls, paths: Iterable[str], rule: Rule = hint, *, keys: Mapping[str, Rule] | None = None) -> Masker:
        """Every path in ``paths`` masked by one ``rule`` (the partners' ``sensitive_fields``)."""
        return cls(fields={p: rule for p in sorted(set(paths))}, keys=dict(SECRET_KEYS if keys is None else keys))

    def __call__(self, data: Any) -> Any:
        out = copy_json(data)
        fields = [(path, split(path)[0], rule) for path, rule in self.fields.items()]
        by_path: dict[int, set[Any]] = {}  # id(container) → keys an explicit path masked there: its rule wins
        rule_of = self._rules()
        stack: list[tuple[Any, str | None]] = [(out, None)]  # (node, the key it is held under)
        while stack:  # iterative: stored payloads may nest deep, recursion must not be what fails
            node, held = stack.pop()
            if isinstance(node, list):
                stack.extend((item, held) for item in node)
                continue
            if not isinstance(node, dict):
                continue
            for path, first, path_rule in fields:
                if first not in node:  # the cheap test first: most objects hold none of the paths
                    continue
                for container, at in list(targets(node, path)):
                    holder: Any = container  # a dict with a str key, or a list with an int index
                    holder[at] = _mask_whole(holder[at], path_rule)
                    by_path.setdefault(id(container), set()).add(at)
            done = by_path.get(id(node), ())
            for key, value in node.items():
                if isinstance(value, dict | list):
                    stack.append((value, key if isinstance(key, str) else held))
                    if isinstance(value, list) and isinstance(key, str) and key not in done:
                        _mask_items(value, rule_of(key, held))  # contact_phones: ["…", "…"]
                elif isinstance(key, str) and value is not None and key not in done:
                    rule = rule_of(key, held)
                    if rule is not None and _maskable(value):
                        node[key] = rule(value)
        return out

    def _rules(self) -> Callable[[str, str | None], Rule | None]:
        """``(key, parent)`` → the rule for a scalar there, memoised for one document (a listing's
        documents repeat the same few hundred keys; classification is the costly part)."""
        keys = {k.lower(): rule for k, rule in self.keys.items()}
        classify_ = self.classify
        memo: dict[tuple[str, str | None], Rule | None] = {}

        def rule_of(key: str, parent: str | None) -> Rule | None:
            at = (key, parent if depends_on_parent(key) else None)
            try:
                return memo[at]
            except KeyError:
                rule = keys.get(key.lower())
                if rule is None and classify_ is not None:
                    rule = classify_(*at)
                memo[at] = rule
                return rule

        return rule_of

    def at(self, segments: Sequence[str], value: Any) -> Any:
        """``value`` masked as if it sat at ``segments`` (a JSON pointer's parts) of a document.

        Array indexes and ``-`` (append) are dropped: ``/payload/addresses/0/detail`` is masked like
        every address's ``detail`` (the replay history stored such patch values in clear)."""
        names = [s for s in segments if s and not s.isdigit() and s != "-"]
        if not names:
            return self(value)
        dotted = ".".join(names)
        return get(self(nest(dotted, value)), dotted)


def mask(data: Any, paths: Iterable[str] = ()) -> Any:
    """A masked copy of ``data``: ``paths`` hinted wherever they occur, secret keys redacted,
    classified field names hinted."""
    return Masker.of(paths)(data)
