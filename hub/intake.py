"""Idempotent intake: the ``emit`` every inbound connector calls.

Order of writes, and why:

1. look the idempotency key up in MongoDB (``intake_keys``); already there ⇒ answer exactly what the
   first delivery was answered, write nothing;
2. produce the envelope to Kafka with acks=all — if the broker is down the caller answers 503 and
   *nothing* is written anywhere (no half-accepted order);
3. record the key (unique ``_id``) *with the envelope*. If two identical deliveries race past
   step 1, the second insert loses on the unique index and that caller answers with the first
   one's ids; the stray envelope carries the same idempotency key and order id, and the engine
   applies an order once.

Steps 1 and 3 are group-committed across concurrent requests (``hub/batching.py``).

Because the record keeps the envelope, an accepted order survives a broker that loses its topics
(the embedded broker keeps them in memory): :func:`unconsumed` finds accepted envelopes whose
order never reached the engine, and the worker re-sends them at start (``flows/agents.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from hub.batching import MicroBatcher
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.kafka import EnvelopeProducer

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000


class StoreUnavailable(RetryableError):
    """MongoDB did not answer; the delivery can be retried by the partner."""


@dataclass(frozen=True)
class Accepted:
    """The answer a source gives its partner: the ids, and whether this was a redelivery."""

    order_id: str
    envelope_id: str
    duplicate: bool = False


class _Duplicate(Exception):
    """Insert lost on the unique index: someone recorded this key first."""


class Intake:
    def __init__(self, db: AsyncIOMotorDatabase, producer: EnvelopeProducer) -> None:
        self._keys = db["intake_keys"]
        self._producer = producer
        self._lookups: MicroBatcher[str, dict[str, Any] | None] = MicroBatcher(self._find_many)
        self._records: MicroBatcher[dict[str, Any], bool] = MicroBatcher(self._insert_many)

    async def _find_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        try:
            found = {
                doc["_id"]: doc
                async for doc in self._keys.find({"_id": {"$in": list(set(keys))}}, {"order_id": 1, "envelope_id": 1})
            }
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc
        return [found.get(k) for k in keys]

    async def _insert_many(self, records: Sequence[dict[str, Any]]) -> list[bool | BaseException]:
        results: list[bool | BaseException] = [True] * len(records)
        try:
            await self._keys.insert_many(list(records), ordered=False)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                results[err["index"]] = _Duplicate() if err.get("code") == DUPLICATE_KEY else StoreUnavailable(
                    err.get("errmsg", "write error"))
        except PyMongoError as exc:
            return [StoreUnavailable(str(exc))] * len(records)
        return results

    def _record(self, topic: str, envelope: Envelope) -> dict[str, Any]:
        return {
            "_id": envelope.idempotency_key,
            "order_id": envelope.correlation_id,
            "envelope_id": envelope.id,
            "topic": topic,
            "source": envelope.source,
            "created_at": datetime.now(UTC),
            "envelope": envelope.model_dump(mode="json"),
        }

    async def record_many(self, topic: str, envelopes: Sequence[Envelope], chunk: int = 1000) -> None:
        """Record envelopes a batch source (a file) already put on Kafka, so they are journaled for
        recovery like single deliveries; keys recorded before are left as they were."""
        for i in range(0, len(envelopes), chunk):
            records = [self._record(topic, env) for env in envelopes[i:i + chunk]]
            try:
                await self._keys.insert_many(records, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise StoreUnavailable(f"could not record intake keys: {exc.details}") from exc
            except PyMongoError as exc:
                raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc

    async def emit(self, topic: str, envelope: Envelope) -> Accepted:
        key = envelope.idempotency_key
        first = await self._lookups.submit(key)
        if first:
            return Accepted(first["order_id"], first["envelope_id"], duplicate=True)

        await self._producer.send(topic, envelope)  # raises BrokerUnavailable: nothing written

        try:
            await self._records.submit(self._record(topic, envelope))
        except _Duplicate:
            winner = await self._keys.find_one({"_id": key})
            assert winner is not None
            log.info("concurrent duplicate of %s; answered with the first envelope %s", key, winner["envelope_id"])
            return Accepted(winner["order_id"], winner["envelope_id"], duplicate=True)
        except StoreUnavailable as exc:
            # The envelope is on Kafka (accepted); only the dedupe record is missing. A redelivery
            # would produce a second envelope with the same key, which the engine ignores.
            log.warning("intake key %s not recorded (%s); downstream dedupe covers redelivery", key, exc)
        return Accepted(envelope.correlation_id, envelope.id)


async def unconsumed(db: AsyncIOMotorDatabase, *, within: timedelta, batch: int = 500
                     ) -> list[tuple[str, Envelope]]:
    """(topic, envelope) of every order envelope accepted in the last ``within`` whose order has
    no document in ``orders`` yet — i.e. it may only have lived on the broker. Re-sending them is
    safe: order ids are deterministic and the engine creates an order once."""
    since = datetime.now(UTC) - within
    found: list[tuple[str, Envelope]] = []
    cursor = db["intake_keys"].find(
        {"created_at": {"$gte": since}, "envelope.type": "order.received"}, {"order_id": 1, "topic": 1, "envelope": 1}
    )
    chunk: list[dict[str, Any]] = []

    async def flush() -> None:
        ids = [r["order_id"] for r in chunk]
        known = {d["_id"] async for d in db["orders"].find({"_id": {"$in": ids}}, {"_id": 1})}
        found.extend((r["topic"], Envelope.model_validate(r["envelope"])) for r in chunk if r["order_id"] not in known)
        chunk.clear()

    async for record in cursor:
        if record.get("envelope"):
            chunk.append(record)
        if len(chunk) >= batch:
            await flush()
    if chunk:
        await flush()
    return found
