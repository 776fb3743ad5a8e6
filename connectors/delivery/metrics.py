"""Metrics: the ``hub_delivery_*`` series, counted where the event happens.

Two places in the chain, so each wrapper has one job: :class:`AttemptMetrics` sits next to the sink
(one real call to the partner = one ``hub_delivery_attempts_total`` and one latency observation; a
fast-fail of an open circuit never reaches it), :class:`GiveUpMetrics` sits outside the retries (a
delivery that gave up = one ``hub_delivery_failures_total``, just before it is dead-lettered).
"""

from __future__ import annotations

from typing import ClassVar

from connectors.base import Outcome, Sink
from connectors.delivery import trail
from connectors.delivery.wrapper import Wrapper
from hub.envelope import Envelope
from hub.metrics import DELIVERY_ATTEMPTS, DELIVERY_FAILURES, DELIVERY_LATENCY


class AttemptMetrics(Wrapper):
    name: ClassVar[str] = "attempt_metrics"

    def __init__(self, next: Sink, partner: str) -> None:
        super().__init__(next)
        self.partner = partner

    async def deliver(self, envelope: Envelope) -> Outcome:
        outcome = await self.next.deliver(envelope)
        DELIVERY_ATTEMPTS.labels(self.partner, envelope.payload.get("operation", ""), outcome.status or "ok").inc()
        DELIVERY_LATENCY.labels(self.partner).observe(outcome.duration_ms / 1000)
        return outcome


class GiveUpMetrics(Wrapper):
    name: ClassVar[str] = "give_up_metrics"

    def __init__(self, next: Sink, partner: str) -> None:
        super().__init__(next)
        self.partner = partner

    async def deliver(self, envelope: Envelope) -> Outcome:
        outcome = await self.next.deliver(envelope)
        if not outcome.ok and trail.recorded(outcome) is None:
            DELIVERY_FAILURES.labels(self.partner, envelope.payload.get("operation", "")).inc()
        return outcome
