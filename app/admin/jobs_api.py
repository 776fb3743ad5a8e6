"""The admin API of the scheduled jobs (app/jobs), the same service layer as ``hub jobs``:

    GET  /admin/v1/jobs                    every job: schedule, next time, where it runs, the latest run
    GET  /admin/v1/jobs/history            ?job&status&limit   runs, newest first
    POST /admin/v1/jobs/{name}/run         {"params": {...}}   run once now (operator; 409 while it runs)

A manual run is recorded in the history with ``trigger: manual:api:<token name>`` (the audit of
who ran what, with which parameters) and logged.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from app.admin.api import _body, _errors, _json, _tokens, _who
from app.admin.replay import NotFound, Refused
from app.jobs.config import load_jobs
from app.jobs.history import History
from app.jobs.registry import kinds
from app.jobs.scheduler import JobRefused, Scheduler
from hub.auth import Handler, Role, requires
from hub.services import SERVICES, ServiceKey

log = logging.getLogger(__name__)
PREFIX = "/admin/v1/jobs"
SCHEDULER: ServiceKey[Scheduler] = ServiceKey("admin_job_scheduler")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="merged over the job's params",
                                   examples=[{"day": "2026-04-10"}])


def scheduler(request: web.Request) -> Scheduler:
    runtime = request.app[SERVICES]
    found = runtime.get(SCHEDULER)
    if found is None or found.db is not runtime.db:
        if runtime.db is None:
            raise web.HTTPServiceUnavailable(reason="MongoDB not connected")
        registered = kinds()
        jobs = load_jobs(runtime.settings.config_dir, set(registered))
        found = runtime.put(SCHEDULER, Scheduler(runtime.settings, runtime.partners, runtime.db, jobs, registered,
                                                 worker=f"{runtime.settings.worker_id}:admin"))
    return found


async def jobs_list(request: web.Request) -> web.Response:
    return _json({"items": await scheduler(request).overview()})


async def jobs_history(request: web.Request) -> web.Response:
    try:
        limit = min(max(int(request.query.get("limit", 50)), 1), 1000)
    except ValueError:
        limit = 50
    rows = await History(scheduler(request).db).list(request.query.get("job"), request.query.get("status"), limit)
    return _json({"items": rows})


async def jobs_run(request: web.Request) -> web.Response:
    body = await _body(request, RunRequest)
    name = request.match_info["name"]
    who = _who(request)
    log.info("job %s run requested by %s with %s", name, who, body.params)
    sched = scheduler(request)
    if name not in sched.jobs:
        raise NotFound(f"no job {name}")
    try:
        doc = await sched.run_now(name, body.params, who=who)
    except JobRefused as exc:
        raise Refused(str(exc)) from exc
    return _json(doc)


def guarded(role: Role, handler: Any) -> Handler:
    """The admin API's wrapping: bearer token with ``role``, service errors as problem documents."""
    return requires(role, _tokens)(_errors(handler))


def add_routes(app: web.Application) -> None:
    r = guarded
    app.router.add_get(PREFIX, r("viewer", jobs_list))
    app.router.add_get(f"{PREFIX}/history", r("viewer", jobs_history))
    app.router.add_post(f"{PREFIX}/{{name}}/run", r("operator", jobs_run))
