"""Idempotency: a delivery already made is not made again.

Successful deliveries are recorded in MongoDB ``deliveries`` by idempotency key (``_id``), with the
partner's answer. An envelope whose key is recorded — a replayed dead letter, a call re-sent by the
engine's recovery, a route record read twice — is answered from the record without calling the
partner (``trail.recorded`` on the outcome says so). ``scope`` keeps keys of different targets
apart: a partner's delivery agent records the envelope's key as is (the records it always wrote),
a route's sink records ``route:<name>:<key>``, so a route never hides a partner call or another
route's delivery of the same envelope.

Reads and writes go through the core's batchers (:mod:`hub.batching`): one ``_id $in`` query and one
``bulk_write`` for many concurrent deliveries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from motor.motor_asyncio import AsyncIOMotorDatabase

from connectors.base import Outcome, Sink
from connectors.delivery import trail
from connectors.delivery.wrapper import Wrapper
from hub.batching import BulkReader, BulkWriter
from hub.envelope import Envelope

log = logging.getLogger(__name__)
COLLECTION = "deliveries"  # = flows.documents.DELIVERIES (which declares its index)


class DeliveryLog(Protocol):
    """Where made deliveries are recorded (MongoDB in the hub, a dict in unit tests)."""

    async def find(self, key: str) -> dict[str, Any] | None: ...

    async def record(self, key: str, fields: dict[str, Any]) -> None: ...


class MongoDeliveryLog:
    """``deliveries`` in MongoDB; concurrent lookups and writes batched."""

    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self._reader = BulkReader(db[COLLECTION])
        self._writer = BulkWriter(db[COLLECTION])

    async def find(self, key: str) -> dict[str, Any] | None:
        return await self._reader.get(key)

    async def record(self, key: str, fields: dict[str, Any]) -> None:
        await self._writer.upsert(key, fields)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Idempotency(Wrapper):
    name: ClassVar[str] = "idempotency"

    def __init__(self, next: Sink, records: DeliveryLog, *, partner: str, scope: str = "",
                 fields: dict[str, Any] | None = None, now: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(next)
        self.records = records
        self.partner = partner
        self.scope = scope
        self.fields = fields or {}
        self._now = now

    def key(self, envelope: Envelope) -> str:
        return f"{self.scope}:{envelope.idempotency_key}" if self.scope else envelope.idempotency_key

    async def deliver(self, envelope: Envelope) -> Outcome:
        key = self.key(envelope)
        done = await self.records.find(key)
        if done is not None:
            log.info("%s already delivered to %s; answering from the record", key, self.partner)
            return trail.with_details(
                Outcome(ok=True, status="ok", response=done.get("response"),
                        duration_ms=float(done.get("duration_ms") or 0.0)), recorded=done)
        started = time.perf_counter()
        outcome = await self.next.deliver(envelope)
        if outcome.ok:
            await self.records.record(key, {
                "order_id": envelope.correlation_id, "partner": self.partner,
                "operation": envelope.payload.get("operation"), "call_id": envelope.payload.get("call_id"),
                "envelope_id": envelope.id, "response": outcome.response,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "attempts": len(trail.attempts(outcome)), "delivered_at": self._now(), **self.fields,
            })
        return outcome
