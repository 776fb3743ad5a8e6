"""Interface alert rules (C.3 (3)-(6)) and business-indicator rules (C.4 (2)-(5)): what they hold for,
computed each evaluation cycle, with the same alert lifecycle as the stuck-order rules.

* **interface**: per partner operation, over the calls started in the last ``window_s`` (``calls``
  collection, ``by_time`` index; one query per distinct window): calls, succeeded, failed, success
  rate, p50/p99 duration, load per minute. The subject is ``partner.operation``.
* **indicator**: a count of orders or calls (``Indicator``: source, match, overdue, window_s), one
  ``count_documents`` per rule on an indexed prefix (orders: status + product or current_stage;
  calls: started_at). The subject is the rule itself: one alert while the threshold holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.admin.queries import percentile
from app.ops.alerts import open_key
from app.ops.rules import Rule
from flows.documents import CALLS, ORDERS
from flows.graph.expr import ExprError, compile_expr

__all__ = ["indicator_holding", "indicator_value", "interface_facts", "interface_holding"]


def _alert(rule: Rule, subject: str, facts: dict[str, Any], summary: str) -> dict[str, Any]:
    return {"kind": rule.kind, "rule_id": rule.id, "rule_name": rule.name, "severity": rule.severity,
            "action": rule.action.type, "team": rule.action.team if rule.action.type == "escalate" else None,
            "notify": rule.notify, "subject": subject, "order_id": None, "product": None, "scenario": None,
            "stage": None, "summary": summary, "facts": facts}


async def interface_facts(db: AsyncIOMotorDatabase[Any], window_s: float, now: float) -> list[dict[str, Any]]:
    """Per partner operation, the facts of the calls started in the last ``window_s``."""
    since = datetime.fromtimestamp(now - window_s, UTC)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    cursor = db[CALLS].find({"started_at": {"$gte": since}},
                            {"partner": 1, "operation": 1, "outcome": 1, "duration_ms": 1})
    async for c in cursor:
        g = groups.setdefault((str(c.get("partner", "?")), str(c.get("operation", "?"))),
                              {"calls": 0, "succeeded": 0, "failed": 0, "durations": []})
        g["calls"] += 1
        if c.get("outcome") == "ok":
            g["succeeded"] += 1
        elif c.get("outcome") in ("failed", "dead_lettered"):
            g["failed"] += 1
        if c.get("duration_ms") is not None:
            g["durations"].append(float(c["duration_ms"]))
    out = []
    for (partner, operation), g in sorted(groups.items()):
        durations = sorted(g.pop("durations"))
        finished = g["succeeded"] + g["failed"]
        out.append({"partner": partner, "operation": operation, **g,
                    "success_rate": round(g["succeeded"] / finished, 4) if finished else None,
                    "p50_ms": percentile(durations, 50), "p99_ms": percentile(durations, 99),
                    "per_min": round(g["calls"] / (window_s / 60), 3), "window_s": window_s})
    return out


async def interface_holding(db: AsyncIOMotorDatabase[Any], rules: list[Rule], now: float,
                            errors: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``open_key -> alert`` of every interface rule holding for a partner operation now."""
    held: dict[str, dict[str, Any]] = {}
    by_window: dict[float, list[dict[str, Any]]] = {}
    for rule in rules:
        if rule.window_s not in by_window:
            by_window[rule.window_s] = await interface_facts(db, rule.window_s, now)
        expr = compile_expr(rule.when)
        for f in by_window[rule.window_s]:
            if (rule.scope.partner and f["partner"] != rule.scope.partner) or (
                    rule.scope.operation and f["operation"] != rule.scope.operation):
                continue
            try:
                hit = expr.test({"data": f, "now": now})
            except ExprError as exc:
                errors[rule.id] = str(exc)
                continue
            if hit:
                subject = f"{f['partner']}.{f['operation']}"
                rate = "-" if f["success_rate"] is None else f"{f['success_rate']:.0%}"
                held[open_key(rule.id, subject)] = _alert(
                    rule, subject, f, f"{rule.name}: {subject} {f['calls']} calls in {rule.window_s / 60:.0f} min, "
                                      f"success {rate}, p99 {f['p99_ms']} ms")
    return held


def _indicator_query(rule: Rule, now: float) -> tuple[str, dict[str, Any]]:
    ind = rule.indicator
    assert ind is not None
    q: dict[str, Any] = dict(ind.match)
    if ind.source == "orders":
        if ind.overdue:
            q.setdefault("status", {"$in": ["in_flight", "waiting"]})
            q["sla_deadline"] = {"$lt": datetime.fromtimestamp(now, UTC)}
        if ind.window_s:
            q["created_at"] = {"$gte": datetime.fromtimestamp(now - ind.window_s, UTC)}
        return ORDERS, q
    if ind.window_s:
        q["started_at"] = {"$gte": datetime.fromtimestamp(now - ind.window_s, UTC)}
    return CALLS, q


async def indicator_value(db: AsyncIOMotorDatabase[Any], rule: Rule, now: float) -> int:
    coll, q = _indicator_query(rule, now)
    return int(await db[coll].count_documents(q))


async def indicator_holding(db: AsyncIOMotorDatabase[Any], rules: list[Rule], now: float,
                            errors: dict[str, str]) -> dict[str, dict[str, Any]]:
    held: dict[str, dict[str, Any]] = {}
    for rule in rules:
        assert rule.indicator is not None
        f = {"value": await indicator_value(db, rule, now), "window_s": rule.indicator.window_s}
        try:
            hit = compile_expr(rule.when).test({"data": f, "now": now})
        except ExprError as exc:
            errors[rule.id] = str(exc)
            continue
        if hit:
            held[open_key(rule.id, rule.id)] = _alert(rule, rule.id, f, f"{rule.name}: {f['value']} ({rule.when})")
    return held
