"""Concurrency: at most N attempts in flight to one partner (its ``policy.concurrency``).

Per attempt, not per delivery: an envelope waiting out its backoff holds no slot, so a partner that
is slow for some calls does not stall the others queued behind their retries.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from connectors.base import Outcome, Sink
from connectors.delivery.wrapper import Wrapper
from hub.envelope import Envelope


class Concurrency(Wrapper):
    name: ClassVar[str] = "concurrency"

    def __init__(self, next: Sink, limit: int) -> None:
        super().__init__(next)
        self._sem = asyncio.Semaphore(limit)

    async def deliver(self, envelope: Envelope) -> Outcome:
        async with self._sem:
            return await self.next.deliver(envelope)
