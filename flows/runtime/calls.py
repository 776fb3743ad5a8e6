"""The flat ``calls`` row of a v2 call (API statistics, failed-call lists), written by the delivery
agent that made the call.

Why there and not by the engine when the result arrives: the engine needs no event for the
synchronous "accepted" of a step answered by callback (it changes nothing on the order), yet that
event existed only so that its row got written — one Kafka record, one consumed event and one order
load per callback call, three per internet-line order. The agent knows everything the row holds
(the envelope names the call, its node, the partner and the operation; the outcome is its own),
so it writes the row and produces only the results the engine needs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from flows.documents import CALLS
from flows.runtime.translate import what
from hub.batching import BulkWriter
from hub.envelope import Envelope

__all__ = ["CallLog", "call_row"]


def call_row(env: Envelope, result: dict[str, Any]) -> dict[str, Any]:
    """The row of the call ``env`` asked for, from the ``call.result`` payload ``result``."""
    cid = str(result.get("call_id") or "")
    finished_text = result.get("finished_at")
    finished = datetime.fromisoformat(finished_text) if isinstance(finished_text, str) else finished_text
    # when the delivery began (its first attempt): the admin API's time filters and sorting
    # (`/admin/v1/calls?since=`, the call statistics) go by started_at
    started = finished - timedelta(milliseconds=float(result.get("duration_ms") or 0)) if finished else None
    return {"call_id": cid, "order_id": env.correlation_id, "partner": result.get("partner"),
            "operation": result.get("operation"), "stage": env.payload.get("stage"),
            "idempotency_key": env.idempotency_key, "response": result.get("response"),
            "outcome": "ok" if result.get("ok") else result.get("outcome", "dead_lettered"),
            "error": result.get("error"), "attempts": result.get("attempts", []),
            "duration_ms": result.get("duration_ms"), "started_at": started, "finished_at": finished,
            "dead_letter_id": result.get("dead_letter_id"), "kind": what(cid)}


class CallLog:
    """Rows batched into one ``bulk_write`` (hub/batching.py), inserted first."""

    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self._writes = BulkWriter(db[CALLS])

    async def record(self, env: Envelope, result: dict[str, Any], *, made_now: bool) -> None:
        """``made_now``: this delivery called the partner (its row replaces an earlier one, e.g. the
        dead-lettered try before a replay); otherwise the answer came from the delivery record, and
        the row is only written if it is missing (the process died between the two)."""
        row = call_row(env, result)
        if made_now:
            await self._writes.insert_or_set(row["call_id"], row)
        else:
            await self._writes.insert_if_missing(row["call_id"], row)
