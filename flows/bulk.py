"""Group concurrent single-document writes into one ``bulk_write`` per collection.

Why: the engine handles many orders at once, each with its own small write; one round trip and
one server-side batch for all of them is several times cheaper than N ``replace_one`` calls
(measured on the embedded SecantusDB, which is CPU-bound per request). Each caller still awaits
*its* write, so nothing is acknowledged on Kafka before the document is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from motor.motor_asyncio import AsyncIOMotorCollection
from pymongo import ReplaceOne, UpdateOne


class BulkWriter:
    def __init__(self, collection: AsyncIOMotorCollection, max_ops: int = 256, max_delay_s: float = 0.015) -> None:
        self.collection = collection
        self.max_ops = max_ops
        self.max_delay_s = max_delay_s
        self._ops: list[tuple[ReplaceOne | UpdateOne, asyncio.Future[bool], dict[str, Any] | None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    async def replace_versioned(self, doc: dict[str, Any], expected_version: int) -> bool:
        """Replace ``doc`` if its stored ``version`` is ``expected_version``; False on a conflict."""
        check = {"_id": doc["_id"], "version": doc["version"]}
        return await self._submit(ReplaceOne({"_id": doc["_id"], "version": expected_version}, doc), check)

    async def upsert(self, _id: Any, fields: dict[str, Any]) -> None:
        await self._submit(UpdateOne({"_id": _id}, {"$set": fields}, upsert=True), None)

    async def _submit(self, op: ReplaceOne | UpdateOne, check: dict[str, Any] | None) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ops.append((op, fut, check))
        if len(self._ops) >= self.max_ops:
            self._flush_soon(0)
        elif self._timer is None:
            self._flush_soon(self.max_delay_s)
        return await fut

    def _flush_soon(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, lambda: asyncio.ensure_future(self._flush()))

    async def _flush(self) -> None:
        self._timer = None
        batch, self._ops = self._ops, []
        if not batch:
            return
        async with self._lock:  # one bulk in flight per collection keeps writes of one order in order
            try:
                result = await self.collection.bulk_write([op for op, _, _ in batch], ordered=False)
                guarded = [c for _, _, c in batch if c is not None]
                if result.matched_count + result.upserted_count >= len(batch):
                    outcomes = [True] * len(batch)
                elif guarded:  # some versioned replace lost a race: find out which ones
                    stored = {d["_id"]: d["version"] async for d in self.collection.find(
                        {"_id": {"$in": [c["_id"] for c in guarded]}}, {"version": 1})}
                    outcomes = [c is None or stored.get(c["_id"]) == c["version"] for _, _, c in batch]
                else:
                    outcomes = [True] * len(batch)
            except Exception as exc:
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
        for (_, fut, _), ok in zip(batch, outcomes, strict=True):
            if not fut.done():
                fut.set_result(ok)


class BulkReader:
    """Batch concurrent ``find_one({"_id": x})`` lookups into one ``_id $in`` query."""

    def __init__(self, collection: AsyncIOMotorCollection, max_ids: int = 256, max_delay_s: float = 0.01) -> None:
        self.collection = collection
        self.max_ids = max_ids
        self.max_delay_s = max_delay_s
        self._waiting: dict[Any, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def get(self, _id: Any) -> dict[str, Any] | None:
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(_id, []).append(fut)
        if len(self._waiting) >= self.max_ids:
            self._schedule(0)
        elif self._timer is None:
            self._schedule(self.max_delay_s)
        return await fut

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self._flush()))

    async def _flush(self) -> None:
        self._timer = None
        waiting, self._waiting = self._waiting, {}
        if not waiting:
            return
        try:
            found = {d["_id"]: d async for d in self.collection.find({"_id": {"$in": list(waiting)}})}
        except Exception as exc:
            for futs in waiting.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            return
        for _id, futs in waiting.items():
            for f in futs:
                if not f.done():
                    f.set_result(found.get(_id))
