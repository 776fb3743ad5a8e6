"""Replayed dead letters of a route's sink come back through the same sink chain.

A route whose target is a sink dead-letters what its partner would not take, under the source
topic ``{p}.route.{name}`` (``routes/pipeline.py`` :func:`route_sink_chain`). ``hub dlq replay``
re-produces such a letter to that topic, like any other; this consumer — one per running route
with a sink target, supervised like the route's source — hands each envelope to the route's
delivery chain again: same retries, the same per-route delivery record (a letter replayed twice
is delivered once), and a new dead letter if the partner still refuses it. Without it a replayed
route letter would land on a topic nothing reads.

The offset is committed only after the chain answered (delivered, or dead-lettered again), so a
worker stopped mid-way re-reads the record and the delivery record makes that harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer

from connectors.base import Sink
from hub import topics
from hub.errors import RetryableError
from hub.kafka import client_options
from hub.records import parse_or_dead_letter
from hub.services import Services

log = logging.getLogger(__name__)


class RouteReplays:
    """Consumes ``{p}.route.{name}`` and delivers each envelope through ``chain``."""

    def __init__(self, route_name: str, chain: Sink, services: Services) -> None:
        self.route = route_name
        self.chain = chain
        self.services = services
        self.topic = topics.route(services.settings.topic_prefix, route_name)
        self.delivered = 0

    async def run(self) -> None:
        """One consumer session (the supervisor restarts it with backoff when it dies)."""
        s = self.services.settings
        await self.services.ensure_topic(self.topic)
        consumer = AIOKafkaConsumer(
            self.topic, **client_options(s), group_id=f"{self.topic}.replays",
            enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=s.kafka_request_timeout_ms,
            session_timeout_ms=6000, heartbeat_interval_ms=1000)
        try:
            await consumer.start()
        except Exception as exc:
            await consumer.stop()
            raise RetryableError(f"Kafka unreachable for {self.topic}: {exc}") from exc
        try:
            async for record in consumer:
                await self._one(record)
                await consumer.commit()
        finally:
            await consumer.stop()

    async def _one(self, record: Any) -> None:
        env = await parse_or_dead_letter(record, self.services.db, self.services.producer,
                                         agent=f"route-replays-{self.route}")
        if env is None:
            return
        outcome = await self.chain.deliver(env)
        self.delivered += 1
        log.info("route %s: replayed %s → %s", self.route, env.idempotency_key,
                 "delivered" if outcome.ok else f"not delivered ({outcome.error})")
