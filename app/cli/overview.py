"""``hub overview`` — open orders per product x stage: in flight, overdue, about to be overdue,
stuck (by rules), held by a failure, and the API failure rate; ``--state`` drills down to the orders."""

from __future__ import annotations

from typing import Any

import typer

from app.admin import console as c
from app.ops.overview import State, drill_down, overview


def command(
    live: bool = typer.Option(False, "--live", help="scan the open orders now instead of the last cycle's snapshot"),
    state: State | None = typer.Option(None, "--state", help="drill down: the orders in this state"),
    product: str | None = typer.Option(None, "--product"),
    stage: str | None = typer.Option(None, "--stage"),
    limit: int = typer.Option(200, "--limit", "-n", min=1, max=100_000),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Which orders are stuck, where, since when (C.1): per product and stage, with drill-down."""
    if state is not None:
        async def orders(o: c.Ops) -> list[dict[str, Any]]:
            return await drill_down(o.db, state, product=product, stage=stage, limit=limit)

        rows = c.run(orders)
        if as_json:
            c.dump(rows)
            return
        for r in rows:
            r["in_stage_min"] = round(r["time_in_stage_s"] / 60, 1)
            r["rules"] = ", ".join(a["rule_id"] for a in r.get("alerts") or [])
        c.table(rows, [("order_id", "order"), ("external_order_id", "external id"), ("product", "product"),
                       ("stage", "stage"), ("status", "status"), ("in_stage_min", "in stage (min)"),
                       ("sla_deadline", "SLA deadline"), ("sla_share", "SLA used"), ("rules", "stuck by"),
                       ("blocked_reason", "blocked")], title=f"{len(rows)} orders {state}")
        return

    async def go(o: c.Ops) -> dict[str, Any]:
        return await overview(o.db, live=live)

    snap = c.run(go)
    if as_json:
        c.dump(snap)
        return
    rows = [r for r in snap["rows"] if (product is None or r["product"] == product)
            and (stage is None or r["stage"] == stage)]
    c.table([*rows, {"product": "total", **snap["totals"]}],
            [("product", "product"), ("stage", "stage"), ("in_flight", "in flight"), ("overdue", "overdue"),
             ("due_soon", f"due soon (≥{snap.get('due_soon_share', 0.8):.0%})"), ("stuck", "stuck"),
             ("blocked", "blocked")],
            title=f"overview as of {snap['at']:%Y-%m-%d %H:%M:%S} UTC ({'live' if snap['live'] else 'snapshot'})")
    api = snap.get("api")
    if api:
        typer.echo(f"API calls in the last {api['window_s'] / 60:.0f} min: {api['calls']}, failed {api['failed']} "
                   f"({api['failure_rate']:.1%})")
    typer.echo("drill down: hub overview --state overdue|due_soon|stuck|blocked|in_flight [--product P] [--stage S]")


def register_cli(root: typer.Typer) -> None:
    root.command("overview")(command)
