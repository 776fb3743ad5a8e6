"""Per event: load the order document, apply the event with the pure engine, write state + outbox +
timers in one revision-checked write, then let the relay carry the outbox out and mark it sent.

The Kafka offset of the event is committed only after this returns (hub/workpool.py acks after the
handler), so a crash anywhere before the write redelivers the event, and a crash after it leaves the
outbox for the sweep. Trouble with MongoDB or Kafka is retried for as long as it lasts (the event
waits, the consumer back-pressures: an outage must not dead-letter orders); an event the engine
refuses (a blueprint error, an event for an order never received) is dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError
from tenacity import RetryCallState, retry_if_exception_type, retry_if_not_exception_type

from flows.graph import step
from flows.graph.model import Blueprint
from flows.runtime import progress
from flows.runtime.document import MAX_APPLIED, apply_commands, new_document, project, ts, unrunnable_document
from flows.runtime.relay import Relay
from flows.runtime.store import OrderStoreV2
from flows.runtime.translate import call_step, to_event, what
from flows.settings import FlowSettings
from hub import topics, tracing
from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import ConfigError, RetryableError, ValidationFailed
from hub.metrics import FLOW_EVENT_SECONDS, STAGE_TRANSITIONS
from hub.retrying import ENGINE_EVENT, ENGINE_OUTAGE, REVISION_CONFLICT, Sleep
from hub.services import Services

log = logging.getLogger(__name__)
TRANSIENT = (PyMongoError, KafkaError, RetryableError, OSError, asyncio.TimeoutError)


class LostRace(RetryableError):
    """Another writer changed the order between our read and our write (fresh revision token)."""


class _Lost:
    """A lost race: reload and apply again."""


LOST = _Lost()
Saved = tuple[dict[str, Any], Blueprint | None]


class FlowRunner:
    def __init__(self, runtime: Services, library: Any, fs: FlowSettings, callback_base_url: str) -> None:
        self.runtime = runtime
        self.library = library
        self.fs = fs
        self.relay = Relay(runtime, callback_base_url)
        self.orders_topic = topics.orders(runtime.settings.topic_prefix)
        self._store: OrderStoreV2 | None = None
        self._pinned: dict[str, Blueprint] = {}
        self._kept: set[str] = set()  # digests stored in blueprint_versions by this process
        self.clock = time.time  # the engine's `now` comes from here (tests may inject one)
        self.sleep: Sleep = asyncio.sleep  # the retry policies' wait (tests inject one that does not sleep)
        self.busy: dict[str, int] = {}  # orders this process is applying an event to (the sweeps leave them)
        self.sent: dict[str, set[str]] = {}  # outbox ids carried out, not yet recorded in their documents

    @property
    def store(self) -> OrderStoreV2:
        if self._store is None:
            assert self.runtime.db is not None, "runtime not started"
            self._store = OrderStoreV2(self.runtime.db, outbox_stale_s=self.fs.outbox_stale_s)
        return self._store

    # ---- the event loop --------------------------------------------------------------------
    async def handle(self, env: Envelope) -> None:
        self.busy[env.correlation_id] = self.busy.get(env.correlation_id, 0) + 1
        try:
            # the engine's span: every envelope the outbox sends from here (calls, reports, events)
            # names it as its parent (TraceContext.child(), hub/tracing.py)
            with tracing.hop(env.trace, "hub.engine", env.type, env.correlation_id):
                await self._handle_retrying(env)
        finally:
            left = self.busy.pop(env.correlation_id) - 1
            if left:
                self.busy[env.correlation_id] = left

    async def _handle_retrying(self, env: Envelope) -> None:
        """Apply one event: MongoDB/Kafka trouble is waited out (``ENGINE_OUTAGE``: the event's offset
        is not committed meanwhile, so nothing is lost and an outage never dead-letters an order); an
        event the engine refuses (a blueprint error, an event for an order never received) is
        dead-lettered at once; any other failure (a bug) after ``ENGINE_EVENT``'s tries."""

        def forget(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("order event %s for %s: %s: %s; retry %d", env.type, env.correlation_id,
                        type(exc).__name__, exc, state.attempt_number)
            self.store.forget(env.correlation_id)  # the next try reads the stored document again

        # The first try runs without the retry machinery: building and stepping tenacity's objects for
        # every event was ~10 % of the worker's CPU (py-spy --gil, bench.flow). A failure of it is
        # replayed as the first try of the loop it belongs to, so the policies count exactly as before.
        first: list[BaseException] = []
        try:
            await self._handle(env)
            return
        except (ValidationFailed, ConfigError) as exc:
            await self._dead_letter(env, exc)
            return
        except Exception as exc:
            first.append(exc)

        async def attempt() -> None:
            async for outage in ENGINE_OUTAGE.retrying(retry_if_exception_type(TRANSIENT), sleep=self.sleep,
                                                       before_sleep=forget):
                with outage:
                    if first:  # the first try's outage
                        raise first.pop()
                    await self._handle(env)

        try:
            async for bug in ENGINE_EVENT.retrying(retry_if_not_exception_type((ValidationFailed, ConfigError)),
                                                   sleep=self.sleep, before_sleep=forget):
                with bug:
                    if first and not isinstance(first[0], TRANSIENT):  # the first try's bug
                        raise first.pop()
                    await attempt()
        except (ValidationFailed, ConfigError) as exc:
            await self._dead_letter(env, exc)
        except Exception as exc:
            log.exception("order event %s for %s failed", env.type, env.correlation_id)
            await self._dead_letter(env, exc)

    async def _dead_letter(self, env: Envelope, exc: BaseException) -> None:
        tracing.mark("dead_lettered", type(exc).__name__)
        log.error("order event %s (%s) for %s dead-lettered: %s", env.id, env.type, env.correlation_id, exc)
        assert self.runtime.db is not None
        await DeadLetters(self.runtime.db, self.runtime.producer).publish(
            DeadLetter.for_envelope(self.orders_topic, env, exc, partner="hub", origin={"agent": "flow-engine"}))

    async def _handle(self, env: Envelope) -> None:
        started = time.perf_counter()
        saved = await self._apply(env)
        if isinstance(saved, _Lost):  # the retry loop only for a lost race (its first try was this one)
            replayed = False
            try:
                async for race in REVISION_CONFLICT.retrying(retry_if_exception_type(LostRace), sleep=self.sleep):
                    with race:
                        if replayed:
                            saved = await self._apply(env)
                        replayed = True
                        if isinstance(saved, _Lost):
                            raise LostRace(f"order {env.correlation_id} was written meanwhile")
            except LostRace as exc:
                raise RuntimeError(f"order {env.correlation_id}: lost every race ({exc})") from exc
        applied = time.perf_counter()
        FLOW_EVENT_SECONDS.labels("apply").observe(applied - started)
        if saved is not None and not isinstance(saved, _Lost):
            doc, bp = saved
            await self.send_outbox(doc, bp, record=False)
            FLOW_EVENT_SECONDS.labels("send").observe(time.perf_counter() - applied)

    async def send_outbox(self, doc: dict[str, Any], bp: Blueprint | None, *, record: bool = True,
                          resend_known: bool = False) -> None:
        """Carry out the outbox entries not known to be sent. ``record``: write the outbox as sent
        now (the sweep); otherwise the ids are only remembered (``self.sent``) and the order's next
        write drops them — one MongoDB write per event instead of two. If this process dies before
        that write, the sweep sends them again after ``outbox_stale_s``; the delivery's claims and
        the engine's idempotence make that a no-op for partners."""
        order_id = doc["_id"]
        known = self.sent.get(order_id, set())
        pending = [c for c in doc["outbox"] if resend_known or c["id"] not in known]
        sent = await self.relay.carry_out({**doc, "outbox": pending}, bp) if pending else []
        if sent:
            self.sent.setdefault(order_id, set()).update(sent)
        if record and doc["outbox"]:
            done = [c["id"] for c in doc["outbox"] if c["id"] in self.sent.get(order_id, ())]
            if done and await self.store.mark_sent(doc, done, datetime.now(UTC)):
                self.sent.pop(order_id, None)

    async def blueprint(self, doc: dict[str, Any]) -> Blueprint | None:
        """The version the order started on (pinned by digest), even after the file was edited;
        None for an order no blueprint runs (failed at its start)."""
        digest = doc.get("digest")
        if digest is None:
            return None
        bp = self._pinned.get(digest) or self.library.by_digest(digest)
        if bp is None:
            raw = await self.store.version(digest)
            if raw is None:
                raise ConfigError(f"order {doc['_id']}: blueprint {doc['blueprint']} version {digest} is unknown")
            bp = Blueprint.model_validate(raw)
        self._pinned[digest] = bp
        return bp

    async def _apply(self, env: Envelope) -> Saved | _Lost | None:
        store = self.store
        now = self.clock()
        doc = await store.load(env.correlation_id)
        if doc is None:
            return await self._create(env, now)
        bp = await self.blueprint(doc)
        return await self._apply_to(doc, bp, env, now)

    async def _apply_to(self, doc: dict[str, Any], bp: Blueprint | None, env: Envelope, now: float
                        ) -> Saved | _Lost | None:
        store = self.store
        await self._resolve_superseded(doc, env)
        if env.id in doc["applied"]:
            return (doc, bp) if doc["outbox"] else None  # redelivered: only what is left to send
        work = _working(doc)
        sent = self.sent.get(doc["_id"])
        if sent:  # carried out since the last write: this write records it (send_outbox)
            work["outbox"] = [c for c in work["outbox"] if c["id"] not in sent]
        if not work["outbox"]:
            work["outbox_at"] = None
        touched = _bookkeep(work, env, now)
        state, commands = doc["state"], list[dict[str, Any]]()
        event = to_event(env, bp, doc["state"], doc["open_calls"], doc.get("progress")) if bp is not None else None
        if bp is not None and event is not None and event["type"] != "order_received":
            state, commands = step(bp, doc["state"], event, now)
        if state is doc["state"] and not touched:
            return None
        work["state"] = state
        if bp is not None:
            apply_commands(work, commands, now, state.get("seq", 0))
            _mark_callback_steps(work, bp, commands)
            project(work, bp, now)
        elif not work["outbox"]:
            work["outbox_at"] = None
        work["applied"] = [*work["applied"][-(MAX_APPLIED - 1):], env.id]
        if not await store.replace(work, doc["rev"]):
            return LOST
        if sent:
            self.sent.pop(doc["_id"], None)  # recorded by this write
        if bp is not None:
            self._count(bp, doc["state"], state)
        return work, bp

    async def _create(self, env: Envelope, now: float) -> Saved | _Lost | None:
        if env.type != "order.received":
            log.warning("%s for unknown order %s ignored", env.type, env.correlation_id)
            return None
        name = env.headers.get("blueprint")
        bp = self.library.by_name(name) if name else self.library.get(env.product, env.scenario)
        fields = {"partner": env.source, "external_order_id": env.payload.get("external_order_id", ""),
                  "order": env.payload, "parent": env.headers.get("parent"), "protocol": env.protocol,
                  "envelope_id": env.id}
        if bp is None:
            reason = (f"no blueprint for product {env.product!r} scenario {env.scenario!r}"
                      + (f" (named {name!r})" if name else ""))
            log.warning("order %s failed: %s", env.correlation_id, reason)
            partner = self.runtime.partners.get(env.source)
            ops = (partner.outbound.config.get("operations") if partner and partner.outbound else None) or {}
            doc = unrunnable_document(env.correlation_id, fields, env.product or "", env.scenario or "", reason, now,
                                      report_to_origin="close_report" in ops)
            doc["applied"] = [env.id]
            return None if not await self.store.create(doc) else (doc, None)
        if bp.digest() not in self._kept:  # stored before any order pins it (finishes on it after an edit)
            await self.store.keep_versions([bp])
            self._kept.add(bp.digest())
        doc = new_document(env.correlation_id, fields, bp, now)
        doc["trace"] = env.trace.model_dump(mode="json")
        event = to_event(env, bp, None, {})
        assert event is not None
        state, commands = step(bp, None, event, now)
        doc["state"] = state
        apply_commands(doc, commands, now, state.get("seq", 0))
        _mark_callback_steps(doc, bp, commands)
        project(doc, bp, now)
        doc["applied"] = [env.id]
        if not await self.store.create(doc):
            return LOST
        self._count(bp, None, state)
        return doc, bp

    def _count(self, bp: Blueprint, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        old = (before or {}).get("trail", [])
        for i, entry in enumerate(after.get("trail", [])):
            if "left_at" in entry and (i >= len(old) or "left_at" not in old[i]):
                STAGE_TRANSITIONS.labels(bp.product or bp.name, entry["node"], entry.get("outcome", "left")).inc()

    async def _resolve_superseded(self, doc: dict[str, Any], env: Envelope) -> None:
        """Resolve the dead letters nobody should replay any more, as the delivery resolves a letter
        whose call later got through: a partner's refusal of a *call* went to the blueprint (its
        ``on_failure`` path, where the user sends the call again under a new id, G3), and the refused
        gated reports a user's ``order.retry`` sends again under new ids (G2). Replaying one of those
        would make the partner see it twice and move nothing (the engine no longer waits for it).
        Before the write: an outage here retries the event, which recomputes it."""
        p = env.payload
        keys: list[tuple[str, str]] = []
        if (env.type == "call.result" and p.get("rejected") and p.get("dead_letter_id")
                and what(str(p.get("call_id") or "")) != "report"):
            keys.append((f"v2:{p['call_id']}", "the partner's refusal went to the blueprint (on_failure); "
                                               "the user sends the call again from the order"))
        elif env.type == "order.retry" and env.id not in doc["applied"]:
            for token in ((doc.get("state") or {}).get("tokens") or {}).values():
                if token["node"] == p.get("node"):
                    keys += [(f"v2:{rid}", f"sent again by {p.get('by') or 'a'} retry of {token['node']} (G2)")
                             for rid, gate in (token.get("gates") or {}).items() if gate.get("ok") is False]
        if keys and self.runtime.db is not None:
            letters = DeadLetters(self.runtime.db, self.runtime.producer)
            for key, detail in keys:
                await letters.resolve(key, who="system:flow-engine", detail=detail)


def _working(doc: dict[str, Any]) -> dict[str, Any]:
    """What this event may change, copied (a lost race must not leak into the cached document)."""
    work = dict(doc)
    work["outbox"] = list(doc["outbox"])
    work["open_calls"] = {k: dict(v) for k, v in doc["open_calls"].items()}
    work["timers"] = dict(doc["timers"])
    work["applied"] = list(doc["applied"])
    return work


def _mark_callback_steps(doc: dict[str, Any], bp: Blueprint, commands: list[dict[str, Any]]) -> None:
    """Calls of ``callback`` steps: their synchronous answer only says "accepted", so it changes
    nothing on the document (the call stays open until the callback) and costs no write."""
    for c in commands:
        if c["type"] == "send_call" and c.get("purpose") == "call":
            step = call_step(bp, doc["state"], c["call_id"])
            if step is not None and step.mode == "callback" and c["call_id"] in doc["open_calls"]:
                doc["open_calls"][c["call_id"]]["awaits_callback"] = True


def _bookkeep(work: dict[str, Any], env: Envelope, now: float) -> bool:
    """What the document records of an event whatever the engine makes of it: an answered call
    leaves ``open_calls`` (a failed delivery stays there, blocked, with its dead letter; a staged
    partner's interim callback keeps it open and is recorded as progress, flows/runtime/progress.py),
    a fired timer leaves ``timers``. True when the document changed."""
    p = env.payload
    if env.type == "call.result":
        cid = str(p.get("call_id") or "")
        call = work["open_calls"].get(cid)
        if call is None:
            return False
        if p.get("ok") and call.get("awaits_callback"):
            return False  # only "accepted": the call stays open until its callback (no write for it)
        if p.get("ok") or p.get("rejected") or what(cid) == "report":
            del work["open_calls"][cid]
        else:
            call.update(dead_letter_id=p.get("dead_letter_id"), error=p.get("error"), failed_at=ts(now))
        return True
    if env.type == "callback":
        return progress.record(work, env, now)
    if env.type == "timer.fired":
        return work["timers"].pop(str(p.get("timer_id") or ""), None) is not None
    return False
