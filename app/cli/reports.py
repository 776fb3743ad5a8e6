"""``hub reports …`` — transparency-report control (C.5; app/reports), for operators.

    hub reports list                         the report definitions per product
    hub reports overview [--since 7d]        the five C.5 counts (+ --drill METRIC for the records)
    hub reports rules list | add | edit | delete
    hub reports alerts [--status open]       and  hub reports note ALERT_ID TEXT [--resolve]
    hub reports reconcile DAY FILE           the group's figures (CSV product,crmOrderId) against ours
    hub reports regenerate DAY [--report R]  the daily files of a day again (a manual run of the files job)

MongoDB directly like ``hub dlq`` (app/admin/console.py says why); changes are recorded as
``cli:<user>@<host>`` (or ``--as``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from app.admin import console as c
from app.admin.queries import parse_when
from app.jobs.config import load_jobs
from app.jobs.registry import kinds
from app.jobs.scheduler import Scheduler
from app.reports.control import LABELS, METRICS, AlertNote, ReportControl, ReportRule, RulePatch
from app.reports.definitions import load_reports
from app.reports.reconciliation import parse_csv, reconcile

app = typer.Typer(help="Transparency reports: definitions, overview, rules, alerts, reconciliation.",
                  no_args_is_help=True)
rules = typer.Typer(help="Report rules: list, add, edit, delete.", no_args_is_help=True)
app.add_typer(rules, name="rules")
JSON = typer.Option(False, "--json", help="machine-readable output")
WHO = typer.Option(None, "--as", help="name recorded in the history (default cli:user@host)")
SINCE = typer.Option(None, "--since", help="1h, 30m, 2d or an ISO time (UTC); default 24 h ago")


def _control(o: c.Ops) -> ReportControl:
    return ReportControl(o.db, load_reports(o.settings.config_dir, o.partners))


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """Every report definition: products, real-time events, files, field count."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return [{"name": r.name, "title": r.definition.title, "catalogue": r.definition.catalogue,
                 "products": ", ".join(r.definition.products),
                 "realtime": ",".join(r.definition.realtime.on) if r.definition.realtime else "",
                 "files": ",".join(r.definition.files.periods) if r.definition.files else "",
                 "fields": len(r.fields)} for r in _control(o).reports.by_name.values()]

    rows = c.run(go)
    if as_json:
        c.dump({"items": rows})
        return
    c.table(rows, [("name", "report"), ("title", "title"), ("catalogue", "C.6"), ("products", "products"),
                   ("realtime", "real-time"), ("files", "files"), ("fields", "fields")], title=f"{len(rows)} reports")


@app.command()
def overview(since: str | None = SINCE, drill: str | None = typer.Option(
        None, "--drill", help=f"list the records behind one count: {', '.join(METRICS)}"),
        limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000), as_json: bool = JSON) -> None:
    """The five report-control counts (C.5 (1)); --drill lists the records behind one."""
    metric = next((m for m in METRICS if m == drill), None)
    if drill is not None and metric is None:
        c.err.print(f"[red]--drill takes one of {', '.join(METRICS)}[/red]")
        raise typer.Exit(2)
    when = parse_when(since)

    async def go(o: c.Ops) -> dict[str, Any]:
        ctl = _control(o)
        out = await ctl.overview(when)
        if metric is not None:
            out["items"] = await ctl.drill(metric, when, limit=limit)
        return out

    doc = c.run(go)
    if as_json:
        c.dump(doc)
        return
    c.table([{"metric": m, "label": LABELS[m], "count": doc["counts"][m]} for m in METRICS],
            [("metric", "count"), ("label", "C.5"), ("count", "n")],
            title=f"since {doc['since']:%Y-%m-%d %H:%M} UTC; open alerts {doc['open_alerts']}")
    if drill is not None:
        for item in doc["items"]:
            typer.echo(json.dumps(item, ensure_ascii=False, default=str))


@rules.command("list")
def rules_list(as_json: bool = JSON) -> None:
    """Report rules."""
    rows = c.run(lambda o: _control(o).rules())
    if as_json:
        c.dump({"items": rows})
        return
    c.table(rows, [("id", "id"), ("name", "name"), ("metric", "metric"), ("report", "report"),
                   ("threshold", "threshold"), ("window_h", "window h"), ("severity", "severity"),
                   ("enabled", "on")], title=f"{len(rows)} report rules")


@rules.command("add")
def rules_add(rule_id: str, name: str = typer.Option(..., "--name"),
              metric: str = typer.Option(..., "--metric", help=", ".join(METRICS)),
              threshold: int = typer.Option(..., "--threshold", min=1),
              window_h: float = typer.Option(24.0, "--window-h"), report: str | None = typer.Option(None, "--report"),
              severity: str = typer.Option("major", "--severity"), who: str | None = WHO, as_json: bool = JSON) -> None:
    """Create a rule: alert when METRIC reaches THRESHOLD within WINDOW_H hours."""
    rule = ReportRule.model_validate({"id": rule_id, "name": name, "metric": metric, "threshold": threshold,
                                      "window_h": window_h, "report": report, "severity": severity})
    doc = c.run(lambda o: _control(o).create_rule(rule, who or c.default_who()))
    if as_json:
        c.dump(doc)
    else:
        typer.echo(f"created {doc['id']}")


@rules.command("edit")
def rules_edit(rule_id: str, name: str | None = typer.Option(None, "--name"),
               threshold: int | None = typer.Option(None, "--threshold", min=1),
               window_h: float | None = typer.Option(None, "--window-h"),
               enabled: bool | None = typer.Option(None, "--enabled/--disabled"), who: str | None = WHO,
               as_json: bool = JSON) -> None:
    """Change fields of a rule."""
    patch = RulePatch.model_validate({k: v for k, v in {"name": name, "threshold": threshold, "window_h": window_h,
                                                       "enabled": enabled}.items() if v is not None})
    doc = c.run(lambda o: _control(o).edit_rule(rule_id, patch, who or c.default_who()))
    if as_json:
        c.dump(doc)
    else:
        typer.echo(f"edited {doc['id']}")


@rules.command("delete")
def rules_delete(rule_id: str, who: str | None = WHO) -> None:
    """Delete a rule (its open alert is resolved)."""
    c.run(lambda o: _control(o).delete_rule(rule_id, who or c.default_who()))
    typer.echo(f"deleted {rule_id}")


@app.command()
def alerts(status: str | None = typer.Option("open", "--status", help="open, resolved, or '' for all"),
           kind: str | None = typer.Option(None, "--kind", help="realtime_failed, reconciliation_diff, rule"),
           search: str | None = typer.Option(None, "--search", "-q"),
           limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000), as_json: bool = JSON) -> None:
    """Alerts from report anomalies, newest first."""
    rows = c.run(lambda o: _control(o).alerts(status or None, kind, search, limit))
    if as_json:
        c.dump({"items": rows})
        return
    c.table(rows, [("id", "alert"), ("kind", "kind"), ("status", "status"), ("last_at", "last (UTC)"),
                   ("error", "what")], title=f"{len(rows)} report alerts")


@app.command()
def note(alert_id: str, text: str, result: bool = typer.Option(False, "--result", help="a result record"),
         resolve: bool = typer.Option(False, "--resolve", help="and resolve the alert"), who: str | None = WHO) -> None:
    """Add a handling record to an alert."""
    body = AlertNote(text=text, kind="result" if result or resolve else "progress", resolve=resolve)
    doc = c.run(lambda o: _control(o).note(alert_id, body, who or c.default_who()))
    typer.echo(f"{doc['id']}: {doc['status']}")


@app.command("reconcile")
def reconcile_cmd(day: str, file: Path, partner: str = typer.Option("group", "--partner"),
                  as_json: bool = JSON) -> None:
    """Reconcile the group's figures of DAY (a CSV: product,crmOrderId) with ours."""
    theirs = parse_csv(file.read_bytes())

    async def go(o: c.Ops) -> dict[str, Any]:
        reports = await asyncio.to_thread(load_reports, o.settings.config_dir, o.partners)
        return await reconcile(o.db, reports, partner, day, theirs, source=f"cli:{file.name}")

    doc = c.run(go)
    if as_json:
        c.dump(doc)
    else:
        c.table(doc["products"], [("product", "product"), ("ours", "ours"), ("theirs", "group"),
                                  ("missing_at_group", "group lacks"), ("unknown_here", "we lack")],
                title=f"{day}: {doc['status']}")
    if doc["differences"]:
        raise typer.Exit(1)


@app.command()
def regenerate(day: str, report: list[str] = typer.Option([], "--report", "-r", help="default: every daily report"),
               job: str = typer.Option("group-daily-files", "--job"), who: str | None = WHO) -> None:
    """Write the daily files of DAY again (idempotent: the same names, replaced)."""
    params: dict[str, Any] = {"day": day, **({"reports": report} if report else {})}

    async def go(o: c.Ops) -> dict[str, Any]:
        registered = kinds()
        sched = Scheduler(o.settings, o.partners, o.db, load_jobs(o.settings.config_dir, set(registered)),
                          registered, worker=c.default_who())
        return await sched.run_now(job, params, who=who or c.default_who())

    doc = c.run(go)
    typer.echo(f"{doc['id']}: {doc['status']} {json.dumps(doc.get('counts') or {}, ensure_ascii=False)}")
    if doc["status"] != "succeeded":
        raise typer.Exit(1)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="reports")
