"""Kafka client settings and helpers — the single place the tansu broker workarounds live.

Why the workarounds (see ../shared/INFRA.md, measured on the embedded tansu broker):

* tansu answers ListOffsets ("latest offset") wrongly when a record batch holds more than one
  record. Faust table recovery then silently loses counts, and anything reading end offsets is
  wrong. With ``kafka_exact_offsets`` (default on for the embedded broker) producers whose end
  offsets matter put **one record per batch** (faust ``producer_max_batch_size=1``, aiokafka
  ``max_batch_size=1``). Turn it off (``HUB_KAFKA_EXACT_OFFSETS=false``) on a real Kafka cluster.
* Faust's default session timeout makes a worker (re)start take 30–110 s against tansu; a 4 s
  session timeout with a 1 s heartbeat brings it to ~3.5 s with correct recovery.

Every write that answers a partner uses ``acks="all"``: the partner hears "accepted" only once
the envelope is durable on the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from hub.envelope import Envelope
from hub.errors import BrokerUnavailable
from hub.settings import Settings

log = logging.getLogger(__name__)


def producer_config(settings: Settings, *, exact_offsets: bool = False) -> dict[str, Any]:
    """aiokafka producer kwargs. ``exact_offsets``: this producer's end offsets are read later."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "linger_ms": 1,
        "client_id": f"{settings.worker_id}-producer",
    }
    if exact_offsets and settings.kafka_exact_offsets:
        cfg["max_batch_size"] = 1  # tansu ListOffsets bug: one record per batch
    return cfg


def faust_config(settings: Settings) -> dict[str, Any]:
    """faust.App settings for this broker (workarounds explained in the module docstring)."""
    cfg: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka_bootstrap.replace(',', ';kafka://')}",
        "broker_session_timeout": 4,
        "broker_heartbeat_interval": 1,
        "broker_request_timeout": max(settings.kafka_request_timeout_ms / 1000, 5),
        "producer_acks": -1,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": 1,
        "web_enabled": False,
        "datadir": str(settings.data_dir / "faust" / settings.worker_id),
        "consumer_auto_offset_reset": "earliest",
    }
    if settings.kafka_exact_offsets:
        cfg["producer_max_batch_size"] = 1  # tansu ListOffsets bug, see module docstring
    return cfg


FAUST_FETCH_MAX_WAIT_MS = 100


def shorten_faust_fetch_wait(max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS) -> None:
    """tansu answers a fetch only when ``fetch_max_wait_ms`` expires (it does not wake on new data),
    and faust hard-codes 1500 ms: measured ~750 ms per hop on average, ~10 s per internet-line order.
    Clamp the wait of faust's worker consumer (idempotent; affects only consumers faust creates)."""
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    if getattr(driver.aiokafka, "_hub_fetch_wait", None) is not None:
        return

    class _Consumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("fetch_max_wait_ms", 0) > max_wait_ms:
                kwargs["fetch_max_wait_ms"] = max_wait_ms
            super().__init__(*args, **kwargs)

    class _Shim:
        def __getattr__(self, name: str) -> Any:
            return _Consumer if name == "AIOKafkaConsumer" else getattr(aiokafka, name)

    shim = _Shim()
    shim._hub_fetch_wait = max_wait_ms  # type: ignore[attr-defined]
    driver.aiokafka = shim  # type: ignore[assignment]


async def ensure_topics(settings: Settings, names: Iterable[str], partitions: int | None = None) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=settings.kafka_request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions or settings.topic_partitions, replication_factor=1)
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", ", ".join(missing))
    finally:
        await admin.close()


class EnvelopeProducer:
    """Writes envelopes to Kafka with acks=all; failures become BrokerUnavailable.

    One producer per process; ``send`` returns only once the broker acknowledged the write, so the
    caller may then answer its partner (or ack its file / queue message).
    """

    def __init__(self, settings: Settings, *, exact_offsets: bool = False) -> None:
        self._settings = settings
        self._exact = exact_offsets
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(**producer_config(self._settings, exact_offsets=self._exact))
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise BrokerUnavailable(f"Kafka at {self._settings.kafka_bootstrap} unreachable: {exc}") from exc
            self._producer = producer

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when the broker answers a metadata request."""
        try:
            if self._producer is None:
                await asyncio.wait_for(self.start(), timeout)
            assert self._producer is not None
            return bool(await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout))
        except Exception:
            return False

    async def send(self, topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        await self.send_raw(
            topic, envelope.kafka_value(), key=envelope.kafka_key(), headers=envelope.kafka_headers(), timeout=timeout
        )

    async def send_many(self, topic: str, envelopes: list[Envelope], *, timeout: float | None = None) -> None:
        """Produce a batch pipelined (enqueue all, then await every ack): ~8x the rate of gathering
        ``send`` calls on the embedded broker. Returns once *all* are acknowledged (acks=all)."""
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        limit = timeout if timeout is not None else self._settings.kafka_request_timeout_ms / 1000 + 1
        try:
            futures = [
                await self._producer.send(topic, e.kafka_value(), key=e.kafka_key(), headers=e.kafka_headers())
                for e in envelopes
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=limit)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"Kafka did not acknowledge a batch to {topic}: {exc!r}") from exc

    async def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timeout: float | None = None,
    ) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        limit = timeout if timeout is not None else self._settings.kafka_request_timeout_ms / 1000 + 1
        try:
            fut = await asyncio.wait_for(
                self._producer.send(topic, value, key=key, headers=headers), timeout=limit
            )
            await asyncio.wait_for(fut, timeout=limit)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"Kafka did not acknowledge the write to {topic}: {exc!r}") from exc
