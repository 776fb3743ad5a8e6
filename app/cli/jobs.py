"""``hub jobs list | run NAME | history`` — the scheduled jobs (app/jobs), for operators.

Talks to MongoDB directly like ``hub dlq`` (app/admin/console.py says why). ``run`` executes the
job in this process, under the job's lease: it is refused while a worker runs the same job, and
the run is recorded in the history like a scheduled one (``trigger: manual:<who>``).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from app.admin import console as c
from app.jobs.config import load_jobs
from app.jobs.history import History
from app.jobs.registry import kinds
from app.jobs.scheduler import Scheduler

app = typer.Typer(help="Scheduled jobs: list, run one now, and the run history.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")
WHO = typer.Option(None, "--as", help="name recorded in the history (default cli:user@host)")


def _scheduler(o: c.Ops) -> Scheduler:
    registered = kinds()
    jobs = load_jobs(o.settings.config_dir, set(registered))
    return Scheduler(o.settings, o.partners, o.db, jobs, registered, worker=c.default_who())


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """Every configured job: schedule, next time, where it runs now, the latest run."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await _scheduler(o).overview()

    rows = c.run(go)
    if as_json:
        c.dump({"items": rows})
        return
    c.table(rows, [("name", "job"), ("kind", "kind"), ("schedule", "schedule"), ("timezone", "zone"),
                   ("missed", "missed"), ("enabled", "on"), ("next", "next"), ("running_on", "running on"),
                   ("last_status", "last"), ("last_finished_at", "finished (UTC)")], title=f"{len(rows)} jobs")


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            c.err.print(f"[red]--param wants key=value, got {item!r}[/red]")
            raise typer.Exit(2)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@app.command()
def run(
    name: str,
    param: list[str] = typer.Option([], "--param", "-p", help="key=value given to the job (e.g. day=2026-04-10)"),
    who: str | None = WHO, as_json: bool = JSON,
) -> None:
    """Run a job once now, here (refused while it runs elsewhere). Exit 1 when the run failed."""
    params = _params(param)

    async def go(o: c.Ops) -> dict[str, Any]:
        return await _scheduler(o).run_now(name, params, who=who or c.default_who())  # JobRefused: exit 1

    doc = c.run(go)
    if as_json:
        c.dump(doc)
    else:
        typer.echo(f"{doc['id']}: {doc['status']} {json.dumps(doc.get('counts') or {}, ensure_ascii=False)}")
        for e in doc.get("errors") or []:
            typer.echo(f"  error: {c.visible(e.get('error'))}", err=True)
    if doc["status"] != "succeeded":
        raise typer.Exit(1)


@app.command()
def history(
    name: str | None = typer.Argument(None, help="a job (default: every job)"),
    status: str | None = typer.Option(None, "--status", help="running, retry, succeeded, failed or skipped"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = JSON,
) -> None:
    """Runs, newest first: slot, status, attempts, counts, the last error."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await History(o.db).list(name, status, limit)

    rows = c.run(go)
    if as_json:
        c.dump({"items": rows})
        return
    for r in rows:
        r["counts_text"] = json.dumps(r.get("counts") or {}, ensure_ascii=False)
        r["last_error"] = (r.get("errors") or [{}])[-1].get("error")
    c.table(rows, [("id", "run"), ("status", "status"), ("attempts", "tries"), ("worker", "worker"),
                   ("trigger", "trigger"), ("started_at", "started (UTC)"), ("finished_at", "finished (UTC)"),
                   ("counts_text", "counts"), ("last_error", "last error")], title=f"{len(rows)} runs")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="jobs")
