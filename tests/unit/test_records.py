"""One parse-or-dead-letter helper for every agent on the hub's topics (router, engine, delivery)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from hub.envelope import Envelope
from hub.records import parse_or_dead_letter


@dataclass
class Record:
    value: bytes | None
    topic: str = "hub.in.esop"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"ord-1"
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class FakeCollection:
    docs: list[dict[str, Any]] = field(default_factory=list)

    async def insert_one(self, doc: dict[str, Any]) -> None:
        self.docs.append(doc)


class FakeDb:
    def __init__(self) -> None:
        self.collections: dict[str, FakeCollection] = {}

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection())


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> None:
        self.sent.append((topic, value, key))


async def test_an_envelope_is_returned_and_nothing_is_dead_lettered() -> None:
    env = Envelope(type="order.received", source="esop", protocol="rest", correlation_id="ord-1",
                   idempotency_key="k1", payload={"a": 1})
    db, producer = FakeDb(), FakeProducer()
    parsed = await parse_or_dead_letter(Record(env.kafka_value(), headers=env.kafka_headers()),
                                        db, producer, agent="intake-router")  # type: ignore[arg-type]
    assert parsed is not None and parsed.id == env.id and parsed.payload == {"a": 1}
    assert db.collections == {} and producer.sent == []


async def test_a_record_that_is_not_an_envelope_is_dead_lettered_with_its_bytes_and_origin() -> None:
    db, producer = FakeDb(), FakeProducer()
    parsed = await parse_or_dead_letter(Record(b"not json"), db, producer,  # type: ignore[arg-type]
                                        partner="group", agent="deliver-group")
    assert parsed is None
    [letter] = db["dead_letters"].docs
    assert base64.b64decode(letter["raw_value_b64"]) == b"not json"
    assert letter["order_id"] == "ord-1" and letter["partner"] == "group"
    assert letter["error_class"] == "ValidationFailed"
    assert {k: letter["origin"][k] for k in ("topic", "partition", "offset", "agent")} == {
        "topic": "hub.in.esop", "partition": 2, "offset": 41, "agent": "deliver-group"}
    [(topic, value, key)] = producer.sent
    assert topic == "hub.in.esop.dlq" and key == b"ord-1" and json.loads(value)["source_topic"] == "hub.in.esop"


async def test_a_tombstone_is_dead_lettered_not_dropped() -> None:
    db, producer = FakeDb(), FakeProducer()
    assert await parse_or_dead_letter(Record(None, key=None), db, producer) is None  # type: ignore[arg-type]
    [letter] = db["dead_letters"].docs
    assert letter["origin"]["partner"] == "esop"  # read from the topic name
