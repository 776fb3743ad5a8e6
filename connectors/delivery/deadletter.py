"""DeadLetter: a delivery that gave up is kept, never dropped — and a later success tidies up.

Attempts exhausted (``RetriesExhausted``) or a permanent failure (``PartnerRejected``) ⇒ a dead
letter via :mod:`hub.deadletter` (MongoDB first, then ``{source_topic}.dlq``): the *original*
envelope, the error, every attempt, and where it came from. The outcome that leaves the chain
names the letter (``trail.dead_letter_id``), so the caller can acknowledge its input: the envelope
is safe in the dead letters. When the letter cannot be written the error is raised
(:class:`~hub.errors.RetryableError`), so the caller does *not* acknowledge and the envelope comes
back.

A delivery that succeeds resolves the pending letters of its idempotency key (e.g. a gated
report's failed round): nobody has to act on those any more (housekeeping; never fails the
delivery). Whether a key has any is asked for the deliveries of one moment together (one
``idempotency_key $in`` query, :class:`PendingKeys`): it runs after every successful delivery and
almost always finds nothing — one query per call was 6.2 of the ~26 MongoDB commands of an
internet-line order in bench.flow (193 ms of round trips per order at 6 orders/s).

Where it came from differs per message (the Kafka partition and offset the agent read it at): the
caller sets that around ``deliver`` with :func:`origin` (a context variable, so the Sink contract
keeps its one argument).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.base import Outcome, Sink
from connectors.delivery import trail
from connectors.delivery.wrapper import Wrapper
from hub.batching import READ_DELAY_S, MicroBatcher
from hub.deadletter import DeadLetter, DeadLetters, pending_query
from hub.envelope import Envelope
from hub.errors import RetryableError

log = logging.getLogger(__name__)
_ORIGIN: ContextVar[dict[str, Any]] = ContextVar("delivery_origin", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def origin(**where: Any) -> Iterator[None]:
    """``with origin(topic=…, partition=…, offset=…): await chain.deliver(env)``."""
    token = _ORIGIN.set({**_ORIGIN.get(), **where})
    try:
        yield
    finally:
        _ORIGIN.reset(token)


class PendingKeys:
    """``await pending.any(key)``: has ``key`` pending dead letters? Concurrent questions → one query."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self.dead_letters = dead_letters
        self._batcher: MicroBatcher[str, bool] = MicroBatcher(self._find, 256, READ_DELAY_S)

    async def any(self, key: str) -> bool:
        return await self._batcher.submit(key)

    async def _find(self, keys: Sequence[str]) -> list[bool]:
        query = {"idempotency_key": {"$in": list(dict.fromkeys(keys))}, **pending_query(datetime.now(UTC))}
        found = {d["idempotency_key"] async for d in self.dead_letters.collection.find(query, {"idempotency_key": 1})}
        return [k in found for k in keys]


class DeadLetterOnFailure(Wrapper):
    name: ClassVar[str] = "dead_letter"

    def __init__(self, next: Sink, dead_letters: DeadLetters, *, source_topic: str, partner: str,
                 describe: Callable[[Envelope], dict[str, Any]] | None = None) -> None:
        super().__init__(next)
        self.dead_letters = dead_letters
        self.source_topic = source_topic
        self.partner = partner
        self.describe = describe or (lambda env: {})
        self.pending = PendingKeys(dead_letters)

    async def deliver(self, envelope: Envelope) -> Outcome:
        outcome = await self.next.deliver(envelope)
        if outcome.ok:
            if trail.recorded(outcome) is None:
                await self._resolve_earlier(envelope)
            return outcome
        try:
            letter = await self.dead_letters.publish(DeadLetter.for_envelope(
                self.source_topic, envelope, outcome.error or outcome.status,
                error_class="RetriesExhausted" if outcome.retryable else "PartnerRejected",
                attempts=trail.attempts(outcome), partner=self.partner,
                origin={**_ORIGIN.get(), **self.describe(envelope)}))
        except Exception as exc:
            raise RetryableError(f"delivery to {self.partner} failed and its dead letter was not stored: "
                                 f"{type(exc).__name__}: {exc}") from exc
        return trail.with_details(outcome, dead_letter_id=letter.id)

    async def _resolve_earlier(self, envelope: Envelope) -> None:
        try:
            if not await self.pending.any(envelope.idempotency_key):
                return
            await self.dead_letters.resolve(
                envelope.idempotency_key, who=f"system:delivery-{self.partner}",
                detail=f"delivered by envelope {envelope.id} (round {envelope.payload.get('round', 1)})")
        except Exception as exc:
            log.warning("dead letters of %s not resolved: %s", envelope.idempotency_key, exc)
