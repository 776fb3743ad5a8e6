"""Process a Faust stream concurrently without losing at-least-once or per-key order.

Faust commits an offset once the event is acked, and commits across gaps only up to the first
un-acked offset — so events handed to tasks and acked when *done* keep at-least-once even when
they finish out of order. Events with the same key (an order id) run one after the other in
arrival order; different keys run in parallel up to ``limit``.

A handler that raises is run again (backoff :data:`HANDLER_RERUN`, until it works), never acked:
the handlers already dead-letter what can never work, so an exception escaping one is an outage
(MongoDB, the broker) or a bug, and acking would commit past a record whose work did not happen
(issue 10: a failed delivery handler was acked and left to a 300 s recovery scan). The key's later
events wait behind it, and Faust commits nothing past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hub.retrying import Backoff, Sleep

log = logging.getLogger(__name__)
HANDLER_RERUN = Backoff("handler-rerun", attempts=None, initial_s=0.2, max_s=5.0)


class KeyedPool:
    def __init__(self, limit: int, name: str, *, sleep: Sleep = asyncio.sleep) -> None:
        self._sleep = sleep
        self._sem = asyncio.Semaphore(limit)
        self._tails: dict[Any, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.name = name

    async def submit(self, key: Any, work: Callable[[], Awaitable[None]], done: Callable[[], Awaitable[Any]]) -> None:
        """Queue ``work`` behind earlier work for ``key``; ``done`` (the ack) runs once it succeeded
        (a failure re-runs it, see the module docstring).

        Waits while ``limit`` items are in flight, which back-pressures the consumer."""
        await self._sem.acquire()
        previous = self._tails.get(key) if key is not None else None

        async def run() -> None:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
                await self._until_done(key, work)
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

    async def _until_done(self, key: Any, work: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await work()
                return
            except Exception:
                failures += 1
                wait = HANDLER_RERUN.delay(failures)
                log.exception("%s: handler failed for key %r (%d time(s)); not acknowledged, run again in %.1fs",
                              self.name, key, failures, wait)
                await self._sleep(wait)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))
