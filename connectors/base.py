"""The one connector contract — every protocol sits behind it (Camel's endpoint, Benthos' input/output).

Inbound — a **source** receives native messages and turns each into an :class:`~hub.envelope.Envelope`::

    source = registry.new_source("rest", config, context)
    await source.start(emit)      # begin receiving
    ...
    await source.stop()           # stop receiving, release connections

``emit(envelope)`` returns only once the envelope is durable on Kafka (acks=all). A source therefore
acknowledges its partner — HTTP 202, SOAP response, moving a file to ``processed/``, AMQP ack — only
*after* ``emit`` returned, and answers with an error (HTTP 503, SOAP Fault, leaving the file, nack)
when ``emit`` raised :class:`~hub.errors.BrokerUnavailable`. Nothing is acknowledged that is not on Kafka.

Outbound — a **sink** delivers one envelope to a partner and says how it went::

    sink = registry.new_sink("soap", config, context)
    await sink.start()
    outcome = await sink.deliver(envelope)   # never raises for partner failures: see Outcome
    await sink.stop()

Retries, backoff, dead-lettering, metrics and tracing are *not* the sink's business: they wrap it
(``app/delivery.py``), so every protocol gets the same policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from hub.envelope import Envelope
from hub.intake import Accepted


@runtime_checkable
class Emit(Protocol):
    """Everything a source may call on what ``start`` handed it — nothing else, and nothing found
    with ``getattr``: every source gets the whole of it (``routes/pipeline.py`` RouteEmit).

    Calling it puts one raw envelope through the route (transform, canonical validation, admission)
    and onto its target, idempotently; it returns once the target has it (Kafka acks=all, or the
    route's sink said ok) — or, for a redelivery, the first delivery's ids. It raises
    :class:`~hub.errors.ValidationFailed` / :class:`~hub.errors.PermanentError` for a message that
    will never be accepted, :class:`~hub.errors.RetryableError` (BrokerUnavailable,
    StoreUnavailable) when it cannot take it *now*.
    """

    async def __call__(self, envelope: Envelope) -> Accepted: ...

    @property
    def can_reject(self) -> bool:
        """False when ``prepare`` cannot fail (no transform, no canonical model): a batch source
        then only checks that its file parses before it emits any of it."""
        ...

    def prepare(self, envelope: Envelope) -> Envelope:
        """Transform + validate one raw envelope without publishing it (ValidationFailed names
        the fields); batch sources (files) run it over the whole batch before publishing any."""
        ...

    async def publish_batch(self, envelopes: Iterable[Envelope]) -> int:
        """Publish envelopes ``prepare`` already returned, pipelined; returns how many."""
        ...

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[Accepted | BaseException]:
        """``self(envelope)`` for each raw envelope of a batch (a queue's deliveries), one result per
        envelope in order — its Accepted or the exception ``self(envelope)`` would have raised — with
        one duplicate check, one Kafka write and one record write for the whole batch."""
        ...

    async def reject(self, reason: str, envelope: Envelope | None = None, **origin: Any) -> None:
        """Record something the source could not accept (a dead letter with ``origin``: protocol,
        ref, file, queue …), after it told its partner so (Fault, ``failed/``, DLX)."""
        ...


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

    def sample(self, raw: bytes) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): the raw envelope(s) one native message becomes,
        through the same parse function the live handler uses; ValidationFailed as live traffic."""
        ...


@runtime_checkable
class Sink(Protocol):
    name: ClassVar[str]

    async def start(self) -> None: ...

    async def deliver(self, envelope: Envelope) -> Outcome: ...

    async def stop(self) -> None: ...

