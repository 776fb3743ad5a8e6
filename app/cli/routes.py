"""``hub routes list | check FILE [--sample MSG] | schema``: routes as configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hub.errors import ConfigError, ValidationFailed
from hub.settings import load_settings

routes_app = typer.Typer(help="Routes (config/routes/*.yaml): source → transform → target.", no_args_is_help=True)


@routes_app.command("schema")
def schema(output: Path | None = typer.Option(None, "--output", "-o", help="write to this file")) -> None:
    """JSON Schema of a route file (for editors: yaml-language-server, VS Code, IntelliJ)."""
    from routes.models import route_schema

    text = json.dumps(route_schema(), indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)


@routes_app.command("check")
def check(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="route file"),
    sample: str | None = typer.Option(None, "--sample", help="sample message: a file, or the message itself"),
) -> None:
    """Validate a route file; with --sample, print the envelope(s) the sample would become (dry run)."""
    from routes.loader import load_route_file

    try:
        route: Any = load_route_file(file).route
    except ConfigError as exc:
        for problem in exc.problems or [str(exc)]:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    target = route.target.sink.connector + " sink" if getattr(route.target, "sink", None) else (
        f"topic {route.target.topic}")
    typer.echo(f"{file}: ok — route {route.name}: {route.source.connector} → {target}", err=True)
    if sample is None:
        return
    from routes.dryrun import dry_run, read_sample

    try:
        envelopes = dry_run(route, read_sample(sample), load_settings())
    except ValidationFailed as exc:
        typer.echo(f"sample rejected: {exc}", err=True)
        for err in exc.errors:
            typer.echo(f"  {err.get('field')}: {err.get('message')}", err=True)
        raise typer.Exit(1) from None
    for env in envelopes:
        typer.echo(env.model_dump_json(indent=2))


@routes_app.command("list")
def list_routes() -> None:
    """The configured routes (files under config/routes/) and any file that does not validate."""
    from routes.loader import load_routes

    settings = load_settings()
    loaded, problems = load_routes(settings.config_dir)
    for path, rf in loaded.items():
        r: Any = rf.route
        target = f"sink:{r.target.sink.connector}" if getattr(r.target, "sink", None) else f"topic:{r.target.topic}"
        state = "" if r.enabled else "  (disabled)"
        typer.echo(f"{r.name:<24} {r.source.connector:<6} {getattr(r.source, 'partner', ''):<8} → {target:<18}"
                   f" {path.name}{state}")
    for problem in problems:
        typer.echo(f"INVALID {problem}", err=True)
    if problems:
        raise typer.Exit(1)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(routes_app, name="routes")
