"""One lease per job in MongoDB, with a fencing token: at most one worker runs a job at a time.

Why a fencing token and not only an expiry: a worker that froze (GC pause, a stopped VM, a
network partition) past its lease still believes it holds it when it wakes up, while another
worker has taken the job over. Every acquisition increments ``token``; a holder's writes that
matter (the run's history, a report file's publication) are conditioned on its token still being
the current one, so the stale holder's writes are refused (:class:`StaleLease`) instead of
duplicating or overwriting the new holder's work (Kleppmann, "How to do distributed locking").

Times are the scheduler's clock (injected), stored as datetimes: tests move time instead of
sleeping, and every worker compares against the same stored ``until``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from hub.errors import RetryableError

LEASES = "job_leases"
FREE = datetime(1970, 1, 1, tzinfo=UTC)


class StaleLease(RetryableError):
    """This worker's lease was taken over (its token is no longer the current one)."""


@dataclass(frozen=True)
class Lease:
    job: str
    holder: str
    token: int
    until: datetime


class Leases:
    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self.coll = db[LEASES]

    async def acquire(self, job: str, holder: str, now: datetime, ttl_s: float, run_id: str) -> Lease | None:
        """The job's lease with a fresh token, or None while another holder's lease is current."""
        until = now + timedelta(seconds=ttl_s)
        change = {"$set": {"holder": holder, "until": until, "run_id": run_id, "acquired_at": now},
                  "$inc": {"token": 1}}
        doc = await self.coll.find_one_and_update({"_id": job, "until": {"$lte": now}}, change,
                                                  return_document=ReturnDocument.AFTER)
        if doc is None:
            try:
                await self.coll.insert_one({"_id": job, "holder": holder, "until": until, "run_id": run_id,
                                            "acquired_at": now, "token": 1})
            except DuplicateKeyError:
                return None  # exists and is held
            return Lease(job, holder, 1, until)
        return Lease(job, holder, int(doc["token"]), until)

    async def renew(self, lease: Lease, now: datetime, ttl_s: float) -> Lease:
        until = now + timedelta(seconds=ttl_s)
        res = await self.coll.update_one({"_id": lease.job, "token": lease.token}, {"$set": {"until": until}})
        if res.matched_count == 0:
            raise StaleLease(f"job {lease.job}: lease token {lease.token} was taken over")
        return Lease(lease.job, lease.holder, lease.token, until)

    async def check(self, lease: Lease) -> None:
        """Raise :class:`StaleLease` unless ``lease`` is still the job's current one (the fence
        a holder passes right before a write another holder could also make)."""
        doc = await self.coll.find_one({"_id": lease.job}, {"token": 1})
        if doc is None or int(doc["token"]) != lease.token:
            raise StaleLease(f"job {lease.job}: lease token {lease.token} is stale "
                             f"(current {None if doc is None else doc['token']})")

    async def release(self, lease: Lease) -> None:
        """Give the lease back at once (only if still ours: a stale holder frees nothing)."""
        await self.coll.update_one({"_id": lease.job, "token": lease.token},
                                   {"$set": {"until": FREE, "holder": None, "run_id": None}})

    async def current(self, job: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.coll.find_one({"_id": job})
        return doc
