"""Named retry policies, all on tenacity: the hub's one way to retry.

Why named: each place that retries used to carry its own loop (``delay = min(delay * 2, 5)`` in the
engine, a second one for the outbox, a sleep before an AMQP nack, tenacity in the delivery agent),
so the numbers drifted apart and none of them could be tested without really sleeping. A policy
here says *what* is retried, how often and how long it waits; the caller says only what counts as
a failure. Every policy takes an injected ``sleep`` so tests run it without waiting.

======================  =========  ======================  ==============================================
policy                  attempts   waits                   retries
======================  =========  ======================  ==============================================
``ENGINE_OUTAGE``       until it   0.2 s · 2ⁿ, ≤ 5 s       one order event while MongoDB or Kafka is away:
                        works                              the event waits (its offset is not committed),
                                                           an outage never dead-letters an order
``ENGINE_EVENT``        3          0.2 s · 2ⁿ              an order event that failed otherwise (a bug),
                                                           then it is dead-lettered with the error
``REVISION_CONFLICT``   20         none                    reload + re-apply when another writer changed
                                                           the order first (fresh revision token)
``AMQP_REQUEUE``        1 (+ the   ``retry_delay_s``       a message Kafka/MongoDB could not take: wait,
                        broker's)  (route config)          then nack-requeue (the broker redelivers)
``ROUTE_RELAUNCH``      until it   1 poll · 2ⁿ, ≤ 30 s     a route whose source could not start (its
                        starts     (``poll_interval``)     server is down), tried again on the manager's polls
``delivery(policy)``    partner's  partner's backoff +     one partner call (``outbound.policy`` in
                                   jitter                  ``config/partners/*.yaml``, :class:`RetryPolicy`)
======================  =========  ======================  ==============================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, stop_never, wait_exponential, wait_random
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_none

from hub.retry import RetryPolicy

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """One named policy: ``attempts`` tries in all (``None``: until it works), the n-th wait
    ``initial_s · multiplier^(n-1)``, at most ``max_s``, plus up to ``jitter_s`` at random."""

    name: str
    attempts: int | None
    initial_s: float = 0.0
    max_s: float = 0.0
    multiplier: float = 2.0
    jitter_s: float = 0.0

    @property
    def stop(self) -> stop_base:
        return stop_never if self.attempts is None else stop_after_attempt(self.attempts)

    @property
    def wait(self) -> wait_base:
        if self.initial_s <= 0 and self.jitter_s <= 0:
            return wait_none()
        base = wait_exponential(multiplier=self.initial_s, exp_base=self.multiplier, max=self.max_s)
        return base + wait_random(0, self.jitter_s) if self.jitter_s > 0 else base

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), without jitter."""
        if self.initial_s <= 0:
            return 0.0
        return float(min(self.max_s, self.initial_s * self.multiplier ** max(attempt - 1, 0)))

    def with_delay(self, initial_s: float) -> Backoff:
        """The same policy with a configured first wait (e.g. a route's ``retry_delay_s``)."""
        return replace(self, initial_s=initial_s, max_s=max(self.max_s, initial_s))

    def retrying(self, retry: retry_base, *, sleep: Sleep = asyncio.sleep,
                 before_sleep: Callable[[RetryCallState], Any] | None = None,
                 retry_error_callback: Callable[[RetryCallState], Any] | None = None) -> AsyncRetrying:
        """A tenacity controller for this policy. Without ``retry_error_callback`` the last
        failure is raised as it was (``reraise``), so callers handle it like any exception."""
        return AsyncRetrying(stop=self.stop, wait=self.wait, retry=retry, sleep=sleep, before_sleep=before_sleep,
                             retry_error_callback=retry_error_callback, reraise=True)

    async def pause(self, attempt: int = 1, *, sleep: Sleep = asyncio.sleep) -> None:
        """Wait once, as this policy would after ``attempt`` failures (for retries driven from
        outside, e.g. the AMQP broker's redelivery)."""
        await sleep(self.delay(attempt))


ENGINE_OUTAGE = Backoff("engine-outage", attempts=None, initial_s=0.2, max_s=5.0)
ENGINE_EVENT = Backoff("engine-event", attempts=3, initial_s=0.2, max_s=5.0)
REVISION_CONFLICT = Backoff("revision-conflict", attempts=20)
AMQP_REQUEUE = Backoff("amqp-requeue", attempts=1, initial_s=1.0, max_s=1.0, multiplier=1.0)
ROUTE_RELAUNCH = Backoff("route-relaunch", attempts=None, initial_s=2.0, max_s=30.0)


def delivery(policy: RetryPolicy) -> Backoff:
    """A partner's delivery policy (``outbound.policy``) as a named :class:`Backoff`."""
    return Backoff("delivery", attempts=policy.max_attempts, initial_s=policy.backoff_initial_s,
                   max_s=policy.backoff_max_s, multiplier=policy.backoff_multiplier, jitter_s=policy.jitter_s)
