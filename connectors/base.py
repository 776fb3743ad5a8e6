"""The one connector contract — every protocol sits behind it (Camel's endpoint, Benthos' input/output).

Inbound — a **source** receives native messages and turns each into an :class:`~hub.envelope.Envelope`::

    source = registry.source("rest")(config, context)
    await source.start(emit)      # begin receiving
    ...
    await source.stop()           # stop receiving, release connections

``emit(envelope)`` returns only once the envelope is durable on Kafka (acks=all). A source therefore
acknowledges its partner — HTTP 202, SOAP response, moving a file to ``processed/``, AMQP ack — only
*after* ``emit`` returned, and answers with an error (HTTP 503, SOAP Fault, leaving the file, nack)
when ``emit`` raised :class:`~hub.errors.BrokerUnavailable`. Nothing is acknowledged that is not on Kafka.

Outbound — a **sink** delivers one envelope to a partner and says how it went::

    sink = registry.sink("soap")(config, context)
    await sink.start()
    outcome = await sink.deliver(envelope)   # never raises for partner failures: see Outcome
    await sink.stop()

Retries, backoff, dead-lettering, metrics and tracing are *not* the sink's business: they wrap it
(``app/delivery.py``), so every protocol gets the same policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from hub.envelope import Envelope
from hub.intake import Accepted

Emit = Callable[[Envelope], Awaitable[Accepted]]
"""Put an envelope on the source's Kafka topic, idempotently (``hub/intake.py``); returns once the
broker acknowledged it (acks=all) — or, for a redelivery, the first delivery's ids. Raises
BrokerUnavailable / StoreUnavailable (both retryable) when it cannot."""


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt did.

    ``ok`` — the partner accepted it (by the partner's own rule: HTTP 201, ``checkResult=1``,
    ``code:"0"`` …). ``retryable`` — a failure worth retrying (timeout, 5xx, connection refused).
    ``response`` is what the partner answered (already masked of secrets), for the order's call log.
    """

    ok: bool
    retryable: bool = False
    status: str = ""
    error: str | None = None
    response: Any = None
    duration_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    name: ClassVar[str]

    async def start(self, emit: Emit) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    name: ClassVar[str]

    async def start(self) -> None: ...

    async def deliver(self, envelope: Envelope) -> Outcome: ...

    async def stop(self) -> None: ...

