"""``Intake.emit_many`` (the AMQP source's batch path, issue 18 §2): one claim insert, one pipelined
produce and one record insert per batch — with ``emit``'s guarantees: one envelope per key whatever
else delivers the key at the same time, answers only once the envelope is on Kafka, and a produce
that fails leaves nothing behind that would turn the partner's retry into a "duplicate"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.infra.process import wait_until
from app.infra.servers import KafkaServer
from app.runtime import Runtime
from hub.envelope import Envelope
from hub.errors import BrokerUnavailable, ValidationFailed
from hub.intake import Accepted, Intake
from hub.settings import Settings
from tests.integration.test_broker_down import own_broker  # noqa: F401  (fixture)
from tests.support import envelopes, read_topic

pytestmark = pytest.mark.integration


def order(key: str) -> Envelope:
    return Envelope(type="order.received", source="mq", protocol="amqp", correlation_id=f"ord-{key}",
                    idempotency_key=f"order:mq:{key}:open", product="internet_line", scenario="open",
                    payload={"external_order_id": key})


def refuse_bad(envelope: Envelope) -> None:
    if envelope.payload.get("external_order_id") == "bad":
        raise ValidationFailed("no flow runs this order")


async def test_repeats_in_a_batch_a_concurrent_single_delivery_and_an_earlier_one_make_one_envelope_per_key(
    runtime: Any,
) -> None:
    intake = Intake(runtime.db, runtime.producer)
    intake.configure(admit=refuse_bad, max_depth=64)
    topic = f"{runtime.settings.topic_prefix}.in.mq"
    earlier = await intake.emit(topic, order("A"))

    batch = [order("A"), order("B"), order("B"), order("C"), order("bad")]
    many, single = await asyncio.gather(intake.emit_many(topic, batch), intake.emit(topic, order("C")))

    a, b1, b2, c, bad = many
    assert isinstance(a, Accepted) and a.duplicate and a.envelope_id == earlier.envelope_id
    assert isinstance(b1, Accepted) and isinstance(b2, Accepted)
    assert b1.envelope_id == b2.envelope_id and [b1.duplicate, b2.duplicate].count(False) == 1
    assert isinstance(c, Accepted) and c.envelope_id == single.envelope_id
    assert [c.duplicate, single.duplicate].count(False) == 1, "one of the two deliveries of C produced it"
    assert isinstance(bad, ValidationFailed)

    records = await read_topic(runtime.settings, topic, expect=3, wait=6)
    produced = envelopes(records)
    assert sorted(e.idempotency_key for e in produced) == ["order:mq:A:open", "order:mq:B:open", "order:mq:C:open"]
    for key in ("A", "B", "C"):  # each key recorded once, claim next to it
        assert await runtime.db["intake_keys"].count_documents({"_id": f"order:mq:{key}:open"}) == 1
    assert await runtime.db["intake_keys"].count_documents({"_id": "order:mq:bad:open"}) == 0


async def test_a_batch_whose_produce_fails_releases_its_claims_so_the_retry_is_accepted(
    own_broker: tuple[Settings, KafkaServer],  # noqa: F811
) -> None:
    mine, server = own_broker
    runtime = Runtime(mine)
    await runtime.start()
    try:
        intake = Intake(runtime.db, runtime.producer, wait_s=0.5)  # a claim left behind: the retry would 503
        intake.configure(admit=None, max_depth=64)
        topic = f"{mine.topic_prefix}.in.mq"
        await runtime.ensure_topic(topic)
        server.process.stop()
        failed = await intake.emit_many(topic, [order("X"), order("Y")])
        assert all(isinstance(r, BrokerUnavailable) for r in failed), failed
        assert await runtime.db["intake_keys"].count_documents({}) == 0, "no claim, no record left behind"

        server.process.start(server.argv())
        assert wait_until(server.answers, 15, 0.1)
        await runtime.ensure_topic(topic)
        retried = await intake.emit_many(topic, [order("X"), order("Y")])
        assert all(isinstance(r, Accepted) and not r.duplicate for r in retried), retried
    finally:
        await runtime.stop()
