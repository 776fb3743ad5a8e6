"""``hub calls stats | failed | recall`` — API call statistics and re-calling failed calls
(the documents' 重调 / 批量重调), through the same replay path as dead letters."""

from __future__ import annotations

from typing import Any

import typer

from app.admin import console as c
from app.admin.queries import CallFilter, parse_when

app = typer.Typer(help="Partner API calls: statistics, failed calls, re-call one or a batch.", no_args_is_help=True)
PARTNER = typer.Option(None, "--partner", "-p")
OPERATION = typer.Option(None, "--operation", help="e.g. notifyOrderResult")
SINCE = typer.Option("1h", "--since", help="window start: 1h, 30m, 2d or an ISO time (UTC)")
UNTIL = typer.Option(None, "--until")
JSON = typer.Option(False, "--json", help="machine-readable output")


@app.command()
def stats(partner: str | None = PARTNER, operation: str | None = OPERATION, since: str = SINCE,
          until: str | None = UNTIL, as_json: bool = JSON) -> None:
    """Per partner operation: total, succeeded, failed, success rate, p50/p99 duration."""
    flt = CallFilter(partner=partner, operation=operation, since=parse_when(since), until=parse_when(until))

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await o.queries.call_stats(flt)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    for r in rows:
        r["rate"] = "" if r["success_rate"] is None else f"{r['success_rate'] * 100:.1f}%"
    c.table(rows, [("partner", "partner"), ("operation", "operation"), ("total", "total"),
                   ("succeeded", "ok"), ("failed", "failed"), ("pending", "pending"), ("rate", "success"),
                   ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")], title=f"calls since {flt.since:%Y-%m-%d %H:%M} UTC")


@app.command()
def failed(partner: str | None = PARTNER, operation: str | None = OPERATION, since: str = SINCE,
           until: str | None = UNTIL, order: str | None = typer.Option(None, "--order", "-o"),
           limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000), as_json: bool = JSON) -> None:
    """Failed calls (attempts exhausted or permanent error), newest first."""
    flt = CallFilter(partner=partner, operation=operation, order_id=order, outcome="failures",
                     since=parse_when(since), until=parse_when(until))

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await o.queries.calls(flt, limit=limit)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    c.table(rows, [("call_id", "call"), ("order_id", "order"), ("partner", "partner"), ("operation", "operation"),
                   ("stage", "stage"), ("outcome", "outcome"), ("started_at", "started (UTC)"),
                   ("error", "error"), ("dead_letter_id", "dead letter")], title=f"{len(rows)} failed calls")


@app.command()
def recall(
    call_ids: list[str] = typer.Argument(None, help="call ids (or use filters)"),
    partner: str | None = PARTNER, operation: str | None = OPERATION,
    since: str | None = typer.Option(None, "--since"), until: str | None = UNTIL,
    rate: float | None = typer.Option(None, "--rate", min=0.1, help="max calls per second"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    limit: int | None = typer.Option(None, "--limit", min=1),
    yes: bool = typer.Option(False, "--yes", "-y", help="no confirmation for batches"),
    who: str | None = typer.Option(None, "--as", help="name recorded in the history"),
    as_json: bool = JSON,
) -> None:
    """Re-call one failed call or a batch: replays their dead letters (same idempotency keys)."""
    if not call_ids and not any(v is not None for v in (partner, operation, since, until)):
        c.err.print("[red]name call ids or give a filter (--partner, --operation, --since)[/red]")
        raise typer.Exit(2)
    flt = None if call_ids else CallFilter(partner=partner, operation=operation, since=parse_when(since),
                                           until=parse_when(until))

    async def go(o: c.Ops) -> c.Summary:
        letters = await o.replays.letters_for_calls(list(call_ids) if call_ids else None, flt, limit=limit)
        if not call_ids:
            c.confirm_bulk(len(letters), yes, dry_run)
        return await c.replay_with_progress(o, letters, who=who or c.default_who(), patch=None, dry_run=dry_run,
                                            rate=rate, reason="calls recall", quiet=as_json)

    c.report(c.run(go), as_json)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="calls")
