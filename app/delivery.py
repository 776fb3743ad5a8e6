"""Delivery agents: one per partner with ``outbound``, on ``{p}.out.{partner}``.

For each call envelope: already delivered (``deliveries`` has the idempotency key)? ⇒ do not call
the partner again, re-emit the recorded result. Else call the partner's sink under the partner's
policy — per-attempt timeout, exponential backoff + jitter (tenacity), attempt limit, concurrency
limit — and record the outcome. Success ⇒ ``deliveries`` row, ``call.result`` ok on the orders
topic. Exhausted or permanent failure ⇒ dead letter (the *original* envelope, the error, every
attempt) via ``hub.deadletter``, then a failed ``call.result`` so the order shows the failed call.
Nothing is acknowledged on Kafka before one of those two happened: no envelope is ever dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import faust
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_exponential, wait_random

from app.runtime import Runtime
from connectors.base import Outcome, Sink
from connectors.context import ConnectorContext
from connectors.registry import registry
from flows.documents import DELIVERIES
from hub import topics
from hub.batching import BulkReader, BulkWriter
from hub.configfile import validation_problems
from hub.deadletter import Attempt, DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.metrics import DELIVERY_ATTEMPTS, DELIVERY_FAILURES, DELIVERY_LATENCY, ENVELOPES_IN
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
        config = reg.config.model_validate(partner.outbound.config)
    except Exception as exc:
        path = context.settings.config_dir / "partners" / f"{partner.name}.yaml"
        problems = validation_problems(path, None, exc)  # type: ignore[arg-type]
        raise ConfigError(f"partner {partner.name}: invalid outbound.config", problems) from exc
    p = partner.outbound.policy
    return registry.new_sink(protocol, config, replace(context, timeout_s=p.timeout_s, concurrency=p.concurrency))


class Deliverer:
    def __init__(self, runtime: Runtime, partner: Partner, sink: Sink) -> None:
        assert partner.outbound is not None
        self.runtime = runtime
        self.partner = partner.name
        self.policy: RetryPolicy = partner.outbound.policy
        self.sink = sink
        self.topic = topics.outbound(runtime.settings.topic_prefix, partner.name)
        self.orders_topic = topics.orders(runtime.settings.topic_prefix)
        self._sem = asyncio.Semaphore(self.policy.concurrency)
        self._inflight: set[str] = set()
        self._reader: BulkReader | None = None
        self._writer: BulkWriter | None = None

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
        assert self.runtime.db is not None
        if self._reader is None or self._writer is None:
            self._reader = BulkReader(self.runtime.db[DELIVERIES])
            self._writer = BulkWriter(self.runtime.db[DELIVERIES])
        done = await self._reader.get(env.idempotency_key)
        if done is not None:
            log.info("%s already delivered to %s; re-emitting the recorded result", env.idempotency_key, self.partner)
            await self._emit_result(env, ok=True, response=done.get("response"), attempts=[],
                                    duration_ms=done.get("duration_ms"), finished_at=done["delivered_at"])
            return
        attempts: list[Attempt] = []
        started = time.perf_counter()
        p = self.policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(p.max_attempts),
            wait=wait_exponential(multiplier=p.backoff_initial_s, exp_base=p.backoff_multiplier,
                                  max=p.backoff_max_s) + wait_random(0, p.jitter_s),
            retry=retry_if_result(lambda o: not o.ok and o.retryable),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        outcome: Outcome = await retrying(self._attempt, env, attempts)
        total_ms = round((time.perf_counter() - started) * 1000, 2)
        now = datetime.now(UTC)
        if outcome.ok:
            await self._writer.upsert(env.idempotency_key, {
                "order_id": env.correlation_id, "partner": self.partner,
                "operation": env.payload.get("operation"), "call_id": env.payload.get("call_id"),
                "envelope_id": env.id, "response": outcome.response, "duration_ms": total_ms,
                "attempts": len(attempts), "delivered_at": now,
            })
            await self._emit_result(env, ok=True, response=outcome.response, attempts=attempts,
                                    duration_ms=total_ms, finished_at=now)
            await self._resolve_earlier(env)
            return
        DELIVERY_FAILURES.labels(self.partner, env.payload.get("operation", "")).inc()
        letter = await DeadLetters(self.runtime.db, self.runtime.producer).publish(DeadLetter.for_envelope(
            self.topic, env, outcome.error or outcome.status, error_class="PartnerRejected" if not outcome.retryable
            else "RetriesExhausted", attempts=attempts, partner=self.partner,
            origin={**origin, "worker": self.runtime.settings.worker_id, "stage": env.payload.get("stage"),
                    "operation": env.payload.get("operation")}))
        await self._emit_result(env, ok=False, response=outcome.response, attempts=attempts, duration_ms=total_ms,
                                finished_at=now, error=outcome.error, dead_letter_id=letter.id)

    async def _resolve_earlier(self, env: Envelope) -> None:
        """This call is delivered now: its earlier dead letters (e.g. a gated report's failed round)
        need no operator any more. Housekeeping only: never fails the delivery."""
        assert self.runtime.db is not None
        try:
            await DeadLetters(self.runtime.db, self.runtime.producer).resolve(
                env.idempotency_key, who=f"system:delivery-{self.partner}",
                detail=f"delivered by envelope {env.id} (round {env.payload.get('round', 1)})")
        except Exception as exc:
            log.warning("dead letters of %s not resolved: %s", env.idempotency_key, exc)

    async def _attempt(self, env: Envelope, attempts: list[Attempt]) -> Outcome:
        at = datetime.now(UTC)
        async with self._sem:
            try:
                outcome = await asyncio.wait_for(self.sink.deliver(env), self.policy.timeout_s + 1)
            except TimeoutError:
                outcome = Outcome(ok=False, retryable=True, status="timeout",
                                  error=f"no answer within {self.policy.timeout_s}s")
            except Exception as exc:  # a sink bug must not lose the envelope: it is dead-lettered
                log.exception("sink %s raised", self.partner)
                outcome = Outcome(ok=False, retryable=False, status="error", error=f"{type(exc).__name__}: {exc}")
        attempts.append(Attempt(at=at, outcome=outcome.status or ("ok" if outcome.ok else "error"),
                                error=outcome.error, status=outcome.status, duration_ms=outcome.duration_ms))
        DELIVERY_ATTEMPTS.labels(self.partner, env.payload.get("operation", ""), outcome.status or "ok").inc()
        DELIVERY_LATENCY.labels(self.partner).observe(outcome.duration_ms / 1000)
        if not outcome.ok:
            log.info("%s %s attempt %d: %s", self.partner, env.payload.get("operation"), len(attempts), outcome.error)
        return outcome

    async def _emit_result(self, env: Envelope, *, ok: bool, response: Any, attempts: list[Attempt],
                           duration_ms: float | None, finished_at: datetime, error: str | None = None,
                           dead_letter_id: str | None = None) -> None:
        rnd = env.payload.get("round", 1)
        result = env.caused(
            type="call.result", source=self.partner, protocol=env.protocol,
            idempotency_key=f"result:{env.idempotency_key}:{rnd}:{'ok' if ok else 'failed'}",
            payload={"call_id": env.payload.get("call_id"), "round": rnd, "ok": ok,
                     "outcome": "ok" if ok else "dead_lettered", "error": error, "response": response,
                     "attempts": [a.model_dump(mode="json") for a in attempts], "duration_ms": duration_ms,
                     "dead_letter_id": dead_letter_id, "finished_at": finished_at.isoformat(),
                     "operation": env.payload.get("operation"), "partner": self.partner},
        )
        await self.runtime.producer.send(self.orders_topic, result)


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

    app.on_before_shutdown.connect(close_sinks)


def _agent(app: faust.App, deliverer: Deliverer) -> None:
    topic = app.topic(deliverer.topic, **RAW)
    limit = max(64, deliverer.policy.concurrency * 4)  # envelopes in flight, including those backing off

    async def deliver(stream: faust.StreamT) -> None:
        pool = KeyedPool(limit, f"deliver-{deliverer.partner}")
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            ENVELOPES_IN.labels(deliverer.partner, message.topic).inc()
            origin = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
            env = await parse_or_dead_letter(message, deliverer.runtime.db, deliverer.runtime.producer,
                                             partner=deliverer.partner)
            if env is None:
                await manual.ack(event)
                continue
            await pool.submit(None, lambda env=env, origin=origin: deliverer.handle(env, origin),
                              lambda event=event: manual.ack(event))

    app.agent(topic, name=f"deliver-{deliverer.partner}")(deliver)
