"""``hub tasks wireless list | show`` — the wireless parameter task batches (CATALOGUE P36.1/P36.2) for
operators: how far each batch is, which tasks the NMS refused, which alarms P36.2 judged anomalies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from app.admin import console as c
from flows.tasks.pipeline import batch_doc, batches

app = typer.Typer(help="Network configuration task batches.", no_args_is_help=True)
wireless = typer.Typer(help="Wireless parameter task batches (P36.1 push, P36.2 anomalies).", no_args_is_help=True)
app.add_typer(wireless, name="wireless")
JSON = typer.Option(False, "--json", help="machine-readable output")


def _when(v: Any) -> str:
    return datetime.fromtimestamp(float(v), UTC).strftime("%Y-%m-%d %H:%M:%S") if v else ""


@wireless.command("list")
def list_batches(status: str | None = typer.Option(None, "--status", help="running | completed"),
                 limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000), as_json: bool = JSON) -> None:
    """Batches, newest first: source, tasks received, pushed ok / failed, anomalies, chunks done."""
    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await batches(o.db, status=status, limit=limit)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    for r in rows:
        r["created"] = _when(r.get("created_at"))
        r["progress"] = f"{r.get('chunks_done', 0)}/{r.get('chunks', 0)}"
    c.table(rows, [("_id", "batch"), ("source", "source"), ("file", "file"), ("status", "status"),
                   ("received", "tasks"), ("ok", "ok"), ("failed", "failed"), ("anomalies", "anomalies"),
                   ("progress", "chunks done"), ("created", "created (UTC)")], title=f"{len(rows)} wireless batches")


@wireless.command()
def show(batch_id: str, as_json: bool = JSON) -> None:
    """One batch: its counters, the tasks the NMS refused and the P36.2 anomalies (first 1,000 each)."""
    async def go(o: c.Ops) -> dict[str, Any] | None:
        return await batch_doc(o.db, batch_id, details=True)

    doc = c.run(go)
    if doc is None:
        c.err.print(f"no wireless batch {batch_id!r}")
        raise typer.Exit(1)
    if as_json:
        c.dump(doc)
        return
    c.table([doc], [("_id", "batch"), ("source", "source"), ("account", "NMS account"), ("status", "status"),
                    ("received", "tasks"), ("ok", "ok"), ("failed", "failed"), ("anomalies", "anomalies")])
    if doc["failed_tasks"]:
        c.table(doc["failed_tasks"], [("task_id", "task"), ("code", "code"), ("message", "message")],
                title="refused by the NMS")
    if doc["anomaly_list"]:
        c.table(doc["anomaly_list"], [("task_id", "task"), ("order_no", "order"), ("order_type", "order type"),
                                      ("cell", "cell"), ("alarm", "alarm"), ("service_affecting", "affects service"),
                                      ("verdict", "verdict")], title="P36.2 anomalies")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="tasks")
