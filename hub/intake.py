"""Idempotent intake: the ``emit`` every inbound connector calls.

Order of writes, and why:

1. look the idempotency key up in MongoDB (``intake_keys``); already there ⇒ answer exactly what the
   first delivery was answered, write nothing;
2. produce the envelope to Kafka with acks=all — if the broker is down the caller answers 503 and
   *nothing* is written anywhere (no half-accepted order);
3. record the key (unique ``_id``). If two identical deliveries race past step 1, the second insert
   loses on the unique index and that caller answers with the first one's ids; the stray envelope
   carries the same idempotency key and order id, and the engine applies an order once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.kafka import EnvelopeProducer

log = logging.getLogger(__name__)


class StoreUnavailable(RetryableError):
    """MongoDB did not answer; the delivery can be retried by the partner."""


@dataclass(frozen=True)
class Accepted:
    """The answer a source gives its partner: the ids, and whether this was a redelivery."""

    order_id: str
    envelope_id: str
    duplicate: bool = False


class Intake:
    def __init__(self, db: AsyncIOMotorDatabase, producer: EnvelopeProducer) -> None:
        self._keys = db["intake_keys"]
        self._producer = producer

    async def emit(self, topic: str, envelope: Envelope) -> Accepted:
        key = envelope.idempotency_key
        try:
            first = await self._keys.find_one({"_id": key}, {"order_id": 1, "envelope_id": 1})
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc
        if first:
            return Accepted(first["order_id"], first["envelope_id"], duplicate=True)

        await self._producer.send(topic, envelope)  # raises BrokerUnavailable: nothing written

        record = {
            "_id": key,
            "order_id": envelope.correlation_id,
            "envelope_id": envelope.id,
            "topic": topic,
            "source": envelope.source,
            "created_at": datetime.now(UTC),
        }
        try:
            await self._keys.insert_one(record)
        except DuplicateKeyError:
            first = await self._keys.find_one({"_id": key})
            assert first is not None
            log.info("concurrent duplicate of %s; answered with the first envelope %s", key, first["envelope_id"])
            return Accepted(first["order_id"], first["envelope_id"], duplicate=True)
        except PyMongoError as exc:
            # The envelope is on Kafka (accepted); only the dedupe record is missing. A redelivery
            # would produce a second envelope with the same key, which the engine ignores.
            log.warning("intake key %s not recorded (%s); downstream dedupe covers redelivery", key, exc)
        return Accepted(envelope.correlation_id, envelope.id)
