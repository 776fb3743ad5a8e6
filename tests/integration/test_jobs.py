"""The scheduler against a real MongoDB (app/jobs): one run per slot however many workers tick,
a frozen worker's lease lapses and the slot is retried with a new token (the stale holder's writes
refused), the missed-run policies, manual runs under the lease. Time is a fake clock: no sleeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorDatabase

from app.jobs.config import JobConfig
from app.jobs.history import History
from app.jobs.lease import StaleLease
from app.jobs.registry import JobContext, JobKind
from app.jobs.scheduler import JobRefused, Scheduler
from hub.db import connect, ensure_indexes
from hub.settings import Settings
from tests.support import eventually

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kw: float) -> None:
        self.at += timedelta(**kw)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client = connect(settings)
    database = client[f"jobs_{uuid.uuid4().hex[:8]}"]
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        client.close()


def job(**kw: Any) -> JobConfig:
    base: dict[str, Any] = {"name": "count", "kind": "count", "schedule": "0 * * * *", "timezone": "UTC",
                            "lease_s": 30}
    return JobConfig.model_validate({**base, **kw})


def scheduler(settings: Settings, db: AsyncIOMotorDatabase[Any], clock: Clock, jobs: list[JobConfig],
              kinds: dict[str, JobKind], worker: str) -> Scheduler:
    return Scheduler(settings, {}, db, {j.name: j for j in jobs}, kinds, worker=worker, clock=clock)


async def tick_all(*schedulers: Scheduler) -> None:
    tasks = [t for ts in await asyncio.gather(*(s.tick() for s in schedulers)) for t in ts]
    await asyncio.gather(*tasks)


async def test_two_workers_run_each_slot_once(settings: Settings, db: AsyncIOMotorDatabase[Any]) -> None:
    runs: list[tuple[str, datetime | None]] = []

    async def count(ctx: JobContext) -> dict[str, Any]:
        runs.append((ctx.lease.holder, ctx.slot))
        await asyncio.sleep(0)  # let the other worker try while this one holds the lease
        return {"records": 1}

    clock = Clock(datetime(2026, 4, 10, 9, 30, tzinfo=UTC))
    a = scheduler(settings, db, clock, [job()], {"count": count}, "A")
    b = scheduler(settings, db, clock, [job()], {"count": count}, "B")
    await tick_all(a, b)  # first sight of the job: starts after its latest past slot, runs nothing
    assert runs == []
    for _ in range(3):  # 10:00, 11:00, 12:00: each worker ticks twice per hour
        clock.advance(hours=1)
        await tick_all(a, b)
        await tick_all(b, a)
    assert sorted(s for _, s in runs if s) == [datetime(2026, 4, 10, h, tzinfo=UTC) for h in (10, 11, 12)]
    # a worker that planned a slot just before the other one ran it finds it done once it gets the lease
    clock.advance(hours=1)
    late = await b.due(a.jobs["count"])
    await tick_all(a)
    await b.run_slots(b.jobs["count"], late)
    assert sorted(s for _, s in runs if s)[-2:] == [datetime(2026, 4, 10, h, tzinfo=UTC) for h in (12, 13)]
    history = await History(db).list("count")
    assert [r["status"] for r in history] == ["succeeded"] * 4
    assert all(r["attempts"] == 1 and r["counts"] == {"records": 1} for r in history)


async def test_a_frozen_worker_loses_its_lease_the_slot_is_retried_and_its_late_writes_are_refused(
        settings: Settings, db: AsyncIOMotorDatabase[Any]) -> None:
    wake = asyncio.Event()
    published: list[str] = []
    refused: list[str] = []

    async def report(ctx: JobContext) -> dict[str, Any]:
        if ctx.lease.holder == "A":
            await wake.wait()  # frozen mid-run (a GC pause, a stopped VM): no heartbeat, no progress
        try:
            await ctx.fence()  # right before publishing
        except StaleLease:
            refused.append(ctx.lease.holder)
            raise
        published.append(ctx.lease.holder)
        return {"files": 1}

    clock = Clock(datetime(2026, 4, 10, 9, 59, tzinfo=UTC))
    jobs = [job(lease_s=30)]
    a = scheduler(settings, db, clock, jobs, {"count": report}, "A")
    b = scheduler(settings, db, clock, jobs, {"count": report}, "B")
    await tick_all(a, b)
    clock.advance(minutes=1, seconds=1)
    started = await a.tick()
    assert len(started) == 1
    await eventually(lambda: History(db).get("count@2026-04-10T10:00:00+00:00"), interval=0.01)
    await tick_all(b)  # A's lease is current: B does nothing
    assert published == []
    clock.advance(seconds=31)  # A's lease lapsed (it never renewed it)
    await tick_all(b)
    assert published == ["B"]
    wake.set()  # A wakes up and tries to publish with its old token
    await asyncio.gather(*started)
    assert refused == ["A"] and published == ["B"]
    run = await History(db).get("count@2026-04-10T10:00:00+00:00")
    assert run is not None
    assert run["status"] == "succeeded" and run["attempts"] == 2 and run["worker"] == "B" and run["token"] == 2
    await tick_all(a, b)  # nothing left to do for 10:00
    assert published == ["B"]


async def test_missed_runs_catch_up_or_skip(settings: Settings, db: AsyncIOMotorDatabase[Any]) -> None:
    seen: list[tuple[str, datetime | None]] = []

    async def count(ctx: JobContext) -> dict[str, Any]:
        seen.append((ctx.job.name, ctx.slot))
        return {}

    clock = Clock(datetime(2026, 4, 10, 0, 30, tzinfo=UTC))
    jobs = [job(name="up", missed="catch_up", max_catch_up=3), job(name="sk", missed="skip", misfire_grace_s=600)]
    s = scheduler(settings, db, clock, jobs, {"count": count}, "A")
    await tick_all(s)
    clock.advance(hours=4, minutes=35)  # no worker from 00:30 to 05:05: 01:00 … 05:00 missed
    await tick_all(s)
    up = sorted(slot for name, slot in seen if name == "up" and slot)
    assert [t.hour for t in up] == [3, 4, 5]  # the newest max_catch_up, oldest first
    assert [t.hour for name, t in seen if name == "sk" and t] == [5]  # on time (5 min late < 10 min grace)
    statuses = {r["id"]: r["status"] for r in await History(db).list(limit=100)}
    assert statuses["up@2026-04-10T01:00:00+00:00"] == "skipped"
    assert statuses["sk@2026-04-10T04:00:00+00:00"] == "skipped"
    assert statuses["sk@2026-04-10T05:00:00+00:00"] == "succeeded"


async def test_a_failed_attempt_is_retried_then_recorded_failed(settings: Settings,
                                                              db: AsyncIOMotorDatabase[Any]) -> None:
    async def boom(ctx: JobContext) -> dict[str, Any]:
        raise RuntimeError("partner down")

    clock = Clock(datetime(2026, 4, 10, 9, 30, tzinfo=UTC))
    s = scheduler(settings, db, clock, [job(max_attempts=2)], {"count": boom}, "A")
    await tick_all(s)
    clock.advance(hours=1)
    await tick_all(s)
    await tick_all(s)
    await tick_all(s)
    run = await History(db).get("count@2026-04-10T10:00:00+00:00")
    assert run is not None and run["status"] == "failed" and run["attempts"] == 2
    assert [e["error"] for e in run["errors"]] == ["RuntimeError: partner down"] * 2


async def test_a_manual_run_is_refused_while_the_job_runs(settings: Settings, db: AsyncIOMotorDatabase[Any]) -> None:
    gate = asyncio.Event()

    async def slow(ctx: JobContext) -> dict[str, Any]:
        if ctx.slot is not None:
            await gate.wait()
        return {"day": ctx.params.get("day")}

    clock = Clock(datetime(2026, 4, 10, 9, 30, tzinfo=UTC))
    s = scheduler(settings, db, clock, [job()], {"count": slow}, "A")
    await tick_all(s)
    clock.advance(hours=1)
    tasks = await s.tick()
    await eventually(lambda: History(db).get("count@2026-04-10T10:00:00+00:00"), interval=0.01)
    with pytest.raises(JobRefused, match="is running"):
        await s.run_now("count", {"day": "2026-04-09"}, who="test")
    gate.set()
    await asyncio.gather(*tasks)
    done = await s.run_now("count", {"day": "2026-04-09"}, who="test")
    assert done["status"] == "succeeded" and done["counts"] == {"day": "2026-04-09"}
    assert done["trigger"] == "manual:test"
