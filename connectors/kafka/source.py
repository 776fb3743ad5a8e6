"""External Kafka consumer: a partner's topic → envelopes on the hub's Kafka → commit.

Offsets are committed per batch only once every record of it was emitted (or dead-lettered when
it can never be accepted). Hub Kafka/MongoDB down ⇒ seek back to the first unfinished record and
try again after ``retry_delay_s``: nothing is committed that is not on the hub's topic.
The idempotency key is the record's coordinates (``topic:partition:offset``), stable across replays.
The consumer loop is supervised (``connectors/supervision.py``): an error it cannot retry in place
(a failed commit, a dead-letter write that raised, a bug) stops the consumer, and the restarted loop
joins the group again from the committed offsets — so nothing uncommitted is lost, and the route
shows ``restarting`` / ``failed`` meanwhile instead of "running".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from connectors.base import Emit
from connectors.context import ConnectorContext, cancel_task
from connectors.kafka.config import KafkaSourceConfig
from connectors.registry import registry
from connectors.supervision import Supervised
from hub import jsonlimits
from hub.envelope import Envelope
from hub.errors import PermanentError, RetryableError, ValidationFailed

log = logging.getLogger(__name__)


@registry.source("kafka", KafkaSourceConfig, "Kafka topic consumer (a partner's cluster, or a hub topic)")
class KafkaSource:
    name: ClassVar[str] = "kafka"

    def __init__(self, config: KafkaSourceConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self._consumer: AIOKafkaConsumer | None = None
        self._task: Supervised | None = None
        self._emit: Emit | None = None
        self.stats = {"emitted": 0, "rejected": 0, "retries": 0}

    async def start(self, emit: Emit) -> None:
        """Connect now (an unreachable cluster fails the route's start, retried by the manager),
        then consume in a supervised task."""
        self._emit = emit
        self._consumer = await self._connect()
        self._task = self.ctx.supervise("kafka-source", self._run)

    async def _connect(self) -> AIOKafkaConsumer:
        cfg = self.config
        consumer = AIOKafkaConsumer(
            cfg.topic, group_id=cfg.group_id or f"hub-{self.ctx.route}", enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset, session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms, **cfg.connection.client_kwargs(self.ctx.settings),
        )
        try:
            await consumer.start()
        except Exception as exc:
            await consumer.stop()
            raise RetryableError(f"Kafka {cfg.connection.bootstrap_servers or 'hub'} unreachable: {exc}") from exc
        return consumer

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        self._emit = None

    def envelope(self, rec: ConsumerRecord) -> Envelope:
        cfg = self.config
        if cfg.body == "envelope":
            env = Envelope.from_kafka(rec.value, list(rec.headers or []))
            return env
        try:
            data = jsonlimits.loads(rec.value or b"", self.ctx.settings.intake_max_depth)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationFailed(f"record is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValidationFailed("record must be a JSON object")
        ref = f"{rec.topic}:{rec.partition}:{rec.offset}"
        key = rec.key.decode(errors="replace") if rec.key else None
        return Envelope(type="record.received", source=cfg.partner, protocol="kafka",
                        correlation_id=(key or f"kafka-{ref}")[:128], idempotency_key=f"kafka:{self.ctx.route}:{ref}",
                        payload=data, headers={"kafka-topic": rec.topic, "kafka-offset": str(rec.offset)})

    def sample(self, raw: bytes) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): the raw envelope this record value becomes —
        ``envelope``, the function the consumer loop runs, on a record at offset 0 without a key."""
        return [self.envelope(ConsumerRecord(self.config.topic, 0, 0, 0, 0, None, raw, None, len(raw), len(raw), []))]

    async def _handle(self, rec: ConsumerRecord) -> None:
        assert self._emit is not None
        try:
            await self._emit(self.envelope(rec))
            self.stats["emitted"] += 1
        except (ValidationFailed, PermanentError) as exc:
            self.stats["rejected"] += 1
            log.error("route %s: record %s:%s:%s rejected: %s", self.ctx.route, rec.topic, rec.partition,
                      rec.offset, exc)
            await self._emit.reject(str(exc), protocol="kafka", ref=f"{rec.topic}:{rec.partition}:{rec.offset}",
                                    prefix=self.ctx.settings.topic_prefix)

    async def _run(self) -> None:
        """The supervised loop: (re)connect if a previous run died, then consume until cancelled."""
        if self._consumer is None:
            self._consumer = await self._connect()
        consumer = self._consumer
        try:
            await self._consume(consumer)
        except Exception:
            # died: drop this consumer, the restarted run joins again from the committed offsets
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches: dict[TopicPartition, list[Any]] = await consumer.getmany(
                timeout_ms=1000, max_records=self.config.max_records)
            commit: dict[TopicPartition, int] = {}
            failed = False
            for tp, records in batches.items():
                for rec in records:
                    try:
                        await self._handle(rec)
                    except RetryableError as exc:
                        log.warning("route %s: %s; retrying from offset %s", self.ctx.route, exc, rec.offset)
                        self.stats["retries"] += 1
                        consumer.seek(tp, rec.offset)
                        failed = True
                        break
                    commit[tp] = rec.offset + 1
            if commit:
                await consumer.commit(commit)
            if failed:
                await asyncio.sleep(self.config.retry_delay_s)
