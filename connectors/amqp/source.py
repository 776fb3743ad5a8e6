"""AMQP 0-9-1 queue consumer: message → envelope → Kafka → ack.

* ok            → ``ack`` (only after ``emit`` returned: the envelope is on Kafka, acks=all)
* never valid   → copy to the queue's dead-letter exchange with ``x-hub-reject-reason`` (confirmed),
                  then ``ack``; plus an error envelope (dead letter in MongoDB / ``.dlq`` topic). So is a
                  body over ``max_message_bytes`` ("too large", its size and the limit) and one whose
                  encrypted fields do not decrypt (the partner's crypto contract; the field is named):
                  neither would ever succeed, so neither is requeued
* Kafka/Mongo down → ``nack(requeue=True)`` after ``retry_delay_s`` (``hub.retrying.AMQP_REQUEUE``): the broker keeps it

A ``rate_limit`` slows the consumer down instead of refusing: each message waits for the
partner's bucket (``hub.partner_auth.PartnerRateLimiter``, the REST and SOAP intake's) before it is
emitted; at most ``prefetch`` unacked messages are in the hub meanwhile, the rest waits in the
queue, so nothing is dropped or dead-lettered for being too fast.

The idempotency key is the AMQP ``message_id`` when the partner sets one (a redelivery after a
lost ack is then answered from the intake record), else the SHA-256 of the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any, ClassVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from connectors.amqp.config import AmqpSourceConfig
from connectors.amqp.connection import AmqpUnavailable, connect
from connectors.base import Emit
from connectors.context import ConnectorContext, cancel_task
from connectors.registry import registry
from connectors.supervision import Supervised
from hub import jsonlimits
from hub.envelope import Envelope
from hub.errors import PermanentError, RetryableError, ValidationFailed
from hub.metrics import INTAKE_REQUESTS
from hub.partner_auth import PartnerRateLimiter
from hub.retrying import AMQP_REQUEUE, Sleep
from transforms.crypto import decrypt_inbound, keys_for

log = logging.getLogger(__name__)


@registry.source("amqp", AmqpSourceConfig, "AMQP 0-9-1 queue consumer (RabbitMQ); ack after Kafka, DLX on reject")
class AmqpSource:
    name: ClassVar[str] = "amqp"

    def __init__(self, config: AmqpSourceConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._dlx_channel: AbstractChannel | None = None
        self._dlx: aio_pika.abc.AbstractExchange | None = None
        self._tag: str | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._emit: Emit | None = None
        self._task: Supervised | None = None
        self.stats = {"acked": 0, "rejected": 0, "requeued": 0}
        self.sleep: Sleep = asyncio.sleep  # the requeue wait (tests inject one that does not sleep)
        self.max_message_bytes = config.max_message_bytes or context.settings.intake_max_body_bytes
        self._limiter = PartnerRateLimiter(config.rate_limit) if config.rate_limit else None
        crypto = config.crypto
        # the carrier's header names: not copied onto the envelope (they mean nothing past the decryption)
        self._carrier = {n.lower() for n in (crypto.carry.key, crypto.carry.iv, crypto.carry.key_id) if n} \
            if crypto is not None and crypto.carry.via != "field" else set()

    async def start(self, emit: Emit) -> None:
        """Connect and consume now (a broker that is down fails the route's start, retried by the
        manager); then a supervised task watches the connection (``_run``)."""
        if self.config.crypto is not None:  # our private keys' checks take ~50 ms CPU: a thread; missing = not started
            await asyncio.to_thread(keys_for(self.config.crypto).warm)
        self._emit = emit
        await self._open()
        self._task = self.ctx.supervise("amqp-consumer", self._run)

    async def _run(self) -> None:
        """Supervised: (re)open when a previous run found the connection gone, then wait until it is
        closed for good — aio-pika's robust connection reconnects on its own; this catches the close
        it gives up on, so the route shows it and the consumer is built again with backoff."""
        if self._conn is None or self._conn.is_closed:
            await self._close()
            await self._open()
        assert self._conn is not None
        await self._conn.closed()
        await self._close()
        raise AmqpUnavailable("AMQP connection closed")

    async def _open(self) -> None:
        cfg = self.config
        self._conn = await connect(cfg.connection, f"hub:{self.ctx.route}")
        try:
            self._channel = await self._conn.channel()
            await self._channel.set_qos(prefetch_count=cfg.prefetch)
            self._dlx_channel = await self._conn.channel(publisher_confirms=True)
            if cfg.declare:
                self._dlx = await self._dlx_channel.declare_exchange(cfg.dlx, aio_pika.ExchangeType.FANOUT,
                                                                     durable=True)
                dlq = await self._dlx_channel.declare_queue(f"{cfg.queue}.dlq", durable=True)
                await dlq.bind(self._dlx)
                self._queue = await self._channel.declare_queue(
                    cfg.queue, durable=True, arguments={"x-dead-letter-exchange": cfg.dlx})
            else:
                self._dlx = await self._dlx_channel.get_exchange(cfg.dlx, ensure=False)
                self._queue = await self._channel.get_queue(cfg.queue, ensure=True)
            self._tag = await self._queue.consume(self._on_message)
        except Exception:
            await self._close()
            raise

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self._close()
        self._emit = None

    async def _close(self) -> None:
        if self._queue is not None and self._tag is not None:
            try:
                await asyncio.wait_for(self._queue.cancel(self._tag), 3)
            except Exception:
                pass
        if self._conn is not None:
            try:  # a robust connection to a broker that is down would keep reconnecting otherwise
                await asyncio.wait_for(self._conn.close(), 3)
            except Exception as exc:
                log.warning("route %s: AMQP connection not closed cleanly: %r", self.ctx.route, exc)
        self._conn = self._channel = self._queue = None
        self._tag = None

    def envelope(self, message: AbstractIncomingMessage) -> Envelope:
        return self.envelope_from(message.body, message.message_id, message.correlation_id, message.headers)

    def envelope_from(self, body: bytes, message_id: str | None = None, correlation_id: str | None = None,
                      amqp_headers: dict[str, Any] | None = None) -> Envelope:
        try:
            data = jsonlimits.loads(body.decode(self.config.encoding), self.ctx.settings.intake_max_depth)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationFailed(f"message body is not JSON in {self.config.encoding}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValidationFailed("message body must be a JSON object")
        carried = _text_headers(amqp_headers)
        if self.config.crypto is not None:  # the partner's encrypted fields, before its mapping and validation
            data, _session = decrypt_inbound(self.config.crypto, data, carried)
        ref = message_id or hashlib.sha256(body).hexdigest()
        headers = {k: v for k, v in carried.items() if k.lower() not in self._carrier}
        if message_id:
            headers["amqp-message-id"] = message_id
        return Envelope(
            type="record.received", source=self.config.partner, protocol="amqp",
            correlation_id=(correlation_id or f"amqp-{ref}")[:128],
            idempotency_key=f"amqp:{self.ctx.route}:{ref}"[:256], payload=data, headers=headers,
        )

    def sample(self, raw: bytes) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): the raw envelope this message body becomes."""
        return [self.envelope_from(raw, "sample")]

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        emit = self._emit
        if emit is None:
            await message.nack(requeue=True)
            return
        size = len(message.body)
        if size > self.max_message_bytes:  # checked before anything parses it; it would be too large next time too
            await self._dead_letter(message, f"too large: {size} bytes, over the limit of {self.max_message_bytes} "
                                    "bytes (max_message_bytes)", outcome="rejected_too_large")
            return
        if self._limiter is not None:  # slower, never dropped: the rest waits in the queue (prefetch bounds us)
            await self._limiter.wait()
        try:
            await emit(self.envelope(message))
        except (ValidationFailed, PermanentError) as exc:
            detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in getattr(exc, "errors", [])[:5])
            await self._dead_letter(message, f"{exc}" + (f" — {detail}" if detail else ""))
            return
        except RetryableError as exc:
            log.warning("route %s: %s; message requeued", self.ctx.route, exc)
            self.stats["requeued"] += 1
            await self._requeue(message)
            return
        except Exception:
            log.exception("route %s: unexpected error; message requeued", self.ctx.route)
            await self._requeue(message)
            return
        await message.ack()
        self.stats["acked"] += 1
        INTAKE_REQUESTS.labels(self.config.partner, "amqp", "accepted").inc()

    async def _requeue(self, message: AbstractIncomingMessage) -> None:
        """Kafka or MongoDB could not take it: wait (``AMQP_REQUEUE`` with the route's
        ``retry_delay_s``), then give it back to the broker, whose redelivery is the retry loop."""
        await AMQP_REQUEUE.with_delay(self.config.retry_delay_s).pause(sleep=self.sleep)
        await message.nack(requeue=True)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str,
                           outcome: str = "rejected_invalid") -> None:
        """Republish to the DLX with the reason (confirmed), then ack; if that fails, plain reject
        (the broker dead-letters it through the queue's ``x-dead-letter-exchange``)."""
        log.error("route %s: message %s rejected: %s", self.ctx.route, message.message_id or "-", reason)
        self.stats["rejected"] += 1
        INTAKE_REQUESTS.labels(self.config.partner, "amqp", outcome).inc()
        headers: dict[str, Any] = dict(message.headers or {})
        headers.update({"x-hub-reject-reason": reason[:1000], "x-hub-route": self.ctx.route,
                        "x-hub-original-queue": self.config.queue})
        try:
            assert self._dlx is not None
            await self._dlx.publish(aio_pika.Message(
                message.body, headers=headers, content_type=message.content_type,
                message_id=message.message_id, correlation_id=message.correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=self.config.queue)
            await message.ack()
        except Exception as exc:
            log.warning("route %s: DLX publish failed (%s); rejecting to the queue's DLX", self.ctx.route, exc)
            await message.reject(requeue=False)
        if self._emit is not None:
            try:
                await self._emit.reject(reason, protocol="amqp", ref=message.message_id or "",
                                        queue=self.config.queue, prefix=self.ctx.settings.topic_prefix)
            except Exception as exc:
                log.warning("route %s: error envelope not published: %s", self.ctx.route, exc)


def _text_headers(amqp_headers: dict[str, Any] | None) -> dict[str, str]:
    """The message's scalar headers as text. A client that sends a header as a byte array (AMQP
    field type ``x``: a Java ``byte[]``) hands us bytes: decoded as UTF-8, else left out."""
    out: dict[str, str] = {}
    for name, value in (amqp_headers or {}).items():
        if isinstance(value, bytes | bytearray):
            try:
                out[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
        elif isinstance(value, str | int | float):
            out[name] = str(value)
    return out
