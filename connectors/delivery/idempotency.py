"""Idempotency: a call is made to a partner once, however often its envelope is delivered.

Claim first (``claims.py`` has the record and why): before calling, the wrapper inserts a claim for
the idempotency key. Then, for a second delivery of the same key —

* **delivered** ⇒ answered from the record, the partner is not called (``trail.recorded`` on the
  outcome says so): a replayed dead letter, a call re-sent by recovery, a route record read twice;
* **claimed, lease alive** ⇒ it *waits*, polling the record (backoff, at most
  :data:`MAX_POLL_S` apart), until the owner stored the answer (answered from it) or its lease
  lapsed. After ``max_wait_s`` it raises :class:`~hub.errors.RetryableError`: the caller does not
  acknowledge its input, so the envelope comes back — it is never acked while undecided;
* **claimed, lease lapsed** (still lapsed after a grace of one renewal interval, so an owner that
  only lost MongoDB for a while renews first) ⇒ the owner died mid-call. The claim is taken over
  (compare-and-set on the seen owner and lease) and the call is sent again with the same key. This
  is the one ambiguous case — the partner may or may not have got the first request — so it is
  counted (``hub_delivery_ambiguous_total{partner}``) and logged as a warning. A claim whose holder
  is this very process and whose call is still running here (:data:`RUNNING`) is never taken over,
  however late its renewals are: under overload (a 200 MB file beside the flows, 2026-12-03) renewals
  queued behind a saturated database for more than the lease, and the process called partners a
  second time over its own live calls (497 "claim lost" warnings in 20 minutes).

While its call runs (retries and backoff included) the owner renews the lease every third of it.
Success ⇒ the claim becomes the ``delivered`` record; while MongoDB is down that write is retried
with backoff until it is stored, with the answer kept in memory — a lost record write never makes
the partner see the call again. Any failure the chain returns (permanent, or attempts exhausted:
the dead letter follows) releases the claim, so a replay of the letter delivers it, once.

``scope`` keeps keys of different targets apart: a partner's delivery agent records the envelope's
key as is, a route's sink records ``route:<name>:<key>``, so a route never hides a partner call or
another route's delivery of the same envelope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pymongo.errors import PyMongoError

from connectors.base import Outcome, Sink
from connectors.delivery import trail
from connectors.delivery.claims import (
    CLAIMED,
    COLLECTION,
    DEFAULT_LEASE_S,
    INCARNATION,
    DeliveryLog,
    MemoryDeliveryLog,
    MongoDeliveryLog,
    state_of,
)
from connectors.delivery.wrapper import Wrapper
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.metrics import DELIVERY_AMBIGUOUS
from hub.retrying import Backoff, Sleep
from hub.stopping import cancel_until_done

__all__ = ["COLLECTION", "DeliveryLog", "Idempotency", "MemoryDeliveryLog", "MongoDeliveryLog"]
log = logging.getLogger(__name__)
FIRST_POLL_S = 0.05
MAX_POLL_S = 1.0
#: The record of a made delivery, or the release of a failed one, while MongoDB is down: until stored.
STORE_RETRY = Backoff("delivery-record", attempts=None, initial_s=0.2, max_s=2.0)
#: (owner, key) of the calls running in this process now: alive by definition, whatever their lease says
RUNNING: set[tuple[str, str]] = set()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Idempotency(Wrapper):
    name: ClassVar[str] = "idempotency"

    def __init__(self, next: Sink, records: DeliveryLog, *, partner: str, scope: str = "",
                 fields: dict[str, Any] | None = None, now: Callable[[], datetime] = _utcnow,
                 owner: str = INCARNATION, lease_s: float = DEFAULT_LEASE_S, max_wait_s: float | None = None,
                 sleep: Sleep = asyncio.sleep, renew_sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(next)
        self.records = records
        self.partner = partner
        self.scope = scope
        self.fields = fields or {}
        self.owner = owner
        self.lease = timedelta(seconds=lease_s)
        self.grace = timedelta(seconds=lease_s / 3)  # one renewal interval
        self.max_wait = timedelta(seconds=max_wait_s if max_wait_s is not None else 8 * lease_s)
        self._now = now
        self._sleep = sleep  # polling a claim, retrying a record write (injected: tests never sleep)
        self._renew_sleep = renew_sleep

    def key(self, envelope: Envelope) -> str:
        return f"{self.scope}:{envelope.idempotency_key}" if self.scope else envelope.idempotency_key

    async def deliver(self, envelope: Envelope) -> Outcome:
        key = self.key(envelope)
        done = await self._claim_or_wait(key, envelope)
        if done is not None:
            log.info("%s already delivered to %s; answering from the record", key, self.partner)
            return trail.with_details(
                Outcome(ok=True, status="ok", response=done.get("response"),
                        duration_ms=float(done.get("duration_ms") or 0.0)), recorded=done)
        started = time.perf_counter()
        running = (self.owner, key)
        RUNNING.add(running)
        renewing = asyncio.ensure_future(self._keep_renewing(key))
        try:
            outcome = await self.next.deliver(envelope)
            if outcome.ok:
                await self._until_stored("record", key, lambda: self.records.record(key, {
                    "order_id": envelope.correlation_id, "partner": self.partner,
                    "operation": envelope.payload.get("operation"), "call_id": envelope.payload.get("call_id"),
                    "envelope_id": envelope.id, "response": outcome.response,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "attempts": len(trail.attempts(outcome)), "delivered_at": self._now(), **self.fields}))
            else:  # failed for good (a dead letter follows): a replay must be able to deliver it
                await self._until_stored("release", key, lambda: self.records.release(key, self.owner))
        finally:  # on cancellation the claim stays and its lease lapses: whoever takes it over counts it
            RUNNING.discard(running)
            await cancel_until_done(renewing)
        return outcome

    async def _claim_or_wait(self, key: str, envelope: Envelope) -> dict[str, Any] | None:
        """None once this process holds the claim; the record if the key was delivered meanwhile."""
        started = self._now()
        lapsed_seen: tuple[tuple[Any, Any], datetime] | None = None  # (owner, lease), first seen lapsed at
        poll = FIRST_POLL_S
        while True:
            if await self.records.claim(key, self._claim_fields(envelope)):
                return None
            found = await self.records.find(key)
            if found is None:  # released between the insert and the read: claim again
                continue
            if state_of(found) != CLAIMED:
                return found
            now = self._now()
            holder = (found.get("owner"), found.get("lease_until"))
            alive_here = (found.get("owner"), key) in RUNNING  # our own call, still running: never lapsed
            if not alive_here and (found.get("lease_until") is None or found["lease_until"] <= now):
                if lapsed_seen is None or lapsed_seen[0] != holder:
                    lapsed_seen = (holder, now)
                elif now - lapsed_seen[1] >= self.grace:
                    if await self.records.take_over(key, found, self.owner, now + self.lease):
                        DELIVERY_AMBIGUOUS.labels(self.partner).inc()
                        log.warning("%s: the claim of %s lapsed at %s (owner died mid-call?); taking it over and "
                                    "calling %s again with the same key: the partner may see it twice",
                                    key, holder[0], holder[1], self.partner)
                        return None
                    continue  # renewed or taken by someone else meanwhile: look again
            else:
                lapsed_seen = None
            if now - started >= self.max_wait:
                raise RetryableError(f"{key}: being delivered to {self.partner} by {holder[0]} (lease until "
                                     f"{holder[1]}); not acknowledged, it will come back")
            await self._sleep(poll)
            poll = min(poll * 2, MAX_POLL_S)

    def _claim_fields(self, envelope: Envelope) -> dict[str, Any]:
        now = self._now()
        return {"owner": self.owner, "lease_until": now + self.lease, "claimed_at": now, "partner": self.partner,
                "order_id": envelope.correlation_id, "operation": envelope.payload.get("operation"),
                "call_id": envelope.payload.get("call_id"), "envelope_id": envelope.id, **self.fields}

    async def _keep_renewing(self, key: str) -> None:
        """Every third of the lease (every second while MongoDB fails), until cancelled or lost."""
        interval = self.lease.total_seconds() / 3
        wait = interval
        while True:
            await self._renew_sleep(wait)
            try:
                if not await self.records.renew(key, self.owner, self._now() + self.lease):
                    log.warning("%s: claim lost while calling %s (taken over after a lapsed lease)", key,
                                self.partner)
                    return
                wait = interval
            except PyMongoError as exc:
                log.warning("%s: lease not renewed (%s); trying again", key, exc)
                wait = min(1.0, interval)

    async def _until_stored(self, what: str, key: str, write: Callable[[], Any]) -> None:
        failures = 0
        while True:
            try:
                await write()
                return
            except (PyMongoError, RetryableError) as exc:
                failures += 1
                log.warning("%s of %s's delivery %s not stored (%s, %d time(s)); kept in memory, trying again",
                            what, self.partner, key, exc, failures)
                await self._sleep(STORE_RETRY.delay(failures))
