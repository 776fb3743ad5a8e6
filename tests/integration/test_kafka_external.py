"""External Kafka connector: a partner topic in, and a hub topic pushed to a partner topic through a
route whose target is a sink. The embedded tansu plays the partner's cluster (own topics)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import yaml
from aiokafka import AIOKafkaProducer

from app.runtime import Runtime
from hub.envelope import Envelope
from hub.kafka import ensure_topics
from hub.settings import Settings
from tests.support import eventually, read_topic, topic_envelopes

FAST = {"session_timeout_ms": 4000, "heartbeat_interval_ms": 1000}  # quicker group join on the test broker


async def test_partner_topic_in_and_hub_topic_out_through_routes(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    partner_in, partner_out = f"partner.{tag}.orders", f"partner.{tag}.results"
    hub_out = f"{settings.topic_prefix}.out.grid"
    await ensure_topics(settings, [partner_in, partner_out, hub_out], partitions=1)
    routes = {
        "grid-in": {"source": {"connector": "kafka", "partner": "grid", "topic": partner_in, **FAST,
                               "connection": {"bootstrap_servers": settings.kafka_bootstrap}},
                    "transform": {"value_map": {"state": {"1": "ok", "2": "failed"}}},
                    "target": {"topic": "inbound"}},
        "grid-out": {"source": {"connector": "kafka", "partner": "grid", "topic": hub_out, "body": "envelope", **FAST},
                     "target": {"sink": {"connector": "kafka", "partner": "grid", "topic": partner_out,
                                         "connection": {"bootstrap_servers": settings.kafka_bootstrap}}}},
    }
    (tmp_path / "routes").mkdir()
    for name, route in routes.items():
        (tmp_path / "routes" / f"{name}.yaml").write_text(yaml.safe_dump(route))
    rt = Runtime(settings.model_copy(update={"config_dir": tmp_path}), partners={})
    await rt.start()
    await rt.start_routes(watch=False)
    try:
        assert {n: r["state"] for n, r in rt.routes.readiness()["routes"].items()} == {
            "grid-in": "running", "grid-out": "running"}
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(partner_in, json.dumps({"id": "G-1", "state": "1"}).encode(), key=b"G-1")
            await producer.send_and_wait(partner_in, b"{broken", key=b"G-2")
            out = Envelope(type="call.request", source="hub", protocol="internal", correlation_id="ord-9",
                           idempotency_key="call:ord-9:grid", payload={"orderId": "ord-9", "action": "open"})
            await producer.send_and_wait(hub_out, out.kafka_value(), key=out.kafka_key(), headers=out.kafka_headers())
        finally:
            await producer.stop()

        (env,) = await topic_envelopes(settings, f"{settings.topic_prefix}.in.grid", expect=1)
        assert env.payload == {"id": "G-1", "state": "ok"} and env.protocol == "kafka"
        assert env.correlation_id == "G-1" and env.idempotency_key.startswith(f"kafka:grid-in:{partner_in}:0:")

        (rec,) = await read_topic(settings, partner_out, expect=1)
        assert json.loads(rec.value) == {"orderId": "ord-9", "action": "open"} and rec.key == b"ord-9"
        assert rt.db is not None
        letter = await eventually(lambda: rt.db["dead_letters"].find_one({"partner": "grid"}))  # type: ignore[index]
        assert "not JSON" in letter["error"]
    finally:
        await rt.stop()
