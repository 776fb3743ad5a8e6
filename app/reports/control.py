"""Report control (C.5; issue 16 item 4): the five overview counts with drill-down, report rules
(create, edit, delete) and the alerts report anomalies raise, with their handling records.

The five counts of C.5 (1), each over a time window (default the last 24 h):

- ``realtime_failures`` 实时上报失败次数: real-time sends that have failed and not (yet) succeeded;
- ``cross_province_failures`` 跨省工单透明化失败次数: the same, for reports marked ``cross_province``;
- ``reconciliation_diff_days`` 支持业务差异对账天数: reconciled days with differences;
- ``recollections`` 支持集团通知重采次数: the group's re-collection requests;
- ``file_failures`` 支持文件上报失败次数: report file generations that failed.

Each has a drill-down listing the records behind it (masked: the payloads carry customer names).

A report rule raises an alert (here, and in the alert-management module app/ops/alerts.py) when
its metric (one of the five, optionally for one report) reaches
``threshold`` within ``window_h``; the alert is resolved by the rule when the metric falls below
it again. Every send failure and every day with differences raises its own alert too
(app/reports/realtime.py, reconciliation.py). Alerts live in ``report_alerts``; handling records
(progress, result) are appended with who and when, and an alert can be resolved by hand.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from app.admin.replay import NotFound, Refused
from app.ops.alerts import AlertStore, open_key
from app.reports.definitions import Reports
from app.reports.files import FILES
from app.reports.realtime import ALERTS, SENDS
from app.reports.recollect import RECOLLECTIONS
from app.reports.reconciliation import RECONCILIATIONS
from hub.masking import mask

RULES = "report_rules"
Metric = Literal["realtime_failures", "cross_province_failures", "reconciliation_diff_days", "recollections",
                 "file_failures"]
METRICS: tuple[Metric, ...] = ("realtime_failures", "cross_province_failures", "reconciliation_diff_days",
                               "recollections", "file_failures")
LABELS = {"realtime_failures": "实时上报失败次数", "cross_province_failures": "跨省工单透明化失败次数",
          "reconciliation_diff_days": "支持业务差异对账天数", "recollections": "支持集团通知重采次数",
          "file_failures": "支持文件上报失败次数"}
SENSITIVE = ["payload.customerName", "payload.handlerPhone"]


class ReportRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["RT-FAIL-10"])
    name: str = Field(min_length=1, max_length=200, examples=["10 real-time failures in an hour"])
    metric: Metric
    report: str | None = Field(default=None, description="only this report (realtime / file metrics)")
    threshold: int = Field(ge=1, le=1_000_000)
    window_h: float = Field(default=24.0, gt=0, le=24 * 366)
    severity: Literal["minor", "major", "critical"] = "major"
    enabled: bool = True


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    metric: Metric | None = None
    report: str | None = None
    threshold: int | None = Field(default=None, ge=1, le=1_000_000)
    window_h: float | None = Field(default=None, gt=0, le=24 * 366)
    severity: Literal["minor", "major", "critical"] | None = None
    enabled: bool | None = None


class AlertNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    kind: Literal["progress", "result"] = "progress"
    resolve: bool = Field(default=False, description="a result that ends the alert")


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["id"] = out.pop("_id")
    return out


class ReportControl:
    def __init__(self, db: AsyncIOMotorDatabase[Any], reports: Reports) -> None:
        self.db, self.reports = db, reports

    def _cross(self) -> list[str]:
        return [r.name for r in self.reports.by_name.values() if r.definition.cross_province]

    def _query(self, metric: Metric, since: datetime, until: datetime, report: str | None = None
               ) -> tuple[str, dict[str, Any], str]:
        """(collection, filter, time field) behind one count."""
        when = {"$gte": since, "$lt": until}
        if metric in ("realtime_failures", "cross_province_failures"):
            q: dict[str, Any] = {"outcome": {"$in": ["failed", "gave_up"]}, "sent_at": when}
            if metric == "cross_province_failures":
                q["report"] = {"$in": self._cross()}
            if report:
                q["report"] = report if metric == "realtime_failures" or report in self._cross() else "-"
            return SENDS, q, "sent_at"
        if metric == "reconciliation_diff_days":
            return RECONCILIATIONS, {"status": "differences", "at": when}, "at"
        if metric == "recollections":
            return RECOLLECTIONS, {"requested_at": when}, "requested_at"
        q = {"status": "failed", "failed_at": when}
        if report:
            q["report"] = report
        return FILES, q, "failed_at"

    async def count(self, metric: Metric, since: datetime, until: datetime, report: str | None = None) -> int:
        coll, q, _ = self._query(metric, since, until, report)
        return int(await self.db[coll].count_documents(q))

    async def overview(self, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
        until = until or datetime.now(UTC)
        since = since or until - timedelta(hours=24)
        counts = {m: await self.count(m, since, until) for m in METRICS}
        open_alerts = await self.db[ALERTS].count_documents({"status": "open"})
        return {"since": since, "until": until, "counts": counts, "labels": LABELS, "open_alerts": open_alerts}

    async def drill(self, metric: Metric, since: datetime | None = None, until: datetime | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
        until = until or datetime.now(UTC)
        since = since or until - timedelta(hours=24)
        coll, q, field = self._query(metric, since, until)
        rows = [_view(d) async for d in self.db[coll].find(q).sort(field, DESCENDING).limit(limit)]
        return [mask(r, SENSITIVE) for r in rows]

    # --- rules ---------------------------------------------------------------------------
    async def rules(self) -> list[dict[str, Any]]:
        return [_view(d) async for d in self.db[RULES].find().sort("_id")]

    def _check(self, rule: ReportRule) -> None:
        if rule.report is not None and rule.report not in self.reports.by_name:
            raise Refused(f"no report {rule.report!r} (known: {', '.join(sorted(self.reports.by_name))})")

    async def create_rule(self, rule: ReportRule, who: str) -> dict[str, Any]:
        self._check(rule)
        doc = {"_id": rule.id, **rule.model_dump(exclude={"id"}), "created_by": who, "created_at": datetime.now(UTC),
               "history": [{"at": datetime.now(UTC), "who": who, "action": "create"}]}
        try:
            await self.db[RULES].insert_one(doc)
        except DuplicateKeyError as exc:
            raise Refused(f"a report rule {rule.id!r} exists") from exc
        return _view(doc)

    async def edit_rule(self, rule_id: str, patch: RulePatch, who: str) -> dict[str, Any]:
        found = await self.db[RULES].find_one({"_id": rule_id})
        if found is None:
            raise NotFound(f"no report rule {rule_id}")
        changes = patch.model_dump(exclude_unset=True)
        merged = ReportRule.model_validate({**{k: v for k, v in found.items() if k in ReportRule.model_fields},
                                            "id": rule_id, **changes})
        self._check(merged)
        await self.db[RULES].update_one({"_id": rule_id}, {
            "$set": {**merged.model_dump(exclude={"id"}), "updated_by": who, "updated_at": datetime.now(UTC)},
            "$push": {"history": {"at": datetime.now(UTC), "who": who, "action": "edit", "changes": changes}}})
        doc = await self.db[RULES].find_one({"_id": rule_id})
        assert doc is not None
        return _view(doc)

    async def delete_rule(self, rule_id: str, who: str) -> dict[str, Any]:
        found = await self.db[RULES].find_one_and_delete({"_id": rule_id})
        if found is None:
            raise NotFound(f"no report rule {rule_id}")
        await self.db[ALERTS].update_many({"rule": rule_id, "status": "open"}, {"$set": {
            "status": "resolved", "resolved_at": datetime.now(UTC), "resolution": f"rule deleted by {who}"}})
        return {"id": rule_id, "deleted": True, "by": who}

    async def evaluate(self, now: datetime | None = None) -> list[str]:
        """Raise or resolve each enabled rule's alert; the ids of the alerts open afterwards."""
        now = now or datetime.now(UTC)
        opened = []
        holding: dict[str, dict[str, Any]] = {}
        async for rule in self.db[RULES].find({"enabled": True}):
            value = await self.count(rule["metric"], now - timedelta(hours=float(rule["window_h"])), now,
                                     rule.get("report"))
            aid = f"rule:{rule['_id']}"
            if value >= int(rule["threshold"]):
                await self.db[ALERTS].update_one({"_id": aid}, {
                    "$set": {"kind": "rule", "rule": rule["_id"], "status": "open", "severity": rule.get("severity"),
                             "error": f"{rule['name']}: {LABELS[rule['metric']]} = {value} "
                                      f"(threshold {rule['threshold']} in {rule['window_h']:g} h)",
                             "value": value, "last_at": now},
                    "$setOnInsert": {"first_at": now}}, upsert=True)
                opened.append(aid)
                holding[open_key(f"report:{rule['_id']}", "reports")] = {
                    "kind": "report", "rule_id": f"report:{rule['_id']}", "rule_name": rule["name"],
                    "severity": rule.get("severity", "major"), "action": "alert", "team": None, "notify": [],
                    "subject": "reports", "metric": rule["metric"], "value": value,
                    "summary": f"{rule['name']}: {LABELS[rule['metric']]} = {value} (threshold {rule['threshold']})"}
            else:
                await self.db[ALERTS].update_one({"_id": aid, "status": "open"}, {"$set": {
                    "status": "resolved", "resolved_at": now, "resolution": f"below threshold ({value})"}})
        await self._to_alert_management(holding, now)
        return opened

    async def _to_alert_management(self, holding: dict[str, dict[str, Any]], now: datetime) -> None:
        """C.5 (7): a rule's alert also goes to the alert-management module (app/ops/alerts.py, kind
        ``report``), where it is handled like every alert (ack, assign, notes, resolve, export); it is
        cleared there when the rule stops holding."""
        store = AlertStore(self.db)
        held = await store.open_keys("report")
        await store.raise_many([a for k, a in holding.items() if k not in held], now)
        await store.clear([aid for k, aid in held.items() if k not in holding], now)

    # --- alerts --------------------------------------------------------------------------
    async def alerts(self, status: str | None = None, kind: str | None = None, search: str | None = None,
                     limit: int = 50) -> list[dict[str, Any]]:
        q: dict[str, Any] = {}
        if status:
            q["status"] = status
        if kind:
            q["kind"] = kind
        if search:
            q["error"] = {"$regex": re.escape(search)}
        return [_view(d) async for d in self.db[ALERTS].find(q).sort("last_at", DESCENDING).limit(limit)]

    async def note(self, alert_id: str, note: AlertNote, who: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        change: dict[str, Any] = {"$push": {"notes": {"at": now, "who": who, "kind": note.kind, "text": note.text}}}
        if note.resolve:
            change["$set"] = {"status": "resolved", "resolved_at": now, "resolution": note.text, "resolved_by": who}
        found = await self.db[ALERTS].find_one_and_update({"_id": alert_id}, change)
        if found is None:
            raise NotFound(f"no report alert {alert_id}")
        doc = await self.db[ALERTS].find_one({"_id": alert_id})
        assert doc is not None
        return _view(doc)
