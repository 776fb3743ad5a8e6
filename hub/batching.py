"""Micro-batching ("group commit") for per-request database work — the hub's one batching module.

Why: under load, 50 concurrent intake requests each doing one MongoDB lookup and one insert cost
100 round trips; batched, they cost 2 (``find {_id: {$in: …}}`` and ``insert_many``). The engine's
order saves and the delivery agent's lookups gain the same way (measured on the embedded
SecantusDB, which is CPU-bound per request). Each caller still awaits *its* result, so nothing is
acknowledged on Kafka before its document is stored.

One batch is in flight at a time per batcher (which keeps one order's writes in order). A batch
is sent ``max_delay_s`` after its first item arrived (``0``: as soon as the previous batch
returned, so at low load a single request goes straight through), or at once when ``max_batch``
items are waiting. :class:`BulkWriter` (15 ms) and :class:`BulkReader` (10 ms) are batchers over
one collection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from motor.motor_asyncio import AsyncIOMotorCollection
from pymongo import ReplaceOne, UpdateOne

T = TypeVar("T")
R = TypeVar("R")

WRITE_DELAY_S = 0.015  # the engine's order saves and call upserts
READ_DELAY_S = 0.01  # the delivery agent's "already delivered?" lookups


class MicroBatcher(Generic[T, R]):
    """``await batcher.submit(item)`` → the result ``handler`` returned for that item.

    ``handler(items)`` returns one result per item, in order; a result that is an exception
    instance is raised to that item's caller only. If ``handler`` itself raises, every caller
    of that batch gets the error.
    """

    def __init__(self, handler: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
                 max_batch: int = 256, max_delay_s: float = 0.0) -> None:
        self._handler = handler
        self._max = max_batch
        self._delay = max_delay_s
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._first_at = 0.0  # loop time the oldest pending item arrived
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # referenced: an unreferenced task may be collected

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        if not self._pending:
            self._first_at = loop.time()
        self._pending.append((item, fut))
        if len(self._pending) >= self._max:
            self._full.set()
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="micro-batcher")
        return await fut

    async def _wait_for_company(self) -> None:
        """Let items that arrive within the window (or in this loop turn) join the batch."""
        if self._delay <= 0:
            await asyncio.sleep(0)
            return
        remaining = self._first_at + self._delay - asyncio.get_running_loop().time()
        if remaining > 0 and len(self._pending) < self._max:
            self._full.clear()
            try:
                await asyncio.wait_for(self._full.wait(), remaining)
            except TimeoutError:
                pass

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._wait_for_company()
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                if self._pending:
                    self._first_at = asyncio.get_running_loop().time()
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
            self._task = None


WriteOp = tuple[ReplaceOne[dict[str, Any]] | UpdateOne, dict[str, Any] | None]


class BulkWriter:
    """Concurrent single-document writes to one collection → one unordered ``bulk_write``.

    A versioned replace (``replace_versioned``) is told whether *its* write won: when the bulk
    matched fewer documents than it holds, the stored versions are read back. Known limit (the
    engine's concurrency model, issue 10): two racers of one order both write ``version = N+1``,
    so a loser whose rival stored the same number is told it won.
    """

    def __init__(self, collection: AsyncIOMotorCollection[dict[str, Any]], max_ops: int = 256,
                 max_delay_s: float = WRITE_DELAY_S) -> None:
        self.collection = collection
        self._batcher: MicroBatcher[WriteOp, bool] = MicroBatcher(self._write, max_ops, max_delay_s)

    async def replace_versioned(self, doc: dict[str, Any], expected_version: int) -> bool:
        """Replace ``doc`` if its stored ``version`` is ``expected_version``; False on a conflict."""
        check = {"_id": doc["_id"], "version": doc["version"]}
        return await self._batcher.submit((ReplaceOne({"_id": doc["_id"], "version": expected_version}, doc), check))

    async def upsert(self, _id: Any, fields: dict[str, Any]) -> None:
        await self._batcher.submit((UpdateOne({"_id": _id}, {"$set": fields}, upsert=True), None))

    async def _write(self, batch: Sequence[WriteOp]) -> list[bool]:
        result = await self.collection.bulk_write([op for op, _ in batch], ordered=False)
        guarded = [c for _, c in batch if c is not None]
        if result.matched_count + result.upserted_count >= len(batch) or not guarded:
            return [True] * len(batch)
        # some versioned replace lost a race: find out which ones
        stored = {d["_id"]: d["version"] async for d in self.collection.find(
            {"_id": {"$in": [c["_id"] for c in guarded]}}, {"version": 1})}
        return [c is None or stored.get(c["_id"]) == c["version"] for _, c in batch]


class BulkReader:
    """Concurrent ``find_one({"_id": x})`` lookups on one collection → one ``_id $in`` query."""

    def __init__(self, collection: AsyncIOMotorCollection[dict[str, Any]], max_ids: int = 256,
                 max_delay_s: float = READ_DELAY_S) -> None:
        self.collection = collection
        self._batcher: MicroBatcher[Any, dict[str, Any] | None] = MicroBatcher(self._find, max_ids, max_delay_s)

    async def get(self, _id: Any) -> dict[str, Any] | None:
        return await self._batcher.submit(_id)

    async def _find(self, ids: Sequence[Any]) -> list[dict[str, Any] | None]:
        found = {d["_id"]: d async for d in self.collection.find({"_id": {"$in": list(dict.fromkeys(ids))}})}
        return [found.get(_id) for _id in ids]
