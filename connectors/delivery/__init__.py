"""Delivery as a chain of wrappers around *any* sink — timeout, retry, circuit breaker,
idempotency, metrics, dead letter — so a route's sink gets the same guarantees as a partner's.

One module per wrapper; :func:`build_chain` (``chain.py``) composes the standard chain from a
policy, and ``trail`` reads what the wrappers found (attempts, dead letter id, a recorded delivery)
off the outcome. Every wrapper is a :class:`~connectors.base.Sink` holding the next one
(``wrapper.py``), so each is unit-tested alone against a fake sink.
"""

from connectors.delivery import trail
from connectors.delivery.chain import ChainSpec, build_chain
from connectors.delivery.circuit import CircuitBreaker, CircuitPolicy
from connectors.delivery.claims import INCARNATION, MemoryDeliveryLog
from connectors.delivery.deadletter import DeadLetterOnFailure, origin
from connectors.delivery.idempotency import DeliveryLog, Idempotency, MongoDeliveryLog
from connectors.delivery.limit import Concurrency
from connectors.delivery.metrics import AttemptMetrics, GiveUpMetrics
from connectors.delivery.retry import Retry
from connectors.delivery.timeout import Timeout
from connectors.delivery.wrapper import Wrapper, innermost

__all__ = [
    "INCARNATION", "AttemptMetrics", "ChainSpec", "CircuitBreaker", "CircuitPolicy", "Concurrency",
    "DeadLetterOnFailure", "DeliveryLog", "GiveUpMetrics", "Idempotency", "MemoryDeliveryLog", "MongoDeliveryLog",
    "Retry", "Timeout", "Wrapper",
    "build_chain", "innermost", "origin", "trail",
]
