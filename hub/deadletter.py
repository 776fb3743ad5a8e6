"""Dead letters: where a message goes when it cannot be processed or delivered — never dropped.

A dead letter keeps the original envelope (or the raw bytes when the record was not even an
envelope), the error and its class, every attempt with time and outcome, and where it came from
(topic, partition, offset, worker). It is written to MongoDB first (``dead_letters``, indexed for
listing and filtering, the source of truth for replay) and then to the Kafka topic
``{source_topic}.dlq`` (for stream consumers and tools).
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from hub import topics
from hub.db import declare_indexes
from hub.envelope import Envelope, new_id
from hub.kafka import EnvelopeProducer
from hub.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)

COLLECTION = "dead_letters"
declare_indexes(
    COLLECTION,
    IndexModel([("source_topic", ASCENDING), ("created_at", DESCENDING)], name="by_topic_time"),
    IndexModel([("partner", ASCENDING), ("created_at", DESCENDING)], name="by_partner_time"),
    IndexModel([("order_id", ASCENDING)], name="by_order"),
    IndexModel([("error_class", ASCENDING), ("created_at", DESCENDING)], name="by_error_time"),
    IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="by_status_time"),
)


class Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    outcome: str = Field(examples=["error", "timeout", "rejected"])
    error: str | None = None
    status: str | None = None
    duration_ms: float | None = None


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id)
    source_topic: str
    dlq_topic: str = ""
    partner: str | None = None
    order_id: str | None = None
    envelope: dict[str, Any] | None = Field(default=None, description="the original envelope")
    raw_value_b64: str | None = Field(default=None, description="the record when it was not an envelope")
    error: str
    error_class: str
    attempts: list[Attempt] = Field(default_factory=list)
    origin: dict[str, Any] = Field(default_factory=dict, description="topic, partition, offset, worker, stage")
    status: Literal["dead", "replayed", "discarded"] = "dead"
    replay_count: int = 0
    last_action: dict[str, Any] | None = Field(default=None, description="last replay/discard: who, when, why")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def for_envelope(
        cls, source_topic: str, envelope: Envelope, error: BaseException | str, **kw: Any
    ) -> DeadLetter:
        return cls(
            source_topic=source_topic,
            partner=kw.pop("partner", None) or envelope.source,
            order_id=envelope.correlation_id,
            envelope=envelope.model_dump(mode="json"),
            error=str(error),
            error_class=kw.pop("error_class", None) or (type(error).__name__ if isinstance(error, BaseException)
                                                       else "Error"),
            **kw,
        )

    @classmethod
    def for_raw(cls, source_topic: str, value: bytes | None, error: BaseException, **kw: Any) -> DeadLetter:
        return cls(
            source_topic=source_topic,
            raw_value_b64=base64.b64encode(value or b"").decode(),
            error=str(error),
            error_class=type(error).__name__,
            **kw,
        )


class DeadLetters:
    def __init__(self, db: AsyncIOMotorDatabase, producer: EnvelopeProducer) -> None:
        self.collection = db[COLLECTION]
        self.producer = producer

    async def publish(self, letter: DeadLetter) -> DeadLetter:
        """MongoDB first (replay reads from there), then the ``.dlq`` topic."""
        letter.dlq_topic = topics.dead_letter(letter.source_topic)
        doc = letter.model_dump()
        doc["_id"] = doc.pop("id")
        await self.collection.insert_one(doc)
        DEAD_LETTERS.labels(letter.source_topic, letter.error_class).inc()
        try:
            await self.producer.send_raw(
                letter.dlq_topic,
                letter.model_dump_json().encode(),
                key=(letter.order_id or letter.id).encode(),
                headers=[("hub-dead-letter-id", letter.id.encode()), ("hub-error-class", letter.error_class.encode())],
            )
        except Exception as exc:  # the MongoDB record is the source of truth; the topic copy is best effort
            log.warning("dead letter %s stored but not copied to %s: %s", letter.id, letter.dlq_topic, exc)
        log.error(
            "dead-lettered %s from %s: %s (%s)", letter.order_id or letter.id, letter.source_topic,
            letter.error_class, letter.error,
        )
        return letter
