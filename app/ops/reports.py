"""Order-list fields (C.4 (7)) and the stage-duration report per product (C.7), both exportable.

The order list adds to each order of ``Queries.orders``:

* ``reentered`` (是否撤单重录): another order of the same partner and external order id, received
  earlier, ended ``cancelled`` — the customer's order was withdrawn and entered again (the hub's
  order id is derived from partner + external id + scenario, so the re-entry is a second document;
  index ``by_external``);
* ``first_dispatch_at`` (首次派单时间): when the hub sent the order's first partner call (the
  earliest ``calls.started_at`` of the order; index ``by_order``);
* ``assessment_deadline`` (考核超时时限): the deadline the order is assessed against — its SLA
  deadline (``sla_deadline``, the current stage's timeout), empty when the stage has none.

The stage-duration report: per product and stage, over the orders received in a period, how many
orders went through the stage and the mean / median / 90th percentile / longest time spent there
(closed stage entries of the order timeline, ``stages[].duration_ms``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.admin.queries import OrderFilter, Queries, percentile
from flows.documents import CALLS, ORDERS

__all__ = ["ORDER_COLUMNS", "STAGE_COLUMNS", "order_batches", "stage_durations"]

ORDER_COLUMNS = [("id", "order"), ("partner", "partner"), ("external_order_id", "external id"),
                 ("product", "product"), ("scenario", "scenario"), ("status", "status"),
                 ("current_stage", "stage"), ("reentered", "withdrawn and re-entered"),
                 ("first_dispatch_at", "first dispatch (UTC)"), ("assessment_deadline", "assessment deadline (UTC)"),
                 ("created_at", "created (UTC)"), ("completed_at", "completed (UTC)")]
STAGE_COLUMNS = [("product", "product"), ("stage", "stage"), ("title", "title"), ("orders", "orders"),
                 ("mean_min", "mean (min)"), ("p50_min", "median (min)"), ("p90_min", "p90 (min)"),
                 ("max_min", "longest (min)")]


async def with_fields(db: AsyncIOMotorDatabase[Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The three C.4 (7) fields for one page of ``Queries.orders`` rows (two indexed queries a page)."""
    ids = [r["id"] for r in rows]
    first: dict[str, datetime] = {}
    async for c in db[CALLS].find({"order_id": {"$in": ids}}, {"order_id": 1, "started_at": 1}):
        at = c.get("started_at")
        if at is not None and (c["order_id"] not in first or at < first[c["order_id"]]):
            first[c["order_id"]] = at
    keys = {(r.get("partner"), r.get("external_order_id")) for r in rows if r.get("external_order_id")}
    cancelled: dict[tuple[Any, Any], list[tuple[str, datetime]]] = {}
    if keys:
        ors = [{"partner": p, "external_order_id": e} for p, e in keys]
        async for d in db[ORDERS].find({"$or": ors, "status": "cancelled"},
                                       {"partner": 1, "external_order_id": 1, "created_at": 1}):
            cancelled.setdefault((d.get("partner"), d.get("external_order_id")), []).append(
                (d["_id"], d["created_at"]))
    for r in rows:
        earlier = cancelled.get((r.get("partner"), r.get("external_order_id")), [])
        r["reentered"] = any(oid != r["id"] and at < r["created_at"] for oid, at in earlier)
        r["first_dispatch_at"] = first.get(r["id"])
        r["assessment_deadline"] = r.get("sla_deadline")
    return rows


async def order_batches(db: AsyncIOMotorDatabase[Any], queries: Queries, flt: OrderFilter, limit: int,
                        chunk: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
    """The order list (newest first) with the C.4 (7) fields, in export batches."""
    done = 0
    while done < limit:
        rows = await queries.orders(flt, limit=min(chunk, limit - done), skip=done)
        if not rows:
            return
        yield await with_fields(db, rows)
        done += len(rows)


async def stage_durations(db: AsyncIOMotorDatabase[Any], *, product: str | None = None,
                          since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Per product and stage: orders through it and the mean / p50 / p90 / longest minutes spent."""
    q: dict[str, Any] = {}
    if product:
        q["product"] = product
    rng: dict[str, Any] = {}
    if since:
        rng["$gte"] = since
    if until:
        rng["$lt"] = until
    if rng:
        q["created_at"] = rng
    docs = [d async for d in db[ORDERS].find(q, {"product": 1, "stages.stage": 1, "stages.title": 1,
                                                  "stages.duration_ms": 1})]

    def build() -> list[dict[str, Any]]:
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for d in docs:
            for st in d.get("stages") or []:
                if st.get("duration_ms") is None:
                    continue
                g = groups.setdefault((d.get("product") or "", st["stage"]),
                                      {"title": st.get("title") or st["stage"], "ms": [], "orders": set()})
                g["ms"].append(float(st["duration_ms"]))
                g["orders"].add(d["_id"])
        out = []
        for (prod, stage), g in sorted(groups.items()):
            ms = sorted(g["ms"])
            out.append({"product": prod, "stage": stage, "title": g["title"], "orders": len(g["orders"]),
                        "mean_min": round(sum(ms) / len(ms) / 60000, 2),
                        "p50_min": round((percentile(ms, 50) or 0) / 60000, 2),
                        "p90_min": round((percentile(ms, 90) or 0) / 60000, 2), "max_min": round(ms[-1] / 60000, 2)})
        return out

    return await asyncio.to_thread(build)
