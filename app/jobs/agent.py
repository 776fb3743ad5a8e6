"""Wiring of the scheduler into the worker (``app.plugins.AGENT_MODULES``).

Every worker ticks its own :class:`~app.jobs.scheduler.Scheduler` every :data:`TICK_S`; which of
them runs a slot is decided by the job's lease in MongoDB, not here. The jobs are loaded when the
worker is built, so a bad ``config/jobs`` file (``file:line: key``) stops the start, like a bad
blueprint. A tick never raises: an exception escaping a Faust timer would stop the app.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import faust

from app.jobs.config import load_jobs
from app.jobs.registry import kinds
from app.jobs.scheduler import Scheduler
from hub.services import ServiceKey, Services

log = logging.getLogger(__name__)
TICK_S = 5.0
SCHEDULER: ServiceKey[Scheduler] = ServiceKey("job_scheduler")


def register_agents(app: faust.App, runtime: Services) -> None:
    registered = kinds()
    jobs = load_jobs(runtime.settings.config_dir, set(registered))

    async def tick() -> None:
        if runtime.db is None or not jobs:
            return
        scheduler = runtime.get(SCHEDULER)
        if scheduler is None or scheduler.db is not runtime.db:
            worker = f"{runtime.settings.worker_id}:{os.getpid()}"
            scheduler = runtime.put(SCHEDULER, Scheduler(runtime.settings, runtime.partners, runtime.db, jobs,
                                                         registered, worker=worker))
        try:
            await scheduler.tick()
        except Exception as exc:
            log.warning("job scheduler tick failed (%s: %s); it runs again in %.0f s", type(exc).__name__, exc, TICK_S)

    app.timer(TICK_S, name="job-scheduler")(tick)


def scheduler_for(runtime: Any) -> Scheduler | None:
    """The worker's scheduler, when this process runs one (the admin API reads it for ``running_on``)."""
    found: Scheduler | None = runtime.get(SCHEDULER)
    return found
