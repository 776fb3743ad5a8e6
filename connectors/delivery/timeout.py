"""Timeout: the inner sink answers with an :class:`~connectors.base.Outcome`, in time, always.

A sink has its own per-attempt timeout (its client's); this wrapper is the backstop for a sink that
hangs past it, and the place a sink *bug* becomes an answer: a raise is a permanent ``error``
outcome, so the envelope is dead-lettered instead of lost (the Sink contract says ``deliver`` never
raises for partner failures).
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from connectors.base import Outcome, Sink
from connectors.delivery.wrapper import Wrapper
from hub.envelope import Envelope

log = logging.getLogger(__name__)


class Timeout(Wrapper):
    name: ClassVar[str] = "timeout"

    def __init__(self, next: Sink, seconds: float, *, label: str = "") -> None:
        super().__init__(next)
        self.seconds = seconds
        self.label = label or next.name

    async def deliver(self, envelope: Envelope) -> Outcome:
        try:
            return await asyncio.wait_for(self.next.deliver(envelope), self.seconds)
        except TimeoutError:
            return Outcome(ok=False, retryable=True, status="timeout", error=f"no answer within {self.seconds:g}s")
        except Exception as exc:  # a sink bug must not lose the envelope: it is dead-lettered
            log.exception("sink %s raised", self.label)
            return Outcome(ok=False, retryable=False, status="error", error=f"{type(exc).__name__}: {exc}")
