"""The flow-engine agent on ``{p}.orders`` and the recovery timer.

Per event: load the order document (cache + MongoDB), apply the event (``flows.engine``), save with
an optimistic ``version`` check (conflict ⇒ reload, re-apply), upsert the touched calls into
``calls``, *then* send the outbox. A crash between save and send is repaired by the recovery
timer, which re-sends every unsettled call recorded in open orders (delivery dedupes on the
idempotency key), so neither a worker restart nor a wiped broker loses pending work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
from tenacity import RetryCallState, retry_if_exception_type

from flows.blueprint import BLUEPRINTS, Blueprints, load_blueprints
from flows.engine import Engine, Step
from flows.runtime.agents import build_runner, register_sweeps
from flows.settings import FlowSettings
from flows.store import OrderStore
from hub import topics
from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.intake import iter_unconsumed
from hub.kafka import FaustWipeGuard
from hub.metrics import ENVELOPES_IN, STAGE_TRANSITIONS
from hub.records import parse_or_dead_letter
from hub.retrying import ENGINE_EVENT, OUTBOX_SEND, VERSION_CONFLICT, Sleep
from hub.services import ServiceKey, Services
from hub.workpool import KeyedPool

log = logging.getLogger(__name__)
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


class VersionConflict(RetryableError):
    """Another writer saved the order first: reload it and apply the event again."""


class OutboxNotAcknowledged(RetryableError):
    """The broker did not acknowledge some outbound envelopes of a saved step."""


class EngineRunner:
    """Glue between the engine (pure), MongoDB (OrderStore) and Kafka (runtime.producer)."""

    def __init__(self, runtime: Services, engine: Engine, fs: FlowSettings) -> None:
        self.runtime = runtime
        self.engine = engine
        self.fs = fs
        self.orders_topic = topics.orders(runtime.settings.topic_prefix)
        self._store: OrderStore | None = None
        self._recovered_once = False
        self._generation = 0  # runtime.broker.generation at the last complete full scan
        self._failures = 0
        self._next_try = 0.0
        self._outage = False  # the broker was unusable since the last full scan
        self._ticked: dict[str, float] = {}
        self._started_at = datetime.now(UTC)  # orders touched before this process started need a full resend
        self.sleep: Sleep = asyncio.sleep  # the retry policies' wait (tests inject one that does not sleep)

    @property
    def store(self) -> OrderStore:
        if self._store is None:
            assert self.runtime.db is not None, "runtime not started"
            self._store = OrderStore(self.runtime.db)
        return self._store

    async def handle(self, env: Envelope) -> None:
        """Apply one event; retry on MongoDB/Kafka trouble (``ENGINE_EVENT``), dead-letter if it never works."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("order event %s for %s: %s; retry %d", env.type, env.correlation_id, exc, state.attempt_number)
            self.store.forget(env.correlation_id)  # the next attempt reads the stored document again

        try:
            async for attempt in ENGINE_EVENT.retrying(retry_if_exception_type(Exception), sleep=self.sleep,
                                                       before_sleep=before_sleep):
                with attempt:
                    await self._handle_once(env)
        except Exception as exc:
            log.exception("order event %s (%s) for %s failed; dead-lettering", env.id, env.type, env.correlation_id)
            assert self.runtime.db is not None
            await DeadLetters(self.runtime.db, self.runtime.producer).publish(
                DeadLetter.for_envelope(self.orders_topic, env, exc, partner="hub", origin={"agent": "flow-engine"}))

    async def _handle_once(self, env: Envelope) -> None:
        try:
            async for attempt in VERSION_CONFLICT.retrying(retry_if_exception_type(VersionConflict), sleep=self.sleep):
                with attempt:
                    applied = await self._apply(env)
        except VersionConflict as exc:
            raise RuntimeError(f"order {env.correlation_id}: version conflict persisted") from exc
        if applied is None:
            return
        doc, step = applied
        product = doc.get("product") or env.product or ""  # follow-up events (call results…) carry no product
        for stage, outcome in step.transitions:
            STAGE_TRANSITIONS.labels(product, stage, outcome).inc()
        await self.store.upsert_calls(list(step.dirty_calls.values()))
        if step.outbox:
            await self._send(step)

    async def _apply(self, env: Envelope) -> tuple[dict[str, Any], Step] | None:
        """One optimistic try: load, apply, save with the version check. None when there is nothing
        to store; :class:`VersionConflict` when another writer saved the order first."""
        store = self.store
        doc = await store.load(env.correlation_id)
        if doc is None:
            if env.type != "order.received":
                log.warning("%s for unknown order %s ignored", env.type, env.correlation_id)
                return None
            doc, step = self.engine.new_order(env)
            if not await store.create(doc):
                raise VersionConflict(f"order {env.correlation_id} was created meanwhile")
            return doc, step
        working = _copy(doc)
        version = working.get("version", 0)
        step = self.engine.apply(working, env)
        if not step.changed:
            if step.note:
                log.debug("order %s: %s ignored: %s", env.correlation_id, env.type, step.note)
            return None
        if not await store.save(working, version):
            raise VersionConflict(f"order {env.correlation_id}: version {version} was overwritten")
        return doc, step

    async def _send(self, step: Step) -> None:
        """The document is saved: the outbox must now reach Kafka. Retried here (``OUTBOX_SEND``;
        re-applying the event would be a no-op); if Kafka stays down, the recovery timer re-sends
        the unsettled calls."""

        async def send_unacknowledged() -> None:
            results = await asyncio.gather(*(self.runtime.producer.send(t, e) for t, e in step.outbox),
                                           return_exceptions=True)
            step.outbox = [(t, e) for (t, e), r in zip(step.outbox, results, strict=True) if isinstance(r, Exception)]
            if step.outbox:
                raise OutboxNotAcknowledged(f"{len(step.outbox)} outbound envelope(s) not acknowledged")

        def before_sleep(state: RetryCallState) -> None:
            log.warning("%d outbound envelope(s) not acknowledged (attempt %d); retrying", len(step.outbox),
                        state.attempt_number)

        try:
            async for attempt in OUTBOX_SEND.retrying(retry_if_exception_type(OutboxNotAcknowledged), sleep=self.sleep,
                                                      before_sleep=before_sleep):
                with attempt:
                    await send_unacknowledged()
        except OutboxNotAcknowledged:
            log.error("giving up sending %d envelope(s) now; the recovery timer re-sends them", len(step.outbox))

    async def recover(self) -> None:
        """The recovery timer's tick. Never raises: an exception here would crash the Faust app
        (a broker restart used to: ``BrokerUnavailable`` from the tick stopped the worker), so a
        failed tick is logged and the next one tries again, backing off while the broker is down."""
        broker = self.runtime.broker
        if not broker.up:
            self._outage = True  # whatever failed meanwhile is re-sent by a full scan once it is back
            return
        if self._outage:
            self._next_try = 0.0  # the broker is back: no backoff left over from the outage
        if time.monotonic() < self._next_try:
            return
        try:
            await self._recover()
        except Exception as exc:
            self._failures += 1
            wait = min(self.fs.recovery_interval_s * 2 ** min(self._failures, 6), 30.0)
            self._next_try = time.monotonic() + wait
            log.warning("recovery tick failed (%s: %s); next try in %.1fs", type(exc).__name__, exc, wait)
        else:
            self._failures = 0
            self._next_try = 0.0

    async def _recover(self) -> None:
        """Tick every open order that is due. A *full* scan (every open order re-sends its unsettled
        calls, journaled events and never-seen accepted orders come back) runs on this process's
        first tick, after the broker lost its topics (``runtime.broker.generation`` changed: tansu
        restarted) and after any outage (sends that failed meanwhile)."""
        if self.runtime.db is None:
            return
        generation = self.runtime.broker.generation
        wiped = self._recovered_once and generation != self._generation
        first = not self._recovered_once or wiped or self._outage
        if wiped:
            log.warning("broker lost its topics (generation %d → %d): re-sending all pending work from MongoDB",
                        self._generation, generation)
        elif self._outage and self._recovered_once:
            log.warning("broker back after an outage: re-sending all pending work from MongoDB")
        # the very first scan leaves alone what this process touched itself (it is in flight); after
        # an outage or a wipe nothing in flight can be trusted to arrive
        untouched = not self._recovered_once and not self._outage and not wiped
        before = self._started_at if untouched else datetime.now(UTC)
        due = await self.store.due(None if first else datetime.now(UTC), limit=0 if first else 2000,
                                   before=before if first else None)
        now = time.monotonic()
        self._ticked = {k: v for k, v in self._ticked.items() if now - v < 5 * self.fs.recovery_interval_s}
        ticks = []
        for order_id in due:
            if not first and order_id in self._ticked:
                continue
            self._ticked[order_id] = now
            ticks.append(Envelope(type="order.tick", source="hub", protocol="internal", correlation_id=order_id,
                                  idempotency_key=f"tick:{order_id}:{now}", payload={"resend_all": first}))
        for i in range(0, len(ticks), 200):
            await self._send_all(ticks[i:i + 200])
        sent = len(ticks)
        if first:  # accepted orders that only lived on the broker (wiped before the engine saw them)
            lost = 0  # streamed in chunks: after a big file there can be a great many (hub/intake.py)
            async for found in iter_unconsumed(self.runtime.db, within=timedelta(hours=self.fs.intake_recovery_hours)):
                for i in range(0, len(found), 200):  # straight to the order topic (what the intake router would do)
                    await self._send_all([env for _topic, env in found[i:i + 200]])
                lost += len(found)
            if lost:
                log.warning("recovery: re-sent %d accepted order(s) the engine had not seen", lost)
        if first and due:  # events that only lived on the broker (callbacks, submissions) come back too
            for i in range(0, len(due), 500):
                events = [Envelope.model_validate(raw) for raw in await self.store.journaled(due[i:i + 500])]
                await self._send_all(events)
        # only now is this scan done: a tick that failed half-way is repeated in full
        self._recovered_once = True
        self._generation = generation
        self._outage = False
        if sent:
            log.info("recovery: ticked %d open order(s)%s", sent, " (re-sending unsettled calls)" if first else "")

    async def _send_all(self, envelopes: list[Envelope]) -> None:
        results = await asyncio.gather(*(self.runtime.producer.send(self.orders_topic, e) for e in envelopes),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    """Deep enough copy: the engine mutates stages/calls/data; a failed save must not leak into the cache."""
    out = dict(doc)
    out["stages"] = [dict(s) for s in doc.get("stages", [])]
    out["calls"] = [dict(c) for c in doc.get("calls", [])]
    out["data"] = dict(doc.get("data", {}))
    return out


def build_engine(runtime: Services, fs: FlowSettings | None = None) -> tuple[Engine, Blueprints]:
    fs = fs or FlowSettings()
    s = runtime.settings
    blueprints = load_blueprints(s.config_dir, runtime.partners)
    base = fs.callback_base_url or f"http://{s.http_host}:{s.http_port}"
    return Engine(blueprints, runtime.partners, s.topic_prefix, fs, base), blueprints


FLOW_RUNNER: ServiceKey[EngineRunner] = ServiceKey("flow_runner")


def register_agents(app: faust.App, runtime: Services) -> None:
    """Plugin hook: the engine agent and the recovery timer. A bad blueprint raises here, so the
    worker never starts with it."""
    fs = FlowSettings()
    engine, blueprints = build_engine(runtime, fs)
    runtime.put(BLUEPRINTS, blueprints)
    runner = EngineRunner(runtime, engine, fs)
    runtime.put(FLOW_RUNNER, runner)
    s = runtime.settings
    v2 = build_runner(runtime, fs, fs.callback_base_url or f"http://{s.http_host}:{s.http_port}")
    register_sweeps(app, v2)

    async def dispatch(env: Envelope) -> None:
        """v2 orders to the v2 runner (flows/runtime), the rest to v1 while both exist."""
        if env.type == "order.received":
            await (v2.handle(env) if v2.runs(env) else runner.handle(env))
            return
        doc = await v2.store.load(env.correlation_id)
        await (v2.handle(env) if doc is not None and doc.get("engine") == 2 else runner.handle(env))
    # faust's leader-election topic (one partition): a wiped broker gets it back with ours (hub/kafka.py);
    # faust's consumer (every agent's) must start the re-created topics at offset 0 (FaustWipeGuard)
    runtime.extra_topics[f"{app.conf.id}-__assignor-__leader"] = 1
    FaustWipeGuard(app).attach(runtime.broker)
    orders_topic = app.topic(topics.orders(runtime.settings.topic_prefix), **RAW)

    @app.agent(orders_topic, name="flow-engine")
    async def flow_engine(stream: faust.StreamT[Any]) -> None:
        pool = KeyedPool(fs.engine_concurrency, "flow-engine")
        manual = cast("faust.Stream[Any]", stream).noack()  # StreamT (the protocol) does not declare noack
        async for event in manual.events():
            message = event.message
            ENVELOPES_IN.labels("hub", message.topic).inc()
            env = await parse_or_dead_letter(message, runtime.db, runtime.producer, agent="flow-engine")
            if env is None:
                await manual.ack(event)
                continue
            await pool.submit(env.correlation_id, functools.partial(dispatch, env),
                              functools.partial(manual.ack, event))

    @app.timer(fs.recovery_interval_s, name="flow-recovery")
    async def flow_recovery() -> None:
        await runner.recover()
