"""Real-time transparency reports to 一编 (C.5, C.6; issue 16 item 1).

Which stage events trigger a report is in the report definitions (``realtime.on``: ``enter`` /
``exit``, optionally ``stages``); the events themselves are the order document's stage timeline
(``stages[i].entered_at`` / ``finished_at``, written by the flow runtime in the same write as the
state change). A sweep reads the orders changed since its watermark (index ``by_updated``, a range),
derives each order's stage events, and sends every one not yet sent — its key
``report:order:index:stage:on`` is the ``_id`` of its send record (``report_sends``), so a
re-read order, a second sweep or a restarted worker never sends an event twice. Why not a hook in
the engine: the engine is pure and the flows layer does not know about reports; the timeline is
already durable, and a sweep that lags (a worker down) catches up instead of losing events.

Sends go through the partner's REST sink (connectors/rest/sink.py: its auth, TLS, crypto and the
operation's success rule; HTTP 201 for 一编). Each send is recorded with its outcome, attempts,
HTTP status and error; a failure is counted (``hub_report_sends_total``), raises an open alert
(``report_alerts``, app/reports/control.py lists them) and is retried with backoff up to
``max_attempts``; a later success resolves the alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from prometheus_client import Counter
from pymongo import ASCENDING, IndexModel, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from app.jobs.partner import PartnerCalls
from app.reports.definitions import Report, Reports, projection, values
from hub.batching import find_by_ids
from hub.db import declare_indexes
from hub.partners import Partner
from hub.settings import Settings

log = logging.getLogger(__name__)
SENDS, STATE, ALERTS = "report_sends", "report_state", "report_alerts"
STATUSES = ["in_flight", "waiting", "completed", "failed", "cancelled"]
KNOWN_KEYS = 20_000  # send keys this sweeper remembers as recorded (~180 B each: ~4 MB at most)

def changed_since(mark: datetime, products: list[str]) -> dict[str, Any]:
    """The sweep's filter: orders of ``products`` written since ``mark``. ``updated_at`` comes first
    because the embedded server serves a find from the first clause an index leads with
    (flows/documents.py by_updated, a range); led by ``status $in`` every status it read every order
    ever written, every sweep (``python -m bench.orders_indexes``)."""
    return {"updated_at": {"$gte": mark}, "product": {"$in": products}, "status": {"$in": STATUSES}}


SENT = Counter("hub_report_sends_total", "Real-time report sends by report and outcome", ["report", "outcome"])
declare_indexes(SENDS, IndexModel([("outcome", ASCENDING), ("next_at", ASCENDING)], name="by_outcome_next"),
                IndexModel([("order_id", ASCENDING)], name="by_order"))
declare_indexes(ALERTS, IndexModel([("status", ASCENDING), ("last_at", ASCENDING)], name="by_status_time"))


def utcnow() -> datetime:
    return datetime.now(UTC)


def stage_events(report: Report, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(send key, event) for every stage event of ``doc`` that ``report`` reports."""
    rt = report.definition.realtime
    if rt is None:
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    stages = doc.get("stages") or []
    for i, st in enumerate(stages):
        if rt.stages is not None and st.get("stage") not in rt.stages:
            continue
        prev = stages[i - 1] if i else {}
        base = {"stage": st.get("stage"), "title": st.get("title"), "by": doc.get("submitted_by"),
                "previous_stage": prev.get("stage"), "previous_at": prev.get("finished_at") or prev.get("entered_at")}
        for on, at in (("enter", st.get("entered_at")), ("exit", st.get("finished_at"))):
            if on in rt.on and at is not None:
                out.append((f"{report.name}:{doc['_id']}:{i}:{st.get('stage')}:{on}", {**base, "on": on, "at": at}))
    return out


def json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


class RealtimeReporter:
    def __init__(self, db: AsyncIOMotorDatabase[Any], settings: Settings, partners: dict[str, Partner],
                 reports: Reports, *, clock: Callable[[], datetime] = utcnow, batch: int = 500,
                 concurrency: int = 16, max_attempts: int = 6, first_lookback_s: float = 3600.0,
                 overlap_s: float = 5.0) -> None:
        self.db, self.settings, self.partners, self.reports = db, settings, partners, reports
        self.clock = clock
        self.batch, self.max_attempts = batch, max_attempts
        self.first_lookback = timedelta(seconds=first_lookback_s)
        self.overlap = timedelta(seconds=overlap_s)  # writes that commit out of updated_at order
        self._limit = asyncio.Semaphore(concurrency)
        self.calls = PartnerCalls(settings, partners)
        self.products = sorted(p for p in reports.by_product if reports.realtime_for(p))
        # what the reports' field paths read, and what the sweep itself reads (stage_events, the watermark)
        self.fields = projection({r.name: r for p in self.products for r in reports.realtime_for(p)}.values(),
                                 also=["stages", "submitted_by", "product", "updated_at"])
        self._known: OrderedDict[str, None] = OrderedDict()  # keys with a send record, newest last

    async def recorded(self, keys: Sequence[str]) -> set[str]:
        """The keys among ``keys`` that already have a send record.

        Why remembered: the sweep re-reads every order changed in the last ``overlap`` — with a full
        window in flight that is every open order, ~10 stage events each, so ~1,000 keys per sweep,
        nearly all already recorded. The keys this process recorded or found are kept (bounded LRU;
        a record is never deleted, so a remembered key stays true); only the rest is asked, through
        :func:`hub.batching.find_by_ids` (chunked: one ``$in`` of them all was quadratic there)."""
        found = {k for k in keys if k in self._known}
        found |= {d["_id"] async for d in find_by_ids(self.db[SENDS], (k for k in keys if k not in found), {"_id": 1})}
        self.remember(found)
        return found

    def remember(self, keys: Sequence[str] | set[str]) -> None:
        for k in keys:
            self._known[k] = None
            self._known.move_to_end(k)
        while len(self._known) > KNOWN_KEYS:
            self._known.popitem(last=False)

    async def close(self) -> None:
        await self.calls.close()

    # --- one send --------------------------------------------------------------------------
    async def send(self, report: Report, key: str, order_id: str, payload: dict[str, Any],
                   attempts: int) -> dict[str, Any]:
        async with self._limit:
            outcome = await self.calls.call(report.partner, report.operation, payload, key=key, order_id=order_id,
                                            path=report.path, success=report.success)
        now = self.clock()
        status = (outcome.response or {}).get("http_status") if isinstance(outcome.response, dict) else None
        ok = bool(outcome.ok)
        SENT.labels(report.name, "ok" if ok else "failed").inc()
        tries = attempts + 1
        delay = min(30.0 * 2 ** (tries - 1), 3600.0)
        return {"outcome": "ok" if ok else ("failed" if tries < self.max_attempts else "gave_up"),
                "attempts": tries, "http_status": status, "error": None if ok else (outcome.error or "failed"),
                "sent_at": now, "next_at": None if ok else now + timedelta(seconds=delay)}

    async def record(self, report: Report, key: str, doc: dict[str, Any] | None, event: dict[str, Any] | None,
                     payload: dict[str, Any], result: dict[str, Any]) -> None:
        await self.record_many([(report, key, doc, event, payload, result)])

    async def record_many(self, items: list[tuple[Report, str, dict[str, Any] | None, dict[str, Any] | None,
                                                  dict[str, Any], dict[str, Any]]], *, fresh: bool = False) -> None:
        """Record sends and their alerts in two bulk writes (one round trip each, not three per send):
        a failure opens (or updates) the send's alert, a success after a failure resolves it.
        ``fresh``: first sends, none recorded yet — inserted (SecantusDB's insert path is several times
        cheaper than an upsert's update path; a key recorded meanwhile is a duplicate, skipped)."""
        sends: list[UpdateOne | InsertOne[dict[str, Any]]] = []
        alerts: list[UpdateOne] = []
        for report, key, doc, event, payload, result in items:
            base = {"report": report.name, "partner": report.partner, "payload": payload, **result}
            if doc is not None and event is not None:
                base.update(order_id=doc["_id"], product=doc.get("product"), stage=event["stage"], on=event["on"],
                            event_at=event["at"])
            if fresh:
                sends.append(InsertOne({"_id": key, **base, "first_at": result["sent_at"]}))
            else:
                sends.append(UpdateOne({"_id": key}, {"$set": base, "$setOnInsert": {"first_at": result["sent_at"]}},
                                       upsert=True))
            alert = {"_id": f"realtime:{key}"}
            if result["outcome"] == "ok":
                if result["attempts"] > 1:  # a first try that succeeded has no alert to resolve
                    alerts.append(UpdateOne({**alert, "status": "open"}, {"$set": {
                        "status": "resolved", "resolved_at": result["sent_at"], "resolution": "re-sent successfully"}}))
                continue
            alerts.append(UpdateOne(alert, {
                "$set": {"kind": "realtime_failed", "status": "open", "report": report.name, "key": key,
                         "order_id": base.get("order_id"), "stage": base.get("stage"), "error": result["error"],
                         "last_at": result["sent_at"], "attempts": result["attempts"]},
                "$setOnInsert": {"first_at": result["sent_at"]}}, upsert=True))
        if sends:
            try:
                await self.db[SENDS].bulk_write(sends, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
        if alerts:
            await self.db[ALERTS].bulk_write(alerts, ordered=False)

    # --- the sweep -------------------------------------------------------------------------
    async def sweep(self) -> dict[str, int]:
        """Send the new stage events of the orders changed since the watermark, then due retries."""
        counts = {"orders": 0, "sent": 0, "failed": 0, "retried": 0}
        if not self.products:
            return counts
        now = self.clock()
        state = await self.db[STATE].find_one({"_id": "realtime"}) or {}
        mark: datetime = state.get("watermark") or now - self.first_lookback
        q = changed_since(mark, self.products)
        cursor = self.db["orders"].find(q, self.fields).sort("updated_at", ASCENDING).limit(self.batch)
        docs = await cursor.to_list(None)
        counts["orders"] = len(docs)
        todo: list[tuple[Report, str, dict[str, Any], dict[str, Any]]] = []
        for doc in docs:
            for report in self.reports.realtime_for(doc.get("product") or ""):
                todo += [(report, key, doc, ev) for key, ev in stage_events(report, doc)]
        known = await self.recorded([k for _, k, _, _ in todo])

        done: list[Any] = []

        async def one(report: Report, key: str, doc: dict[str, Any], ev: dict[str, Any]) -> None:
            payload = json_ready({"reportId": key, "reportType": report.name, **values(report, doc, ev)})
            result = await self.send(report, key, doc["_id"], payload, 0)
            counts["sent" if result["outcome"] == "ok" else "failed"] += 1
            done.append((report, key, doc, ev, payload, result))

        await asyncio.gather(*(one(*t) for t in todo if t[1] not in known))
        await self.record_many(done, fresh=True)
        self.remember([key for _, key, *_ in done])
        # caught up: keep re-reading the last `overlap` (a write that committed after a newer one);
        # behind (a full batch): go on from the batch's newest, one instant later if it is all one instant.
        # Nothing found is caught up too: the watermark moves to `overlap` before now. It stayed put, and
        # with orders of reported products rare or absent (a fusion run) every sweep read every order
        # written since (by_updated range, each document decoded to test its product): 2.5 s a sweep
        # after 3,000 fusion orders on the embedded SecantusDB (2026-12-03, its profiler).
        if not docs:
            newest = max(mark, now - self.overlap)
        else:
            newest = max(d["updated_at"] for d in docs)
            if len(docs) < self.batch:
                newest = max(mark, newest - self.overlap)
            elif newest <= mark:
                newest = mark + timedelta(microseconds=1)
        if newest > mark:
            await self.db[STATE].update_one({"_id": "realtime"}, {"$max": {"watermark": newest}}, upsert=True)
        counts["retried"] = await self.retry_due(now)
        return counts

    async def retry_due(self, now: datetime, limit: int = 200) -> int:
        """Re-send failed reports whose backoff has passed (the same payload, the same key)."""
        due = await self.db[SENDS].find({"outcome": "failed", "next_at": {"$lte": now}}).limit(limit).to_list(None)
        await asyncio.gather(*(self.resend(d) for d in due))
        return len(due)

    async def resend(self, sent: dict[str, Any]) -> dict[str, Any]:
        """One more try of a recorded send (the sweep's retries, and an operator's ``hub reports resend``)."""
        report = self.reports.by_name.get(sent["report"])
        if report is None:
            raise ValueError(f"report {sent['report']!r} is no longer defined")
        result = await self.send(report, sent["_id"], sent.get("order_id") or "-", sent["payload"],
                                 int(sent.get("attempts") or 0))
        await self.record(report, sent["_id"], None, None, sent["payload"], result)
        return result
