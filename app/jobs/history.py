"""Run history (``job_runs``) and each job's progress through its schedule (``job_state``).

A run is one slot of a job's schedule (``_id`` = ``job@slot``), or one manual run
(``job@manual:…``). The slot id is what makes a scheduled run happen once however many workers
plan it: whoever holds the job's lease looks the slot up first and does nothing when it has
already succeeded. Every write of a running run is conditioned on the lease token that started
this attempt (``token``): a stale holder's result is refused (:class:`~app.jobs.lease.StaleLease`).

``job_state.last_slot`` is the newest slot that is finished (succeeded, failed for good, or
skipped); the next slots to run are the schedule's times after it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, IndexModel

from app.jobs.lease import Lease, StaleLease
from hub.db import declare_indexes

RUNS, STATE = "job_runs", "job_state"
FINAL = ("succeeded", "failed", "skipped")
MAX_ERRORS = 20
declare_indexes(RUNS, IndexModel([("job", ASCENDING), ("started_at", DESCENDING)], name="by_job_time"))


def run_id(job: str, slot: datetime | None, manual: str | None = None) -> str:
    return f"{job}@manual:{manual}" if manual is not None else f"{job}@{slot.isoformat() if slot else '-'}"


class History:
    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self.runs = db[RUNS]
        self.state = db[STATE]

    async def get(self, rid: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.runs.find_one({"_id": rid})
        return doc

    async def start(self, rid: str, job: str, slot: datetime | None, lease: Lease, now: datetime,
                    trigger: str, params: dict[str, Any]) -> dict[str, Any]:
        """Record an attempt of ``rid`` under ``lease``: the run's token becomes this lease's, so
        the holder of an earlier lease can no longer finish it."""
        await self.runs.update_one(
            {"_id": rid},
            {"$set": {"job": job, "slot": slot, "status": "running", "worker": lease.holder, "token": lease.token,
                      "attempt_started_at": now, "trigger": trigger, "params": params},
             "$setOnInsert": {"started_at": now, "errors": []},
             "$inc": {"attempts": 1}},
            upsert=True)
        doc = await self.get(rid)
        assert doc is not None
        return doc

    async def finish(self, rid: str, lease: Lease, now: datetime, status: str, counts: dict[str, Any],
                     error: str | None = None) -> None:
        change: dict[str, Any] = {"$set": {"status": status, "finished_at": now, "counts": counts}}
        if error is not None:
            change["$push"] = {"errors": {"$each": [{"at": now, "worker": lease.holder, "token": lease.token,
                                                     "error": error[:2000]}], "$slice": -MAX_ERRORS}}
        res = await self.runs.update_one({"_id": rid, "token": lease.token}, change)
        if res.matched_count == 0:
            raise StaleLease(f"run {rid}: token {lease.token} is no longer this run's (taken over)")

    async def skipped(self, rid: str, job: str, slot: datetime, now: datetime, why: str) -> None:
        await self.runs.update_one({"_id": rid}, {"$setOnInsert": {
            "job": job, "slot": slot, "status": "skipped", "started_at": now, "finished_at": now, "attempts": 0,
            "trigger": "schedule", "errors": [], "counts": {}, "reason": why}}, upsert=True)

    async def last_slot(self, job: str) -> datetime | None:
        doc = await self.state.find_one({"_id": job})
        return None if doc is None else doc.get("last_slot")

    async def init_state(self, job: str, slot: datetime) -> datetime:
        """A job seen for the first time starts after its latest past slot (no catch-up since 1970)."""
        await self.state.update_one({"_id": job}, {"$setOnInsert": {"last_slot": slot}}, upsert=True)
        found = await self.last_slot(job)
        return found if found is not None else slot

    async def advance(self, job: str, slot: datetime) -> None:
        await self.state.update_one({"_id": job}, {"$max": {"last_slot": slot}}, upsert=True)

    async def list(self, job: str | None = None, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q: dict[str, Any] = {}
        if job:
            q["job"] = job
        if status:
            q["status"] = status
        return [self.view(d) async for d in self.runs.find(q).sort("started_at", DESCENDING).limit(limit)]

    async def latest(self, job: str) -> dict[str, Any] | None:
        rows = await self.list(job, limit=1)
        return rows[0] if rows else None

    @staticmethod
    def view(doc: dict[str, Any]) -> dict[str, Any]:
        out = dict(doc)
        out["id"] = out.pop("_id")
        return out
