"""``hub run`` — embedded servers (unless external URLs are set), the Faust worker and HTTP server."""

from __future__ import annotations

import logging

import typer

from hub.infra import Infra
from hub.settings import load_settings


def run(
    keep_infra: bool = typer.Option(False, "--keep-infra", help="leave servers this command started running on exit"),
) -> None:
    """Run the hub in the foreground until Ctrl-C / SIGTERM."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    infra = Infra(settings)
    already = {s.name for s in infra.status() if s.answers}
    infra.up(log=lambda m: typer.echo(f"infra: {m}"))
    started = [s for s in infra.servers if not s.external and s.name not in already]
    from hub.worker import run_worker  # imported late: faust is heavy and `hub infra` does not need it

    try:
        run_worker(settings)
    finally:
        if not keep_infra:
            for server in reversed(started):
                server.process.stop()
                typer.echo(f"infra: {server.name} stopped")


def register_cli(root: typer.Typer) -> None:
    root.command("run")(run)
