"""RFC 6902 JSON Patch (add, remove, replace, move, copy, test) for editing a dead letter's payload
before replay. An operator's fix is usually one ``replace``.

The operations are applied by the maintained ``jsonpatch`` library (pointer escapes, ``-``, the
``move`` and ``copy`` rules are its job, not ours); this module keeps what is the hub's:

* :class:`PatchOp`, the validated shape the admin API and ``hub dlq replay --patch`` accept, with
  the required ``value`` / ``from`` named per operation;
* the limits (:data:`MAX_OPS`, :data:`MAX_PATCH_BYTES`, values nested at most
  :data:`MAX_VALUE_DEPTH`): a patch comes from an operator's file or an HTTP body and is applied to
  every letter of a bulk replay;
* the error messages: a failing operation names its path and the token that does not resolve.

Paths are RFC 6901 JSON Pointers relative to the envelope *payload* (``/customer/contact_phone``).
The patch is applied to a copy; any failing operation (a ``test`` that does not match, a missing
path) rejects the whole patch, so a replay never goes out half-edited.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import jsonpatch
import jsonpointer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from hub.errors import ValidationFailed
from hub.jsonlimits import TooDeep, value_depth
from hub.jsonlimits import loads as bounded_loads

_MISSING = object()
MAX_OPS = 100
"""Operations in one patch: a fix is a handful; a generated thousand-op patch is a mistake."""
MAX_PATCH_BYTES = 64 * 1024
"""Size of a patch as JSON text (what an operator's file or an HTTP body may hold)."""
MAX_VALUE_DEPTH = 32
"""Nesting of the patch as a whole (values included), far below the payload's own limit."""
MAX_RESULT_BYTES = 1_048_576
"""Size of the patched payload as UTF-8 JSON (``HUB_REPLAY_PATCH_MAX_BYTES``): ``copy`` from the
root doubles the document per operation, so 17 operations of a 766-byte patch built a 57 MB body."""


class PatchOp(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(pattern=r"^(/.*)?$")
    value: Any = _MISSING
    from_: str | None = Field(default=None, alias="from", pattern=r"^(/.*)?$")


_OPS = TypeAdapter(list[PatchOp])


class PatchError(ValidationFailed):
    """The patch is malformed, over a limit, or does not apply to this payload."""


class PatchTooLarge(PatchError):
    """The patched payload would be larger than the limit (``limit`` bytes): refused, never built."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the patched payload would be {size} bytes or more, over the limit of {limit} bytes "
                         f"(HUB_REPLAY_PATCH_MAX_BYTES)")
        self.size, self.limit = size, limit


def parse_patch(raw: str | list[Any]) -> list[PatchOp]:
    """Validate a patch given as JSON text or as a parsed list, within the limits."""
    size = len(raw.encode()) if isinstance(raw, str) else len(json.dumps(raw, default=str).encode())
    if size > MAX_PATCH_BYTES:
        raise PatchError(f"the patch is {size} bytes, over the limit of {MAX_PATCH_BYTES}")
    try:
        data = bounded_loads(raw, MAX_VALUE_DEPTH) if isinstance(raw, str) else raw
        if not isinstance(raw, str) and value_depth(data) > MAX_VALUE_DEPTH:
            raise TooDeep(MAX_VALUE_DEPTH, "JSON patch")
        ops = _OPS.validate_python(data)
    except TooDeep as exc:
        raise PatchError(f"the patch nests deeper than the limit of {MAX_VALUE_DEPTH} levels") from exc
    except (ValueError, TypeError) as exc:
        raise PatchError(f"not a JSON patch (RFC 6902 list of operations): {exc}") from exc
    if len(ops) > MAX_OPS:
        raise PatchError(f"the patch has {len(ops)} operations, over the limit of {MAX_OPS}")
    for op in ops:
        if op.op in ("add", "replace", "test") and op.value is _MISSING:
            raise PatchError(f"{op.op} {op.path}: 'value' is required")
        if op.op in ("move", "copy") and op.from_ is None:
            raise PatchError(f"{op.op} {op.path}: 'from' is required")
    return ops


_FAILURES = (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, IndexError, KeyError, TypeError)


def apply_patch(document: dict[str, Any], ops: list[PatchOp], *,
                max_bytes: int = MAX_RESULT_BYTES) -> dict[str, Any]:
    """A patched copy of ``document``; raises :class:`PatchError` and leaves the input untouched.

    The result is kept within ``max_bytes`` (:class:`PatchTooLarge`) while it is built: operation by
    operation, an upper bound of its size grows by what each one adds (a ``copy`` by the value it
    copies), and only when that bound passes the limit is the document measured — so an amplifying
    patch stops at the operation that crosses the limit, after about ``2 × max_bytes`` of work.
    CPU work for up to a few MiB: callers on the event loop run it in a thread."""
    for op in ops:
        if op.path == "" and op.op != "test":
            raise PatchError("the payload root itself cannot be the target")
        if op.op == "move" and op.from_ is not None and op.path.startswith(op.from_ + "/"):
            raise PatchError(f"move {op.from_} → {op.path}: cannot move a value into itself")
    bound = _size(document)
    if bound > max_bytes:
        raise PatchTooLarge(bound, max_bytes)
    doc: Any = copy.deepcopy(document)
    # dump_patch copies the values: nothing of the patch is shared with the result
    for op, raw in zip(ops, dump_patch(ops), strict=True):
        try:
            if op.op == "copy" and op.from_ is not None:
                bound += _size(jsonpointer.resolve_pointer(doc, op.from_)) + len(op.path)
            elif op.op in ("add", "replace"):
                bound += _size(raw["value"]) + len(op.path)
            doc = jsonpatch.JsonPatch([raw]).apply(doc, in_place=True)
        except _FAILURES as exc:
            raise _first_failure(document, ops) from exc
        if bound > max_bytes:  # one operation at most doubles the document: measure it now
            bound = _size(doc)
            if bound > max_bytes:
                raise PatchTooLarge(bound, max_bytes)
    if not isinstance(doc, dict):
        raise PatchError("the patched payload must stay a JSON object")
    return dict(doc)


def _size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (how the envelope carries it)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())


def _first_failure(document: dict[str, Any], ops: list[PatchOp]) -> PatchError:
    """Replay the patch one operation at a time on a copy: the error names the one that failed."""
    doc: Any = copy.deepcopy(document)
    for op, raw in zip(ops, dump_patch(ops), strict=True):
        try:
            doc = jsonpatch.JsonPatch([raw]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            if _fails(doc, op.path):
                return PatchError(_why(doc, op, exc))
            return PatchError(f"test {op.path}: value differs, patch not applied")
        except _FAILURES as exc:
            return PatchError(_why(doc, op, exc))
    return PatchError("the patch does not apply to this payload")


def _why(doc: Any, op: PatchOp, exc: Exception) -> str:
    """Our wording for a pointer that does not resolve: the first token that fails, and how."""
    pointer = op.from_ if op.op in ("move", "copy") and op.from_ is not None and _fails(doc, op.from_) else op.path
    tokens = jsonpointer.JsonPointer(pointer).parts
    adds = op.op in ("add", "move", "copy") and pointer == op.path  # the last token may be new
    node = doc
    for n, token in enumerate(tokens):
        last = n == len(tokens) - 1
        if isinstance(node, dict):
            if token not in node:
                if last and adds:
                    break
                return f"path {pointer}: {token!r} does not exist"
            node = node[token]
        elif isinstance(node, list):
            if token == "-" and last and adds:
                break
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                return f"path {pointer}: {token!r} is not an array index"
            i = int(token)
            if i > len(node) or (i == len(node) and not (last and adds)):
                return f"path {pointer}: index {i} out of range"
            if i == len(node):
                break
            node = node[i]
        else:
            return f"path {pointer}: {token!r} is below a scalar"
    return f"{op.op} {op.path}: {exc}"


def _fails(doc: Any, pointer: str) -> bool:
    try:
        jsonpointer.resolve_pointer(doc, pointer)
    except jsonpointer.JsonPointerException:
        return True
    return False


def dump_patch(ops: list[PatchOp]) -> list[dict[str, Any]]:
    """JSON form (RFC 6902 names: ``from``) for jsonpatch and the audit trail."""
    return [op.model_dump(by_alias=True, exclude_none=True, exclude={"value"} if op.value is _MISSING else set())
            for op in ops]
