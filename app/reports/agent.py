"""The real-time report sweep in the worker (``app.plugins.AGENT_MODULES``).

Every :data:`SWEEP_S` each worker tries the ``realtime-reports`` lease (app/jobs/lease.py); the
holder sweeps, the others wait — one sender at a time, so two workers never race on the same
order's events (the send keys would still stop a duplicate record, not a duplicate POST). A lost
lease is taken over by the next worker after :data:`LEASE_S`. The holder also evaluates the report
rules (app/reports/control.py) every :data:`RULES_EVERY` sweeps. A bad ``config/reports`` file stops the
worker's start (``file:line: key``), like a bad blueprint.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import faust

from app.jobs.lease import Lease, Leases
from app.reports.control import ReportControl
from app.reports.definitions import load_reports
from app.reports.realtime import RealtimeReporter
from hub.services import ServiceKey, Services

log = logging.getLogger(__name__)
SWEEP_S = 2.0
LEASE_S = 20.0
RULES_EVERY = 15  # sweeps between two evaluations of the report rules (30 s)
LEASE_NAME = "realtime-reports"
REPORTER: ServiceKey[RealtimeReporter] = ServiceKey("realtime_reporter")


def register_agents(app: faust.App, runtime: Services) -> None:
    reports = load_reports(runtime.settings.config_dir, runtime.partners)
    me = f"{runtime.settings.worker_id}:{os.getpid()}"
    held: list[Lease] = []
    sweeps = [0]

    async def sweep() -> None:
        if runtime.db is None:
            return
        reporter = runtime.get(REPORTER)
        if reporter is None or reporter.db is not runtime.db:
            reporter = runtime.put(REPORTER, RealtimeReporter(runtime.db, runtime.settings, runtime.partners, reports))
        if not reporter.products:
            return
        leases, now = Leases(runtime.db), datetime.now(UTC)
        try:
            if held:
                held[0] = await leases.renew(held[0], now, LEASE_S)
            else:
                got = await leases.acquire(LEASE_NAME, me, now, LEASE_S, "sweep")
                if got is None:
                    return
                held.append(got)
            await reporter.sweep()
            sweeps[0] += 1
            if sweeps[0] % RULES_EVERY == 1:  # the report rules raise and resolve their alerts
                await ReportControl(runtime.db, reports).evaluate()
        except Exception as exc:  # a Faust timer must never raise; the next sweep retries
            held.clear()
            log.warning("real-time report sweep failed (%s: %s); retried in %.0f s", type(exc).__name__, exc, SWEEP_S)

    app.timer(SWEEP_S, name="realtime-reports")(sweep)
