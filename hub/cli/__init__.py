"""The ``hub`` command. Each command group lives in its own module here and is added below."""

from __future__ import annotations

import sys

import typer

from hub.cli import infra, run
from hub.errors import ConfigError, HubError

app = typer.Typer(
    name="hub",
    help="The hub: integration hub for the business-orchestration center.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(infra.app, name="infra")
app.command("run")(run.run)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"hub: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except HubError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        sys.exit(1)
