"""AMQP 0-9-1 queue consumer: messages → envelopes → Kafka → ack, a batch at a time.

Deliveries are taken in batches (``batch_size``, default half of ``prefetch`` so the next batch is
delivered while one is being written; ``batch_max_wait_s`` after its first message at most). A
batch's messages are emitted as one (``publish_many``): one claim insert and one record insert in
MongoDB and one pipelined Kafka write for the batch (``hub/intake.py`` ``emit_many``);
the batch is acked with *one* ``basic.ack(multiple=True)`` up to its last delivery tag, only after
every message of it is on Kafka and recorded. A crash before that ack loses nothing: the broker
redelivers the unacked messages and the intake answers those that got through as duplicates (one
envelope, one record); a duplicate inside one batch is coalesced by the intake (single flight).

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
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

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
T = TypeVar("T")


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
        self.batches = 0  # settled so far (the benchmark shows the average size)
        self.batch_size = config.batch_size or max(1, config.prefetch // 2)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] | None = None  # this channel's deliveries
        self._batcher: asyncio.Task[None] | None = None
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
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            self._inbox = inbox
            self._batcher = asyncio.get_running_loop().create_task(self._batches(inbox), name="amqp-batches")
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
        """Stop consuming, drop the batch in hand (unacked: the broker redelivers it once the channel
        is closed, and the intake answers what already reached Kafka as a duplicate), close."""
        self._inbox = None
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
            self._batcher = None
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
        """aio-pika's callback (a task per delivery): hand it to the batch loop of its channel."""
        inbox = self._inbox
        if inbox is None:
            await message.nack(requeue=True)
            return
        inbox.put_nowait(message)

    async def _batches(self, inbox: asyncio.Queue[AbstractIncomingMessage]) -> None:
        """One batch at a time, in delivery order: a batch's ``ack(multiple=True)`` then covers
        exactly its own deliveries (the next batch's have higher tags and are still being collected)."""
        while True:
            batch = await next_batch(inbox, self.batch_size, self.config.batch_max_wait_s)
            try:
                await self._handle_batch(batch)
            except Exception:  # never leave a batch unacked and the loop dead: give it back
                log.exception("route %s: batch of %d not settled; requeued", self.ctx.route, len(batch))
                for message in batch:
                    await _settle(message.nack(requeue=True), self.ctx.route)

    async def _handle_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        """Emit the batch as one (``publish_many``: one claim insert and one record insert in
        MongoDB, one pipelined Kafka write, acks=all) and ack only once every message of it is on
        Kafka and recorded. A crash before the ack loses nothing: the broker redelivers the unacked
        messages and the intake answers them as duplicates (one envelope, one record)."""
        emit = self._emit
        if emit is None:
            for message in batch:
                await message.nack(requeue=True)
            return
        outcomes: list[_Outcome | None] = [None] * len(batch)
        envelopes: dict[int, Envelope] = {}
        for i, message in enumerate(batch):
            checked = await self._envelope_or_outcome(message)
            if isinstance(checked, _Outcome):
                outcomes[i] = checked
            else:
                envelopes[i] = checked
        if envelopes:
            answers = await emit.publish_many(list(envelopes.values()))
            for i, answer in zip(envelopes, answers, strict=True):
                if isinstance(answer, BaseException):
                    outcomes[i] = self._outcome_of(answer)
        accepted = [m for m, o in zip(batch, outcomes, strict=True) if o is None]
        if len(accepted) == len(batch):  # the usual case: one frame acks the whole batch
            await _settle(batch[-1].ack(multiple=True), self.ctx.route)
        else:
            await self._settle_mixed(batch, outcomes)
        self.stats["acked"] += len(accepted)
        self.batches += 1
        if accepted:
            INTAKE_REQUESTS.labels(self.config.partner, "amqp", "accepted").inc(len(accepted))

    async def _envelope_or_outcome(self, message: AbstractIncomingMessage) -> Envelope | _Outcome:
        """The message's raw envelope, or what to do with a message that cannot be emitted."""
        size = len(message.body)
        if size > self.max_message_bytes:  # checked before anything parses it; it would be too large next time too
            return _Outcome("reject", f"too large: {size} bytes, over the limit of {self.max_message_bytes} "
                            "bytes (max_message_bytes)", "rejected_too_large")
        if self._limiter is not None:  # slower, never dropped: the rest waits in the queue (prefetch bounds us)
            await self._limiter.wait()
        try:
            return self.envelope(message)
        except Exception as exc:
            outcome = self._outcome_of(exc)
            assert outcome is not None
            return outcome

    def _outcome_of(self, exc: BaseException) -> _Outcome | None:
        """What to do with a message whose emit raised ``exc``: dead-letter what will never be
        accepted, requeue the rest (a retryable cause, or one we do not know)."""
        if isinstance(exc, (ValidationFailed, PermanentError)):
            detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in getattr(exc, "errors", [])[:5])
            return _Outcome("reject", f"{exc}" + (f" — {detail}" if detail else ""))
        if isinstance(exc, RetryableError):
            log.warning("route %s: %s; message requeued", self.ctx.route, exc)
            return _Outcome("requeue", str(exc))
        if not isinstance(exc, Exception):  # cancelled, interpreter exit: not a message's fault
            raise exc
        log.error("route %s: unexpected error; message requeued", self.ctx.route, exc_info=exc)
        return _Outcome("requeue", "unexpected error")

    async def _settle_mixed(self, batch: list[AbstractIncomingMessage], outcomes: list[_Outcome | None]) -> None:
        """A batch with rejects or retries: each message settled on its own (a multiple ack would
        also ack the ones still to be requeued). Accepted ones first, then dead letters, then —
        after one ``retry_delay_s`` pause for the whole batch — the requeues."""
        retry = []
        for message, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                await _settle(message.ack(), self.ctx.route)
        for message, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None and outcome.action == "reject":
                await self._dead_letter(message, outcome.reason, outcome=outcome.metric)
            elif outcome is not None:
                retry.append(message)
        if retry:
            self.stats["requeued"] += len(retry)
            await AMQP_REQUEUE.with_delay(self.config.retry_delay_s).pause(sleep=self.sleep)
            for message in retry:
                await _settle(message.nack(requeue=True), self.ctx.route)

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


@dataclass(frozen=True)
class _Outcome:
    """A message of a batch that is not accepted: ``reject`` (dead letter, never retried) or
    ``requeue`` (Kafka/MongoDB cannot take it now)."""

    action: Literal["reject", "requeue"]
    reason: str
    metric: str = "rejected_invalid"


async def next_batch(inbox: asyncio.Queue[T], size: int, max_wait_s: float) -> list[T]:
    """Up to ``size`` items: the first one waited for, the rest as they come until ``max_wait_s``
    after the first (0: only what is already there). Why wait at all: at a trickle each message
    would be its own MongoDB and Kafka round trip; a few ms buys a batch under load."""
    batch = [await inbox.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(batch) < size:
        if not inbox.empty():
            batch.append(inbox.get_nowait())
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(inbox.get(), remaining))
        except TimeoutError:
            break
    return batch


async def _settle(settling: Awaitable[None], route: str) -> None:
    """Ack/nack on a channel that may have closed meanwhile: the broker then redelivers the message
    itself (and the intake answers the redelivery as a duplicate), so a warning is all there is to do."""
    try:
        await settling
    except Exception as exc:
        log.warning("route %s: AMQP ack/nack not sent (%r); the broker redelivers", route, exc)


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
