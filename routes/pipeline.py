"""What a route does with each envelope its source emits: transform → (validate) → target.

The source builds a *raw* envelope (payload = the partner's record as a dict, its own provisional
ids) and calls ``emit``; the route's :class:`RouteEmit` maps it, optionally validates it as a
canonical :class:`~hub.order.WorkOrder` (deriving the order id and idempotency key), and publishes
it to the target. ``emit`` returns only when the target has it (Kafka acks=all, or the sink said
ok), so the source's acknowledgement rule in ``connectors/base.py`` holds for every route.

Errors a source has to tell apart: :class:`~hub.errors.ValidationFailed` (this message will never
be accepted: SOAP Fault, ``failed/``, AMQP reject to the DLX) and
:class:`~hub.errors.RetryableError` (try again later: 503, leave the file, nack+requeue).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from connectors.base import Sink
from connectors.delivery import ChainSpec, MongoDeliveryLog, build_chain, innermost, trail
from hub import topics
from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import PermanentError, RetryableError, ValidationFailed
from hub.intake import Accepted, Intake
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
    ) -> None:
        self.route = route
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
        # a source that already built a canonical payload (e.g. a SOAP withdraw of a stored order)
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
        if self._intake is not None:  # refuse now what could only fail later (hub/intake.py, admission)
            self._intake.admit(out)
        return out

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
        assert self.topic is not None
        accepted = await self._intake.emit(self.topic, envelope)
        if not accepted.duplicate:
            ENVELOPES_OUT.labels(envelope.source, self.topic).inc()
        return accepted

    async def __call__(self, envelope: Envelope) -> Accepted:
        return await self.publish(self.prepare(envelope))

    async def publish_batch(self, envelopes: Iterable[Envelope]) -> int:
        """Publish already-prepared envelopes pipelined (one Kafka round trip for many).

        No per-envelope duplicate check: batch sources (files) dedupe the whole batch themselves
        (by checksum), and each envelope still carries its idempotency key for the consumers.
        Orders are journaled in bulk once on Kafka (``Intake.record_many``), so a broker that
        loses its topics before the engine consumed them loses none (``hub.intake.unconsumed``).
        """
        batch = list(envelopes)
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
    return build_chain(sink, ChainSpec(
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
