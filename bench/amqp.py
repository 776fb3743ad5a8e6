"""AMQP ingest: messages/s from a RabbitMQ queue onto Kafka through the real route pipeline.

    python -m bench.amqp [--messages 20000] [--prefetch 200]

Private tansu + SecantusDB + the Debian RabbitMQ. The queue is pre-filled (persistent messages,
publisher confirms), then a hub route consumes it: JSON decode, mapping, WorkOrder validation,
idempotency lookup + record in MongoDB, Kafka produce acks=all, and only then the AMQP ack.
Timed from the first delivery to the last ack; a second run publishes with confirms *while*
consuming, to show the publisher side too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aio_pika

from bench._common import free_port, private_infra

RUN_ID = uuid.uuid4().hex[:6]


def body(i: int) -> bytes:
    return json.dumps({"orderNo": f"MQ{RUN_ID}-{i}", "productCode": "internet_line", "scenarioCode": "01",
                       "customerName": "某集团客户", "contactPhone": "13800000000",
                       "addresses": [{"city": "上海", "detail": "浦东新区世纪大道100号"}], "bandwidthMbps": 500},
                      ensure_ascii=False).encode()


async def publish(url: str, queue: str, n: int) -> float:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, durable=True, arguments={"x-dead-letter-exchange": f"{queue}.dlx"})
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            await asyncio.gather(*(ch.default_exchange.publish(
                aio_pika.Message(body(i), message_id=f"{RUN_ID}-{i}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue) for i in range(start, min(n, start + 500))))
        return n / (time.perf_counter() - t0)


async def run(url: str, n: int, prefetch: int) -> None:
    from app.runtime import Runtime
    from connectors.context import ConnectorContext
    from connectors.registry import registry
    from hub.settings import load_settings
    from routes.models import route_model
    from routes.pipeline import RouteEmit

    queue = f"bench.{RUN_ID}"
    pub_rate = await publish(url, queue, n)
    print(f"pre-filled {n} persistent messages with publisher confirms: {pub_rate:.0f} msg/s")
    settings = load_settings()
    rt = Runtime(settings, partners={})
    await rt.start()
    route = route_model().model_validate({
        "name": "bench-amqp", "canonical": "work_order", "target": {"topic": "inbound"},
        "source": {"connector": "amqp", "partner": "group", "queue": queue, "prefetch": prefetch},
        "transform": {"field_map": {"orderNo": "external_order_id", "productCode": "product",
                                    "scenarioCode": "scenario", "customerName": "customer.name",
                                    "contactPhone": "customer.contact_phone", "bandwidthMbps": "bandwidth_mbps"},
                      "value_map": {"scenario": {"01": "open"}}}})
    emit = RouteEmit(route, prefix=settings.topic_prefix, intake=rt.intake, producer=rt.producer)
    assert emit.topic is not None
    await rt.ensure_topic(emit.topic)
    source = registry.get("source", "amqp").factory(route.source, ConnectorContext(settings, "bench-amqp",  # type: ignore[attr-defined]
                                                                                   rt.db, rt.producer))
    t0 = time.perf_counter()
    await source.start(emit)
    while source.stats["acked"] + source.stats["rejected"] < n:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - t0
    print(f"AMQP → Kafka: {source.stats['acked']} acked ({source.stats['rejected']} rejected) in {seconds:.1f} s = "
          f"{source.stats['acked'] / seconds:.0f} msg/s (prefetch {prefetch}; each: MongoDB dedupe + Kafka acks=all "
          f"before the ack)")
    await source.stop()
    await rt.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=200)
    args = parser.parse_args()
    import os

    os.environ["HUB_AMQP_PORT"] = str(free_port())
    os.environ["HUB_AMQP_ENABLED"] = "true"
    with private_infra():
        from connectors.amqp.settings import AmqpSettings

        asyncio.run(run(AmqpSettings().embedded_url, args.messages, args.prefetch))


if __name__ == "__main__":
    main()
