"""The one builder of the standard delivery chain, from a partner's :class:`~hub.retry.RetryPolicy`.

Outside in (each a Sink wrapping the next; ``deliver`` goes down, the outcome comes back up)::

    DeadLetterOnFailure   gave up ⇒ dead letter (hub.deadletter); ok ⇒ resolve earlier letters
    Idempotency           claim the key first (a leased claim in ``deliveries``): delivered ⇒ answer from
                          the record; claimed by a live owner ⇒ wait for it; ok ⇒ record it (claims.py)
    GiveUpMetrics         hub_delivery_failures_total
    Retry                 policy: attempts, exponential backoff + jitter (tenacity); every attempt kept
    CircuitBreaker        (policy.circuit, optional) open after N consecutive failures: fail fast, retryable
    Concurrency           policy.concurrency attempts in flight
    AttemptMetrics        hub_delivery_attempts_total, hub_delivery_attempt_seconds
    Timeout               policy.timeout_s + 1 s backstop; a raise ⇒ permanent error
    <the sink>            one attempt, classified as an Outcome (connectors/<proto>/sink.py)

The same chain serves a partner's delivery agent (``app/delivery.py``) and a route whose target is
a sink (``routes/manager.py``): what differs is only the topic the dead letters name, the record
scope, and what the letters' origin says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.base import Sink
from connectors.delivery.circuit import CircuitBreaker, CircuitPolicy
from connectors.delivery.claims import DEFAULT_LEASE_S, INCARNATION
from connectors.delivery.deadletter import DeadLetterOnFailure
from connectors.delivery.idempotency import DeliveryLog, Idempotency
from connectors.delivery.limit import Concurrency
from connectors.delivery.metrics import AttemptMetrics, GiveUpMetrics
from connectors.delivery.retry import Retry
from connectors.delivery.timeout import Timeout
from hub.deadletter import DeadLetters
from hub.envelope import Envelope
from hub.retry import RetryPolicy

TIMEOUT_GRACE_S = 1.0  # the sink's own client timeout (policy.timeout_s) answers first, with its own status


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ChainSpec:
    """Who is delivered to, and where the chain keeps what it finds."""

    partner: str  # metrics label, the dead letters' partner, the deliveries record
    policy: RetryPolicy
    source_topic: str  # the topic dead letters name (replay produces there)
    dead_letters: DeadLetters | None = None  # None: failures are only returned (no dead letters)
    records: DeliveryLog | None = None  # None: no idempotency records
    scope: str = ""  # deliveries key prefix (see connectors/delivery/idempotency.py)
    record_fields: dict[str, Any] = field(default_factory=dict)
    owner: str = INCARNATION  # who holds a claim: this process (tests: two "processes" in one)
    lease_s: float = DEFAULT_LEASE_S  # a claim's lease, renewed every third of it while the call runs
    describe: Callable[[Envelope], dict[str, Any]] | None = None  # a dead letter's origin, per envelope
    circuit: CircuitPolicy | None = None  # overrides policy.circuit (tests)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] | None = None
    now: Callable[[], datetime] = _utcnow


def build_chain(sink: Sink, spec: ChainSpec) -> Sink:
    """Wrap ``sink`` in the standard chain (see the module docstring for the order and why)."""
    p = spec.policy
    circuit = spec.circuit or (CircuitPolicy(p.circuit.failures, p.circuit.cooldown_s) if p.circuit else None)
    chain: Sink = Timeout(sink, p.timeout_s + TIMEOUT_GRACE_S, label=spec.partner)
    chain = AttemptMetrics(chain, spec.partner)
    chain = Concurrency(chain, p.concurrency)
    if circuit is not None:
        chain = (CircuitBreaker(chain, circuit, label=spec.partner, clock=spec.clock)
                 if spec.clock is not None else CircuitBreaker(chain, circuit, label=spec.partner))
    chain = Retry(chain, p, label=spec.partner, sleep=spec.sleep, now=spec.now)
    chain = GiveUpMetrics(chain, spec.partner)
    if spec.records is not None:
        chain = Idempotency(chain, spec.records, partner=spec.partner, scope=spec.scope, fields=spec.record_fields,
                            now=spec.now, owner=spec.owner, lease_s=spec.lease_s, sleep=spec.sleep)
    if spec.dead_letters is not None:
        chain = DeadLetterOnFailure(chain, spec.dead_letters, source_topic=spec.source_topic, partner=spec.partner,
                                    describe=spec.describe)
    return chain
