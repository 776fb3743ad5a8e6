"""External Kafka producer: one envelope → one record on a partner topic, acks=all."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.kafka.config import KafkaSinkConfig
from connectors.registry import registry
from hub.envelope import Envelope


@registry.sink("kafka", KafkaSinkConfig, "Produce to a Kafka topic (a partner's cluster), acks=all")
class KafkaSink:
    name: ClassVar[str] = "kafka"

    def __init__(self, config: KafkaSinkConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        pass  # connects on the first delivery, so a partner cluster being down never blocks the hub

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(acks="all", linger_ms=1,
                                            **self.config.connection.client_kwargs(self.ctx.settings))
                try:
                    await producer.start()
                except Exception:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def deliver(self, envelope: Envelope) -> Outcome:
        started = time.perf_counter()

        def done(ok: bool, **kw: Any) -> Outcome:
            return Outcome(ok=ok, duration_ms=(time.perf_counter() - started) * 1000, **kw)

        value = (envelope.kafka_value() if self.config.body == "envelope"
                 else json.dumps(envelope.payload, ensure_ascii=False).encode())
        try:
            producer = await self._ensure()
            meta = await asyncio.wait_for(producer.send_and_wait(
                self.config.topic, value, key=envelope.kafka_key(), headers=envelope.kafka_headers()),
                self.config.timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            return done(False, retryable=True, status="unavailable", error=f"Kafka produce failed: {exc!r}")
        return done(True, status="acked", response={"partition": meta.partition, "offset": meta.offset})
