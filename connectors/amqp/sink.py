"""AMQP 0-9-1 publisher: persistent messages, ``mandatory``, publisher confirms.

``ok`` only when the broker confirmed the message (it is on disk for durable queues); an
unroutable message (returned) or a nack is a permanent failure; a lost connection is retryable.

With the partner's crypto contract the declared request fields of the operation
(``payload.operation``, else the envelope's type) are encrypted in the body as published (paths
into that JSON body) and the wrapped key, IV and key id travel as message headers (``via: field``:
in the body). A publish has no answer, so nothing is decrypted here: a partner's replies arrive
through an AMQP source, whose ``inbound_fields`` are decrypted with the key each message carries.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError

from connectors.amqp.config import AmqpSinkConfig
from connectors.amqp.connection import connect
from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.registry import registry
from hub.envelope import Envelope
from hub.errors import ConfigError, ValidationFailed
from transforms.crypto import encrypt_request, keys_for


@registry.sink("amqp", AmqpSinkConfig, "AMQP 0-9-1 publish (RabbitMQ): persistent, mandatory, publisher confirms")
class AmqpSink:
    name: ClassVar[str] = "amqp"

    def __init__(self, config: AmqpSinkConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self.config.crypto is not None:  # the keys' checks take ~50 ms CPU: a thread, and fail at start
            await asyncio.to_thread(keys_for(self.config.crypto).warm)
        await self._ensure()

    async def _ensure(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                if self._conn is None:
                    self._conn = await connect(self.config.connection, f"hub:{self.ctx.route}:out")
                self._channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
                if self.config.declare_queue:
                    await self._channel.declare_queue(self.config.declare_queue, durable=True)
            return self._channel

    async def stop(self) -> None:
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), 3)
            except Exception:
                pass
        self._conn = self._channel = None

    def body(self, envelope: Envelope) -> bytes:
        if self.config.body == "envelope":
            return envelope.kafka_value()
        return json.dumps(envelope.payload, ensure_ascii=False).encode()

    def sealed(self, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
        """The body as published and the headers the crypto contract adds (none without one)."""
        crypto = self.config.crypto
        if crypto is None:
            return self.body(envelope), {}
        document = json.loads(self.body(envelope))
        operation = str(envelope.payload.get("operation") or envelope.type)
        document, headers, _session = encrypt_request(crypto, operation, document)
        return json.dumps(document, ensure_ascii=False).encode(), headers

    async def deliver(self, envelope: Envelope) -> Outcome:
        started = time.perf_counter()
        cfg = self.config

        def done(ok: bool, **kw: Any) -> Outcome:
            return Outcome(ok=ok, duration_ms=(time.perf_counter() - started) * 1000, **kw)

        fields = {"partner": cfg.partner, "scenario": envelope.scenario or "", "product": envelope.product or "",
                  "type": envelope.type}
        try:
            routing_key = cfg.routing_key.format_map(fields)
        except KeyError as exc:
            return done(False, status="invalid", error=f"routing_key needs {exc}")
        try:
            body, sealed = self.sealed(envelope)
        except (ConfigError, ValidationFailed) as exc:  # a bad contract or body: the same next time
            return done(False, status="rejected", error=f"cannot encrypt the message: {exc}")
        message = aio_pika.Message(
            body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.idempotency_key[:255], correlation_id=envelope.correlation_id,
            headers={**sealed, "hub-envelope-id": envelope.id, "traceparent": envelope.trace.traceparent},
        )
        try:
            channel = await self._ensure()
            exchange = channel.default_exchange if not cfg.exchange else await channel.get_exchange(cfg.exchange)
            await asyncio.wait_for(exchange.publish(message, routing_key=routing_key, mandatory=True), cfg.timeout_s)
        except (DeliveryError, PublishError) as exc:
            return done(False, status="unroutable", error=f"broker did not take the message: {exc}")
        except Exception as exc:
            self._channel = None
            return done(False, retryable=True, status="unavailable", error=f"AMQP publish failed: {exc!r}")
        return done(True, status="confirmed", response={"routing_key": routing_key})
