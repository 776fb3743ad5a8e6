"""Delivery claims: where the Idempotency wrapper records who is calling a partner for a key, and
what the partner answered.

One document per idempotency key in MongoDB ``deliveries`` (``_id`` = the key), in one of two states:

``claimed``    ``{owner, lease_until, claimed_at, …}`` — a process is calling the partner right now.
               Written *insert-first*: the duplicate-key error of the insert is the answer "someone
               else has it", so two consumers of the same envelope (a rebalance, a re-send) can never
               both call. The owner renews ``lease_until`` while the call, its retries and backoff
               run; a lease that lapses means the owner died mid-call.
``delivered``  the partner's answer (what ``deliveries`` always held): a later delivery of the key is
               answered from it. Records written before claims existed have no ``state``; they are
               ``delivered``.

Why in the record and not in memory: the two duplicates the issue found (after a kill -9 of the
worker, after a MongoDB outage) happened across processes and across a lost write, which only a
durable claim with a lease sees. ``owner`` is the process *incarnation* (:data:`INCARNATION`, new
at every start), so a restarted worker never mistakes its predecessor's claim for its own.

:class:`MongoDeliveryLog` is the store; :class:`MemoryDeliveryLog` is the same contract in memory
(the unit tests' fake, like httpx's mock transport), so the wrapper's protocol is tested without a
server and the Mongo store against the real one (tests/integration/test_no_duplicate_calls.py).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import Any, Protocol

from motor.motor_asyncio import AsyncIOMotorDatabase

from hub.batching import BulkReader, BulkWriter

COLLECTION = "deliveries"  # = flows.documents.DELIVERIES (which declares its index)
CLAIMED = "claimed"
DELIVERED = "delivered"
DEFAULT_LEASE_S = 15.0
#: This process's claims: host, pid and a random part (a pid is reused after a restart).
INCARNATION = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def state_of(record: dict[str, Any]) -> str:
    """``claimed`` or ``delivered`` (a record from before claims, without ``state``, was delivered)."""
    return str(record.get("state") or DELIVERED)


class DeliveryLog(Protocol):
    """Claims and made deliveries, by key (MongoDB in the hub, a dict in unit tests)."""

    async def find(self, key: str) -> dict[str, Any] | None: ...

    async def claim(self, key: str, fields: dict[str, Any]) -> bool:
        """Insert ``{_id: key, **fields}`` (``state: claimed``); False if the key has a record."""
        ...

    async def take_over(self, key: str, seen: dict[str, Any], owner: str, lease_until: datetime) -> bool:
        """Make ``owner`` the holder of a lapsed claim, if it is still exactly the ``seen`` one
        (same owner and lease: nobody renewed or took it meanwhile); True if this call did."""
        ...

    async def renew(self, key: str, owner: str, lease_until: datetime) -> bool:
        """Extend ``owner``'s claim; False if ``owner`` does not hold it any more."""
        ...

    async def release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim (the delivery failed: a replay may deliver again)."""
        ...

    async def record(self, key: str, fields: dict[str, Any]) -> None:
        """Store the delivery (``state: delivered`` and the answer), whoever holds the claim."""
        ...


def _holds(record: dict[str, Any] | None, owner: str) -> bool:
    return record is not None and state_of(record) == CLAIMED and record.get("owner") == owner


class MongoDeliveryLog:
    """``deliveries`` in MongoDB; the frequent calls (find, claim, record) batched (hub/batching.py)."""

    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self._coll = db[COLLECTION]
        self._reader = BulkReader(self._coll)
        self._writer = BulkWriter(self._coll)

    async def find(self, key: str) -> dict[str, Any] | None:
        return await self._reader.get(key)

    async def claim(self, key: str, fields: dict[str, Any]) -> bool:
        return await self._writer.insert_new({"_id": key, **fields, "state": CLAIMED})

    async def take_over(self, key: str, seen: dict[str, Any], owner: str, lease_until: datetime) -> bool:
        result = await self._coll.update_one(
            {"_id": key, "state": CLAIMED, "owner": seen.get("owner"), "lease_until": seen.get("lease_until")},
            {"$set": {"owner": owner, "lease_until": lease_until, "taken_over_from": seen.get("owner")}})
        return result.matched_count == 1

    async def renew(self, key: str, owner: str, lease_until: datetime) -> bool:
        result = await self._coll.update_one({"_id": key, "state": CLAIMED, "owner": owner},
                                             {"$set": {"lease_until": lease_until}})
        return result.matched_count == 1

    async def release(self, key: str, owner: str) -> None:
        await self._coll.delete_one({"_id": key, "state": CLAIMED, "owner": owner})

    async def record(self, key: str, fields: dict[str, Any]) -> None:
        await self._writer.upsert(key, {**fields, "state": DELIVERED, "lease_until": None})


class MemoryDeliveryLog:
    """The same contract in a dict (``rows``): the unit tests' fake of MongoDeliveryLog."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    async def find(self, key: str) -> dict[str, Any] | None:
        row = self.rows.get(key)
        return dict(row) if row is not None else None

    async def claim(self, key: str, fields: dict[str, Any]) -> bool:
        if key in self.rows:
            return False
        self.rows[key] = {"_id": key, **fields, "state": CLAIMED}
        return True

    async def take_over(self, key: str, seen: dict[str, Any], owner: str, lease_until: datetime) -> bool:
        row = self.rows.get(key)
        if not _holds(row, str(seen.get("owner"))) or row is None or row.get("lease_until") != seen.get("lease_until"):
            return False
        row.update(owner=owner, lease_until=lease_until, taken_over_from=seen.get("owner"))
        return True

    async def renew(self, key: str, owner: str, lease_until: datetime) -> bool:
        row = self.rows.get(key)
        if not _holds(row, owner) or row is None:
            return False
        row["lease_until"] = lease_until
        return True

    async def release(self, key: str, owner: str) -> None:
        if _holds(self.rows.get(key), owner):
            del self.rows[key]

    async def record(self, key: str, fields: dict[str, Any]) -> None:
        self.rows[key] = {**self.rows.get(key, {"_id": key}), **fields, "state": DELIVERED, "lease_until": None}
