"""Explicit lists of the modules that contribute CLI commands, HTTP routes and Faust agents.

Registration is explicit (no scanning): each module named here exposes one function —
``register_cli(app: typer.Typer)``, ``add_routes(app: web.Application)``, or
``register_agents(app: faust.App, runtime: Runtime)`` — and is imported in this order.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

CLI_MODULES = (
    "hub.cli.infra",
    "hub.cli.run",
    "hub.cli.flows",
    "hub.cli.simulate",
    "hub.cli.demo",
    "hub.cli.routes",
    "hub.cli.dlq",
    "hub.cli.orders",
    "hub.cli.calls",
)
ROUTE_MODULES = (
    "connectors.rest.source",
    "connectors.soap.source",
    "flows.http",
    "hub.admin.api",
)
AGENT_MODULES = (
    "hub.router",
    "flows.agents",
    "hub.delivery",
)


def load(names: tuple[str, ...]) -> Iterator[ModuleType]:
    """Import each named module in order; a missing one is an error (a typo must not pass silently)."""
    for name in names:
        yield importlib.import_module(name)
