"""AMQP reads the partner's crypto contract (the key, IV and key id in the message's headers), and its
intake has a size limit (dead letter "too large") and a rate limit (consumes slower, drops nothing)
— against a real RabbitMQ, broker and database. The partner side uses only pycryptodome and
aio-pika (an independent implementation) in both directions."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml
from prometheus_client import REGISTRY

from app.delivery import build_sink
from app.runtime import Runtime
from connectors.amqp.source import AmqpSource
from connectors.context import ConnectorContext
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.settings import Settings
from tests.partner_crypto import KEYS, oaep, seal, unseal
from tests.support import eventually, read_topic, topic_envelopes

FIELDS = ["customerName", "contactPhone"]  # the partner's names, before the route's mapping


CRYPTO = {
    "cipher": "aes", "mode": "gcm", "key_wrap": {"scheme": "rsa-oaep", "hash": "sha256", "mgf1_hash": "sha1"},
    "partner_keys": [{"id": "partner-2026a", "file": str(KEYS / "test-partner-2026a.pub.pem")}],
    "our_keys": [{"id": "hub-2026b", "file": str(KEYS / "test-hub-2026b.key.pem")},
                 {"id": "hub-2026a", "file": str(KEYS / "test-hub-2026a.key.pem")}],
}


async def _hub(settings: Settings, tmp_path: Path, source: dict[str, Any], crypto: dict[str, Any] | None = None
               ) -> tuple[Runtime, str]:
    queue = f"wo.{uuid.uuid4().hex[:8]}"
    route = {
        "source": {"connector": "amqp", "partner": "mq", "queue": queue, "retry_delay_s": 0.2, **source},
        "transform": {"field_map": {"orderNo": "external_order_id", "productCode": "product",
                                    "scenarioCode": "scenario", "customerName": "customer.name",
                                    "contactPhone": "customer.contact_phone"},
                      "value_map": {"scenario": {"01": "open"}}, "strict_values": ["scenario"]},
        "canonical": "work_order", "target": {"topic": "inbound"},
    }
    for folder in ("routes", "partners"):
        (tmp_path / folder).mkdir()
    (tmp_path / "routes" / "mq-orders.yaml").write_text(yaml.safe_dump(route))
    partner: dict[str, Any] = {"name": "mq"}
    if crypto is not None:  # the partner file is the one place the contract is declared
        partner["crypto"] = crypto
    (tmp_path / "partners" / "mq.yaml").write_text(yaml.safe_dump(partner, allow_unicode=True))
    rt = Runtime(settings.model_copy(update={"config_dir": tmp_path}))
    await rt.start()
    await rt.start_routes(watch=False)
    return rt, queue


@pytest.fixture
async def stopping() -> AsyncIterator[list[Runtime]]:
    runtimes: list[Runtime] = []
    yield runtimes
    for rt in runtimes:
        await rt.stop()


def _source(rt: Runtime) -> AmqpSource:
    source = next(iter(rt.routes.runners.values())).source
    assert isinstance(source, AmqpSource)
    return source


def _order(ext: str, name: str, phone: str) -> bytes:
    return json.dumps({"orderNo": ext, "productCode": "internet_line", "scenarioCode": "01",
                       "customerName": name, "contactPhone": phone}, ensure_ascii=False).encode()


async def _publish(url: str, queue: str, messages: list[tuple[bytes, str, dict[str, Any]]]) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        for body, mid, headers in messages:
            await ch.default_exchange.publish(aio_pika.Message(
                body, message_id=mid, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue)


async def _dead_letters(url: str, queue: str, expect: int) -> dict[str, dict[str, Any]]:
    """message id → (reason, body) of the route's dead-letter queue."""
    got: dict[str, dict[str, Any]] = {}
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        dlq = await ch.declare_queue(f"{queue}.dlq", durable=True, passive=True)

        async def drain() -> bool:
            msg = await dlq.get(fail=False)
            if msg is not None:
                await msg.ack()
                got[str(msg.message_id)] = {"reason": msg.headers["x-hub-reject-reason"], "body": msg.body}
            return len(got) >= expect

        await eventually(drain, timeout=10)
    return got


async def _depth(url: str, queue: str) -> int:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True, passive=True)
        return int(q.declaration_result.message_count or 0)


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_intake_requests_total",
                                     {"partner": "mq", "protocol": "amqp", "outcome": outcome}) or 0.0


async def _const(value: bool) -> bool:
    return value


async def test_amqp_source_decrypts_declared_fields_and_dead_letters_what_does_not_decrypt(
        settings: Settings, rabbit: str, tmp_path: Path, stopping: list[Runtime]) -> None:
    rt, queue = await _hub(settings, tmp_path, {}, {**CRYPTO, "inbound_fields": FIELDS})
    stopping.append(rt)
    key = os.urandom(32)
    carried = {"X-Encrypted-Key": base64.b64encode(oaep("test-hub-2026b.pub.pem").encrypt(key)).decode(),
               "X-Key-Id": "hub-2026b"}
    # a Java client's byte[] header is an AMQP byte array (type x): it arrives as bytes
    java_style = {"X-Encrypted-Key": bytearray(carried["X-Encrypted-Key"].encode()), "X-Key-Id": "hub-2026b"}
    before = _count("rejected_invalid")
    await _publish(rabbit, queue, [
        (_order("A-1", seal(key, "温州某某公司"), seal(key, "13700000001")), "m-1", carried),
        (_order("A-2", seal(key, "温州某某公司"), seal(key, "13700000002")), "m-2", java_style),
        (_order("A-3", seal(key, "温州某某公司"), seal(os.urandom(32), "13700000003")), "m-3", carried),
        (_order("A-4", "温州某某公司", "13700000004"), "m-4", {}),  # the partner forgot to encrypt
    ])
    source = _source(rt)
    await eventually(lambda: _const(source.stats["acked"] + source.stats["rejected"] == 4))
    envs = await topic_envelopes(settings, f"{settings.topic_prefix}.in.mq", expect=2)
    assert sorted((e.payload["external_order_id"], e.payload["customer"]["name"],
                   e.payload["customer"]["contact_phone"]) for e in envs) == [
        ("A-1", "温州某某公司", "13700000001"), ("A-2", "温州某某公司", "13700000002")]
    assert not any(h.lower() in ("x-encrypted-key", "x-key-id") for e in envs for h in e.headers)
    dead = await _dead_letters(rabbit, queue, 2)  # not retried: dead-lettered with the field named
    assert "contactPhone does not decrypt" in dead["m-3"]["reason"] and "13700000003" not in dead["m-3"]["reason"]
    assert "without the wrapped key" in dead["m-4"]["reason"]
    assert b"13700000003" not in dead["m-3"]["body"]  # the dead letter keeps the message as it came: sealed
    assert source.stats == {"acked": 2, "rejected": 2, "requeued": 0} and _count("rejected_invalid") == before + 2
    assert await _depth(rabbit, queue) == 0


async def test_amqp_sink_encrypts_the_operations_fields_with_the_key_in_the_message_headers(
        settings: Settings, rabbit: str, tmp_path: Path) -> None:
    queue = f"out.{uuid.uuid4().hex[:8]}"
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "mq.yaml").write_text(yaml.safe_dump({
        "name": "mq", "outbound": {"protocol": "amqp", "config": {
            "partner": "mq", "routing_key": queue, "declare_queue": queue}},
        "crypto": {**CRYPTO, "fields": {"resource_entry": {"request": ["request.customer.id_number"]}}}}))
    sink = build_sink(load_partners(tmp_path)["mq"], ConnectorContext(settings, "mq-out"))
    await sink.start()
    try:
        outcome = await sink.deliver(Envelope(
            type="call.request", source="hub", protocol="internal", correlation_id="ord-a1",
            idempotency_key="call:ord-a1:resource_entry",
            payload={"operation": "resource_entry", "request": {"order_id": "ord-a1",
                                                                "customer": {"id_number": "330101199001011234"}}}))
        assert outcome.ok, outcome.error
    finally:
        await sink.stop()
    conn = await aio_pika.connect(rabbit)
    async with conn:
        ch = await conn.channel()
        msg = await (await ch.declare_queue(queue, durable=True, passive=True)).get()
        await msg.ack()
    assert b"330101199001011234" not in msg.body
    body = json.loads(msg.body)
    key = oaep("test-partner-2026a.key.pem").decrypt(base64.b64decode(msg.headers["X-Encrypted-Key"]))
    assert msg.headers["X-Key-Id"] == "partner-2026a" and body["request"]["order_id"] == "ord-a1"
    assert unseal(key, body["request"]["customer"]["id_number"]) == "330101199001011234"


async def test_a_message_over_max_message_bytes_is_dead_lettered_too_large_with_size_and_limit(
        settings: Settings, rabbit: str, tmp_path: Path, stopping: list[Runtime]) -> None:
    rt, queue = await _hub(settings, tmp_path, {"max_message_bytes": 2048})
    stopping.append(rt)
    big = _order("B-2", "某" * 1000, "13700000000")
    before = _count("rejected_too_large")
    await _publish(rabbit, queue, [(_order("B-1", "某公司", "13700000000"), "b-1", {}), (big, "b-2", {})])
    source = _source(rt)
    await eventually(lambda: _const(source.stats["acked"] + source.stats["rejected"] == 2))
    dead = await _dead_letters(rabbit, queue, 1)
    assert dead["b-2"]["reason"] == f"too large: {len(big)} bytes, over the limit of 2048 bytes (max_message_bytes)"
    assert source.stats["acked"] == 1 and _count("rejected_too_large") == before + 1
    assert await _depth(rabbit, queue) == 0


async def test_over_the_rate_limit_the_queue_is_consumed_slower_and_nothing_is_dropped(
        settings: Settings, rabbit: str, tmp_path: Path, stopping: list[Runtime]) -> None:
    """2 messages/s, burst 1: 6 messages take about 2.5 s instead of a few ms — after 1 s some are still
    unacked (in the queue or waiting for the bucket); in the end every one is on Kafka, none refused."""
    rt, queue = await _hub(settings, tmp_path, {"rate_limit": {"per_second": 2, "burst": 1}, "prefetch": 2})
    stopping.append(rt)
    await _publish(rabbit, queue, [(_order(f"R-{n}", "某公司", "13700000000"), f"r-{n}", {}) for n in range(6)])
    source = _source(rt)
    await asyncio.sleep(1.0)
    assert source.stats["acked"] < 6
    await eventually(lambda: _const(source.stats["acked"] == 6), timeout=15)
    assert source.stats["rejected"] == 0 and source.stats["requeued"] == 0
    assert len(await read_topic(settings, f"{settings.topic_prefix}.in.mq", expect=6)) == 6
