"""``hub orders list | show | retry | cancel`` — "what happened to order X?" in one command."""

from __future__ import annotations

from typing import Any

import typer

from app.admin import console as c
from app.admin.queries import OrderFilter, parse_when
from app.admin.replay import Refused
from app.admin.terminal import visible
from flows.cancel import CancelRefused, cancel_order, direct_services

app = typer.Typer(help="Orders: list with filters, show one (stages, calls, wait, SLA), its call chain (trace), "
                       "retry a failed call, cancel a running order.",
                  no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")


@app.command("list")
def list_(
    product: str | None = typer.Option(None, "--product"),
    scenario: str | None = typer.Option(None, "--scenario"),
    status: str | None = typer.Option(None, "--status", help="in_flight, waiting, completed, failed, cancelled"),
    stage: str | None = typer.Option(None, "--stage", help="current stage"),
    overdue: bool = typer.Option(False, "--overdue", help="open and past the SLA deadline"),
    partner: str | None = typer.Option(None, "--partner", "-p"),
    since: str | None = typer.Option(None, "--since", help="created since: 1h, 2d or an ISO time"),
    until: str | None = typer.Option(None, "--until"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = JSON,
) -> None:
    """Orders, newest first (sensitive fields masked)."""
    flt = OrderFilter(product=product, scenario=scenario, status=status, stage=stage, overdue=overdue,
                      partner=partner, since=parse_when(since), until=parse_when(until))

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await o.queries.orders(flt, limit=limit)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    c.table(rows, [("id", "order"), ("partner", "partner"), ("external_order_id", "external id"),
                   ("product", "product"), ("scenario", "scenario"), ("status", "status"),
                   ("current_stage", "stage"), ("waiting_for", "waiting for"), ("sla_deadline", "SLA deadline"),
                   ("created_at", "created (UTC)")], title=f"{len(rows)} orders")


@app.command()
def show(order_id: str, as_json: bool = JSON) -> None:
    """One order: stages with durations, calls with outcomes, the current wait and the SLA deadline."""

    async def go(o: c.Ops) -> dict[str, Any] | None:
        return await o.queries.order(order_id)

    doc = c.run(go)
    if not c.show_fields(doc, "order", order_id, as_json, (
            "id", "partner", "external_order_id", "product", "scenario", "status", "current_stage", "phase",
            "waiting_for", "blocked_reason", "sla_deadline", "overdue", "created_at", "updated_at", "completed_at")):
        return
    assert doc is not None
    wait = doc.get("current_wait") or {}
    if wait.get("since"):
        typer.echo(f"     current wait: {visible(wait.get('waiting_for') or wait.get('stage'))} since {wait['since']} "
                   f"({(wait.get('waited_ms') or 0) / 60000:.1f} min)")
    c.table(doc.get("stages") or [], [("stage", "stage"), ("kind", "kind"), ("entered_at", "entered"),
                                      ("finished_at", "finished"), ("duration_ms", "ms"), ("outcome", "outcome"),
                                      ("submitted_by", "by"), ("sla_deadline", "SLA"), ("blocked_reason", "blocked")],
            title="stages")
    calls = doc.get("calls") or []
    for call in calls:
        call["n_attempts"] = len(call.get("attempts") or [])
    c.table(calls, [("call_id", "call"), ("stage", "stage"), ("partner", "partner"), ("operation", "operation"),
                    ("outcome", "outcome"), ("n_attempts", "attempts"), ("started_at", "started"),
                    ("duration_ms", "ms"), ("error", "error"), ("dead_letter_id", "dead letter")], title="calls")
    stuck = [c for c in calls if c.get("outcome") in ("failed", "dead_lettered") and c.get("dead_letter_id")]
    if stuck and doc.get("status") in ("in_flight", "waiting"):
        typer.echo(f"retry the failed call: hub orders retry {visible(doc['id'])}   "
                   f"(or: hub dlq show {visible(stuck[-1]['dead_letter_id'])})")


@app.command()
def trace(order_id: str, as_json: bool = JSON) -> None:
    """The order's call chain: every span (intake, router, engine, delivery, partner call, callback)
    with service, operation, duration and outcome, each under its parent. Unknown order: exit 1."""

    async def go(o: c.Ops) -> dict[str, Any] | None:
        return await o.queries.order_trace(order_id)

    doc = c.run(go)
    if not c.show_fields(doc, "order", order_id, as_json, ("order_id", "trace_ids", "span_count")):
        return
    assert doc is not None
    rows = [{**s, "hop": "  " * s["depth"] + str(s.get("service"))} for s in doc["spans"]]
    c.table(rows, [("hop", "service"), ("operation", "operation"), ("start", "start (UTC)"),
                   ("duration_ms", "ms"), ("outcome", "outcome"), ("error", "error"), ("span_id", "span"),
                   ("parent_id", "parent")], title=f"{len(rows)} spans")


@app.command()
def retry(
    order_id: str,
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent; change nothing"),
    patch: str | None = typer.Option(None, "--patch", help="RFC 6902 JSON patch on the payload, or @file.json"),
    who: str | None = typer.Option(None, "--as", help="name recorded in the history"),
    as_json: bool = JSON,
) -> None:
    """Re-run the current stage's failed call (replays its dead letter; same idempotency key)."""
    ops = c.read_patch(patch)

    async def go(o: c.Ops) -> c.Summary:
        letter = await o.replays.letter_for_order(order_id)
        return await c.replay_with_progress(o, [letter], who=who or c.default_who(), patch=ops, dry_run=dry_run,
                                            rate=None, reason=f"orders retry {order_id}", quiet=True)

    c.report(c.run(go), as_json)


@app.command()
def cancel(
    order_id: str,
    reason: str = typer.Option(..., "--reason", help="why (recorded, and sent to the order's origin)"),
    who: str | None = typer.Option(None, "--as", help="name recorded in the history"),
    as_json: bool = JSON,
) -> None:
    """Withdraw / terminate a running order now: pending calls cancelled, what partners did undone,
    the origin answered (flows/cancel.py). Unknown order or already finished: exit code 1."""

    async def go(o: c.Ops) -> dict[str, Any]:
        name = who or c.default_who()
        services = direct_services(o.settings, o.db, o.replays.producer)
        try:
            done = await cancel_order(services, order_id, reason=reason, who=name, protocol="cli")
        except CancelRefused as exc:
            raise Refused(str(exc)) from exc
        return done.answer()

    answer = c.run(go)
    if as_json:
        c.dump(answer)
        return
    typer.echo(f"cancel of {answer['order_id']} accepted" + (" (already asked before)" if answer["duplicate"] else "")
               + f"; envelope {answer['envelope_id']}")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="orders")
