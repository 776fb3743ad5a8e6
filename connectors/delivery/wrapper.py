"""The base of every delivery wrapper: a :class:`~connectors.base.Sink` that holds the next one.

Why a chain of small sinks (Starlette middleware, Temporal interceptors) instead of one delivery
loop: each concern — timeout, retry, circuit breaker, idempotency, metrics, dead letter — is written
and tested once, and *any* sink (a partner's ``outbound``, a route's ``target.sink``) gets the same
guarantees by being wrapped, not by being called from one particular agent.
"""

from __future__ import annotations

from typing import ClassVar

from connectors.base import Outcome, Sink
from hub.envelope import Envelope


class Wrapper:
    """Delegates ``start``/``stop`` down the chain; a subclass overrides ``deliver`` and calls
    ``self.next.deliver(envelope)`` (or decides not to)."""

    name: ClassVar[str] = "wrapper"

    def __init__(self, next: Sink) -> None:
        self.next = next

    async def start(self) -> None:
        await self.next.start()

    async def deliver(self, envelope: Envelope) -> Outcome:
        return await self.next.deliver(envelope)

    async def stop(self) -> None:
        await self.next.stop()


def innermost(sink: Sink) -> Sink:
    """The protocol sink at the bottom of a chain (for logs and error messages)."""
    while isinstance(sink, Wrapper):
        sink = sink.next
    return sink
