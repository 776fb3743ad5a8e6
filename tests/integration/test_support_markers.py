"""``records_before_marker`` (tests/support.py) is how tests prove "nothing was produced" without
sleeping: it must see a record produced before it, on any partition, and nothing else."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from hub.kafka import ensure_topics
from hub.settings import Settings
from tests.support import read_topic, records_before_marker

pytestmark = pytest.mark.integration


async def test_records_before_marker_sees_what_was_produced_before_it_and_only_that(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}.markers"
    await ensure_topics(settings, [topic], partitions=4)
    assert await records_before_marker(settings, topic) == []  # its own markers are never returned
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for p in (0, 3):
            await producer.send_and_wait(topic, f"record-{p}".encode(), partition=p)
    finally:
        await producer.stop()
    assert sorted(r.value for r in await records_before_marker(settings, topic)) == [b"record-0", b"record-3"]
    # the markers (eight by now) stay out of what other tests read from the topic
    assert sorted(r.value for r in await read_topic(settings, topic, expect=2)) == [b"record-0", b"record-3"]
