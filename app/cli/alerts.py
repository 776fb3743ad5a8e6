"""``hub alerts list | show | ack | assign | note | resolve | close | export`` — alerts as work items.

``list`` is the real-time list (open and tracking) by default; ``--status any`` the history. Handling
goes open -> tracking (``ack``) -> resolved (``resolve``) -> closed (``close``); every step is a handling
record (who, when, what) on the alert and an entry of the admin action log (``hub dlq history``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import typer

from app.admin import console as c
from app.ops.alerts import AlertFilter
from app.ops.exports import Format, csv_chunks, xlsx_chunks
from app.ops.service import ALERT_COLUMNS, OpsService

app = typer.Typer(help="Alerts and their handling: list, show, ack, assign, note, resolve, close, export.",
                  no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")
WHO = typer.Option(None, "--as", help="name recorded in the handling records (default cli:user@host)")
NOTE = typer.Option("", "--note", "-m", help="what was done (handling record)")


def _svc(o: c.Ops) -> OpsService:
    return OpsService(o.db, o.settings.config_dir, o.partners)


def _filter(status: str, kind: str | None, rule: str | None, severity: str | None, product: str | None,
            stage: str | None, order: str | None, assignee: str | None, since: str | None,
            until: str | None) -> AlertFilter:
    return AlertFilter.model_validate({k: v for k, v in dict(
        status=status, kind=kind, rule_id=rule, severity=severity, product=product, stage=stage, order_id=order,
        assignee=assignee, since=since, until=until).items() if v is not None})


STATUS = typer.Option("active", "--status", help="active (open + tracking), open, tracking, resolved, closed, any")
KIND = typer.Option(None, "--kind", help="order, interface, indicator")
RULE = typer.Option(None, "--rule")
SEVERITY = typer.Option(None, "--severity")
PRODUCT = typer.Option(None, "--product")
STAGE = typer.Option(None, "--stage")
ORDER = typer.Option(None, "--order", "-o")
ASSIGNEE = typer.Option(None, "--assignee")
SINCE = typer.Option(None, "--since", help="raised since: 1h, 2d or an ISO time")
UNTIL = typer.Option(None, "--until")


@app.command("list")
def list_(status: str = STATUS, kind: str | None = KIND, rule: str | None = RULE, severity: str | None = SEVERITY,
          product: str | None = PRODUCT, stage: str | None = STAGE, order: str | None = ORDER,
          assignee: str | None = ASSIGNEE, since: str | None = SINCE, until: str | None = UNTIL,
          limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000), as_json: bool = JSON) -> None:
    """Alerts, newest first."""
    flt = _filter(status, kind, rule, severity, product, stage, order, assignee, since, until)

    async def go(o: c.Ops) -> tuple[int, list[dict[str, Any]]]:
        svc = _svc(o)
        return await svc.alerts.count(flt), await svc.alerts.list(flt, limit=limit)

    total, rows = c.run(go)
    if as_json:
        c.dump({"total": total, "items": rows})
        return
    c.table(rows, [("id", "alert"), ("severity", "severity"), ("status", "status"), ("rule_id", "rule"),
                   ("order_id", "order"), ("product", "product"), ("stage", "stage"), ("assignee", "assignee"),
                   ("raised_at", "raised (UTC)"), ("summary", "summary")], title=f"{len(rows)} of {total} alerts")


@app.command()
def show(alert_id: str, as_json: bool = JSON) -> None:
    """One alert with its handling records."""

    async def go(o: c.Ops) -> dict[str, Any] | None:
        return await _svc(o).alerts.get(alert_id)

    doc = c.run(go)
    if not c.show_fields(doc, "alert", alert_id, as_json, (
            "id", "kind", "status", "severity", "rule_id", "rule_name", "subject", "order_id", "product", "stage",
            "assignee", "summary", "raised_at", "cleared_at", "resolved_by", "active")):
        return
    assert doc is not None
    c.table(doc.get("records") or [], [("at", "at"), ("who", "who"), ("action", "action"), ("to", "to"),
                                       ("note", "note")], title="handling records")
    if doc.get("notified"):
        c.table(doc["notified"], [("at", "at"), ("sink", "sink"), ("result", "result")], title="notifications")


def _act(alert_id: str, action: str, who: str | None, note: str, as_json: bool,
         assignee: str | None = None) -> None:
    async def go(o: c.Ops) -> dict[str, Any]:
        return await _svc(o).act(alert_id, action, who or c.default_who(), note=note, assignee=assignee)

    doc = c.run(go)
    if as_json:
        c.dump(doc)
    else:
        typer.echo(f"alert {alert_id}: {action} ok; now {doc['status']}"
                   + (f", assigned to {c.visible(doc['assignee'])}" if doc.get("assignee") else ""))


@app.command()
def ack(alert_id: str, note: str = NOTE, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Start tracking (open -> tracking); assigns it to you when nobody has it."""
    _act(alert_id, "ack", who, note, as_json)


@app.command()
def assign(alert_id: str, assignee: str, note: str = NOTE, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Give the alert to a person or team."""
    _act(alert_id, "assign", who, note, as_json, assignee=assignee)


@app.command()
def note(alert_id: str, text: str, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Add a progress record without changing the stage."""
    _act(alert_id, "note", who, text, as_json)


@app.command()
def resolve(alert_id: str, note: str = NOTE, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Record the result (open/tracking -> resolved)."""
    _act(alert_id, "resolve", who, note, as_json)


@app.command()
def close(alert_id: str, note: str = NOTE, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Close a resolved alert (resolved -> closed)."""
    _act(alert_id, "close", who, note, as_json)


@app.command()
def export(output: Path = typer.Option(..., "--output", "-O", help="file to write"),
           fmt: Format = typer.Option("csv", "--format", help="csv or xlsx"),
           status: str = STATUS, kind: str | None = KIND, rule: str | None = RULE, severity: str | None = SEVERITY,
           product: str | None = PRODUCT, stage: str | None = STAGE, order: str | None = ORDER,
           assignee: str | None = ASSIGNEE, since: str | None = SINCE, until: str | None = UNTIL,
           limit: int = typer.Option(1_000_000, "--limit", "-n", min=1)) -> None:
    """Write the (real-time by default) alert list as CSV or XLSX."""
    flt = _filter(status, kind, rule, severity, product, stage, order, assignee, since, until)

    async def go(o: c.Ops) -> int:
        svc = _svc(o)
        count = 0

        async def counted() -> AsyncIterator[list[dict[str, Any]]]:
            nonlocal count
            async for b in svc.alert_batches(flt, limit):
                count += len(b)
                yield b

        chunks = csv_chunks(counted(), ALERT_COLUMNS) if fmt == "csv" else xlsx_chunks(counted(), ALERT_COLUMNS,
                                                                                       "alerts")
        with output.open("wb") as f:
            async for chunk in chunks:
                f.write(chunk)
        return count

    n = c.run(go)
    typer.echo(f"{n} alerts written to {output}")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="alerts")
