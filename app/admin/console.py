"""Shared plumbing for the operator CLI (``hub dlq|orders|calls``).

The CLI talks to MongoDB and Kafka directly (settings from env / config/hub.yaml like every hub
command), not to the admin API: replay is needed exactly when things are broken — the hub's HTTP
server may be down while the broker and the database are up — and an operator on the hub host
needs no API token. The audit trail records ``cli:<user>@<host>`` (or ``--as``).
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from motor.motor_asyncio import AsyncIOMotorDatabase
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.admin.patch import PatchOp, parse_patch
from app.admin.queries import Queries
from app.admin.replay import ActionResult, NotFound, Refused, ReplayService, Summary
from app.admin.terminal import cell, json_text, markup, visible
from hub import db as hubdb
from hub import paths

__all__ = ["ActionResult", "Ops", "Summary", "ops", "run", "visible"]
from hub.errors import HubError, ValidationFailed
from hub.kafka import EnvelopeProducer
from hub.partners import Partner, load_partners
from hub.settings import Settings, load_settings

T = TypeVar("T")
err = Console(stderr=True)


@dataclass
class Ops:
    settings: Settings
    db: AsyncIOMotorDatabase
    partners: dict[str, Partner]
    queries: Queries
    replays: ReplayService


@asynccontextmanager
async def ops(settings: Settings | None = None) -> AsyncIterator[Ops]:
    settings = settings or load_settings()
    client = hubdb.connect(settings)
    db = hubdb.database(client, settings)
    producer = EnvelopeProducer(settings)  # started on first send only: listings never touch Kafka
    partners = load_partners(settings.config_dir)
    try:
        await hubdb.ensure_indexes(db)
        replays = ReplayService(db, producer, partners, max_patched_bytes=settings.replay_patch_max_bytes)
        yield Ops(settings, db, partners, Queries(db, partners), replays)
    finally:
        await producer.stop()
        client.close()


def run(fn: Callable[[Ops], Awaitable[T]]) -> T:
    """Run ``fn`` with a connected Ops; hub errors become a message and exit code (1, or 2 for input)."""

    async def main() -> T:
        async with ops() as o:
            return await fn(o)

    coro: Coroutine[Any, Any, T] = main()
    try:
        return asyncio.run(coro)
    except (NotFound, Refused) as exc:
        err.print(f"[red]{markup(exc)}[/red]")
        raise typer.Exit(1) from exc
    except ValidationFailed as exc:
        err.print(f"[red]{markup(exc)}[/red]")
        raise typer.Exit(2) from exc
    except HubError as exc:
        err.print(f"[red]hub: {markup(exc)}[/red]")
        raise typer.Exit(1) from exc


def default_who() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def read_patch(text: str | None) -> list[PatchOp] | None:
    """``--patch '[…]'`` or ``--patch @file.json``."""
    if not text:
        return None
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    return parse_patch(text)


def dump(data: Any) -> None:
    typer.echo(json_text(data, indent=2, default=str))


def show_fields(doc: dict[str, Any] | None, what: str, key: str, as_json: bool, fields: tuple[str, ...]) -> bool:
    """Common head of every ``show``: exit 1 when missing, the JSON document, or aligned fields.

    True when the caller should go on printing its tables."""
    if doc is None:
        err.print(f"[red]no {what} {markup(key)}[/red]")
        raise typer.Exit(1)
    if as_json:
        dump(doc)
        return False
    width = max(len(f) for f in fields)
    for f in fields:
        typer.echo(f"{f:>{width}}: {'' if doc.get(f) is None else visible(doc.get(f))}")
    return True


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str | None = None) -> None:
    t = Table(title=markup(title) if title else None, show_lines=False)
    for _, header in columns:
        t.add_column(header, overflow="fold")
    for r in rows:
        t.add_row(*[cell(_cell(paths.get(r, key))) for key, _ in columns])
    Console(width=max(Console().width, 160)).print(t)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if hasattr(v, "strftime"):
        return str(v.strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


async def replay_with_progress(o: Ops, ids: list[str], *, who: str, patch: list[PatchOp] | None, dry_run: bool,
                               rate: float | None, reason: str | None, quiet: bool = False,
                               force: bool = False) -> Summary:
    """Replay with a progress bar on stderr (stdout stays clean for ``--json``)."""
    label = "dry run" if dry_run else "replaying"
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[s]}"),
                  TimeRemainingColumn(), console=err, disable=quiet or not ids, transient=False) as bar:
        task = bar.add_task(label, total=len(ids), s="")
        counts: dict[str, int] = {}

        def tick(r: ActionResult) -> None:
            counts[r.result] = counts.get(r.result, 0) + 1
            bar.update(task, advance=1, s=" ".join(f"{k}={v}" for k, v in sorted(counts.items())))

        return await o.replays.replay(ids, who=who, patch=patch, dry_run=dry_run, rate=rate, reason=reason,
                                      force=force, progress=tick)


def report(summary: Summary, as_json: bool) -> None:
    """Print a replay summary; exit 1 when something failed or was refused (scripts notice)."""
    if as_json:
        dump(summary.model_dump(mode="json"))
    else:
        typer.echo(f"matched {summary.matched}: ok {summary.ok}, dry-run {summary.dry_run}, "
                   f"refused {summary.refused}, failed {summary.failed} in {summary.elapsed_s}s"
                   + (f" ({summary.per_second}/s)" if summary.per_second else ""))
        for r in summary.results:
            if r.result in ("refused", "failed"):
                typer.echo(f"  {r.result}: {r.dead_letter_id} {visible(r.detail)}", err=True)
        if summary.dry_run and summary.results and summary.results[0].envelope is not None:
            typer.echo("first envelope that would be sent (masked):")
            dump(summary.results[0].envelope)
    if summary.refused or summary.failed:
        raise typer.Exit(1)


def confirm_bulk(count: int, yes: bool, dry_run: bool) -> None:
    if dry_run or yes or count <= 1:
        return
    if not sys.stdin.isatty():
        err.print(f"[red]{count} dead letters match; add --yes to replay them non-interactively[/red]")
        raise typer.Exit(2)
    typer.confirm(f"Replay {count} dead letters?", abort=True)
