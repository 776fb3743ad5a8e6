"""Process a Faust stream concurrently without losing at-least-once or per-key order.

Faust commits an offset once the event is acked, and commits across gaps only up to the first
un-acked offset — so events handed to tasks and acked when *done* keep at-least-once even when
they finish out of order. Events with the same key (an order id) run one after the other in
arrival order; different keys run in parallel up to ``limit``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class KeyedPool:
    def __init__(self, limit: int, name: str) -> None:
        self._sem = asyncio.Semaphore(limit)
        self._tails: dict[Any, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.name = name

    async def submit(self, key: Any, work: Callable[[], Awaitable[None]], done: Callable[[], Awaitable[Any]]) -> None:
        """Queue ``work`` behind earlier work for ``key``; ``done`` (the ack) runs after it, even on error.

        Waits while ``limit`` items are in flight, which back-pressures the consumer."""
        await self._sem.acquire()
        previous = self._tails.get(key) if key is not None else None

        async def run() -> None:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
                try:
                    await work()
                except Exception:  # the handler logs and dead-letters; the pool must keep going
                    log.exception("%s: unhandled error for key %r", self.name, key)
                await done()
            finally:
                self._sem.release()
                if key is not None and self._tails.get(key) is task:
                    del self._tails[key]

        task = asyncio.ensure_future(run())
        if key is not None:
            self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))
