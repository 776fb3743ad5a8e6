"""The overview per product x stage (C.1, C.2 (1)) and its drill-down to the orders.

``overview()`` answers from the snapshot the last evaluation cycle wrote (``ops_overview``: one
document, one indexed read — the dashboard's query costs the same with 100 or 100,000 open orders)
and says how old it is; ``live=True`` scans now (the same code as the cycle, without raising alerts).
The drill-down is a live, indexed query of one cell: the orders of a product (``by_status_created``'s
status prefix, the product checked per order) or a stage (``by_stage``), their facts, filtered by the
state asked for; ``stuck`` comes from the active alerts (``by_holding`` of ops_alerts).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.ops.alerts import ALERTS
from app.ops.evaluator import COUNTS, OVERVIEW, Evaluator
from app.ops.facts import OPEN_STATUSES, PROJECTION, facts
from app.ops.settings import OpsSettings
from flows.documents import ORDERS

__all__ = ["State", "drill_down", "overview"]

State = Literal["in_flight", "overdue", "due_soon", "stuck", "blocked"]
ROW_FIELDS = {"order_id", "external_order_id", "partner", "product", "scenario", "stage", "status",
              "time_in_stage_s", "since_answer_s", "sla_left_s", "sla_share", "overdue", "blocked"}


async def overview(db: AsyncIOMotorDatabase[Any], *, live: bool = False, settings: OpsSettings | None = None,
                   clock: Any = time.time) -> dict[str, Any]:
    """``{at, age_s, rows: [{product, stage, in_flight, overdue, due_soon, stuck, blocked}], totals, api}``."""
    settings = settings or OpsSettings()
    now = clock()
    if not live:
        snap = await db[OVERVIEW].find_one({"_id": "orders"})
        if snap is not None:
            snap.pop("_id", None)
            at = snap["at"] if snap["at"].tzinfo else snap["at"].replace(tzinfo=UTC)
            return {**snap, "age_s": round(now - at.timestamp(), 1), "live": False}
    ev = Evaluator(db, settings=settings, clock=clock)
    total = await ev.scan(await ev.rules.enabled_rules(), now)
    rows = [{"product": p, "stage": s, **c} for (p, s), c in sorted(total.rows.items())]
    return {"at": datetime.fromtimestamp(now, UTC), "age_s": 0.0, "live": True, "rows": rows,
            "totals": {k: sum(r[k] for r in rows) for k in COUNTS}, "due_soon_share": settings.due_soon_share}


async def drill_down(db: AsyncIOMotorDatabase[Any], state: State, *, product: str | None = None,
                     stage: str | None = None, limit: int = 200, settings: OpsSettings | None = None,
                     now: float | None = None) -> list[dict[str, Any]]:
    """The orders behind one overview cell, oldest in stage first (facts included)."""
    settings = settings or OpsSettings()
    now = time.time() if now is None else now
    q: dict[str, Any] = {"status": {"$in": list(OPEN_STATUSES)}}
    if product:
        q["product"] = product
    if stage:
        q["current_stage"] = stage
    if state == "overdue":
        q["sla_deadline"] = {"$lt": datetime.fromtimestamp(now, UTC)}
    elif state == "due_soon":
        q["sla_deadline"] = {"$gte": datetime.fromtimestamp(now, UTC)}
    elif state == "blocked":
        q["blocked_reason"] = {"$ne": None}
    alerts: dict[str, list[dict[str, Any]]] = {}
    if state == "stuck":
        aq: dict[str, Any] = {"holds": True, "kind": "order"}
        if product:
            aq["product"] = product
        if stage:
            aq["stage"] = stage
        async for a in db[ALERTS].find(aq, {"order_id": 1, "rule_id": 1, "severity": 1, "status": 1}):
            alerts.setdefault(a["order_id"], []).append(
                {"id": a["_id"], "rule_id": a["rule_id"], "severity": a["severity"], "status": a["status"]})
        q["_id"] = {"$in": sorted(alerts)}
    # no hint: the embedded server serves ``status $in`` from by_status_created's prefix by itself, and a
    # hinted index made it slower (20,000 orders, 620 open in the cell: 229 ms unhinted, 890 ms hinted
    # by_status_created, 1,316 ms by the retired by_status_product; a stage cell 213 vs 1,268 ms by_stage)
    docs = [d async for d in db[ORDERS].find(q, PROJECTION)]

    def build() -> list[dict[str, Any]]:
        out = []
        for d in docs:
            f = facts(d, now)
            if state == "due_soon" and not (f["sla_share"] is not None and f["sla_share"] >= settings.due_soon_share):
                continue
            row = {k: v for k, v in {**f, "order_id": d["_id"],
                                     "external_order_id": d.get("external_order_id")}.items() if k in ROW_FIELDS}
            row["blocked_reason"] = d.get("blocked_reason")
            row["sla_deadline"] = d.get("sla_deadline")
            if d["_id"] in alerts:
                row["alerts"] = alerts[d["_id"]]
            out.append(row)
        out.sort(key=lambda r: -r["time_in_stage_s"])
        return out[:limit]

    return await asyncio.to_thread(build)
