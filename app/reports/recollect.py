"""Re-collection on the group's request (集团通知重采; C.5 (5), issue 16 item 3).

The group names a date range and optionally products; the hub regenerates and resends what it
reported for them: the daily files of those days (a manual run of the ``report_file`` job per day,
under the job's lease, so never beside the scheduled run of the same files; the run history shows
``trigger: manual:recollect:<id>``), and the real-time reports of the orders created in the range
(every stage event re-sent under its own key, the record's attempts counted on). Each request is
recorded (``report_recollections``: who, range, products, status, what was redone) and counted
(C.5 支持集团通知重采次数, ``hub_report_recollections_total``). The interface is ours: the
documents name the function, not its messages.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from motor.motor_asyncio import AsyncIOMotorDatabase
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.jobs.scheduler import JobRefused, Scheduler
from app.reports.definitions import Reports, values
from app.reports.files import period_range
from app.reports.realtime import RealtimeReporter, json_ready, stage_events

RECOLLECTIONS = "report_recollections"
MAX_DAYS = 31
MAX_ORDERS = 20_000
REQUESTS = Counter("hub_report_recollections_total", "Re-collection requests by partner and result",
                   ["partner", "result"])


class RecollectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_from: date = Field(alias="from", examples=["2026-04-10"])
    date_to: date = Field(alias="to", examples=["2026-04-11"])
    products: list[str] | None = Field(default=None, max_length=50, description="default: every reported product")
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _range(self) -> RecollectRequest:
        if self.date_to < self.date_from:
            raise ValueError("to is before from")
        if (self.date_to - self.date_from).days >= MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days per request")
        return self

    def days(self) -> list[str]:
        n = (self.date_to - self.date_from).days
        return [(self.date_from + timedelta(days=i)).isoformat() for i in range(n + 1)]


async def record_request(db: AsyncIOMotorDatabase[Any], partner: str, req: RecollectRequest, who: str) -> str:
    rid = f"RC{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    await db[RECOLLECTIONS].insert_one({
        "_id": rid, "partner": partner, "from": req.date_from.isoformat(), "to": req.date_to.isoformat(),
        "products": req.products, "reason": req.reason, "who": who, "status": "accepted",
        "requested_at": datetime.now(UTC), "files": [], "realtime": {"orders": 0, "sent": 0, "failed": 0}})
    REQUESTS.labels(partner, "accepted").inc()
    return rid


async def run(db: AsyncIOMotorDatabase[Any], scheduler: Scheduler, reporter: RealtimeReporter, reports: Reports,
              partner: str, rid: str, req: RecollectRequest) -> dict[str, Any]:
    """Redo the files and the real-time reports of the request; record the outcome."""
    await db[RECOLLECTIONS].update_one({"_id": rid}, {"$set": {"status": "running"}})
    wanted = set(req.products) if req.products else None
    files: list[dict[str, Any]] = []
    errors: list[str] = []
    file_jobs = [j for j in scheduler.jobs.values() if j.kind == "report_file" and j.params.get("period") == "daily"]
    chosen = [r.name for r in reports.files_for("daily") if r.partner == partner
              and (wanted is None or wanted & set(r.definition.products))]
    for day in req.days() if chosen else []:
        for job in file_jobs:
            for attempt in range(30):
                try:
                    doc = await scheduler.run_now(job.name, {"day": day, "reports": chosen}, who=f"recollect:{rid}")
                    break
                except JobRefused:  # the scheduled run of these files holds the lease: wait for it
                    await asyncio.sleep(min(1.0 * (attempt + 1), 5.0))
            else:
                errors.append(f"{day}: job {job.name} stayed busy")
                continue
            files.append({"day": day, "run": doc["id"], "status": doc["status"], "counts": doc.get("counts")})
            if doc["status"] != "succeeded":
                errors.append(f"{day}: {(doc.get('errors') or [{}])[-1].get('error')}")
    realtime = await resend_realtime(db, reporter, reports, partner, req, wanted)
    status = "failed" if errors or realtime["failed"] else "done"
    await db[RECOLLECTIONS].update_one({"_id": rid}, {"$set": {
        "status": status, "files": files, "realtime": realtime, "errors": errors, "finished_at": datetime.now(UTC)}})
    REQUESTS.labels(partner, status).inc()
    found = await db[RECOLLECTIONS].find_one({"_id": rid})
    assert found is not None
    return dict(found)


async def resend_realtime(db: AsyncIOMotorDatabase[Any], reporter: RealtimeReporter, reports: Reports, partner: str,
                          req: RecollectRequest, wanted: set[str] | None) -> dict[str, int]:
    products = [p for p in reporter.products if (wanted is None or p in wanted)
                and any(r.partner == partner for r in reports.realtime_for(p))]
    counts = {"orders": 0, "sent": 0, "failed": 0}
    if not products:
        return counts
    start = period_range("daily", req.days()[0], ZoneInfo("Asia/Shanghai"))[0]
    end = period_range("daily", req.days()[-1], ZoneInfo("Asia/Shanghai"))[1]
    docs = await db["orders"].find({"product": {"$in": products}, "created_at": {"$gte": start, "$lt": end}}
                                   ).hint("by_created").limit(MAX_ORDERS).to_list(None)
    counts["orders"] = len(docs)
    known = {d["_id"]: int(d.get("attempts") or 0) async for d in db["report_sends"].find(
        {"order_id": {"$in": [d["_id"] for d in docs]}}, {"attempts": 1})}

    done: list[Any] = []

    async def one(report: Any, key: str, doc: dict[str, Any], ev: dict[str, Any]) -> None:
        payload = json_ready({"reportId": key, "reportType": report.name, **values(report, doc, ev)})
        result = await reporter.send(report, key, doc["_id"], payload, known.get(key, 0))
        counts["sent" if result["outcome"] == "ok" else "failed"] += 1
        done.append((report, key, doc, ev, payload, result))

    todo = [(r, k, d, e) for d in docs for r in reports.realtime_for(d["product"]) if r.partner == partner
            for k, e in stage_events(r, d)]
    await asyncio.gather(*(one(*t) for t in todo))
    await reporter.record_many(done)
    return counts
