"""``hub dlq list | show | replay | discard | history`` — dead letters, for operators.

Talks to MongoDB (the dead-letter index) and Kafka directly; see app/admin/console.py for why.
"""

from __future__ import annotations

from typing import Any

import typer

from app.admin import console as c
from app.admin.queries import DeadLetterFilter, parse_when

app = typer.Typer(help="Dead letters: list, show, replay, discard, and the action history.", no_args_is_help=True)

TOPIC = typer.Option(None, "--topic", "-t", help="source topic, e.g. hub.out.esop")
PARTNER = typer.Option(None, "--partner", "-p", help="partner name")
ORDER = typer.Option(None, "--order", "-o", help="order id")
ERROR = typer.Option(None, "--error-class", "-e", help="e.g. RetryableError, PermanentError")
SINCE = typer.Option(None, "--since", help="1h, 30m, 2d or an ISO time (UTC)")
UNTIL = typer.Option(None, "--until", help="1h, 30m, 2d or an ISO time (UTC)")
JSON = typer.Option(False, "--json", help="machine-readable output")
WHO = typer.Option(None, "--as", help="name recorded in the history (default cli:user@host)")


def _filter(topic: str | None, partner: str | None, order: str | None, error_class: str | None,
            since: str | None, until: str | None, status: str = "dead",
            ids: list[str] | None = None) -> DeadLetterFilter:
    return DeadLetterFilter(ids=ids, source_topic=topic, partner=partner, order_id=order, error_class=error_class,
                            since=parse_when(since), until=parse_when(until), status=status)


@app.command("list")
def list_(
    topic: str | None = TOPIC, partner: str | None = PARTNER, order: str | None = ORDER,
    error_class: str | None = ERROR, since: str | None = SINCE, until: str | None = UNTIL,
    status: str = typer.Option("dead", "--status", help="dead (pending, incl. lapsed replay leases), replaying, "
                               "replayed, discarded, resolved or any"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = JSON,
) -> None:
    """Dead letters, newest first (sensitive fields masked)."""
    flt = _filter(topic, partner, order, error_class, since, until, status)

    async def go(o: c.Ops) -> tuple[int, list[dict[str, Any]]]:
        return await o.queries.count_dead_letters(flt), await o.queries.dead_letters(flt, limit=limit)

    total, rows = c.run(go)
    if as_json:
        c.dump({"total": total, "items": rows})
        return
    c.table(rows, [("id", "id"), ("created_at", "created (UTC)"), ("source_topic", "topic"), ("partner", "partner"),
                   ("order_id", "order"), ("error_class", "error class"), ("error", "error"), ("status", "status"),
                   ("replay_count", "replays")], title=f"{len(rows)} of {total} dead letters")


@app.command()
def show(letter_id: str, as_json: bool = JSON) -> None:
    """One dead letter: original envelope (masked), error, every attempt, and its history."""

    async def go(o: c.Ops) -> dict[str, Any] | None:
        return await o.queries.dead_letter(letter_id)

    doc = c.run(go)
    if not c.show_fields(doc, "dead letter", letter_id, as_json, (
            "id", "status", "source_topic", "dlq_topic", "partner", "order_id", "error_class", "error",
            "replay_count", "created_at", "origin", "claimed_by", "lease_until", "last_action")):
        return
    assert doc is not None
    c.table(doc.get("attempts") or [], [("at", "at"), ("outcome", "outcome"), ("status", "status"),
                                        ("duration_ms", "ms"), ("error", "error")], title="attempts")
    typer.echo("envelope (masked):")
    c.dump(doc.get("envelope") or {"raw_value_b64": doc.get("raw_value_b64")})
    if doc.get("history"):
        c.table(doc["history"], [("at", "at"), ("who", "who"), ("action", "action"), ("result", "result"),
                                 ("detail", "detail"), ("reason", "reason")], title="history")


@app.command()
def replay(
    ids: list[str] = typer.Argument(None, help="dead-letter ids (or use filters / --all)"),
    topic: str | None = TOPIC, partner: str | None = PARTNER, order: str | None = ORDER,
    error_class: str | None = ERROR, since: str | None = SINCE, until: str | None = UNTIL,
    all_: bool = typer.Option(False, "--all", help="every dead letter (of --topic if given)"),
    rate: float | None = typer.Option(None, "--rate", min=0.1, help="max envelopes per second"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent; change nothing"),
    patch: str | None = typer.Option(None, "--patch", help="RFC 6902 JSON patch on the payload, or @file.json"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="at most this many (oldest first)"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the history"),
    yes: bool = typer.Option(False, "--yes", "-y", help="no confirmation for bulk replays"),
    force: bool = typer.Option(False, "--force", help="re-send named letters already marked replayed "
                               "(harmless: the partner call is deduplicated by idempotency key)"),
    lease: float = typer.Option(300.0, "--lease", min=0.1, help="seconds a claim holds if this command dies "
                                "(kill -9) before giving it back; then the letters are pending again"),
    who: str | None = WHO, as_json: bool = JSON,
) -> None:
    """Replay dead letters to the topic they came from (same idempotency key; replay count capped).

    Ctrl-C is safe: letters already sent stay replayed, every other claim is given back at once."""
    filtered = any(v is not None for v in (topic, partner, order, error_class, since, until))
    if not ids and not filtered and not all_:
        c.err.print("[red]name dead-letter ids, give a filter (--topic/--partner/…), or say --all[/red]")
        raise typer.Exit(2)
    ops = c.read_patch(patch)
    flt = _filter(topic, partner, order, error_class, since, until)

    async def go(o: c.Ops) -> c.Summary:
        o.replays.lease_s = lease
        chosen = list(ids) if ids else await o.replays.select(flt, limit=limit)
        if not ids:
            c.confirm_bulk(len(chosen), yes, dry_run)
        return await c.replay_with_progress(o, chosen, who=who or c.default_who(), patch=ops, dry_run=dry_run,
                                            rate=rate, reason=reason, quiet=as_json, force=force and bool(ids))

    c.report(c.run(go), as_json)


@app.command()
def discard(
    letter_id: str,
    reason: str = typer.Option(..., "--reason", help="why it will not be replayed (recorded)"),
    who: str | None = WHO,
) -> None:
    """Mark a dead letter handled without sending it."""

    async def go(o: c.Ops) -> c.ActionResult:
        return await o.replays.discard(letter_id, who=who or c.default_who(), reason=reason)

    result = c.run(go)
    detail = f" ({c.visible(result.detail)})" if result.detail else ""
    typer.echo(f"{result.dead_letter_id}: discard {result.result}{detail}")
    if result.result != "ok":
        raise typer.Exit(1)


@app.command()
def history(
    letter_id: str | None = typer.Option(None, "--id", help="one dead letter"),
    who: str | None = typer.Option(None, "--who", help="actions by this operator"),
    since: str | None = SINCE,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = JSON,
) -> None:
    """Every replay and discard: who, when, what, result — newest first."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await o.queries.history(dead_letter_id=letter_id, who=who, since=parse_when(since), limit=limit)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    c.table(rows, [("at", "at (UTC)"), ("who", "who"), ("action", "action"), ("result", "result"),
                   ("dead_letter_id", "dead letter"), ("order_id", "order"), ("topic", "topic"),
                   ("replay_count", "n"), ("detail", "detail"), ("reason", "reason")], title="dead-letter actions")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="dlq")
