"""Delivery agents: one per partner with ``outbound``, on ``{p}.out.{partner}``.

Each call envelope goes through the partner's sink wrapped in the standard delivery chain
(``connectors/delivery``, built from the partner's policy): the idempotency key is claimed in
``deliveries`` first (lease ``HUB_DELIVERY_LEASE_S``); already delivered? ⇒ the partner is not
called again and the recorded result is re-emitted; being delivered by another consumer? ⇒ wait
for its answer (a wait that runs out raises, so the pool runs the handler again: never acked
undecided).
Else per-attempt timeout, exponential backoff + jitter (tenacity), attempt limit, concurrency limit;
success ⇒ ``deliveries`` row, ``call.result`` ok on the orders topic; exhausted or permanent
failure ⇒ dead letter (the *original* envelope, the error, every attempt) via ``hub.deadletter``,
then a failed ``call.result`` so the order shows the failed call. Nothing is acknowledged on Kafka
before one of those two happened: no envelope is ever dropped. The same chain wraps a route's
sink (``routes/manager.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import faust
from pydantic import ValidationError

from app.runtime import Runtime
from connectors import delivery
from connectors.base import Sink
from connectors.context import ConnectorContext
from connectors.delivery import ChainSpec, MongoDeliveryLog, build_chain
from connectors.delivery.tracing import Traced
from connectors.registry import registry
from flows.runtime.calls import CallLog
from hub import topics, tracing
from hub.configfile import validation_problems
from hub.deadletter import Attempt, DeadLetters
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.metrics import ENVELOPES_IN
from hub.partners import Partner
from hub.records import parse_or_dead_letter
from hub.retry import RetryPolicy
from hub.services import ServiceKey
from hub.workpool import KeyedPool

log = logging.getLogger(__name__)
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


def build_sink(partner: Partner, context: ConnectorContext) -> Sink:
    """The partner's sink, its ``outbound.config`` validated by the sink's own model; built like
    every connector, ``factory(config, context)``, with the policy's timeout and concurrency."""
    assert partner.outbound is not None
    protocol = partner.outbound.protocol
    reg = registry.get("sink", protocol)
    try:
        raw = partner.outbound.config
        if partner.crypto is not None and "crypto" in reg.config.model_fields:  # the partner's crypto: block
            raw = {**raw, "crypto": partner.crypto}
        config = reg.config.model_validate(raw)
    except ValidationError as exc:  # what validation_problems reads (it would fail on anything else)
        path = context.settings.config_dir / "partners" / f"{partner.name}.yaml"
        problems = validation_problems(path, None, exc)
        raise ConfigError(f"partner {partner.name}: invalid outbound.config", problems) from exc
    p = partner.outbound.policy
    return registry.new_sink(protocol, config, replace(context, timeout_s=p.timeout_s, concurrency=p.concurrency))


class Deliverer:
    """One partner's delivery: its sink wrapped in the standard chain (``connectors/delivery``),
    plus what only the agent does — skip a call already being delivered, tell the order how it went
    (``call.result``)."""

    def __init__(self, runtime: Runtime, partner: Partner, sink: Sink) -> None:
        assert partner.outbound is not None
        self.runtime = runtime
        self.partner = partner.name
        self.policy: RetryPolicy = partner.outbound.policy
        self.sink = sink
        self.topic = topics.outbound(runtime.settings.topic_prefix, partner.name)
        self.orders_topic = topics.orders(runtime.settings.topic_prefix)
        self._inflight: set[str] = set()
        self._chain: Sink | None = None  # built on first use: the database is connected by then
        self._calls: CallLog | None = None

    @property
    def chain(self) -> Sink:
        if self._chain is None:
            rt = self.runtime
            assert rt.db is not None
            worker = rt.settings.worker_id
            self._chain = build_chain(Traced(self.sink, self.partner), ChainSpec(
                partner=self.partner, policy=self.policy, source_topic=self.topic,
                dead_letters=DeadLetters(rt.db, rt.producer), records=MongoDeliveryLog(rt.db),
                lease_s=rt.settings.delivery_lease_s,
                describe=lambda env: {"worker": worker, "stage": env.payload.get("stage"),
                                      "operation": env.payload.get("operation")}))
        return self._chain

    async def handle(self, env: Envelope, origin: dict[str, Any]) -> None:
        key = env.idempotency_key
        if key in self._inflight:  # the same call is being delivered right now (re-sent by recovery)
            return
        self._inflight.add(key)
        try:
            await self._deliver(env, origin)
        finally:
            self._inflight.discard(key)

    async def _deliver(self, env: Envelope, origin: dict[str, Any]) -> None:
        # the delivery's span: the attempts (connectors/delivery/tracing.py) and the call.result are its children
        with tracing.hop(env.trace, "hub.delivery", str(env.payload.get("operation") or env.type),
                         env.correlation_id) as span:
            await self._deliver_traced(env, origin, span)

    async def _deliver_traced(self, env: Envelope, origin: dict[str, Any], span: tracing.Hop) -> None:
        started = time.perf_counter()
        with delivery.origin(**origin):
            outcome = await self.chain.deliver(env)
        done = delivery.trail.recorded(outcome)
        if done is not None:  # delivered before: the partner is not called again, the result is re-emitted
            span.outcome = "delivered_before"
            await self._emit_result(env, ok=True, response=done.get("response"), attempts=[],
                                    duration_ms=done.get("duration_ms"), finished_at=done["delivered_at"],
                                    made_now=False)
            return
        if not outcome.ok:
            span.fail("dead_lettered")
        total_ms = round((time.perf_counter() - started) * 1000, 2)
        attempts = delivery.trail.attempts(outcome)
        now = datetime.now(UTC)
        if outcome.ok:
            await self._emit_result(env, ok=True, response=outcome.response, attempts=attempts,
                                    duration_ms=total_ms, finished_at=now)
            return
        await self._emit_result(env, ok=False, response=outcome.response, attempts=attempts, duration_ms=total_ms,
                                finished_at=now, error=outcome.error,
                                dead_letter_id=delivery.trail.dead_letter_id(outcome),
                                rejected=not outcome.retryable and outcome.response is not None)

    async def _emit_result(self, env: Envelope, *, ok: bool, response: Any, attempts: list[Attempt],
                           duration_ms: float | None, finished_at: datetime, error: str | None = None,
                           dead_letter_id: str | None = None, rejected: bool = False, made_now: bool = True) -> None:
        """Write the call's flat ``calls`` row (flows/runtime/calls.py) and tell the order how it went
        — except the "accepted" of a step answered by callback (``answer: callback``): the engine
        consumes it without a change, so it is not produced (3 of an internet-line order's ~18 Kafka
        records, each a consumed event and an order load). Both before the envelope is acked."""
        rnd = env.payload.get("round", 1)
        result = env.caused(
            type="call.result", source=self.partner, protocol=env.protocol,
            idempotency_key=f"result:{env.idempotency_key}:{rnd}:{'ok' if ok else 'failed'}",
            payload={"call_id": env.payload.get("call_id"), "round": rnd, "ok": ok,
                     "outcome": "ok" if ok else "dead_lettered", "error": error, "response": response,
                     "attempts": [a.model_dump(mode="json") for a in attempts], "duration_ms": duration_ms,
                     "dead_letter_id": dead_letter_id, "finished_at": finished_at.isoformat(),
                     "rejected": rejected,  # the partner answered "no" (not: it could not be reached)
                     "operation": env.payload.get("operation"), "partner": self.partner},
        )
        if self._calls is None:
            assert self.runtime.db is not None
            self._calls = CallLog(self.runtime.db)
        row = self._calls.record(env, result.payload, made_now=made_now)
        if ok and env.payload.get("answer") == "callback":
            await row
            return
        await asyncio.gather(row, self.runtime.producer.send(self.orders_topic, result))


DELIVERERS: ServiceKey[dict[str, Deliverer]] = ServiceKey("deliverers")


def register_agents(app: faust.App, runtime: Runtime) -> None:
    """One agent per partner that declares ``outbound``; a bad outbound config stops the worker here."""
    deliverers = runtime.put(DELIVERERS, {})
    for partner in sorted(runtime.partners.values(), key=lambda p: p.name):
        if partner.outbound is None:
            continue
        context = ConnectorContext(runtime.settings, f"deliver-{partner.name}", runtime.db, runtime.producer,
                                   runtime.connector_tables)
        deliverer = Deliverer(runtime, partner, build_sink(partner, context))
        deliverers[partner.name] = deliverer
        _agent(app, deliverer)

    async def close_sinks(sender: Any, **kwargs: Any) -> None:
        for d in deliverers.values():
            await d.sink.stop()

    app.on_before_shutdown.connect(close_sinks)  # type: ignore[arg-type]  # faust types signal receivers so that no async def matches


def _agent(app: faust.App, deliverer: Deliverer) -> None:
    topic = app.topic(deliverer.topic, **RAW)
    limit = max(64, deliverer.policy.concurrency * 4)  # envelopes in flight, including those backing off

    async def deliver(stream: faust.StreamT[Any]) -> None:
        pool = KeyedPool(limit, f"deliver-{deliverer.partner}")
        manual = cast("faust.Stream[Any]", stream).noack()  # StreamT (the protocol) does not declare noack
        async for event in manual.events():
            message = event.message
            ENVELOPES_IN.labels(deliverer.partner, message.topic).inc()
            origin = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
            env = await parse_or_dead_letter(message, deliverer.runtime.db, deliverer.runtime.producer,
                                             partner=deliverer.partner)
            if env is None:
                await manual.ack(event)
                continue
            await pool.submit(None, functools.partial(deliverer.handle, env, origin),
                              functools.partial(manual.ack, event))

    app.agent(topic, name=f"deliver-{deliverer.partner}")(deliver)
