"""Declarative field mapping: partner field names and codes → canonical ones (and back).

The hub's one way to map a partner's fields: a route's ``transform:`` block (:class:`Transform`),
applied by :func:`apply_transform` — for every source, REST intake included (the REST route implied
by a partner file takes the partner's ``inbound.transform``). ``field_map`` renames dotted paths
(``custInfo.name`` → ``customer.name``); ``value_map`` translates codes (``scenario: {"1": open}``).
Unmapped fields pass through unchanged, so a partner already speaking the canonical model needs no
mapping at all.

Paths are read and written by the core's one dotted-path helper (:mod:`hub.paths`); copies are
made without recursion (:func:`hub.paths.copy_json`): ``copy.deepcopy`` recursed once per level
and raised ``RecursionError`` on a body nested ~300 deep, turning a bad request into a 500.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub import paths
from hub.errors import ValidationFailed
from transforms import hooks


class Transform(BaseModel):
    """Declarative mapping applied to the source's payload (partner shape → canonical shape)."""

    model_config = ConfigDict(extra="forbid")

    field_map: dict[str, str] = Field(
        default_factory=dict, description="partner field (dotted) → canonical field (dotted)",
        examples=[{"ORDER_NO": "external_order_id", "CUST_NAME": "customer.name"}],
    )
    value_map: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field → {partner code: canonical value}",
        examples=[{"scenario": {"01": "open", "02": "change"}}],
    )
    strict_values: list[str] = Field(
        default_factory=list, description="fields whose code must be in value_map (unknown code = rejected)"
    )
    defaults: dict[str, Any] = Field(default_factory=dict, description="canonical field → value when absent")
    python: str | None = Field(default=None, description="name of a transform in transforms/ (hooks registry)")
    drop: list[str] = Field(default_factory=list, description="fields removed after mapping")
    direction: Literal["to_canonical", "to_partner"] = Field(
        default="to_canonical",
        description="to_partner: apply field_map and value_map backwards (canonical → partner), so an "
                    "outbound route reuses the inbound mapping block unchanged",
    )

    @model_validator(mode="after")
    def _invertible(self) -> Transform:
        if self.direction == "to_partner":
            for path, codes in self.value_map.items():
                dup = {v for v in codes.values() if list(codes.values()).count(v) > 1}
                if dup:
                    raise ValueError(f"value_map.{path}: {sorted(dup)} map from several codes; cannot invert")
        return self

    @field_validator("python")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in hooks.names():
            raise ValueError(f"unknown python transform {v!r} (known: {', '.join(hooks.names())})")
        return v


def _prune_emptied(out: dict[str, Any], moved: str) -> None:
    """Drop the objects on ``moved``'s path that the move left empty (``custInfo.name →
    customer.name`` must not leave ``custInfo: {}`` behind: the canonical order refuses it as an
    unknown field). Only objects the move emptied: an object the partner sent empty stays, since
    it is never on the path of a value that was there. Lists are left alone (indexes would shift)."""
    parts = paths.split(moved)
    for depth in range(len(parts) - 1, 0, -1):
        parent = paths.get(out, ".".join(parts[: depth - 1])) if depth > 1 else out
        key = parts[depth - 1]
        if not (isinstance(parent, dict) and parent.get(key) == {}):
            return
        del parent[key]


def apply_mapping(
    payload: dict[str, Any], field_map: dict[str, str], value_map: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Return a canonical-shaped copy of ``payload`` (the input is never modified)."""
    out = paths.copy_json(payload)
    for src, dst in field_map.items():
        value = paths.pop(out, src)
        if value is not paths.MISSING:
            _prune_emptied(out, src)
            paths.set(out, dst, value)
    for path, codes in value_map.items():
        value = paths.get(out, path)
        if isinstance(value, str | int) and str(value) in codes:
            paths.set(out, path, codes[str(value)])
    return out


def apply_transform(payload: dict[str, Any], transform: Transform | None) -> dict[str, Any]:
    """A route's transform on one payload (the input is never modified when there is one);
    ValidationFailed names the field on a code ``strict_values`` does not know."""
    if transform is None:
        return payload
    field_map, value_map, strict = transform.field_map, transform.value_map, set(transform.strict_values)
    if transform.direction == "to_partner":  # the inbound block read backwards
        field_map = {dst: src for src, dst in field_map.items()}
        value_map = {field_map.get(path, path): {canon: code for code, canon in codes.items()}
                     for path, codes in value_map.items()}
        strict = {field_map.get(path, path) for path in strict}
    out = apply_mapping(payload, field_map, {})
    errors = []
    for path, codes in value_map.items():
        value = paths.get(out, path)
        if isinstance(value, str | int) and str(value) in codes:
            paths.set(out, path, codes[str(value)])
        elif path in strict and value is not None:
            errors.append({"field": path, "message": f"unknown code {value!r} (known: {', '.join(codes)})"})
    if errors:
        raise ValidationFailed(f"{len(errors)} unknown code(s)", errors)
    for path, value in transform.defaults.items():
        if paths.get(out, path) in (None, ""):
            paths.set(out, path, copy.deepcopy(value))
    if transform.python:
        try:
            out = hooks.get(transform.python)(out)
        except ValueError as exc:
            raise ValidationFailed(f"transform {transform.python}: {exc}", [{"field": "(record)",
                                                                               "message": str(exc)}]) from exc
    for path in transform.drop:
        paths.pop(out, path)
    return out
