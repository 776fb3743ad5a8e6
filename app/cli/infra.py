"""``hub infra up | down | status`` — the embedded real servers."""

from __future__ import annotations

import json

import typer

from app.infra import Infra
from hub.settings import load_settings

app = typer.Typer(help="Start, stop and check the embedded Kafka, MongoDB and SFTP servers.", no_args_is_help=True)


@app.command()
def up() -> None:
    """Start every embedded server not already running (idempotent); external URLs are left alone."""
    infra = Infra(load_settings())
    for status in infra.up():
        typer.echo(status.line())


@app.command()
def down() -> None:
    """Stop the embedded servers started by `hub infra up` (idempotent)."""
    Infra(load_settings()).down()


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Print each server's URL and whether it answers; exit 1 if one does not."""
    statuses = Infra(load_settings()).status()
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in statuses], indent=2))
    else:
        for s in statuses:
            typer.echo(s.line())
    raise typer.Exit(0 if all(s.answers for s in statuses) else 1)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="infra")
