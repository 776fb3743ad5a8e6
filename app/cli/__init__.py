"""The ``hub`` command. Each command group lives in its own module (listed in app/plugins.py)."""

from __future__ import annotations

import sys

import typer

from app import plugins
from hub.errors import ConfigError, HubError

app = typer.Typer(
    name="hub",
    help="The hub: integration hub for the business-orchestration center.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in plugins.load(plugins.CLI_MODULES):
    module.register_cli(app)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"hub: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except HubError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        sys.exit(1)
