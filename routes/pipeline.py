"""What a route does with each envelope its source emits: transform → (validate) → target.

The source builds a *raw* envelope (payload = the partner's record as a dict, its own provisional
ids) and calls ``emit``; the route's :class:`RouteEmit` maps it, optionally validates it as a
canonical :class:`~hub.order.WorkOrder` (deriving the order id and idempotency key), and publishes
it to the target. A work order with scenario ``withdraw`` (撤单, whatever the protocol) is not an order:
it becomes the ``order.cancel`` of the partner's running order (hub/cancel.py), resolved here from
MongoDB right before publishing and put on ``{p}.orders`` — the one place every intake passes.
``emit`` returns only when the target has it (Kafka acks=all, or the sink said
ok), so the source's acknowledgement rule in ``connectors/base.py`` holds for every route.

Errors a source has to tell apart: :class:`~hub.errors.ValidationFailed` (this message will never
be accepted: SOAP Fault, ``failed/``, AMQP reject to the DLX) and
:class:`~hub.errors.RetryableError` (try again later: 503, leave the file, nack+requeue).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import ValidationError

from connectors.base import Sink
from connectors.delivery import ChainSpec, MongoDeliveryLog, build_chain, innermost, trail
from connectors.delivery.tracing import Traced
from hub import topics
from hub.cancel import CANCEL, WITHDRAW_OF, NoRunningOrder, resolve_withdraw, withdraw_request
from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import PermanentError, RetryableError, ValidationFailed
from hub.intake import Accepted, Intake, answered
from hub.kafka import EnvelopeProducer
from hub.metrics import ENVELOPES_OUT
from hub.order import WorkOrder, idempotency_key, order_id_for
from hub.services import Services
from transforms.mapping import apply_transform

if TYPE_CHECKING:
    from routes.models import RouteSpec


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(record)", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


class RouteEmit:
    """The ``emit`` handed to a route's source (callable), plus ``prepare``/``publish_batch`` for
    sources that validate a whole batch (a file) before publishing any of it."""

    def __init__(
        self,
        route: RouteSpec,
        *,
        prefix: str,
        intake: Intake | None,
        producer: EnvelopeProducer | None,
        dead_letters: DeadLetters | None = None,
        sink: Sink | None = None,
        db: AsyncIOMotorDatabase[Any] | None = None,
    ) -> None:
        self.route = route
        self._db = db  # withdraws: the running order is looked up in ``orders``
        self.orders_topic = topics.orders(prefix)
        self.partner: str = getattr(route.source, "partner", None) or route.name
        self.sink = sink
        self._intake = intake
        self._producer = producer
        self._dead = dead_letters
        target = route.target
        self.topic: str | None = None
        if sink is None:
            self.topic = target_topic(prefix, target.topic, target.partner or self.partner)

    # --- transform + validate ------------------------------------------------------------
    @property
    def can_reject(self) -> bool:
        """False when ``prepare`` cannot fail (no transform, no canonical model): batch sources then
        only need to check that the file parses before emitting."""
        route: Any = self.route
        return route.transform is not None or route.canonical != "none"

    def prepare(self, envelope: Envelope) -> Envelope:
        route: Any = self.route
        if envelope.type == CANCEL:  # built by the source (SOAP withdrawOrder): no mapping, no order model
            out = envelope.model_copy(update={"headers": {**envelope.headers, "hub-route": route.name}})
            if self._intake is not None:
                self._intake.admit(out)
            return out
        # a source that already built a canonical payload (e.g. REST intake, which validates itself)
        # marks it, so partner-code mapping is not applied twice
        canonical_in = envelope.headers.get("hub-canonical") == "true"
        payload = envelope.payload if canonical_in else apply_transform(envelope.payload, route.transform)
        fields: dict[str, Any] = {"payload": payload}
        if route.canonical == "work_order":
            try:
                order = WorkOrder.model_validate(payload)
            except ValidationError as exc:
                errors = _field_errors(exc)
                raise ValidationFailed(f"{len(errors)} invalid field(s) in the order", errors) from exc
            scen = order.scenario.value
            fields.update(
                type=route.envelope_type or "order.received",
                correlation_id=order_id_for(envelope.source, order.external_order_id, scen),
                idempotency_key=idempotency_key(envelope.source, order.external_order_id, scen),
                product=order.product,
                scenario=scen,
                payload=order.model_dump(mode="json", exclude_none=True),
            )
        elif route.envelope_type:
            fields["type"] = route.envelope_type
        headers = dict(envelope.headers)
        headers["hub-route"] = route.name
        fields["headers"] = headers
        out = envelope.model_copy(update=fields)
        if out.type == "order.received" and out.scenario == "withdraw":  # mapped here, or by the source (REST)
            out = self._withdraw(out)
        if self._intake is not None:  # refuse now what could only fail later (hub/intake.py, admission)
            self._intake.admit(out)
        return out

    @staticmethod
    def _withdraw(order: Envelope) -> Envelope:
        """撤单 as a work order (scenario code 10): the cancel of the running order it names, still to
        be resolved (``publish``) — not a new order, which no blueprint would run."""
        ext = order.payload.get("extensions") or {}
        reason = str(ext.get("withdraw_reason") or ext.get("reason") or "withdraw")
        return withdraw_request(source=order.source, protocol=order.protocol,
                                external_order_id=str(order.payload.get("external_order_id", "")), reason=reason,
                                by=order.source, headers=order.headers)

    # --- publish ---------------------------------------------------------------------------
    async def publish(self, envelope: Envelope) -> Accepted:
        if self.sink is not None:  # the route's sink in its delivery chain (route_sink_chain)
            outcome = await self.sink.deliver(envelope)
            if outcome.ok:
                return Accepted(envelope.correlation_id, envelope.id, duplicate=trail.recorded(outcome) is not None)
            if trail.dead_letter_id(outcome) is not None:  # kept, with every attempt: the source may acknowledge
                return Accepted(envelope.correlation_id, envelope.id)
            name = innermost(self.sink).name
            if outcome.retryable:
                raise RetryableError(f"sink {name}: {outcome.error or outcome.status}")
            raise PermanentError(f"sink {name}: {outcome.error or outcome.status}")
        if self._intake is None:
            raise RetryableError("runtime not started")
        topic = self.topic
        if envelope.type == CANCEL:  # an event of a running order: straight to {p}.orders
            if WITHDRAW_OF in envelope.headers:
                envelope = await resolve_withdraw(self._db, envelope)
            topic = self.orders_topic
        assert topic is not None
        accepted = await self._intake.emit(topic, envelope)
        if not accepted.duplicate:
            ENVELOPES_OUT.labels(envelope.source, topic).inc()
        return accepted

    async def __call__(self, envelope: Envelope) -> Accepted:
        return await self.publish(self.prepare(envelope))

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[Accepted | BaseException]:
        """``self(envelope)`` for each of a batch of raw envelopes (the AMQP source's), with one
        result per envelope in order: its Accepted, or what ``self(envelope)`` would have raised.
        Orders onto this route's topic go through ``Intake.emit_many`` (one claim insert, one
        pipelined produce, one record insert for the batch); withdraws and sink routes one by one."""
        results: list[Accepted | BaseException | None] = [None] * len(envelopes)
        batched: list[int] = []
        single: list[int] = []
        prepared: dict[int, Envelope] = {}
        for i, raw in enumerate(envelopes):
            try:
                prepared[i] = self.prepare(raw)
            except Exception as exc:  # the caller tells them apart, as for ``self(envelope)``
                results[i] = exc
                continue
            plain = self.sink is None and self._intake is not None and prepared[i].type != CANCEL
            (batched if plain else single).append(i)
        answers = await asyncio.gather(*(self.publish(prepared[i]) for i in single), return_exceptions=True)
        for i, one in zip(single, answers, strict=True):
            results[i] = one
        if batched:
            assert self._intake is not None and self.topic is not None
            many = await self._intake.emit_many(self.topic, [prepared[i] for i in batched])
            for i, one in zip(batched, many, strict=True):
                results[i] = one
                if isinstance(one, Accepted) and not one.duplicate:
                    ENVELOPES_OUT.labels(prepared[i].source, self.topic).inc()
        return answered(results)

    async def publish_batch(self, envelopes: Iterable[Envelope]) -> int:
        """Publish already-prepared envelopes pipelined (one Kafka round trip for many).

        No per-envelope duplicate check: batch sources (files) dedupe the whole batch themselves
        (by checksum), and each envelope still carries its idempotency key for the consumers.
        Orders are journaled in bulk once on Kafka (``Intake.record_many``), so a broker that
        loses its topics before the engine consumed them loses none (``hub.intake.unconsumed``).
        """
        batch = list(envelopes)
        cancels = [env for env in batch if env.type == CANCEL]
        if cancels and self.sink is None:  # withdraws in a file: each resolved and published on its own
            batch = [env for env in batch if env.type != CANCEL]
            for env in cancels:
                try:
                    await self.publish(env)
                except NoRunningOrder as exc:  # the rest of the file goes on; this record is kept as a letter
                    await self.reject(str(exc), env, protocol=env.protocol, ref=env.idempotency_key)
        if self.sink is not None or self._producer is None:
            for env in batch:
                await self.publish(env)
            return len(batch)
        assert self.topic is not None
        await self._producer.send_many(self.topic, batch)
        orders = [env for env in batch if env.type == "order.received"]
        if orders and self._intake is not None:
            await self._intake.record_many(self.topic, orders)
        for source in {env.source for env in batch}:
            ENVELOPES_OUT.labels(source, self.topic).inc(sum(1 for env in batch if env.source == source))
        return len(batch)

    async def reject(self, reason: str, envelope: Envelope | None = None, **origin: Any) -> None:
        """An error envelope (dead letter) for something the source could not accept."""
        if self._dead is None:
            return
        topic = self.topic or topics.inbound(origin.pop("prefix", "hub"), self.partner)
        if envelope is None:
            envelope = Envelope(type="intake.rejected", source=self.partner, protocol=str(origin.get("protocol",
                                "unknown")), correlation_id=f"reject-{self.route.name}",
                                idempotency_key=f"reject:{self.route.name}:{origin.get('ref', '')}")
        letter = DeadLetter.for_envelope(topic, envelope, reason, error_class="ValidationFailed",
                                         origin={"route": self.route.name, **origin})
        await self._dead.publish(letter)


async def route_sink_chain(route: Any, sink: Sink, services: Services) -> Sink:
    """A route's sink in the same delivery chain as a partner's (``connectors/delivery``): the
    route's ``target.policy`` (timeout, retries with backoff, concurrency), deliveries recorded per
    route (``route:<name>:<key>`` in ``deliveries``: a record read twice is delivered once), and a
    dead letter with every attempt when it gives up — which the source may then acknowledge.
    Without a database (dry runs) only the retries apply and a failure is raised to the source."""
    target = route.target
    partner = getattr(target.sink, "partner", None) or route.name  # a field of some sink models, not all
    db, worker = services.db, services.settings.worker_id
    source_topic = topics.route(services.settings.topic_prefix, route.name)
    if db is not None:
        await services.ensure_topic(topics.dead_letter(source_topic))
    # each attempt a span of the partner (connectors/delivery/tracing.py), as a partner's delivery's
    return build_chain(Traced(sink, partner), ChainSpec(
        partner=partner, policy=target.policy, source_topic=source_topic,
        dead_letters=DeadLetters(db, services.producer) if db is not None else None,
        records=MongoDeliveryLog(db) if db is not None else None,
        scope=f"route:{route.name}", record_fields={"route": route.name},
        describe=lambda env: {"route": route.name, "worker": worker, "connector": target.sink.connector}))


def target_topic(prefix: str, topic: str, partner: str) -> str:
    if topic == "inbound":
        return topics.inbound(prefix, partner)
    if topic == "outbound":
        return topics.outbound(prefix, partner)
    if topic == "orders":
        return topics.orders(prefix)
    return f"{prefix}.{topic}"
