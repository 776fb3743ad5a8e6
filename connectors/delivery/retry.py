"""Retry: attempts under a partner's :class:`~hub.retry.RetryPolicy` — the named ``delivery(policy)``
of :mod:`hub.retrying` (tenacity) — every one recorded.

Retried: an outcome that is not ok and ``retryable`` (timeout, 5xx, connection refused, an open
circuit). Not retried: ok, or a permanent failure (a business rejection, a sink bug). Backoff is
exponential with jitter; ``sleep`` and ``now`` are injected so tests never sleep. The final outcome
carries every attempt (``trail.attempts``): the order's call log and the dead letter show them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import ClassVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_result

from connectors.base import Outcome, Sink
from connectors.delivery import trail
from connectors.delivery.wrapper import Wrapper
from hub import retrying
from hub.deadletter import Attempt
from hub.envelope import Envelope
from hub.retry import RetryPolicy

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _last(state: RetryCallState) -> Outcome:
    """Attempts exhausted: the last outcome is the answer (not a tenacity RetryError)."""
    assert state.outcome is not None
    result: Outcome = state.outcome.result()
    return result


class Retry(Wrapper):
    name: ClassVar[str] = "retry"

    def __init__(self, next: Sink, policy: RetryPolicy, *, label: str = "",
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 now: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(next)
        self.policy = policy
        self.label = label or next.name
        self._sleep = sleep
        self._now = now

    def _retrying(self) -> AsyncRetrying:
        """The named ``delivery`` policy (``hub/retrying.py``) built from the partner's RetryPolicy."""
        return retrying.delivery(self.policy).retrying(retry_if_result(lambda o: not o.ok and o.retryable),
                                                       sleep=self._sleep, retry_error_callback=_last)

    async def deliver(self, envelope: Envelope) -> Outcome:
        made: list[Attempt] = []

        async def attempt() -> Outcome:
            at = self._now()
            outcome = await self.next.deliver(envelope)
            made.append(Attempt(at=at, outcome=outcome.status or ("ok" if outcome.ok else "error"),
                                error=outcome.error, status=outcome.status, duration_ms=outcome.duration_ms))
            if not outcome.ok:
                log.info("%s %s attempt %d: %s", self.label, envelope.payload.get("operation"), len(made),
                         outcome.error)
            return outcome

        outcome: Outcome = await self._retrying()(attempt)
        return trail.with_details(outcome, attempts=made)
