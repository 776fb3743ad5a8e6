"""Field rules of a manual submission (``user`` nodes): G4 required fields and the P06.4 design rules.

Why rules and not code: P06.4 says e.g. "更换设备 is locked to 否 for 降速 and to 是 for 移机" and
"PE-CE接入方式∈{1,4,6} → 是否双规 required" — conditions on *other* fields. Each rule is data with CEL
conditions over ``data`` (the order) and ``fields`` (what is being submitted, after defaults), so the
blueprint says it and check.py compiles it at load.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.graph.expr import compile_expr

__all__ = ["Conditional", "FieldRule", "check_submission"]


class Conditional(BaseModel):
    """``value`` (CEL) applies when ``when`` (CEL) holds; no ``when`` = always."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    when: str | None = None
    value: str


class FieldRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["str", "int", "float", "bool", "list"] = "str"
    required: bool = False
    required_when: str | None = Field(default=None, description="CEL: required only when this holds")
    regex: str | None = None
    enum: list[Any] | None = None
    min_items: int | None = Field(default=None, ge=0)
    max_items: int | None = Field(default=None, ge=0)
    default: list[Conditional] = Field(default_factory=list, description="the first that applies fills a gap")
    lock: list[Conditional] = Field(default_factory=list, description="the first that applies fixes the value")

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        found: list[tuple[tuple[Any, ...], str]] = []
        if self.required_when:
            found.append((("required_when",), self.required_when))
        for group in ("default", "lock"):
            for i, c in enumerate(getattr(self, group)):
                found.append(((group, i, "value"), c.value))
                if c.when:
                    found.append(((group, i, "when"), c.when))
        return found


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                       "list": (list,)}


def _applies(rules: list[Conditional], scope: dict[str, Any]) -> Conditional | None:
    for c in rules:
        if c.when is None or compile_expr(c.when).test(scope):
            return c
    return None


def check_submission(rules: list[FieldRule], fields: dict[str, Any], scope: dict[str, Any],
                     ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Apply defaults and locks, then check every rule; return the fields and ``{field, message}`` errors.

    A field the node does not declare is an error, not data: a submission is merged into the order
    document, and an undeclared ``external_order_id`` or ``team`` would overwrite the order's own."""
    declared = {rule.name for rule in rules}
    errors: list[dict[str, str]] = [{"field": name, "message": "not a field of this stage"}
                                    for name in fields if name not in declared]
    for rule in rules:  # defaults first: later rules may depend on a defaulted field
        if rule.name not in fields:
            d = _applies(rule.default, {**scope, "fields": fields})
            if d is not None:
                fields[rule.name] = compile_expr(d.value).evaluate({**scope, "fields": fields})
    for rule in rules:
        s = {**scope, "fields": fields}
        lock = _applies(rule.lock, s)
        if lock is not None:
            locked = compile_expr(lock.value).evaluate(s)
            if rule.name in fields and fields[rule.name] != locked:
                errors.append({"field": rule.name, "message": f"locked to {locked!r}"})
                continue
            fields[rule.name] = locked
        value = fields.get(rule.name)
        required = rule.required or (rule.required_when is not None and compile_expr(rule.required_when).test(s))
        if value is None or value == "":
            if required:
                errors.append({"field": rule.name, "message": "required"})
            continue
        ok_type = isinstance(value, _TYPES[rule.type]) and not (rule.type != "bool" and isinstance(value, bool))
        if not ok_type:
            errors.append({"field": rule.name, "message": f"must be {rule.type}"})
            continue
        if rule.regex is not None and not re.fullmatch(rule.regex, str(value)):
            errors.append({"field": rule.name, "message": f"does not match {rule.regex}"})
        if rule.enum is not None and value not in rule.enum:
            errors.append({"field": rule.name, "message": f"must be one of {rule.enum}"})
        if isinstance(value, list):
            if rule.min_items is not None and len(value) < rule.min_items:
                errors.append({"field": rule.name, "message": f"at least {rule.min_items} items"})
            if rule.max_items is not None and len(value) > rule.max_items:
                errors.append({"field": rule.name, "message": f"at most {rule.max_items} items"})
    return fields, errors
