"""The AMQP source's batches against a real RabbitMQ, Kafka and MongoDB: a duplicate inside one
batch and across batches is one envelope and one intake record, and a batch interrupted before
Kafka acknowledged it is redelivered, none lost (connectors/amqp/source.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.runtime import Runtime
from hub.settings import Settings
from tests.conftest import free_port
from tests.connectors.test_amqp import publish, queue_depth, wo
from tests.support import eventually, topic_envelopes


def route(queue: str, partner: str = "mqb", **source: Any) -> dict[str, Any]:
    return {
        "source": {"connector": "amqp", "partner": partner, "queue": queue, "retry_delay_s": 0.2, **source},
        "transform": {"field_map": {"orderNo": "external_order_id", "productCode": "product",
                                    "scenarioCode": "scenario", "customerName": "customer.name"},
                      "value_map": {"scenario": {"01": "open"}}},
        "canonical": "work_order", "target": {"topic": "inbound"},
    }


async def started(settings: Settings, config_dir: Path, spec: dict[str, Any]) -> Runtime:
    (config_dir / "routes").mkdir(parents=True, exist_ok=True)
    (config_dir / "routes" / "mq-batches.yaml").write_text(yaml.safe_dump(spec))
    rt = Runtime(settings.model_copy(update={"config_dir": config_dir}), partners={})
    await rt.start()
    await rt.start_routes(watch=False)
    return rt


@pytest.fixture
async def batched(settings: Settings, rabbit: str, tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    queue = f"wob.{uuid.uuid4().hex[:8]}"
    rt = await started(settings, tmp_path, route(queue, prefetch=100, batch_size=50, batch_max_wait_s=0.05))
    try:
        yield rt, queue
    finally:
        await rt.stop()


async def test_duplicates_in_and_across_batches_are_one_envelope_and_one_record(
        batched: tuple[Runtime, str], rabbit: str, settings: Settings) -> None:
    rt, queue = batched
    tag = uuid.uuid4().hex[:6]
    distinct = [f"B{tag}-{i}" for i in range(400)]
    # 500 messages: every 4th order sent twice in a row (same batch) and the first 50 again at the end
    # (later batches) — each a new AMQP message (no message_id), the order number is the key
    bodies: list[tuple[bytes, str | None]] = []
    for i, ext in enumerate(distinct):
        bodies.append((wo(ext), None))
        if i % 8 == 0:
            bodies.append((wo(ext), None))
    bodies += [(wo(ext), None) for ext in distinct[: 500 - len(bodies)]]
    assert len(bodies) == 500
    source = next(iter(rt.routes.runners.values())).source
    await publish(rabbit, queue, bodies)
    await eventually(lambda: asyncio.sleep(0, source.stats["acked"] == 500), timeout=60)
    assert source.batches < 100, source.batches  # batched, not one by one
    envs = await topic_envelopes(settings, f"{settings.topic_prefix}.in.mqb", expect=400, wait=10)
    keys = [e.idempotency_key for e in envs if e.payload.get("external_order_id", "").startswith(f"B{tag}-")]
    assert sorted(keys) == sorted(f"order:mqb:{ext}:open" for ext in distinct)  # each exactly once
    assert rt.db is not None
    records = await rt.db["intake_keys"].count_documents({"_id": {"$regex": f"^order:mqb:B{tag}-"}})
    assert records == 400
    assert await queue_depth(rabbit, queue) == 0


async def test_a_batch_interrupted_before_kafka_acknowledged_is_redelivered(
        settings: Settings, rabbit: str, tmp_path: Path) -> None:
    queue = f"wob.{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    spec = route(queue, "mqi", prefetch=40, batch_size=20)
    dead = settings.model_copy(update={"kafka_url": f"127.0.0.1:{free_port()}", "kafka_request_timeout_ms": 500})
    # Kafka refuses the batch; the hub holds it unacked for retry_delay_s before it would requeue it —
    # and is stopped meanwhile, as a crash between delivery and Kafka's acknowledgement would
    rt = await started(dead, tmp_path / "dead", {**spec, "source": {**spec["source"], "retry_delay_s": 60}})
    try:
        source = next(iter(rt.routes.runners.values())).source
        await publish(rabbit, queue, [(wo(f"I{tag}-{i}"), f"i-{i}") for i in range(30)])
        # all 30 delivered to the hub (none ready in the queue), the first batch not acknowledged by Kafka
        await eventually(lambda: _ready(rabbit, queue, 0), timeout=15)
        await asyncio.sleep(1)  # the batch in flight: waiting for Kafka, or for its requeue
        assert source.stats["acked"] == 0
    finally:
        await rt.stop()  # the process goes away mid-batch
    assert await queue_depth(rabbit, queue) == 30  # unacked ⇒ given back by the broker, none lost
    rt = await started(settings, tmp_path / "live", spec)
    try:
        source = next(iter(rt.routes.runners.values())).source
        await eventually(lambda: asyncio.sleep(0, source.stats["acked"] == 30), timeout=30)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.in.mqi", expect=30, wait=10)
        mine = [e.idempotency_key for e in envs if e.payload.get("external_order_id", "").startswith(f"I{tag}-")]
        assert sorted(mine) == sorted(f"order:mqi:I{tag}-{i}:open" for i in range(30))
    finally:
        await rt.stop()
    assert await queue_depth(rabbit, queue) == 0


async def _ready(url: str, queue: str, want: int) -> bool:
    return await queue_depth(url, queue) == want
