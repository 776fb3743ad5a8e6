"""MongoDB access for the engine: order documents (optimistic ``version``), the flat ``calls``
collection, and the recovery query. A small in-process cache skips the read before each event;
the version check on write makes a stale cache harmless (conflict ⇒ reload and re-apply).

The cache is bounded by :data:`CACHE_SIZE` documents. Why that small: an order document is
10–15 KB in memory, and orders that wait for a manual stage or a callback stay open (and cached)
for days — a file of many orders filled a 20,000-entry cache to ~280 MB that was never given
back. Only orders the engine is working on *now* benefit from the cache (``engine_concurrency``,
64 by default, plus their immediate follow-up events), so a thousand (~14 MB) cover them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from flows.documents import CALLS, ORDERS, OrderStatus
from hub.batching import BulkWriter
from hub.db import declare_indexes

OPEN = [OrderStatus.in_flight.value, OrderStatus.waiting.value]
CACHE_SIZE = 1000  # documents; see the module docstring
EVENTS = "order_events"  # callbacks and manual submissions received over HTTP, journaled before Kafka
declare_indexes(ORDERS, IndexModel([("status", ASCENDING), ("next_check_at", ASCENDING)], name="by_next_check"))
declare_indexes(EVENTS, IndexModel([("order_id", ASCENDING)], name="by_order"))


class OrderStore:
    def __init__(self, db: AsyncIOMotorDatabase, cache_size: int = CACHE_SIZE) -> None:
        self.orders = db[ORDERS]
        self.calls = db[CALLS]
        self.events = db[EVENTS]
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._order_writes = BulkWriter(self.orders)
        self._call_writes = BulkWriter(self.calls)
        self._cache_size = cache_size

    async def load(self, order_id: str) -> dict[str, Any] | None:
        doc = self._cache.get(order_id)
        if doc is not None:
            self._cache.move_to_end(order_id)
            return doc
        doc = await self.orders.find_one({"_id": order_id})
        if doc is not None:
            self._remember(doc)
        return doc

    def forget(self, order_id: str) -> None:
        self._cache.pop(order_id, None)

    def _remember(self, doc: dict[str, Any]) -> None:
        self._cache[doc["_id"]] = doc
        self._cache.move_to_end(doc["_id"])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def create(self, doc: dict[str, Any]) -> bool:
        """False when the order exists already (a redelivered ``order.received``)."""
        doc["version"] = 1
        try:
            await self.orders.insert_one(doc)
        except DuplicateKeyError:
            return False
        self._remember(doc)
        return True

    async def save(self, doc: dict[str, Any], expected_version: int) -> bool:
        """Write the whole document if nobody else did since we read it; False on conflict."""
        doc["version"] = expected_version + 1
        if not await self._order_writes.replace_versioned(doc, expected_version):
            self.forget(doc["_id"])
            return False
        if doc["status"] in OPEN:
            self._remember(doc)
        else:
            self.forget(doc["_id"])
        return True

    async def upsert_calls(self, calls: list[dict[str, Any]]) -> None:
        if calls:
            await asyncio.gather(*(self._call_writes.upsert(c["call_id"], c) for c in calls))

    async def journaled(self, order_ids: list[str]) -> list[dict[str, Any]]:
        """Envelopes received over HTTP for these orders (re-emitted after a restart; the engine
        ignores the ones it already applied)."""
        cursor = self.events.find({"order_id": {"$in": order_ids}}, {"envelope": 1}).sort("received_at", ASCENDING)
        return [d["envelope"] async for d in cursor if d.get("envelope")]

    async def due(self, now: datetime | None, limit: int = 0, before: datetime | None = None) -> list[str]:
        """Open orders whose ``next_check_at`` has passed (all open orders last written ``before``
        a time when ``now`` is None: the startup scan)."""
        out: list[str] = []
        for status in OPEN:  # equality + range per status: an index range scan, no $in (slow on SecantusDB)
            query: dict[str, Any] = {"status": status}
            if now is not None:
                query["next_check_at"] = {"$lte": now}
            if before is not None:
                query["updated_at"] = {"$lt": before}
            cursor = self.orders.find(query, {"_id": 1}).limit(limit)  # 0 = no limit
            out += [d["_id"] async for d in cursor]
        return out
