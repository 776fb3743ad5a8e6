"""The scheduler: plans each job's due slots, runs each slot once across all workers.

Every worker runs one :class:`Scheduler` and ticks it (app/jobs/agent.py); nothing is elected.
A tick looks at each job's slots after ``job_state.last_slot``; for the due ones it takes the job's
lease (app/jobs/lease.py) and, holding it, runs the slots oldest first. The slot's run document
(app/jobs/history.py) says whether it already happened, so a second worker that gets the lease
after the first gave it back finds the slot done and does nothing: two workers, one run.

A worker that dies mid-run stops renewing its lease; once it lapses the next tick of any worker
takes the lease with a new token and runs the slot again (``attempts`` 2). If the dead worker was
only frozen and wakes up, its writes carry the old token and are refused.

Missed runs (no worker up at a slot's time): ``catch_up`` runs them, oldest first, at most
``max_catch_up`` (older ones are recorded ``skipped``); ``skip`` records every slot that never
started and is older than ``misfire_grace_s`` as ``skipped`` and runs only on-time slots.

The clock is injected (tests move time; the lease's expiry is the same clock's).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from prometheus_client import Counter

from app.jobs.config import JobConfig
from app.jobs.history import FINAL, History, run_id
from app.jobs.lease import Lease, Leases, StaleLease
from app.jobs.registry import JobContext, JobKind
from hub.errors import HubError
from hub.partners import Partner
from hub.settings import Settings
from hub.stopping import cancel_until_done

log = logging.getLogger(__name__)
JOB_RUNS = Counter("hub_job_runs_total", "Job run attempts by job and result", ["job", "result"])


class JobRefused(HubError):
    """A manual run could not start (unknown job, or the job is running elsewhere)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(self, settings: Settings, partners: dict[str, Partner], db: AsyncIOMotorDatabase[Any],
                 jobs: dict[str, JobConfig], kinds: dict[str, JobKind], *, worker: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.partners, self.db = settings, partners, db
        self.jobs, self.kinds = jobs, kinds
        self.worker = worker
        self.clock = clock
        self.leases = Leases(db)
        self.history = History(db)
        self._running: dict[str, asyncio.Task[None]] = {}

    # --- planning --------------------------------------------------------------------------
    async def due(self, job: JobConfig) -> list[datetime]:
        """The slots of ``job`` to run now, oldest first; missed ones the policy drops are
        recorded ``skipped`` here (idempotent: any worker may do it)."""
        now = self.clock()
        last = await self.history.last_slot(job.name)
        if last is None:
            last = await self.history.init_state(job.name, job.previous_slot(now))
        slots = job.slots(last, now)
        if not slots:
            return []
        keep: list[datetime] = []
        if job.missed == "catch_up":
            drop, keep = slots[:-job.max_catch_up], slots[-job.max_catch_up:]
            for s in drop:
                await self.history.skipped(run_id(job.name, s), job.name, s, now,
                                           f"missed; more than max_catch_up={job.max_catch_up} behind")
        else:
            for s in slots:
                late = (now - s).total_seconds() > job.misfire_grace_s
                if late and await self.history.get(run_id(job.name, s)) is None:
                    await self.history.skipped(run_id(job.name, s), job.name, s, now,
                                               f"missed by more than misfire_grace_s={job.misfire_grace_s:g}")
                else:
                    keep.append(s)
        if not keep:
            await self.history.advance(job.name, slots[-1])
        return keep

    async def tick(self) -> list[asyncio.Task[None]]:
        """Start a task for every enabled job with due slots that is not already running here."""
        started = []
        for job in self.jobs.values():
            if not job.enabled or (job.name in self._running and not self._running[job.name].done()):
                continue
            slots = await self.due(job)
            if slots:
                task = asyncio.get_running_loop().create_task(self.run_slots(job, slots), name=f"job-{job.name}")
                self._running[job.name] = task
                started.append(task)
        return started

    async def run_slots(self, job: JobConfig, slots: list[datetime]) -> None:
        try:
            lease = await self.leases.acquire(job.name, self.worker, self.clock(), job.lease_s,
                                              run_id(job.name, slots[0]))
            if lease is None:
                return  # another worker holds it: it runs these slots, or finds them done later
            try:
                for slot in slots:
                    rid = run_id(job.name, slot)
                    done = await self.history.get(rid)
                    if done is not None and done.get("status") in FINAL:
                        await self.history.advance(job.name, slot)
                        continue
                    if done is not None and int(done.get("attempts") or 0) >= job.max_attempts:
                        await self.history.start(rid, job.name, slot, lease, self.clock(), "schedule", job.params)
                        await self.history.finish(rid, lease, self.clock(), "failed", done.get("counts") or {},
                                                  f"gave up after {done.get('attempts')} attempts")
                        await self.history.advance(job.name, slot)
                        continue
                    status = await self._attempt(job, rid, slot, lease, "schedule", dict(job.params))
                    if status == "retry":
                        break  # the slot stays due; the next tick tries again (later slots wait)
                    await self.history.advance(job.name, slot)
            finally:
                await self.leases.release(lease)
        except StaleLease as exc:
            log.warning("job %s: %s; the new holder carries on", job.name, exc)
        except Exception as exc:  # a scheduler task never raises: the next tick tries again
            log.warning("job %s could not run (%s: %s); retried on the next tick", job.name, type(exc).__name__, exc)

    # --- one attempt -----------------------------------------------------------------------
    async def _attempt(self, job: JobConfig, rid: str, slot: datetime | None, lease: Lease, trigger: str,
                       params: dict[str, Any], *, final: bool = False) -> str:
        """Run the job once under ``lease``; record the outcome. Returns the run's status."""
        kind = self.kinds[job.kind]
        now = self.clock()
        doc = await self.history.start(rid, job.name, slot, lease, now, trigger, params)
        ctx = JobContext(self.settings, self.partners, self.db, job, rid, slot, now, lease, self.leases, params)
        work: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(kind(ctx))
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job, ctx, work), name=f"job-{job.name}-lease")
        try:
            counts = await work
        except StaleLease:
            JOB_RUNS.labels(job.name, "stale").inc()
            raise
        except asyncio.CancelledError:
            lost = beat.done() and not beat.cancelled() and isinstance(beat.exception(), StaleLease)
            if lost:  # the heartbeat found the lease taken over and cancelled the run
                JOB_RUNS.labels(job.name, "stale").inc()
                raise StaleLease(f"job {job.name}: lease lost during run {rid}") from None
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            last = final or int(doc.get("attempts") or 1) >= job.max_attempts
            status = "failed" if last else "retry"
            JOB_RUNS.labels(job.name, status).inc()
            log.warning("job %s run %s attempt %s failed: %s", job.name, rid, doc.get("attempts"), error)
            await self.history.finish(rid, lease, self.clock(), status, ctx.counts, error)
            return status
        finally:
            await cancel_until_done(beat)
        await self.history.finish(rid, lease, self.clock(), "succeeded", {**ctx.counts, **(counts or {})})
        JOB_RUNS.labels(job.name, "succeeded").inc()
        return "succeeded"

    async def _heartbeat(self, job: JobConfig, ctx: JobContext, work: asyncio.Task[Any]) -> None:
        """Renew the lease every lease_s/3; a lost lease cancels the run (someone else has it)."""
        while True:
            await asyncio.sleep(job.lease_s / 3)
            try:
                ctx.lease = await self.leases.renew(ctx.lease, self.clock(), job.lease_s)
            except StaleLease:
                work.cancel()
                raise

    # --- manual runs -----------------------------------------------------------------------
    async def run_now(self, name: str, params: dict[str, Any] | None = None, *, who: str) -> dict[str, Any]:
        """Run a job once now (``hub jobs run``, ``POST /admin/v1/jobs/{name}/run``), outside its
        schedule but under its lease: never beside a scheduled run of the same job."""
        job = self.jobs.get(name)
        if job is None:
            raise JobRefused(f"no job {name!r} (known: {', '.join(sorted(self.jobs)) or 'none'})")
        now = self.clock()
        rid = run_id(name, None, f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
        lease = await self.leases.acquire(name, self.worker, now, job.lease_s, rid)
        if lease is None:
            current = await self.leases.current(name) or {}
            raise JobRefused(f"job {name} is running ({current.get('run_id')} on {current.get('holder')}); "
                             "try again when it has finished")
        try:
            await self._attempt(job, rid, None, lease, f"manual:{who}", {**job.params, **(params or {})}, final=True)
        finally:
            await self.leases.release(lease)
        doc = await self.history.get(rid)
        assert doc is not None
        return History.view(doc)

    async def stop(self) -> None:
        tasks = [t for t in self._running.values() if not t.done()]
        await asyncio.gather(*(cancel_until_done(t) for t in tasks))
        self._running.clear()

    async def overview(self) -> list[dict[str, Any]]:
        """Each job with its schedule, next time, lease holder and latest run (``hub jobs list``)."""
        now = self.clock()
        rows = []
        for job in self.jobs.values():
            lease = await self.leases.current(job.name) or {}
            held = lease.get("until") is not None and lease["until"] > now
            latest = await self.history.latest(job.name) or {}
            rows.append({"name": job.name, "kind": job.kind, "schedule": job.schedule, "timezone": job.timezone,
                         "missed": job.missed, "enabled": job.enabled,
                         "next": job.next_slot(now), "running_on": lease.get("holder") if held else None,
                         "last_run": latest.get("id"), "last_status": latest.get("status"),
                         "last_finished_at": latest.get("finished_at"), "description": job.description})
        return rows
