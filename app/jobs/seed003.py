"""Seed 003's scheduled jobs (D.2.7, D.2.8; issue 16 item 6), as job kinds.

``release_reservations`` (D.2.7a, 八): numbers and SIMs pre-occupied more than ``older_than_h`` (24)
hours ago and not released: the successful pre-occupation calls (``calls`` rows of
``params.operations``) of orders that are not completed — a completed order used what it
reserved. Each is released with the partner's release operation (``params.partner``,
``params.release_operation``; ``path`` when the partner file lacks it), under the key
``release:<call_id>`` (a retried run re-sends the same key; the partner dedupes) and recorded in
``reservation_releases``: released ones are never released again, failed ones are retried next run.

``daily_audit`` (D.2.7b, 七-三): the previous day's orders of ``params.products`` are checked against
the filed tariffs (``params.tariffs``: product code → name and filing number 备案号): the code must be
filed, the name and the filing number must match. Accepted orders are uploaded as one UTF-8 CSV
(``AUDIT_{yyyymmdd}.csv`` + ``.manifest.json``; .part + rename after the fence) to
``params.dir`` on the SFTP drop of ``params.connection``; orders with an unfiled tariff are not
reported. The batch (``audit_batches``, one per day) records status, record counts and every
rejection with its reason. Manual intervention (异常任务人工干预): run the job again for the day with
``accept`` / ``exclude`` (order ids) — an operator's decision, recorded in the batch with who made it.

``refund_retry`` (D.2.8, 十三): retry failed refunds by order (``params.order_id``) or by user
(``params.user_id``). An original whose Alipay identity check passed is re-sent directly; an
abnormal one first has its account re-checked (``check_operation``). The retry **creates no
transaction record**: it asks the payment center to transfer the *original* transaction again (same
transaction id, same channel), and only appends the attempt to the original refund's ``retries``.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import posixpath
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.jobs.partner import PartnerCalls
from app.jobs.registry import JobContext, job_kind
from connectors.sftp.client import SftpSession
from connectors.sftp.config import SftpConnection
from flows.documents import CALLS, ORDERS
from hub import paths
from hub.errors import ConfigError, ValidationFailed
from hub.retry import SuccessRule

RELEASES, BATCHES, REFUNDS = "reservation_releases", "audit_batches", "refunds"


def _success(params: dict[str, Any]) -> SuccessRule | None:
    raw = params.get("success")
    return SuccessRule.model_validate(raw) if raw else None


@job_kind("release_reservations")
async def release_reservations(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    partner, operation = str(p.get("partner", "resource")), str(p.get("release_operation", "resource_release"))
    before = ctx.when - timedelta(hours=float(p.get("older_than_h", 24)))
    q = {"operation": {"$in": list(p.get("operations") or ["resource_preoccupy"])}, "outcome": "ok",
         "started_at": {"$lt": before}}
    rows = await ctx.db[CALLS].find(q, {"order_id": 1, "request": 1, "response": 1, "partner": 1}).to_list(None)
    done = {d["_id"] async for d in ctx.db[RELEASES].find({"_id": {"$in": [r["_id"] for r in rows]},
                                                             "status": "released"}, {"_id": 1})}
    orders = {d["_id"]: d.get("status") async for d in ctx.db[ORDERS].find(
        {"_id": {"$in": list({r["order_id"] for r in rows})}}, {"status": 1})}
    todo = [r for r in rows if r["_id"] not in done and orders.get(r["order_id"]) != "completed"]
    calls = PartnerCalls(ctx.settings, ctx.partners)
    counts = {"found": len(todo), "released": 0, "failed": 0}
    try:
        for row in todo:
            body = {"orderId": row["order_id"], "numbers": _found(row, ("msisdn", "number", "numbers")),
                    "sims": _found(row, ("iccid", "sim", "sims")), "reason": "pre-occupied over 24 h",
                    "preoccupiedBy": row["_id"]}
            await ctx.fence()
            out = await calls.call(partner, operation, body, key=f"release:{row['_id']}", order_id=row["order_id"],
                                   path=p.get("path"), success=_success(p))
            status = "released" if out.ok else "failed"
            counts[status] += 1
            await ctx.db[RELEASES].update_one({"_id": row["_id"]}, {
                "$set": {"order_id": row["order_id"], "status": status, "error": out.error, "at": ctx.now,
                         "run_id": ctx.run_id, "request": body},
                "$inc": {"attempts": 1}}, upsert=True)
            ctx.counts.update(counts)
    finally:
        await calls.close()
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} of {counts['found']} releases failed (retried on the next run)")
    return counts


def _found(row: dict[str, Any], keys: tuple[str, ...]) -> list[Any]:
    """The numbers (or SIMs) a pre-occupation call named: in its request, its answer or the answer's body."""
    out: list[Any] = []
    for where in (row.get("request"), row.get("response"), paths.get(row, "response.body")):
        if isinstance(where, dict):
            for key in keys:
                value = where.get(key)
                if value:
                    out += [v for v in (value if isinstance(value, list) else [value]) if v not in out]
    return out


def _audit(order: dict[str, Any], tariffs: dict[str, Any]) -> str | None:
    """None when the order passes (D.2.7b: product code filed, name and filing number match), else why not."""
    ext = paths.get(order, "order.extensions") or {}
    code, name, filing = ext.get("product_code"), ext.get("product_name"), ext.get("filing_no")
    if not code:
        return "no product code"
    filed = tariffs.get(str(code))
    if filed is None:
        return f"tariff {code} is not filed (no 备案号)"
    if name != filed.get("name"):
        return f"product name {name!r} is not the filed {filed.get('name')!r}"
    if filing != filed.get("filing_no"):
        return f"filing number {filing!r} is not the filed {filed.get('filing_no')!r}"
    return None


COLUMNS = ["orderId", "crmOrderId", "productCode", "productName", "filingNo", "createdAt"]


def _rows(accepted: list[dict[str, Any]], zone: ZoneInfo) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for o in accepted:
        ext = paths.get(o, "order.extensions") or {}
        w.writerow([o["_id"], o.get("external_order_id", ""), ext.get("product_code", ""),
                    ext.get("product_name", ""), ext.get("filing_no", ""),
                    o["created_at"].astimezone(zone).isoformat(timespec="seconds")])
    return buf.getvalue().encode("utf-8")


@job_kind("daily_audit")
async def daily_audit(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    zone = ZoneInfo(ctx.job.timezone)
    day = str(p.get("day") or (ctx.when.astimezone(zone).date() - timedelta(days=1)).isoformat())
    start = datetime.fromisoformat(day).replace(tzinfo=zone).astimezone(UTC)
    tariffs = p.get("tariffs")
    if not isinstance(tariffs, dict) or not tariffs:
        raise ConfigError(f"job {ctx.job.name}: params.tariffs (product code → name, filing_no) is required")
    accept, exclude = set(p.get("accept") or []), set(p.get("exclude") or [])
    q: dict[str, Any] = {"created_at": {"$gte": start, "$lt": start + timedelta(days=1)}}
    if p.get("products"):
        q["product"] = {"$in": list(p["products"])}
    orders = await ctx.db[ORDERS].find(q, {"order": 1, "external_order_id": 1, "created_at": 1, "product": 1}
                                       ).sort("created_at", 1).hint("by_created").to_list(None)
    accepted, rejected = [], []
    for o in orders:
        why = None if o["_id"] in accept else ("excluded by an operator" if o["_id"] in exclude
                                               else _audit(o, tariffs))
        if why is None:
            accepted.append(o)
        else:
            rejected.append({"order_id": o["_id"], "reason": why})
    body = await asyncio.to_thread(_rows, accepted, zone)
    name = f"AUDIT_{day.replace('-', '')}.csv"
    manifest = {"day": day, "file": name, "records": len(accepted), "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(), "columns": COLUMNS}
    folder = str(p.get("dir", "/drop/boss/audit"))
    session = SftpSession(SftpConnection.model_validate(p.get("connection") or {"embedded": True}), ctx.settings)
    try:
        sftp = await session.client()
        remote = session.path(folder)
        await sftp.makedirs(remote, exist_ok=True)
        for fname, data in ((name, body), (name.replace(".csv", ".manifest.json"),
                                           json.dumps(manifest, ensure_ascii=False, indent=1).encode())):
            async with sftp.open(posixpath.join(remote, fname + ".part"), "wb") as fh:
                await fh.write(data)
        await ctx.fence()
        for fname in (name, name.replace(".csv", ".manifest.json")):  # the data file first, the manifest last
            await sftp.posix_rename(posixpath.join(remote, fname + ".part"), posixpath.join(remote, fname))
    finally:
        await session.close()
    counts = {"day": day, "checked": len(orders), "accepted": len(accepted), "rejected": len(rejected)}
    interventions = {"accept": sorted(accept), "exclude": sorted(exclude)} if accept or exclude else None
    await ctx.db[BATCHES].update_one({"_id": day}, {
        "$set": {"status": "uploaded", **counts, "file": posixpath.join(folder, name), "sha256": manifest["sha256"],
                 "rejections": rejected[:1000], "run_id": ctx.run_id, "at": ctx.now},
        "$push": {"history": {"at": ctx.now, "run_id": ctx.run_id, "counts": counts, "interventions": interventions}}},
        upsert=True)
    return counts


@job_kind("refund_retry")
async def refund_retry(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    if bool(p.get("order_id")) == bool(p.get("user_id")):
        raise ValidationFailed("refund_retry: give order_id (mode 1, by order) or user_id (mode 2, by user)")
    q: dict[str, Any] = {"status": "failed"}
    q.update({"order_id": p["order_id"]} if p.get("order_id") else {"user_id": p["user_id"]})
    originals = await ctx.db[REFUNDS].find(q).to_list(None)
    partner = str(p.get("partner", "payment"))
    calls = PartnerCalls(ctx.settings, ctx.partners)
    counts = {"found": len(originals), "refunded": 0, "failed": 0, "rechecked": 0}
    try:
        for ref in originals:
            attempt = len(ref.get("retries") or []) + 1
            if ref.get("identity_check") != "passed":  # abnormal: update the account and check it again first
                counts["rechecked"] += 1
                check = await calls.call(partner, str(p.get("check_operation", "alipay_identity_check")),
                                         {"transactionId": ref["_id"], "account": ref.get("alipay_account")},
                                         key=f"refund-check:{ref['_id']}:{attempt}", path=p.get("check_path"))
                if not check.ok:
                    counts["failed"] += 1
                    await _retried(ctx, ref, attempt, False, f"identity check: {check.error}")
                    continue
            await ctx.fence()
            out = await calls.call(partner, str(p.get("transfer_operation", "refund_transfer")), {
                "transactionId": ref["_id"], "channel": ref.get("channel"), "amount": ref.get("amount"),
                "account": ref.get("alipay_account")}, key=f"refund:{ref['_id']}:{attempt}",
                order_id=str(ref.get("order_id") or "-"), path=p.get("transfer_path"))
            counts["refunded" if out.ok else "failed"] += 1
            await _retried(ctx, ref, attempt, out.ok, out.error)
            ctx.counts.update(counts)
    finally:
        await calls.close()
    return counts


async def _retried(ctx: JobContext, ref: dict[str, Any], attempt: int, ok: bool, error: str | None) -> None:
    """The attempt goes onto the original refund (no new transaction record, channel unchanged)."""
    change: dict[str, Any] = {"$push": {"retries": {"attempt": attempt, "at": ctx.now, "ok": ok, "error": error,
                                                    "run_id": ctx.run_id}}}
    if ok:
        change["$set"] = {"status": "refunded", "refunded_at": ctx.now}
    await ctx.db[REFUNDS].update_one({"_id": ref["_id"]}, change)
