"""AMQP connector against a real RabbitMQ (Debian rabbitmq-server started like ``hub infra`` does)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml

from app.runtime import Runtime
from connectors.amqp.config import AmqpSinkConfig
from connectors.amqp.sink import AmqpSink
from connectors.context import ConnectorContext
from hub.envelope import Envelope
from hub.settings import Settings
from tests.conftest import free_port
from tests.support import eventually, topic_envelopes


@pytest.fixture
async def hub(settings: Settings, rabbit: str, tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    queue = f"wo.{uuid.uuid4().hex[:8]}"
    route = {
        "source": {"connector": "amqp", "partner": "mq", "queue": queue, "prefetch": 20, "retry_delay_s": 0.2},
        "transform": {"field_map": {"orderNo": "external_order_id", "productCode": "product",
                                    "scenarioCode": "scenario", "customerName": "customer.name"},
                      "value_map": {"scenario": {"01": "open"}}, "strict_values": ["scenario"]},
        "canonical": "work_order", "target": {"topic": "inbound"},
    }
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "mq-orders.yaml").write_text(yaml.safe_dump(route))
    rt = Runtime(settings.model_copy(update={"config_dir": tmp_path}), partners={})
    await rt.start()
    await rt.start_routes(watch=False)
    try:
        yield rt, queue
    finally:
        await rt.stop()


def wo(ext: str, scenario: str = "01") -> bytes:
    return json.dumps({"orderNo": ext, "productCode": "internet_line", "scenarioCode": scenario,
                       "customerName": "某公司"}).encode()


async def publish(url: str, queue: str, bodies: list[tuple[bytes, str | None]]) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        for body, mid in bodies:
            await ch.default_exchange.publish(aio_pika.Message(body, message_id=mid,
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue)


async def queue_depth(url: str, queue: str) -> int:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True, passive=True)
        return int(q.declaration_result.message_count or 0)


async def test_work_orders_from_a_queue_land_on_kafka_and_are_acked(hub: tuple[Runtime, str], rabbit: str,
                                                                    settings: Settings) -> None:
    rt, queue = hub
    source = next(iter(rt.routes.runners.values())).source
    await publish(rabbit, queue, [(wo("Q-1"), "m-1"), (wo("Q-2"), "m-2")])
    await eventually(lambda: _const(source.stats["acked"] == 2))
    await publish(rabbit, queue, [(wo("Q-1"), "m-1")])  # the partner re-sends: acked, not emitted again
    await eventually(lambda: _const(source.stats["acked"] == 3))
    envs = await topic_envelopes(settings, f"{settings.topic_prefix}.in.mq", expect=2)
    assert sorted(e.idempotency_key for e in envs) == ["order:mq:Q-1:open", "order:mq:Q-2:open"]
    assert {e.protocol for e in envs} == {"amqp"}
    assert await queue_depth(rabbit, queue) == 0


async def test_invalid_message_goes_to_the_dead_letter_queue_with_its_reason(hub: tuple[Runtime, str],
                                                                             rabbit: str) -> None:
    _rt, queue = hub
    await publish(rabbit, queue, [(b"not json", "bad-1"), (wo("Q-9", scenario="77"), "bad-2")])
    conn = await aio_pika.connect(rabbit)
    async with conn:
        ch = await conn.channel()
        dlq = await ch.declare_queue(f"{queue}.dlq", durable=True, passive=True)
        got: dict[str, Any] = {}

        async def drain() -> bool:
            msg = await dlq.get(fail=False)
            if msg is not None:
                await msg.ack()
                got[msg.message_id] = msg.headers["x-hub-reject-reason"]
            return len(got) == 2

        await eventually(drain, timeout=10)
    assert "not JSON" in got["bad-1"] and "unknown code '77'" in got["bad-2"]
    assert await queue_depth(rabbit, queue) == 0


async def test_message_stays_in_the_queue_while_kafka_is_down(settings: Settings, rabbit: str,
                                                              tmp_path: Path) -> None:
    queue = f"wo.{uuid.uuid4().hex[:8]}"
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "mq-down.yaml").write_text(yaml.safe_dump({"source": {
        "connector": "amqp", "partner": "mq", "queue": queue, "retry_delay_s": 0.2}}))
    dead = settings.model_copy(update={"config_dir": tmp_path, "kafka_url": f"127.0.0.1:{free_port()}",
                                       "kafka_request_timeout_ms": 500})
    rt = Runtime(dead, partners={})
    await rt.start()
    await rt.start_routes(watch=False)
    try:
        await publish(rabbit, queue, [(b'{"a": 1}', "k-1")])
        source = next(iter(rt.routes.runners.values())).source
        await eventually(lambda: _const(source.stats["requeued"] >= 2), timeout=15)
        assert source.stats["acked"] == 0
    finally:
        await rt.stop()
    assert await queue_depth(rabbit, queue) == 1  # nothing lost: still there for the next consumer


async def test_sink_publishes_persistent_confirmed_messages(settings: Settings, rabbit: str, runtime: Runtime) -> None:
    queue = f"out.{uuid.uuid4().hex[:8]}"
    sink = AmqpSink(AmqpSinkConfig(partner="mq", routing_key=queue, declare_queue=queue),
                    ConnectorContext(settings, "mq-out"))
    await sink.start()
    try:
        env = Envelope(type="call.request", source="hub", protocol="amqp", correlation_id="ord-7",
                       idempotency_key="call:ord-7:notify", payload={"orderId": "ord-7", "result": "done"})
        outcome = await sink.deliver(env)
        assert outcome.ok and outcome.status == "confirmed"
        unroutable = AmqpSink(AmqpSinkConfig(partner="mq", routing_key="no.such.queue"),
                              ConnectorContext(settings, "mq-out2"))
        await unroutable.start()
        bad = await unroutable.deliver(env)
        await unroutable.stop()
        assert not bad.ok and not bad.retryable
    finally:
        await sink.stop()
    conn = await aio_pika.connect(rabbit)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True, passive=True)
        msg = await q.get()
        assert json.loads(msg.body) == {"orderId": "ord-7", "result": "done"}
        assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT and msg.message_id == "call:ord-7:notify"
        await msg.ack()


async def _const(value: bool) -> bool:
    return value
