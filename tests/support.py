"""Helpers shared by integration tests: read what actually landed on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from hub.envelope import Envelope
from hub.kafka import client_options, ensure_topics
from hub.settings import Settings

MARKER_HEADER = "hub-test-marker"


async def read_topic(settings: Settings, topic: str, *, expect: int | None = None, wait: float = 5.0
                     ) -> list[ConsumerRecord]:
    """Every record on ``topic`` from the beginning; stops at ``expect`` records or after ``wait``
    seconds (when ``expect`` is None, reads until ``wait`` seconds pass with nothing new). The
    markers of :func:`records_before_marker` are left out."""
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings), auto_offset_reset="earliest", group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                records.extend(m for m in msgs if not _is_marker(m))
            if expect is not None and len(records) >= expect:
                # one more short poll so a duplicate would be seen too
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(m for m in msgs if not _is_marker(m))
                break
    finally:
        await consumer.stop()
    return records


def _is_marker(record: ConsumerRecord) -> bool:
    return any(key == MARKER_HEADER for key, _ in record.headers)


async def records_before_marker(settings: Settings, topic: str, *, timeout: float = 20.0) -> list[ConsumerRecord]:
    """Every record already on ``topic``, proved without sleeping: one marker record is produced to
    each partition (acks=all), and the topic is read from the beginning until every marker is back.
    A partition is read in order, so whatever was produced before this call has been seen by then;
    ``== []`` is a deterministic "nothing was produced" (waiting a second and seeing nothing is not:
    a slow producer passes it). Markers carry the ``hub-test-marker`` header and are left out."""
    await ensure_topics(settings, [topic])
    token = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        await asyncio.gather(*(producer.send_and_wait(topic, b"marker", partition=p, headers=[(MARKER_HEADER, token)])
                               for p in partitions))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **client_options(settings), auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    before: list[ConsumerRecord] = []
    waiting = set(partitions)
    try:
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=300)).items():
                for m in msgs:
                    if (MARKER_HEADER, token) in list(m.headers):
                        waiting.discard(tp.partition)
                    elif tp.partition in waiting and not _is_marker(m):
                        before.append(m)
    finally:
        await consumer.stop()
    assert not waiting, f"markers not read back from {topic} partitions {sorted(waiting)} within {timeout}s"
    return before


def envelopes(records: list[ConsumerRecord]) -> list[Envelope]:
    return [Envelope.from_kafka(r.value, list(r.headers)) for r in records]


async def topic_envelopes(settings: Settings, topic: str, *, expect: int | None = None, wait: float = 5.0
                          ) -> list[Envelope]:
    """:func:`read_topic` decoded into envelopes in a thread. Why: decoding 3,010 envelopes on the
    test's event loop took 107 ms of CPU and failed a CI run on the loop check (test_sftp_uploads)."""
    return await asyncio.to_thread(envelopes, await read_topic(settings, topic, expect=expect, wait=wait))


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
