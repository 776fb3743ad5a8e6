"""The worker's wiring (app/jobs/agent.py, app/reports/agent.py): the timers the plugins register
build the scheduler and the real-time reporter on the worker's runtime, the scheduler plans the
shipped jobs, and the report sweep takes its lease (one sender across workers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.jobs import agent as jobs_agent
from app.jobs.lease import Leases
from app.reports import agent as reports_agent
from app.runtime import Runtime
from hub.settings import Settings

pytestmark = pytest.mark.integration


class Timers:
    """What the two plugins use of faust's App: ``app.timer(interval, name=…)(fn)``; the test runs the
    timers by hand instead of waiting for faust to."""

    def __init__(self) -> None:
        self.timers: dict[str, Callable[[], Awaitable[None]]] = {}

    def timer(self, interval: float, name: str) -> Callable[[Callable[[], Awaitable[None]]], Any]:
        def register(fn: Callable[[], Awaitable[None]]) -> Any:
            self.timers[name] = fn
            return fn

        return register


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await asyncio.to_thread(Runtime, settings)  # reads every partner file: CPU, off the loop
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_the_plugin_timers_start_the_scheduler_and_the_report_sweep(runtime: Any) -> None:
    app = Timers()
    # a worker registers before its loop runs; here on a thread (loading config/jobs, config/reports is CPU)
    await asyncio.to_thread(jobs_agent.register_agents, app, runtime)  # type: ignore[arg-type]  # a stand-in for faust.App
    await asyncio.to_thread(reports_agent.register_agents, app, runtime)  # type: ignore[arg-type]  # the same
    timers = app.timers
    assert set(timers) == {"job-scheduler", "realtime-reports"}
    await timers["job-scheduler"]()
    scheduler = runtime.get(jobs_agent.SCHEDULER)
    assert scheduler is not None and "group-daily-files" in scheduler.jobs
    state = await runtime.db["job_state"].find_one({"_id": "group-daily-files"})
    assert state is not None and state["last_slot"] is not None  # planned from its latest past slot
    await timers["realtime-reports"]()
    lease = await Leases(runtime.db).current(reports_agent.LEASE_NAME)
    assert lease is not None and lease["holder"].startswith(runtime.settings.worker_id)
    assert runtime.get(reports_agent.REPORTER) is not None
