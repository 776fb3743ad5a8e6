"""Replay policies (issue 14 §7): per partner, dead letters are replayed automatically once the
partner answers again, at a configured rate, within configured hours, with a switch to pause it.

"Answers again" is a fact the hub already records: a call to the partner that ended ``ok`` after the
newest of its pending dead letters was written (``calls``: the delivery agent writes one row per call,
so this is the delivery breaker having closed and a call gone through), or, with ``probe_url``, a
health probe answering 2xx. The replay itself is :meth:`ReplayService.replay` — the same claim (a
letter is leased while it is sent, so a manual replay at the same time cannot send it twice), the
same audit record (``policy:<partner>`` in ``hub dlq history``) and the same replay cap as ``hub dlq
replay`` — for at most ``max_per_run`` letters a run. Runs come from the operations agent's timer
under their own lease, so one worker replays per interval.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.admin.queries import DeadLetterFilter
from app.admin.replay import NotFound, ReplayService
from flows.documents import CALLS
from hub.deadletter import COLLECTION as DEAD_LETTERS
from hub.deadletter import pending_query
from hub.errors import ValidationFailed

__all__ = ["POLICIES", "Policy", "PolicyStore", "run_policies"]

POLICIES = "ops_replay_policies"
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Policy(BaseModel):
    """One partner's automatic replay."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    paused: bool = False
    rate: float = Field(default=5.0, gt=0, le=1000, description="letters per second")
    hours: str = Field(default="00:00-24:00", description="UTC window replays may run in, e.g. 08:00-20:00")
    max_per_run: int = Field(default=500, ge=1, le=100_000, description="letters replayed per run at most")
    probe_url: str | None = Field(default=None, description="a health URL; 2xx = the partner answers again")

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        if not _HOURS.match(v):
            raise ValueError("HH:MM-HH:MM in UTC (e.g. 08:00-20:00; 22:00-06:00 crosses midnight)")
        return v

    def within(self, now: datetime) -> bool:
        start, end = (int(a) * 60 + int(b) for a, b in (p.split(":") for p in self.hours.split("-")))
        minute = now.hour * 60 + now.minute
        return start <= minute < end if start <= end else (minute >= start or minute < end)


def parse_policy(data: dict[str, Any]) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])) or "(policy)",
                   "message": e["msg"].removeprefix("Value error, ")}
                  for e in exc.errors(include_url=False, include_input=False)]
        raise ValidationFailed("invalid policy: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                               errors) from exc


class PolicyStore:
    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self.coll = db[POLICIES]

    async def list(self) -> list[dict[str, Any]]:
        return [_out(d) async for d in self.coll.find({}).sort("_id", 1)]

    async def get(self, partner: str) -> dict[str, Any] | None:
        doc = await self.coll.find_one({"_id": partner})
        return _out(doc) if doc else None

    async def put(self, policy: Policy, who: str) -> dict[str, Any]:
        await self.coll.update_one({"_id": policy.partner}, {"$set": {
            **policy.model_dump(mode="json", exclude={"partner"}), "updated_by": who,
            "updated_at": datetime.now(UTC)}}, upsert=True)
        return await self.get(policy.partner) or {}

    async def set_paused(self, partner: str, paused: bool, who: str) -> dict[str, Any]:
        res = await self.coll.update_one({"_id": partner}, {"$set": {"paused": paused, "updated_by": who,
                                                                     "updated_at": datetime.now(UTC)}})
        if not res.matched_count:
            raise NotFound(f"no replay policy for {partner}")
        return await self.get(partner) or {}

    async def delete(self, partner: str) -> bool:
        return bool((await self.coll.delete_one({"_id": partner})).deleted_count)

    async def record(self, partner: str, run: dict[str, Any]) -> None:
        await self.coll.update_one({"_id": partner}, {"$set": {"last_run": run}})


def _out(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["partner"] = out.pop("_id")
    return out


async def answers_again(db: AsyncIOMotorDatabase[Any], policy: Policy, since: datetime) -> str | None:
    """Why the partner is taken to answer again (a call ok after ``since``, or the probe), else None."""
    if policy.probe_url:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                    session.get(policy.probe_url) as resp:
                if resp.status < 300:
                    return f"probe {resp.status}"
        except (aiohttp.ClientError, TimeoutError):
            return None
        return None
    ok = await db[CALLS].find_one({"partner": policy.partner, "outcome": "ok", "started_at": {"$gt": since}},
                                  {"_id": 1})
    return f"call {ok['_id']} ok since the last dead letter" if ok else None


async def run_policies(db: AsyncIOMotorDatabase[Any], replays: ReplayService, now: datetime) -> list[dict[str, Any]]:
    """One run of every policy not paused, within its hours, whose partner has pending letters and
    answers again; returns what each did (also kept as the policy's ``last_run``)."""
    store = PolicyStore(db)
    runs = []
    for doc in await store.list():
        policy = Policy.model_validate({k: v for k, v in doc.items() if k in Policy.model_fields})
        run: dict[str, Any] = {"at": now, "replayed": 0}
        newest = await db[DEAD_LETTERS].find_one({"partner": policy.partner, **pending_query(now)}, {"created_at": 1},
                                                 sort=[("created_at", -1)])
        if policy.paused:
            run["skipped"] = "paused"
        elif not policy.within(now):
            run["skipped"] = f"outside {policy.hours} UTC"
        elif newest is None:
            run["skipped"] = "no pending dead letters"
        else:
            since = newest["created_at"]
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            why = await answers_again(db, policy, since)
            if why is None:
                run["skipped"] = "the partner has not answered since its last dead letter"
            else:
                ids = await replays.select(DeadLetterFilter(partner=policy.partner), limit=policy.max_per_run)
                summary = await replays.replay(ids, who=f"policy:{policy.partner}", rate=policy.rate,
                                               reason=f"replay policy: {why}")
                run.update(replayed=summary.ok, refused=summary.refused, failed=summary.failed, because=why)
        await store.record(policy.partner, run)
        runs.append({"partner": policy.partner, **run})
    return runs
