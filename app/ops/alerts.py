"""Alerts and their handling as work items (C.2 (3)-(4), C.3 (6)-(7), C.4 (5)-(6)).

An alert is raised by a rule for a *subject* (an order, a partner operation, an indicator) and moves
through handling stages ``open -> tracking -> resolved -> closed``, with an assignee and handling
records (who, when, what). Several workers may evaluate at once: ``open_key`` (``rule|subject``) is
set while the rule's condition holds and a unique index on it makes a second insert of the same
alert fail, so each episode of a condition gives exactly one alert (and one notification). When the
condition clears the key is released and an alert still open or tracking is resolved by ``system``;
one an operator already resolved or closed keeps its state. The next episode raises a new alert.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError

from app.admin.queries import _Filter
from app.admin.replay import NotFound, Refused
from hub.db import declare_indexes
from hub.errors import ValidationFailed

__all__ = ["ALERTS", "STAGES", "AlertFilter", "AlertStore"]

ALERTS = "ops_alerts"
STAGES = ("open", "tracking", "resolved", "closed")
ACTIVE = ("open", "tracking")
#: which handling stage each operator action may start from, and where it goes (None: stays)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "ack": (("open",), "tracking"),
    "assign": (("open", "tracking", "resolved"), None),
    "note": (("open", "tracking", "resolved"), None),
    "resolve": (("open", "tracking"), "resolved"),
    "close": (("resolved",), "closed"),
    "reopen": (("resolved",), "tracking"),
}

declare_indexes(
    ALERTS,
    # one alert per rule and subject while its condition holds; only open episodes carry the key
    IndexModel([("open_key", ASCENDING)], name="one_open", unique=True,
               partialFilterExpression={"open_key": {"$exists": True}}),
    IndexModel([("status", ASCENDING), ("raised_at", DESCENDING)], name="by_status"),
    IndexModel([("raised_at", DESCENDING)], name="by_time"),
    IndexModel([("order_id", ASCENDING)], name="by_order"),
    # what holds now, by kind (the cycle) and by product and stage (the stuck drill-down): an equality
    # prefix, because the embedded server does not plan the partial index for `$exists` (it scanned)
    IndexModel([("holds", ASCENDING), ("kind", ASCENDING), ("product", ASCENDING), ("stage", ASCENDING)],
               name="by_holding"),
)


class AlertFilter(_Filter):
    """Which alerts: ``status=active`` (open or tracking: the real-time list) is the default,
    ``any`` the history; ``since`` / ``until`` bound ``raised_at`` (``1h``, ``2d`` or ISO, as everywhere)."""

    status: Literal["open", "tracking", "resolved", "closed", "active", "any"] = "active"
    kind: Literal["order", "interface", "indicator"] | None = None
    rule_id: str | None = None
    severity: str | None = None
    product: str | None = None
    stage: str | None = None
    order_id: str | None = None
    assignee: str | None = None

    def query(self) -> dict[str, Any]:
        q: dict[str, Any] = {}
        if self.status == "active":
            q["status"] = {"$in": list(ACTIVE)}
        elif self.status != "any":
            q["status"] = self.status
        for name in ("kind", "rule_id", "severity", "product", "stage", "order_id", "assignee"):
            if getattr(self, name):
                q[name] = getattr(self, name)
        rng: dict[str, Any] = {}
        if self.since:
            rng["$gte"] = self.since
        if self.until:
            rng["$lt"] = self.until
        if rng:
            q["raised_at"] = rng
        return q


def open_key(rule_id: str, subject: str) -> str:
    return f"{rule_id}|{subject}"


def new_alert_id(now: datetime) -> str:
    """``AL-20261202-3f9a1c2b``: sortable by day, unique without a counter document."""
    return f"AL-{now:%Y%m%d}-{uuid.uuid4().hex[:8]}"


class AlertStore:
    def __init__(self, db: AsyncIOMotorDatabase[Any]) -> None:
        self.db = db
        self.coll = db[ALERTS]

    # --- the evaluator's side ---------------------------------------------------------------------
    async def open_keys(self, kind: str) -> dict[str, str]:
        """``open_key -> alert id`` of every episode still holding (index ``by_holding``)."""
        cursor = self.coll.find({"holds": True, "kind": kind}, {"open_key": 1})
        return {d["open_key"]: d["_id"] async for d in cursor}

    async def raise_many(self, alerts: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """Insert new alerts (each with ``rule_id``, ``subject``, ...); returns those *this* call
        inserted — an alert another worker raised first is a duplicate key and left out."""
        docs = []
        for a in alerts:
            doc = {"_id": new_alert_id(now), "status": "open", "raised_at": now, "updated_at": now,
                   "holds": True, "open_key": open_key(a["rule_id"], a["subject"]), "assignee": None,
                   "cleared_at": None,
                   "records": [{"at": now, "who": "system", "action": "raised", "note": a.get("summary", "")}], **a}
            if a.get("team"):
                doc["assignee"] = f"team:{a['team']}"
                doc["records"].append({"at": now, "who": "system", "action": "escalated", "note": a["team"]})
            docs.append(doc)
        if not docs:
            return []
        failed: set[int] = set()
        try:
            await self.coll.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if other:
                raise
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
        return [d for i, d in enumerate(docs) if i not in failed]

    async def clear(self, ids: Iterable[str], now: datetime) -> int:
        """The conditions of the alerts ``ids`` no longer hold: release their keys; resolve what is still
        active (by ``_id``: the embedded server does not plan the partial ``one_open`` index)."""
        keys = list(ids)
        if not keys:
            return 0
        record = {"at": now, "who": "system", "action": "resolve", "note": "condition cleared"}
        res = await self.coll.update_many(
            {"_id": {"$in": keys}, "holds": True, "status": {"$in": list(ACTIVE)}},
            {"$set": {"status": "resolved", "cleared_at": now, "updated_at": now, "resolved_by": "system",
                      "holds": False},
             "$unset": {"open_key": ""}, "$push": {"records": record}})
        await self.coll.update_many(  # resolved or closed by an operator already: only the key goes
            {"_id": {"$in": keys}, "holds": True},
            {"$set": {"cleared_at": now, "updated_at": now, "holds": False}, "$unset": {"open_key": ""},
             "$push": {"records": {**record, "action": "cleared"}}})
        return int(res.modified_count)

    async def mark(self, alert_id: str, field: str, value: Any) -> None:
        await self.coll.update_one({"_id": alert_id}, {"$set": {field: value}})

    # --- operators ----------------------------------------------------------------------------------
    async def list(self, flt: AlertFilter, limit: int = 50, skip: int = 0) -> list[dict[str, Any]]:
        cursor = (self.coll.find(flt.query(), {"records": 0}).sort("raised_at", DESCENDING)
                  .skip(skip).limit(limit))
        return [_out(d) async for d in cursor]

    async def count(self, flt: AlertFilter) -> int:
        return int(await self.coll.count_documents(flt.query()))

    async def get(self, alert_id: str) -> dict[str, Any] | None:
        doc = await self.coll.find_one({"_id": alert_id})
        return _out(doc) if doc else None

    async def act(self, alert_id: str, action: str, who: str, *, note: str = "", assignee: str | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
        """One handling step (``TRANSITIONS``), recorded; refused (409) from the wrong stage."""
        if action not in TRANSITIONS:
            raise ValueError(action)
        allowed, to = TRANSITIONS[action]
        now = now or datetime.now(UTC)
        record: dict[str, Any] = {"at": now, "who": who, "action": action, "note": note}
        update: dict[str, Any] = {"updated_at": now}
        if to:
            update["status"] = to
            record["to"] = to
        if action == "assign":
            if not assignee:
                raise ValidationFailed("assign needs an assignee", [{"field": "assignee", "message": "required"}])
            update["assignee"] = assignee
            record["note"] = note or assignee
        if action == "resolve":
            update["resolved_by"] = who
        doc = await self.coll.find_one_and_update(
            {"_id": alert_id, "status": {"$in": list(allowed)}}, {"$set": update, "$push": {"records": record}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            current = await self.coll.find_one({"_id": alert_id}, {"status": 1})
            if current is None:
                raise NotFound(f"no alert {alert_id}")
            raise Refused(f"alert {alert_id} is {current['status']}: {action} needs {' or '.join(allowed)}")
        if action == "ack" and not doc.get("assignee"):
            doc = await self.coll.find_one_and_update({"_id": alert_id}, {"$set": {"assignee": who}},
                                                      return_document=ReturnDocument.AFTER)
        return _out(doc)


def _out(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["id"] = out.pop("_id")
    out["active"] = bool(out.pop("holds", False))
    out.pop("open_key", None)
    return out
