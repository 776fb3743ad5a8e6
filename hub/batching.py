"""Micro-batching ("group commit") for per-request database work.

Why: under load, 50 concurrent intake requests each doing one MongoDB lookup and one insert cost
100 round trips; batched, they cost 2 (``find {_id: {$in: …}}`` and ``insert_many``). A request
waits at most one in-flight batch: a batch is sent as soon as the previous one returned, so at
low load a single request goes straight through with no added delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """``await batcher.submit(item)`` → the result ``handler`` returned for that item.

    ``handler(items)`` returns one result per item, in order; a result that is an exception
    instance is raised to that item's caller only. If ``handler`` itself raises, every caller
    of that batch gets the error.
    """

    def __init__(self, handler: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
                 max_batch: int = 256) -> None:
        self._handler = handler
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running = False

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let requests that arrived in this loop turn join the batch
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    results = await self._handler([item for item, _ in batch])
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._running = False
