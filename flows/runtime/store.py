"""MongoDB access for v2 orders: load (small cache), create, replace under a revision token, mark the
outbox sent, lease due timers and stale outboxes, and keep every blueprint version an order pinned.

Concurrency: every write sets a **fresh revision token** (``rev``, a uuid) and is filtered on the
token it read. A loser of a race matches nothing and is told so; it reloads and applies its event
again. (v1 wrote ``version + 1``: two racers wrote the same number and a batched check told the
loser it had won — issue 10.) Single-document writes, no transactions.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, IndexModel

from flows.documents import ORDERS
from flows.graph.model import Blueprint
from hub.batching import BulkWriter
from hub.db import declare_indexes, retire_indexes

VERSIONS = "blueprint_versions"
CACHE_SIZE = 1000
OUTBOX_STALE_S = 10.0  # = FlowSettings.outbox_stale_s's default
# One index for both sweeps: ``wake_at`` = the earlier of the next timer and the moment the outbox
# becomes stale (``outbox_at`` + the stale age). Every index of ``orders`` costs every order write
# (SecantusDB re-writes each entry and re-reads every index's definition per statement: ≈ 0.3-0.6 ms
# per index per write, ~9 writes per order), and the two sweeps' indexes were two of seven.
# Plain, not sparse: on SecantusDB a sparse index is a partial one, matched against every write; a
# null wake_at is never due, as long as the query gives a lower bound (``due``).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
declare_indexes(ORDERS, IndexModel([("wake_at", ASCENDING)], name="by_wake"))
retire_indexes(ORDERS, "by_timer_due", "by_outbox_due")


class OrderStoreV2:
    def __init__(self, db: AsyncIOMotorDatabase[Any], cache_size: int = CACHE_SIZE,
                 outbox_stale_s: float = OUTBOX_STALE_S) -> None:
        self.db = db
        self.outbox_stale = timedelta(seconds=outbox_stale_s)
        self.orders = db[ORDERS]
        self.versions = db[VERSIONS]
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._writes = BulkWriter(self.orders)

    # ---- documents --------------------------------------------------------------------------
    async def load(self, order_id: str) -> dict[str, Any] | None:
        doc = self._cache.get(order_id)
        if doc is not None:
            self._cache.move_to_end(order_id)
            return doc
        doc = await self.orders.find_one({"_id": order_id})
        if doc is not None and doc.get("engine") == 2:
            self._remember(doc)
        return doc

    def cached(self, order_id: str) -> dict[str, Any] | None:
        """The document as this process last wrote or read it (None: not cached); no database read."""
        return self._cache.get(order_id)

    def forget(self, order_id: str) -> None:
        self._cache.pop(order_id, None)

    def _remember(self, doc: dict[str, Any]) -> None:
        if doc.get("status") in ("completed", "failed", "cancelled") and not doc.get("outbox"):
            self.forget(doc["_id"])
            return
        self._cache[doc["_id"]] = doc
        self._cache.move_to_end(doc["_id"])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def create(self, doc: dict[str, Any]) -> bool:
        """Insert a new order; False when it exists already (a redelivered intake, or a race)."""
        doc["wake_at"] = self.wake_at(doc)
        if not await self._writes.insert_new(doc):
            return False
        self._remember(doc)
        return True

    async def replace(self, doc: dict[str, Any], expected_rev: str | None) -> bool:
        """Write ``doc`` if nobody wrote since we read ``expected_rev``; False on a lost race.
        Concurrent writes of many orders go to MongoDB as one ``bulk_write`` (hub/batching.py): on
        the embedded SecantusDB the cost is per command, not per document."""
        doc["wake_at"] = self.wake_at(doc)
        if not await self._writes.replace_if_rev(doc, expected_rev):
            self.forget(doc["_id"])
            return False
        self._remember(doc)
        return True

    async def mark_sent(self, doc: dict[str, Any], sent: list[str], sent_at: datetime) -> bool:
        """Remove carried-out commands from the outbox (one small update, revision-checked, batched)."""
        done = set(sent)
        outbox = [c for c in doc["outbox"] if c["id"] not in done]
        calls = {cid: ({**c, "sent_at": sent_at} if cid in done else c) for cid, c in doc["open_calls"].items()}
        fields: dict[str, Any] = {"outbox": outbox, "outbox_at": doc["outbox_at"] if outbox else None,
                                  "open_calls": calls}
        fields["wake_at"] = self.wake_at({**doc, **fields})
        rev = await self._writes.update_if_rev(doc["_id"], doc["rev"], fields)
        if rev is None:
            self.forget(doc["_id"])
            return False
        doc.update(fields, rev=rev)
        self._remember(doc)
        return True

    # ---- sweeps (safe with several workers: a lease is taken by a conditional update) ---------
    def wake_at(self, doc: dict[str, Any]) -> datetime | None:
        """When a sweep has something to do for the order: its next timer, or its outbox going stale."""
        due = [t for t in (doc.get("next_timer_at"),
                           doc["outbox_at"] + self.outbox_stale if doc.get("outbox_at") else None) if t is not None]
        return min(due) if due else None

    async def due(self, field: str, before: datetime, limit: int = 500) -> list[str]:
        """Orders whose ``field`` (``next_timer_at`` or ``outbox_at``) is at or before ``before``:
        read through the one ``wake_at`` index (both sweeps' candidates), checked per row.

        The lower bound is there for the embedded SecantusDB: with only ``$lte`` it walks the index
        from its start, through the null ``wake_at`` of every finished order, and decodes each one.
        With 10,000 finished orders a sweep (once a second) cost 530-620 ms of the database, with the
        bound 2 ms (2026-12-03); a fusion run fell from 20 to 4 members/s as its orders piled up.
        MongoDB's own bounds for ``$lte`` a date already start at the first date."""
        horizon = before + self.outbox_stale if field == "outbox_at" else before
        cursor = (self.orders.find({"wake_at": {"$gte": EPOCH, "$lte": horizon}}, {field: 1})
                  .sort("wake_at", ASCENDING).limit(limit))
        return [d["_id"] async for d in cursor if d.get(field) is not None and _aware(d[field]) <= before]

    async def lease(self, order_id: str, lease_field: str, now: float, lease_s: float) -> bool:
        """Take the order's ``timer_lease`` / ``outbox_lease`` if it is free (or expired)."""
        result = await self.orders.update_one({"_id": order_id, lease_field: {"$lt": now}},
                                              {"$set": {lease_field: now + lease_s}})
        return result.modified_count == 1

    async def backfill_wake(self) -> int:
        """Give ``wake_at`` to the open orders an earlier version wrote without it (their timers and
        stale outboxes are found through it); once, at a worker's first full scan. A write meanwhile
        sets its own: the filter leaves it alone."""
        query = {"status": {"$in": ["in_flight", "waiting"]}, "engine": 2, "wake_at": {"$exists": False}}
        n = 0
        async for d in self.orders.find(query, {"next_timer_at": 1, "outbox_at": 1}):
            await self.orders.update_one({"_id": d["_id"], "wake_at": {"$exists": False}},
                                         {"$set": {"wake_at": self.wake_at(d)}})
            n += 1
        return n

    async def open_orders(self, before: datetime | None = None) -> list[str]:
        """Every open v2 order (the full scan after a broker loss), optionally last written ``before``."""
        out: list[str] = []
        for status in ("in_flight", "waiting"):
            query: dict[str, Any] = {"status": status, "engine": 2}
            if before is not None:
                query["updated_at"] = {"$lt": before}
            out += [d["_id"] async for d in self.orders.find(query, {"_id": 1})]
        return out

    # ---- pinned blueprint versions -----------------------------------------------------------
    async def keep_versions(self, blueprints: list[Blueprint]) -> None:
        """Store every loaded version by digest, so an order finishes on the version it started on
        even after the file was edited and the worker restarted."""
        for bp in blueprints:
            await self.versions.update_one(
                {"_id": bp.digest()},
                {"$setOnInsert": {"name": bp.name, "blueprint": bp.model_dump(mode="json")}}, upsert=True)

    async def version(self, digest: str) -> dict[str, Any] | None:
        doc = await self.versions.find_one({"_id": digest})
        return None if doc is None else dict(doc["blueprint"])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
