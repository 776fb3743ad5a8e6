"""Helpers shared by integration tests: read what actually landed on the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from hub.envelope import Envelope
from hub.settings import Settings


async def read_topic(settings: Settings, topic: str, *, expect: int | None = None, wait: float = 5.0
                     ) -> list[ConsumerRecord]:
    """Every record on ``topic`` from the beginning; stops at ``expect`` records or after ``wait``
    seconds (when ``expect`` is None, reads until ``wait`` seconds pass with nothing new)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                records.extend(msgs)
            if expect is not None and len(records) >= expect:
                # one more short poll so a duplicate would be seen too
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(msgs)
                break
    finally:
        await consumer.stop()
    return records


def envelopes(records: list[ConsumerRecord]) -> list[Envelope]:
    return [Envelope.from_kafka(r.value, list(r.headers)) for r in records]


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
