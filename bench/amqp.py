"""AMQP ingest: messages/s from a RabbitMQ queue onto Kafka through the real route pipeline.

    python -m bench.amqp [--messages 20000] [--prefetch 200] [--batch-size N]

Private tansu + SecantusDB + the Debian RabbitMQ. The queue is pre-filled (persistent messages,
publisher confirms), then a hub route consumes it: JSON decode, mapping, WorkOrder validation,
idempotency lookup + record in MongoDB, Kafka produce acks=all, and only then the AMQP ack.
Timed from the first delivery to the last ack. The hub consumes in batches (``batch_size``, default
prefetch/2): one claim insert and one record insert in MongoDB and one pipelined Kafka write per
batch, then one multiple ack.

The baseline, measured in the same run on its own pre-filled queue: raw aio-pika consume → aiokafka
``send`` acks=all for a batch of the same size (all futures awaited) → ``ack(multiple=True)`` — no
parsing, no validation, no MongoDB. The ratio hub / raw is what the pipeline costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


async def raw_baseline(url: str, kafka_url: str, n: int, prefetch: int, batch_size: int) -> float:
    """msg/s of the bare path: aio-pika consume → aiokafka acks=all per batch → multiple ack."""
    from aiokafka import AIOKafkaProducer

    from connectors.amqp.source import next_batch

    queue = f"bench.raw.{RUN_ID}"
    await publish(url, queue, n)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_url, acks="all", linger_ms=1)
    await producer.start()
    conn = await aio_pika.connect(url)
    done = asyncio.Event()
    acked = 0
    try:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=prefetch)
        q = await ch.get_queue(queue)
        inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        topic = f"bench.raw.{RUN_ID}"
        await (await producer.send(topic, b"warm-up"))

        async def loop() -> None:
            nonlocal acked
            while acked < n:
                batch = await next_batch(inbox, batch_size, 0.005)
                futures = [await producer.send(topic, m.body) for m in batch]
                await asyncio.gather(*futures)
                await batch[-1].ack(multiple=True)
                acked += len(batch)
            done.set()

        t0 = time.perf_counter()
        worker = asyncio.create_task(loop())
        await q.consume(inbox.put)
        await done.wait()
        seconds = time.perf_counter() - t0
        await worker
    finally:
        await conn.close()
        await producer.stop()
    return acked / seconds


async def run(url: str, n: int, prefetch: int, batch_size: int | None) -> None:
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
    rt = Runtime(settings)  # the shipped partners: blueprints load, so admission runs as in `hub run`
    await rt.start()
    route = route_model().model_validate({
        "name": "bench-amqp", "canonical": "work_order", "target": {"topic": "inbound"},
        "source": {"connector": "amqp", "partner": "group", "queue": queue, "prefetch": prefetch,
                   **({"batch_size": batch_size} if batch_size else {})},
        "transform": {"field_map": {"orderNo": "external_order_id", "productCode": "product",
                                    "scenarioCode": "scenario", "customerName": "customer.name",
                                    "contactPhone": "customer.contact_phone", "bandwidthMbps": "bandwidth_mbps"},
                      "value_map": {"scenario": {"01": "open"}}}})
    emit = RouteEmit(route, prefix=settings.topic_prefix, intake=rt.intake, producer=rt.producer)  # type: ignore[arg-type]
    assert emit.topic is not None
    await rt.ensure_topic(emit.topic)
    source = registry.get("source", "amqp").factory(route.source, ConnectorContext(settings, "bench-amqp",  # type: ignore[attr-defined]
                                                                                   rt.db, rt.producer))
    t0 = time.perf_counter()
    await source.start(emit)
    while source.stats["acked"] + source.stats["rejected"] < n:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - t0
    hub_rate = source.stats["acked"] / seconds
    print(f"AMQP → Kafka (hub route): {source.stats['acked']} acked ({source.stats['rejected']} rejected) in "
          f"{seconds:.1f} s = {hub_rate:.0f} msg/s (prefetch {prefetch}, batch {source.batch_size}, "
          f"{source.batches} batches; each: MongoDB dedupe + Kafka acks=all before the ack)")
    await source.stop()
    await rt.stop()
    raw = await raw_baseline(url, settings.kafka_bootstrap, n, prefetch, source.batch_size)
    print(f"raw aio-pika → aiokafka acks=all → multiple ack: {raw:.0f} msg/s; hub / raw = {hub_rate / raw:.2f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the route's (prefetch/2)")
    args = parser.parse_args()
    os.environ["HUB_AMQP_PORT"] = str(free_port())
    os.environ["HUB_AMQP_ENABLED"] = "true"
    with private_infra():
        from connectors.amqp.settings import AmqpSettings

        asyncio.run(run(AmqpSettings().embedded_url, args.messages, args.prefetch, args.batch_size))


if __name__ == "__main__":
    main()
