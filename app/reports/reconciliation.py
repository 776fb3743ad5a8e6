"""Reconciliation with the group's figures (C.5 (4); issue 16 item 3). Not app/admin/reconcile.py:
that one reconciles dead letters with Kafka; this one the group's count of orders with ours.

The documents give neither the group's format nor the algorithm, so ours (docs/reporting.md):
the group's figures for a day are the orders it counted, per product — posted as JSON
(``POST /api/v1/partners/{partner}/reports/reconciliation``, ``{"day", "products": {product:
[crmOrderId, …]}}``) or dropped as ``RECON_{yyyymmdd}.csv`` (header ``product,crmOrderId``) that the
``reconcile`` job fetches over SFTP. Ours: the orders of the reported products created that day
(China time), by ``external_order_id`` (the CRM order number the reports carry). Per product the
result lists the counts and the orders behind every difference: ours the group lacks (with our
order id), the group's we do not know. A day with differences is counted (C.5 支持业务差异对账天数)
and raises an alert; a later reconciliation of the same day that matches resolves it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from motor.motor_asyncio import AsyncIOMotorDatabase
from prometheus_client import Counter
from pymongo import ASCENDING

from app.reports.definitions import Reports
from app.reports.files import period_range
from app.reports.realtime import ALERTS
from hub.errors import ValidationFailed

RECONCILIATIONS = "report_reconciliations"
MAX_LISTED = 1000  # orders listed per side and product; the counts are always complete
DIFF_DAYS = Counter("hub_report_reconciliation_total", "Reconciled days by result", ["result"])


def parse_csv(data: bytes) -> dict[str, list[str]]:
    """The group's SFTP file: UTF-8 CSV, header ``product,crmOrderId``, one row per counted order."""
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or not {"product", "crmOrderId"} <= set(reader.fieldnames):
        raise ValidationFailed("reconciliation file: header must name product and crmOrderId",
                               [{"field": "header", "message": "product,crmOrderId expected"}])
    out: dict[str, list[str]] = {}
    for n, row in enumerate(reader, start=2):
        product, order = (row.get("product") or "").strip(), (row.get("crmOrderId") or "").strip()
        if not product or not order:
            raise ValidationFailed(f"reconciliation file line {n}: product and crmOrderId are required",
                                   [{"field": f"line {n}", "message": "empty product or crmOrderId"}])
        out.setdefault(product, []).append(order)
    return out


async def our_orders(db: AsyncIOMotorDatabase[Any], products: Iterable[str], day: str,
                     zone: ZoneInfo) -> dict[str, dict[str, str]]:
    """product → {crmOrderId: hub order id} of the orders created that day (index by_created)."""
    start, end = period_range("daily", day, zone)
    out: dict[str, dict[str, str]] = {p: {} for p in products}
    cursor = db["orders"].find({"product": {"$in": list(out)}, "created_at": {"$gte": start, "$lt": end}},
                               {"product": 1, "external_order_id": 1}, batch_size=5000)
    async for doc in cursor.sort("created_at", ASCENDING).hint("by_created"):
        out[doc["product"]][str(doc.get("external_order_id") or doc["_id"])] = doc["_id"]
    return out


def compare(ours: dict[str, dict[str, str]], theirs: dict[str, list[str]]) -> list[dict[str, Any]]:
    rows = []
    for product in sorted(set(ours) | set(theirs)):
        mine, group = ours.get(product, {}), set(theirs.get(product, []))
        lacking = sorted(set(mine) - group)
        unknown = sorted(group - set(mine))
        rows.append({"product": product, "ours": len(mine), "theirs": len(group),
                     "missing_at_group": len(lacking), "unknown_here": len(unknown),
                     "missing_at_group_orders": [{"crmOrderId": k, "order_id": mine[k]} for k in lacking[:MAX_LISTED]],
                     "unknown_here_orders": unknown[:MAX_LISTED],
                     "matched": not lacking and not unknown})
    return rows


async def reconcile(db: AsyncIOMotorDatabase[Any], reports: Reports, partner: str, day: str,
                    theirs: dict[str, list[str]], *, source: str, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """Compare and record one day (replacing an earlier reconciliation of it); alert on differences."""
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError as exc:
        raise ValidationFailed(f"day {day!r} is not YYYY-MM-DD", [{"field": "day", "message": "YYYY-MM-DD"}]) from exc
    zone = zone or ZoneInfo("Asia/Shanghai")
    products = {p for r in reports.by_name.values() if r.partner == partner for p in r.definition.products}
    ours = await our_orders(db, products | set(theirs), day, zone)
    rows = [r for r in compare(ours, theirs) if r["ours"] or r["theirs"]]
    differences = sum(1 for r in rows if not r["matched"])
    now = datetime.now(UTC)
    doc = {"_id": f"{partner}:{day}", "partner": partner, "day": day, "source": source, "at": now,
           "products": rows, "differences": differences, "status": "differences" if differences else "matched"}
    await db[RECONCILIATIONS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
    DIFF_DAYS.labels(doc["status"]).inc()
    alert = {"_id": f"reconciliation:{partner}:{day}"}
    if differences:
        summary = ", ".join(f"{r['product']}: ours {r['ours']} / group {r['theirs']}" for r in rows if not r["matched"])
        await db[ALERTS].update_one(alert, {"$set": {
            "kind": "reconciliation_diff", "status": "open", "partner": partner, "day": day, "error": summary,
            "last_at": now}, "$setOnInsert": {"first_at": now}}, upsert=True)
    else:
        await db[ALERTS].update_one({**alert, "status": "open"}, {"$set": {
            "status": "resolved", "resolved_at": now, "resolution": "matched on reconciliation"}})
    return doc
