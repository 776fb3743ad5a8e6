"""One durable path per event (docs/flows.md): with an external, durable Kafka the intake keeps only
the idempotency key in MongoDB (the broker holds the order); with the embedded broker, which keeps
topics in memory, the record keeps the envelope so a broker restart cannot lose an accepted order."""

from __future__ import annotations

from typing import Any

import pytest

from hub.envelope import Envelope
from hub.intake import Intake
from hub.settings import Settings

pytestmark = pytest.mark.integration


def order(key: str) -> Envelope:
    return Envelope(type="order.received", source="esop", protocol="rest", correlation_id=f"ord-{key}",
                    idempotency_key=f"order:esop:{key}:open", product="internet_line", scenario="open",
                    payload={"external_order_id": key})


def test_the_journal_follows_the_broker() -> None:
    assert Settings(kafka_url=None).journal_events is True  # embedded: topics in memory
    assert Settings(kafka_url="kafka.prod:9092").journal_events is False  # the cluster is the durable copy
    assert Settings(kafka_url="kafka.prod:9092", event_journal="on").journal_events is True


@pytest.mark.parametrize("journal", [True, False])
async def test_the_intake_record_keeps_the_envelope_only_when_journaling(runtime: Any, journal: bool) -> None:
    intake = Intake(runtime.db, runtime.producer)
    intake.configure(admit=None, max_depth=64, journal=journal)
    first = await intake.emit(f"{runtime.settings.topic_prefix}.in.esop", order("J-1"))
    again = await intake.emit(f"{runtime.settings.topic_prefix}.in.esop", order("J-1"))
    assert again.duplicate and again.order_id == first.order_id  # the key alone answers duplicates
    record = await runtime.db["intake_keys"].find_one({"_id": "order:esop:J-1:open"})
    assert record is not None and ("envelope" in record) is journal
