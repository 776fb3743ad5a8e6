"""The leased sweeps that keep v2 orders moving without a human: due durable timers, outboxes a
crash left unsent, and the full re-send after the broker lost its topics.

Safe with several workers: each sweep takes an order's lease (``timer_lease`` / ``outbox_lease``,
a conditional update on the document: only one worker wins it, and a dead worker's lease expires
after ``HUB_FLOW_LEASE_S``) before acting on it. Firing a timer twice or re-sending a command is
harmless anyway — the engine ignores a timer it no longer waits for, delivery dedupes on the
idempotency key — the lease keeps it rare. Why a lease on the order document and not a timers
collection: the timers are written by the same single-document write as the state that started
them, so a timer can never exist without its order's state or the other way round.

Takeover bound after a kill -9: an unsent outbox is picked up ``outbox_stale_s`` after its write
(the dead worker's lease, if it had one, ``lease_s`` later); a leased timer fires again ``lease_s``
after the dead worker took it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.runtime.document import ts
from flows.runtime.runner import FlowRunner
from flows.store import EVENTS
from hub import tracing
from hub.envelope import Envelope, TraceContext
from hub.intake import iter_unconsumed

log = logging.getLogger(__name__)


def order_trace(doc: dict[str, Any]) -> TraceContext:
    """The trace stored on the order (its first envelope's), or a new one for an order without."""
    raw = doc.get("trace")
    return TraceContext.model_validate(raw) if raw else TraceContext()


class Sweeps:
    def __init__(self, runner: FlowRunner) -> None:
        self.runner = runner
        self.fs = runner.fs
        self._generation: int | None = None  # runtime.broker.generation at the last full scan
        self._started_at = datetime.now(UTC)
        self._outage = False
        self._again_at: float | None = None  # a second full scan after a broker loss (monotonic time)

    @property
    def runtime(self) -> Any:
        return self.runner.runtime

    async def timers(self) -> None:
        """Fire every due timer once (``timer.fired`` on the orders topic, keyed by the order)."""
        if not self._usable():
            return
        store = self.runner.store
        now = self.runner.clock()
        for order_id in await store.due("next_timer_at", ts(now)):
            if not await store.lease(order_id, "timer_lease", now, self.fs.lease_s):
                continue
            doc = await store.orders.find_one({"_id": order_id}, {"timers": 1, "trace": 1})
            if doc is None:
                continue
            due = [tid for tid, t in (doc.get("timers") or {}).items() if t["at"] <= now]
            # in the order's trace (hub/tracing.py): a polling order's every round stays one chain
            with tracing.hop(order_trace(doc), "hub.engine", "timer.sweep", order_id, kind="internal") as span:
                await asyncio.gather(*(self.runtime.producer.send(self.runner.orders_topic, Envelope(
                    type="timer.fired", source="hub", protocol="internal", correlation_id=order_id,
                    idempotency_key=f"timer:{tid}", payload={"timer_id": tid}, trace=span.trace)) for tid in due))

    async def outboxes(self) -> None:
        """Carry out outboxes a crash (or a broker outage) left unsent."""
        if not self._usable():
            return
        store = self.runner.store
        now = self.runner.clock()
        recorded: list[Any] = []
        for order_id in await store.due("outbox_at", ts(now - self.fs.outbox_stale_s)):
            if order_id in self.runner.busy:  # its own handler is sending it right now
                continue
            doc = self._sent_here(order_id)
            if doc is not None:  # nothing to send: only record it, together with the others (one bulk)
                # a copy: a handler starting meanwhile holds the cached one, and its write must lose the race
                recorded.append(store.mark_sent(dict(doc), [c["id"] for c in doc["outbox"]], datetime.now(UTC)))
                continue
            if not await store.lease(order_id, "outbox_lease", now, self.fs.lease_s):
                continue
            await self._resend(order_id, open_calls=False)
        if recorded:
            await asyncio.gather(*recorded)

    def _sent_here(self, order_id: str) -> dict[str, Any] | None:
        """The cached document of an order whose whole outbox this process carried out (its next
        write would record that; a call waiting for a slow callback has none for a while): it needs
        no lease, no reload and no send — only its revision-checked "sent" mark (a lost race is
        harmless: the document is forgotten and looked at again on the next sweep). Why: under load
        (bench.flow --window 400) nearly every order's outbox got stale, and each cost a lease
        update, a read and the mark, one order after another, every 2 s."""
        doc = self.runner.store.cached(order_id)
        sent = self.runner.sent.get(order_id)
        if doc is None or not sent or not doc["outbox"] or any(c["id"] not in sent for c in doc["outbox"]):
            return None
        return doc

    async def _resend(self, order_id: str, *, open_calls: bool) -> None:
        store = self.runner.store
        store.forget(order_id)
        doc = await store.load(order_id)
        if doc is None or doc.get("engine") != 2:
            return
        bp = await self.runner.blueprint(doc)
        if open_calls:  # the broker lost what was sent: every call without an answer goes again
            known = {c["id"] for c in doc["outbox"]}
            doc["outbox"] = doc["outbox"] + [{k: v for k, v in c.items() if k not in ("sent_at",)}
                                             for cid, c in doc["open_calls"].items()
                                             if cid not in known and not c.get("dead_letter_id")]
        with tracing.hop(order_trace(doc), "hub.engine", "outbox.resend", order_id, kind="internal"):
            await self.runner.send_outbox(doc, bp, resend_known=open_calls)

    def _usable(self) -> bool:
        if self.runtime.db is None:
            return False
        if not self.runtime.broker.up:
            self._outage = True
            return False
        return True

    async def full_scan_if_needed(self) -> None:
        """On this process's first tick, after the broker lost its topics (a tansu restart) and after
        a broker outage: re-send every open order's unanswered calls and unsent outbox, the accepted
        orders the engine never saw, and the journaled callbacks/submissions of open orders."""
        if not self._usable():
            return
        generation = self.runtime.broker.generation
        first = self._generation is None
        again = self._again_at is not None and time.monotonic() >= self._again_at
        if not first and generation == self._generation and not self._outage and not again:
            return
        # after a broker loss, once more a little later: records produced around the wipe can land on
        # the old topics or behind offsets committed just before it was noticed; re-sending is idempotent
        self._again_at = None if (first or again) else time.monotonic() + 2 * self.fs.lease_s
        before = self._started_at if first else None
        started = time.monotonic()
        if first and await self.runner.store.backfill_wake():
            log.info("flow recovery: wake_at given to the open orders an earlier version wrote")
        orders = await self.runner.store.open_orders(before)
        for order_id in orders:
            await self._resend(order_id, open_calls=True)
        lost = 0
        async for found in iter_unconsumed(self.runtime.db, within=timedelta(hours=self.fs.intake_recovery_hours)):
            await asyncio.gather(*(self.runtime.producer.send(self.runner.orders_topic, env) for _t, env in found))
            lost += len(found)
        journaled = 0
        for i in range(0, len(orders), 500):
            cursor = self.runtime.db[EVENTS].find({"order_id": {"$in": orders[i:i + 500]}}, {"envelope": 1})
            events = [Envelope.model_validate(d["envelope"]) async for d in cursor if d.get("envelope")]
            await asyncio.gather(*(self.runtime.producer.send(self.runner.orders_topic, e) for e in events))
            journaled += len(events)
        self._generation = generation
        self._outage = False
        if orders or lost or journaled:
            log.info("flow recovery: %d open order(s) re-sent, %d unseen accepted order(s), %d journaled event(s) "
                     "(%.1fs)", len(orders), lost, journaled, time.monotonic() - started)
