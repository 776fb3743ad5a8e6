"""The read side of call-chain tracing: one order's spans from ``order_traces`` as a tree.

Shared by ``hub orders trace ORDER``, ``GET /admin/v1/orders/{id}/trace`` and the console's
order page. The documents hold names and timings only (hub/tracing.py writes no payload value),
so there is nothing to mask here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from flows.documents import ORDERS
from hub.tracing import spans_of

FIELDS = ("span_id", "parent_id", "service", "operation", "start", "duration_ms", "outcome", "error")


def as_tree(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans in call order: each after its parent (depth-first, siblings by start), with its
    ``depth``. A span whose parent is not stored (the partner's own span before the hub, a span of a
    process that died before writing) is a root."""
    rows = [{**{k: d.get(k) for k in FIELDS}, "trace_id": d.get("trace_id")} for d in docs]
    known = {r["span_id"] for r in rows}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        children.setdefault(r["parent_id"] if r["parent_id"] in known else None, []).append(r)
    out: list[dict[str, Any]] = []
    stack = [(r, 0) for r in sorted(children.get(None, []), key=_start, reverse=True)]
    while stack:
        row, depth = stack.pop()
        out.append({**row, "depth": depth})
        stack.extend((c, depth + 1) for c in sorted(children.get(row["span_id"], []), key=_start, reverse=True))
    return out


def _start(row: dict[str, Any]) -> datetime:
    start: datetime = row["start"]
    return start


async def order_trace(db: AsyncIOMotorDatabase[Any], order_id: str) -> dict[str, Any] | None:
    """``{order_id, trace_ids, spans, span_count}`` or None when neither the order nor a span of it exists."""
    docs = await spans_of(db, order_id)
    if not docs and await db[ORDERS].count_documents({"_id": order_id}, limit=1) == 0:
        return None
    spans = as_tree(docs)
    trace_ids = sorted({s["trace_id"] for s in spans if s.get("trace_id")})
    return {"order_id": order_id, "trace_ids": trace_ids, "span_count": len(spans), "spans": spans}


_SPAN = {"type": "object", "properties": {
    "span_id": {"type": "string"}, "parent_id": {"type": ["string", "null"]}, "trace_id": {"type": "string"},
    "service": {"type": "string", "description": "hub.intake, hub.router, hub.engine, hub.delivery or the partner"},
    "operation": {"type": "string"}, "start": {"type": "string", "format": "date-time"},
    "duration_ms": {"type": "number"}, "outcome": {"type": "string", "examples": ["ok", "error", "dead_lettered"]},
    "error": {"type": ["string", "null"], "description": "the error's class, never its message"},
    "depth": {"type": "integer", "minimum": 0}}}
TRACE_SCHEMA: dict[str, Any] = {"type": "object", "required": ["order_id", "trace_ids", "span_count", "spans"],
                                "properties": {"order_id": {"type": "string"},
                                               "trace_ids": {"type": "array", "items": {"type": "string"}},
                                               "span_count": {"type": "integer"},
                                               "spans": {"type": "array", "items": _SPAN}}}
