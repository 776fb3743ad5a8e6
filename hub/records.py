"""Parse a raw Kafka record into an :class:`~hub.envelope.Envelope`, or dead-letter it.

Why one helper: every agent that consumes the hub's own topics (the intake router, the flow
engine, each delivery agent) must treat a record that is not an envelope the same way — keep its
raw bytes and where it came from in a dead letter, never drop it, never crash the agent — and the
three copies of that code had already started to differ in the origin they recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from motor.motor_asyncio import AsyncIOMotorDatabase

from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import ValidationFailed
from hub.kafka import EnvelopeProducer


class KafkaRecord(Protocol):
    """What the helper reads of a consumed record (faust's ``Message``, aiokafka's ``ConsumerRecord``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Iterable[tuple[str, bytes]] | None


async def parse_or_dead_letter(record: KafkaRecord, db: AsyncIOMotorDatabase[Any] | None,
                               producer: EnvelopeProducer, *, partner: str | None = None,
                               **origin: Any) -> Envelope | None:
    """The record's envelope; ``None`` once a record that is not one was dead-lettered (the caller
    then acknowledges it). ``origin`` adds to topic, partition and offset (e.g. ``agent=…``)."""
    try:
        return Envelope.from_kafka(record.value, list(record.headers or []))
    except ValidationFailed as exc:
        if db is None:
            raise RuntimeError("a record that is not an envelope arrived before the database was connected") from exc
        await DeadLetters(db, producer).publish(DeadLetter.for_raw(
            record.topic, record.value, exc, key=record.key, partner=partner,
            origin={"topic": record.topic, "partition": record.partition, "offset": record.offset, **origin}))
        return None
