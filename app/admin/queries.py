"""Read side for operators: dead-letter filters and listings, order and call views, call statistics.

Every listing goes through :func:`masker` (SPEC §7, :mod:`hub.masking`): the sensitive paths of every declared partner
(``Partner.sensitive_fields``, canonical WorkOrder paths) are masked wherever an order payload can
sit in a document — an envelope's payload, ``payload.order``, an order document's ``order``, a
call's ``request`` — and password/token keys are masked anywhere. All queries use the indexes
declared in hub/deadletter.py and flows/documents.py; nothing here scans Kafka.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import ASCENDING, DESCENDING, IndexModel

from app.admin.listing import newest_first
from flows.documents import CALLS, ORDERS
from hub.db import declare_indexes
from hub.deadletter import ACTIONS, pending_query
from hub.deadletter import COLLECTION as DEAD_LETTERS
from hub.errors import ValidationFailed
from hub.masking import Masker
from hub.partners import Partner

declare_indexes(
    ACTIONS,
    IndexModel([("at", DESCENDING)], name="by_time"),
    IndexModel([("dead_letter_id", ASCENDING), ("at", DESCENDING)], name="by_letter"),
    IndexModel([("who", ASCENDING), ("at", DESCENDING)], name="by_who"),
)
declare_indexes(CALLS, IndexModel([("started_at", DESCENDING)], name="by_time"))
DEFAULT_SENSITIVE = tuple(Partner.model_fields["sensitive_fields"].get_default(call_default_factory=True))
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str | datetime | None, *, now: datetime | None = None) -> datetime | None:
    """``90m``, ``1h``, ``2d`` (that long ago) or an ISO-8601 time (UTC when no offset is given)."""
    if text is None or isinstance(text, datetime):
        return text if text is None or text.tzinfo else text.replace(tzinfo=UTC)
    m = _DURATION.match(text.strip())
    if m:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
        except OverflowError:  # 99999999999999d: before year 1 (it was a 500)
            raise ValidationFailed(f"not a time: {text!r} reaches before year 1") from None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValidationFailed(f"not a time: {text!r} (use e.g. 1h, 30m, 2d or 2026-11-22T18:00)") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def masker(partners: dict[str, Partner]) -> Masker:
    """The listings' masker: every partner's sensitive paths, wherever they occur in a document.

    Paths are canonical and relative (``customer.name``, ``addresses.detail``); an order can sit
    anywhere — an envelope's ``payload``, ``payload.order``, an order's ``order``, a call's
    ``request`` or ``envelope`` — and :class:`hub.masking.Masker` applies each path at every object.
    """
    leaves = set(DEFAULT_SENSITIVE)
    for p in partners.values():
        leaves.update(p.sensitive_fields)
    return Masker.of(leaves)


def _time_range(field: str, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    rng: dict[str, Any] = {}
    if since:
        rng["$gte"] = since
    if until:
        rng["$lt"] = until
    return {field: rng} if rng else {}


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _when(cls, v: Any) -> Any:
        return parse_when(v) if isinstance(v, str) else v


class DeadLetterFilter(_Filter):
    """Which dead letters: every field narrows; ``status=any`` includes every status.

    ``dead`` means *pending* (:func:`hub.deadletter.pending_query`): it includes letters whose replay
    lease lapsed; ``replaying`` only those whose lease is still held."""

    ids: list[str] | None = None
    source_topic: str | None = Field(default=None, description="e.g. hub.out.esop")
    partner: str | None = None
    order_id: str | None = None
    error_class: str | None = None
    status: Literal["dead", "replaying", "replayed", "discarded", "resolved", "any"] = "dead"

    def query(self, now: datetime | None = None) -> dict[str, Any]:
        q: dict[str, Any] = {}
        if self.ids is not None:
            q["_id"] = {"$in": self.ids}
        for name in ("source_topic", "partner", "order_id", "error_class"):
            if getattr(self, name):
                q[name] = getattr(self, name)
        if self.status == "dead":
            q.update(pending_query(now))
        elif self.status == "replaying":
            q.update(status="replaying", lease_until={"$gt": now or datetime.now(UTC)})
        elif self.status != "any":
            q["status"] = self.status
        q.update(_time_range("created_at", self.since, self.until))
        return q


class OrderFilter(_Filter):
    product: str | None = None
    scenario: str | None = None
    status: str | None = None
    stage: str | None = Field(default=None, description="current stage")
    partner: str | None = None
    overdue: bool = Field(default=False, description="open and past its SLA deadline")

    def query(self, now: datetime | None = None) -> dict[str, Any]:
        q: dict[str, Any] = {}
        for name, field in (("product", "product"), ("scenario", "scenario"), ("status", "status"),
                            ("stage", "current_stage"), ("partner", "partner")):
            if getattr(self, name):
                q[field] = getattr(self, name)
        if self.overdue:
            q.setdefault("status", {"$in": ["in_flight", "waiting"]})
            q["sla_deadline"] = {"$lt": now or datetime.now(UTC)}
        q.update(_time_range("created_at", self.since, self.until))
        return q


class CallFilter(_Filter):
    partner: str | None = None
    operation: str | None = None
    order_id: str | None = None
    outcome: str | None = Field(default=None, description="ok, failed, dead_lettered, pending; 'failures' = both")

    def query(self) -> dict[str, Any]:
        q: dict[str, Any] = {}
        for name in ("partner", "operation", "order_id"):
            if getattr(self, name):
                q[name] = getattr(self, name)
        if self.outcome == "failures":
            q["outcome"] = {"$in": ["failed", "dead_lettered"]}
        elif self.outcome:
            q["outcome"] = self.outcome
        q.update(_time_range("started_at", self.since, self.until))
        return q


class Queries:
    """Masked read models over ``dead_letters``, ``dlq_actions``, ``orders`` and ``calls``."""

    def __init__(self, db: AsyncIOMotorDatabase, partners: dict[str, Partner]) -> None:
        self.db = db
        self.mask = masker(partners)

    async def _masked(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``docs`` masked in a thread: masking walks every value (classification by field name), ~0.7 ms
        for a 7 KB order, so a 1000-row page on the loop held every intake and callback for most of a second."""
        if not docs:
            return []
        return await asyncio.to_thread(lambda: [self.mask(d) for d in docs])

    @staticmethod
    def _out(doc: dict[str, Any]) -> dict[str, Any]:
        doc = dict(doc)
        doc["id"] = doc.pop("_id")
        return doc

    @classmethod
    def _letter(cls, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        """A letter as operators see it: a lapsed replay lease is shown as what it is again — dead."""
        out = cls._out(doc)
        lease = out.get("lease_until")
        if out.get("status") == "replaying" and lease is not None:
            if lease.tzinfo is None:
                lease = lease.replace(tzinfo=UTC)
            if lease <= now:
                out["status"], out["lease_lapsed"] = "dead", True
        return out

    # --- dead letters -----------------------------------------------------------------------
    async def dead_letters(self, flt: DeadLetterFilter, limit: int = 50, skip: int = 0) -> list[dict[str, Any]]:
        """Summaries (no envelope body), newest first."""
        now = datetime.now(UTC)
        cursor = (self.db[DEAD_LETTERS]
                  .find(flt.query(now), {"envelope": 0, "raw_value_b64": 0})
                  .sort("created_at", DESCENDING).skip(skip).limit(limit))
        return await self._masked([self._letter(d, now) async for d in cursor])

    async def count_dead_letters(self, flt: DeadLetterFilter) -> int:
        return int(await self.db[DEAD_LETTERS].count_documents(flt.query()))

    async def dead_letter(self, letter_id: str) -> dict[str, Any] | None:
        """One dead letter with its original envelope, every attempt, and its action history."""
        doc = await self.db[DEAD_LETTERS].find_one({"_id": letter_id})
        if doc is None:
            return None
        out = self._letter(doc, datetime.now(UTC))
        out["history"] = await self.history(dead_letter_id=letter_id, limit=100)
        return (await self._masked([out]))[0]

    async def history(self, *, dead_letter_id: str | None = None, who: str | None = None,
                      since: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q: dict[str, Any] = {}
        if dead_letter_id:
            q["dead_letter_id"] = dead_letter_id
        if who:
            q["who"] = who
        q.update(_time_range("at", since, None))
        cursor = self.db[ACTIONS].find(q).sort("at", DESCENDING).limit(limit)
        return await self._masked([self._out(d) async for d in cursor])

    # --- orders -----------------------------------------------------------------------------
    async def orders(self, flt: OrderFilter, limit: int = 50, skip: int = 0) -> list[dict[str, Any]]:
        """Newest first, in ``created_at`` windows (app/admin/listing.py: 100,000 orders on SecantusDB)."""
        fields = {"order": 0, "stages": 0, "calls": 0}
        docs = await newest_first(self.db[ORDERS], flt.query(), fields, limit=limit, skip=skip)
        return await self._masked([self._out(d) for d in docs])

    async def order_trace(self, order_id: str) -> dict[str, Any] | None:
        """The order's call chain (app/admin/traces.py): spans with service, operation, duration, outcome."""
        from app.admin.traces import order_trace

        return await order_trace(self.db, order_id)

    async def order(self, order_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The order with stage durations, calls (flat ``calls`` collection), current wait and SLA."""
        doc = await self.db[ORDERS].find_one({"_id": order_id})
        if doc is None:
            return None
        now = now or datetime.now(UTC)
        out = self._out(doc)
        for st in out.get("stages") or []:
            if st.get("duration_ms") is None and st.get("entered_at"):
                end = st.get("finished_at") or now
                st["duration_ms"] = (end - st["entered_at"]).total_seconds() * 1000
                st["open"] = st.get("finished_at") is None
        calls = [self._out(c) async for c in self.db[CALLS].find({"order_id": order_id}).sort("started_at", ASCENDING)]
        if calls:
            out["calls"] = calls
        open_stage = next((s for s in reversed(out.get("stages") or []) if s.get("finished_at") is None), None)
        out["current_wait"] = {
            "stage": out.get("current_stage"),
            "waiting_for": out.get("waiting_for"),
            "since": open_stage.get("entered_at") if open_stage else None,
            "waited_ms": open_stage.get("duration_ms") if open_stage else None,
        }
        deadline = out.get("sla_deadline")
        out["overdue"] = bool(deadline and out.get("status") in ("in_flight", "waiting") and deadline < now)
        return (await self._masked([out]))[0]

    # --- calls ------------------------------------------------------------------------------
    async def calls(self, flt: CallFilter, limit: int = 50) -> list[dict[str, Any]]:
        cursor = self.db[CALLS].find(flt.query()).sort("started_at", DESCENDING).limit(limit)
        return await self._masked([self._out(d) async for d in cursor])

    async def call_stats(self, flt: CallFilter) -> list[dict[str, Any]]:
        """Per partner operation: total, succeeded, failed, success rate, p50/p99 duration (ms)."""
        pipeline = [
            {"$match": flt.query()},
            {"$project": {"partner": 1, "operation": 1, "outcome": 1, "duration_ms": 1}},
        ]
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        async for c in self.db[CALLS].aggregate(pipeline):
            g = groups.setdefault((c.get("partner", "?"), c.get("operation", "?")),
                                  {"total": 0, "succeeded": 0, "failed": 0, "pending": 0, "durations": []})
            g["total"] += 1
            outcome = c.get("outcome")
            if outcome == "ok":
                g["succeeded"] += 1
            elif outcome in ("failed", "dead_lettered"):
                g["failed"] += 1
            else:
                g["pending"] += 1
            if c.get("duration_ms") is not None:
                g["durations"].append(float(c["duration_ms"]))
        rows = []
        for (partner, operation), g in sorted(groups.items()):
            finished = g["succeeded"] + g["failed"]
            durations = sorted(g.pop("durations"))
            rows.append({
                "partner": partner, "operation": operation, **g,
                "success_rate": round(g["succeeded"] / finished, 4) if finished else None,
                "p50_ms": percentile(durations, 50), "p99_ms": percentile(durations, 99),
            })
        return rows


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: the value reported was actually observed)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return round(sorted_values[int(rank) - 1], 3)
