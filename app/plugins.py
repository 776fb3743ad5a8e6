"""Explicit lists of the modules that contribute CLI commands, HTTP routes and Faust agents.

Registration is explicit (no scanning): each module named here exposes one function —
``register_cli(app: typer.Typer)``, ``add_routes(app: web.Application)``, or
``register_agents(app: faust.App, runtime: Runtime)`` — and is imported in this order. A process of
role ``intake`` (``HUB_ROLE``) loads no AGENT_MODULES; one of role ``worker`` no ROUTE_MODULES, only
``WORKER_WEB_MODULES``' ``add_worker_routes(app: web.Application)``.
``ADMISSION_MODULES`` expose ``admission(runtime) -> Admit``: checks the intake runs before it
accepts anything (e.g. "a blueprint exists for this order"), so ``hub/`` never imports ``flows/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

CLI_MODULES = (
    "app.cli.infra",
    "app.cli.run",
    "app.cli.flows",
    "simulators.cli",  # hub simulate: outside the runtime graph, loaded by name
    "simulators.demo",  # hub demo
    "app.cli.routes",
    "app.cli.dlq",
    "app.cli.orders",
    "app.cli.calls",
    "app.cli.tasks",  # hub tasks wireless list | show (P36.1 batches)
    "app.cli.policies",  # issue 14: hub dlq policies (after app.cli.dlq)
    "app.cli.fusion",  # issue 13: hub fusion list | show | release | wait | cancel
    "app.cli.overview",  # issue 14: hub overview, hub rules, hub alerts (app/ops)
    "app.cli.rules",
    "app.cli.alerts",
    "app.cli.exports",
    "app.cli.jobs",
    "app.cli.reports",  # issue 16: hub reports (app/reports)
)
ROUTE_MODULES = (
    "connectors.rest.source",
    "connectors.soap.source",
    "flows.http",
    "flows.cancel",
    "app.admin.api",
    "app.admin.jobs_api",  # issue 16: /admin/v1/jobs, /admin/v1/reports, the group's recollect / reconciliation
    "app.admin.reports_api",
    "app.reports.http",
    "app.reports.attachments_http",
    "app.admin.fusion_api",  # issue 13: /admin/v1/fusion
    "app.ops.api",  # issue 14: /admin/v1/overview, /admin/v1/rules, /admin/v1/alerts
    "app.console.routes",  # the operator web console at /console
    "flows.tasks.intake",  # P36.1 wireless task batches (REST)
)
#: Role ``worker`` (app/web.py): its HTTP server keeps none of ROUTE_MODULES' endpoints, only the work some
#: of them start with the HTTP server, through their ``add_worker_routes(app)``.
WORKER_WEB_MODULES = (
    "flows.tasks.intake",  # the ARAN file drop and the wireless task pipeline (P36.1)
)
AGENT_MODULES = (
    "app.router",
    "flows.agents",
    "app.delivery",
    "app.ops.agent",  # issue 14: the periodic stuck-order rule evaluator
    "app.jobs.agent",  # issue 16: the job scheduler (app/jobs)
    "app.reports.agent",  # issue 16: real-time reports to 一编 (app/reports/realtime.py)
    "flows.tasks.intake",  # P36.1 wireless task file drop + pipeline
)

ADMISSION_MODULES = ("flows.admission", "flows.fusion.admission")


def load(names: tuple[str, ...]) -> Iterator[ModuleType]:
    """Import each named module in order; a missing one is an error (a typo must not pass silently)."""
    for name in names:
        yield importlib.import_module(name)


def admission(runtime: Any) -> Any:
    """One intake admission check (``hub.intake.Admit``) combining every ADMISSION_MODULES'; None
    when there are none (everything is admitted)."""
    checks = [mod.admission(runtime) for mod in load(ADMISSION_MODULES)]
    if not checks:
        return None

    def admit(envelope: Any) -> None:
        for check in checks:
            check(envelope)

    return admit
