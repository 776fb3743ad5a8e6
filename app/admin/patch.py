"""RFC 6902 JSON Patch (add, remove, replace, move, copy, test) for editing a dead letter's payload
before replay. Small and dependency-free on purpose: an operator's fix is usually one ``replace``.

Paths are RFC 6901 JSON Pointers relative to the envelope *payload* (``/customer/contact_phone``).
The patch is applied to a copy; any failing operation (a ``test`` that does not match, a missing
path) rejects the whole patch, so a replay never goes out half-edited.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from hub.errors import ValidationFailed

_MISSING = object()


class PatchOp(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(pattern=r"^(/.*)?$")
    value: Any = _MISSING
    from_: str | None = Field(default=None, alias="from", pattern=r"^(/.*)?$")


_OPS = TypeAdapter(list[PatchOp])


class PatchError(ValidationFailed):
    """The patch is malformed or does not apply to this payload."""


def parse_patch(raw: str | list[Any]) -> list[PatchOp]:
    """Validate a patch given as JSON text or as a parsed list."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        ops = _OPS.validate_python(data)
    except (ValueError, TypeError) as exc:
        raise PatchError(f"not a JSON patch (RFC 6902 list of operations): {exc}") from exc
    for op in ops:
        if op.op in ("add", "replace", "test") and op.value is _MISSING:
            raise PatchError(f"{op.op} {op.path}: 'value' is required")
        if op.op in ("move", "copy") and op.from_ is None:
            raise PatchError(f"{op.op} {op.path}: 'from' is required")
    return ops


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchError("the payload root itself cannot be the target")
    node = doc
    for t in tokens[:-1]:
        node = _child(node, t, pointer)
    return node, tokens[-1]


def _child(node: Any, token: str, pointer: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise PatchError(f"path {pointer}: {token!r} does not exist")
        return node[token]
    if isinstance(node, list):
        return node[_index(node, token, pointer, allow_end=False)]
    raise PatchError(f"path {pointer}: {token!r} is below a scalar")


def _index(node: list[Any], token: str, pointer: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(node)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"path {pointer}: {token!r} is not an array index")
    i = int(token)
    if i > len(node) or (i == len(node) and not allow_end):
        raise PatchError(f"path {pointer}: index {i} out of range")
    return i


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for t in _tokens(pointer):
        node = _child(node, t, pointer)
    return node


def _add(doc: Any, pointer: str, value: Any) -> None:
    parent, key = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, key, pointer, allow_end=True), value)
    else:
        raise PatchError(f"path {pointer}: parent is a scalar")


def _remove(doc: Any, pointer: str) -> Any:
    parent, key = _parent(doc, pointer)
    if isinstance(parent, dict):
        if key not in parent:
            raise PatchError(f"path {pointer}: nothing to remove")
        return parent.pop(key)
    if isinstance(parent, list):
        return parent.pop(_index(parent, key, pointer, allow_end=False))
    raise PatchError(f"path {pointer}: parent is a scalar")


def apply_patch(document: dict[str, Any], ops: list[PatchOp]) -> dict[str, Any]:
    """A patched copy of ``document``; raises :class:`PatchError` and leaves the input untouched."""
    doc = copy.deepcopy(document)
    for op in ops:
        if op.op == "add":
            _add(doc, op.path, copy.deepcopy(op.value))
        elif op.op == "remove":
            _remove(doc, op.path)
        elif op.op == "replace":
            _get(doc, op.path)  # must exist
            _remove(doc, op.path)
            _add(doc, op.path, copy.deepcopy(op.value))
        elif op.op == "move":
            assert op.from_ is not None
            if op.path.startswith(op.from_ + "/"):
                raise PatchError(f"move {op.from_} → {op.path}: cannot move a value into itself")
            _add(doc, op.path, _remove(doc, op.from_))
        elif op.op == "copy":
            assert op.from_ is not None
            _add(doc, op.path, copy.deepcopy(_get(doc, op.from_)))
        elif op.op == "test" and _get(doc, op.path) != op.value:
            raise PatchError(f"test {op.path}: value differs, patch not applied")
    if not isinstance(doc, dict):
        raise PatchError("the patched payload must stay a JSON object")
    return doc


def dump_patch(ops: list[PatchOp]) -> list[dict[str, Any]]:
    """JSON form for the audit trail."""
    return [op.model_dump(by_alias=True, exclude_none=True, exclude={"value"} if op.value is _MISSING else set())
            for op in ops]
