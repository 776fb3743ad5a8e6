"""Operator views and actions on fusion groups (issue 13 §2, §6; D.1.6, D.1.7): ``hub fusion`` and
``/admin/v1/fusion…`` share this layer.

A group is found through MongoDB ``correlations`` (one row per member that reached the wait, keyed by
the fusion key, indexed) and read from its members' order documents: nothing is kept twice, so what
an operator sees is what the engine runs on. Group states: ``waiting`` (a member still waits, before
its deadline), ``incomplete`` (a member's deadline passed: release, wait or cancel), ``dispatched``
(every member past the wait), ``cancelled`` / ``failed`` when no member runs. An action is one
``stage.submit`` to every member still waiting (its decision, journaled like any submission), and is
recorded in the admin action log like the DLQ actions.
"""

from __future__ import annotations

from typing import Any

from flows.documents import ORDERS
from flows.fusion.kinds import DECISIONS
from flows.fusion.plan import install_address
from flows.runtime.relay import CORRELATIONS
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.services import Services

STATES = ("waiting", "incomplete", "dispatched", "cancelled", "failed")
_FIELDS = {"status": 1, "current_stage": 1, "product": 1, "scenario": 1, "external_order_id": 1, "state.tokens": 1,
           "state.data.fusion_group": 1, "state.data.fusion_task": 1, "state.data.construction": 1,
           "state.data.addresses": 1, "state.data.product": 1, "state.data.external_order_id": 1,
           "state.data.fusion_alerts": 1, "state.data.fusion": 1, "state.data.fusion_decisions": 1,
           "state.status": 1}


class NoGroup(LookupError):
    """No member of that fusion key reached the wait."""


class NothingWaiting(RuntimeError):
    """The group has no member waiting: nothing to release, extend or cancel."""


def _waiting_node(doc: dict[str, Any]) -> str | None:
    for t in ((doc.get("state") or {}).get("tokens") or {}).values():
        if t.get("phase") == "active" and (t.get("wait") or {}).get("key") is not None and "me" in t.get("wait", {}):
            return str(t["node"])
    return None


def member_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The combined view of D.1.6 for one member, with its construction taker (D.1.7)."""
    data = (doc.get("state") or {}).get("data") or {}
    group, task, built = data.get("fusion_group") or {}, data.get("fusion_task") or {}, data.get("construction") or {}
    addr = install_address(data.get("addresses"))
    return {"order_id": doc["_id"], "external_order_id": data.get("external_order_id") or doc.get("external_order_id"),
            "business_type": data.get("product") or doc.get("product"), "scenario": doc.get("scenario"),
            "installation_address": {k: addr.get(k) for k in ("city", "district", "detail")},
            "current_stage": doc.get("current_stage"), "status": doc.get("status"),
            "waiting": _waiting_node(doc) is not None, "wait_state": group.get("state"),
            "deadline": group.get("deadline"), "task_id": task.get("task_id"),
            "team": (task.get("team") or {}).get("name"), "first_contact": task.get("first_contact"),
            "taker": built.get("taker"), "construction_status": built.get("status"),
            "link": f"/admin/v1/orders/{doc['_id']}", "alerts": data.get("fusion_alerts") or []}


def group_state(members: list[dict[str, Any]]) -> str:
    running = [m for m in members if m["status"] not in ("completed", "failed", "cancelled")]
    if any(m["waiting"] and m["wait_state"] == "incomplete" for m in running):
        return "incomplete"
    if any(m["waiting"] for m in running):
        return "waiting"
    if members and all(m["status"] == "cancelled" for m in members):
        return "cancelled"
    if members and all(m["status"] in ("failed", "cancelled") for m in members):
        return "failed"
    return "dispatched"


def summary(key: str, members: list[dict[str, Any]], expected: int | None) -> dict[str, Any]:
    takers = [{"order_id": m["order_id"], "business_type": m["business_type"], "taker": m["taker"],
               "status": m["construction_status"]} for m in members if m["task_id"]]
    return {"fusion_key": key, "state": group_state(members), "related_count": expected,
            "arrived": len(members), "tasks": len({m["task_id"] for m in members if m["task_id"]}),
            "deadline": min((m["deadline"] for m in members if m["waiting"] and m["deadline"]), default=None),
            "alerts": sum(len(m["alerts"]) for m in members), "members": members, "takers": takers}


async def _members(services: Services, key: str) -> tuple[list[dict[str, Any]], int | None]:
    db = services.db
    if db is None:
        raise RetryableError("order store not available")
    rows = [r async for r in db[CORRELATIONS].find({"key": key}, {"order_id": 1, "payload.related_count": 1})]
    ids = [r["order_id"] for r in rows]
    docs = [d async for d in db[ORDERS].find({"_id": {"$in": ids}}, _FIELDS)] if ids else []
    expected = next((r.get("payload", {}).get("related_count") for r in rows), None)
    return sorted((member_row(d) for d in docs), key=lambda m: str(m["order_id"])), expected


async def show(services: Services, key: str) -> dict[str, Any]:
    members, expected = await _members(services, key)
    if not members:
        raise NoGroup(f"no fusion group {key!r} (no member reached the wait)")
    return summary(key, members, expected)


async def groups(services: Services, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The groups, newest first, without their member rows (``show`` has them)."""
    db = services.db
    if db is None:
        raise RetryableError("order store not available")
    keys = [k["_id"] async for k in db[CORRELATIONS].aggregate(
        [{"$group": {"_id": "$key", "at": {"$max": "$at"}}}, {"$sort": {"at": -1}}])]
    out = []
    for key in keys:
        members, expected = await _members(services, key)
        row = {k: v for k, v in summary(key, members, expected).items() if k not in ("members", "takers")}
        if state is None or row["state"] == state:
            out.append(row)
        if len(out) >= limit:
            break
    return out


async def decide(services: Services, key: str, decision: str, *, who: str, reason: str | None = None
                 ) -> dict[str, Any]:
    """Hand an operator's decision to every member still waiting; record it in the action log."""
    from flows.cancel import _record
    from flows.http import _emit

    if decision not in DECISIONS:
        raise ValueError(f"decision is one of {', '.join(DECISIONS)}")
    db = services.db
    if db is None:
        raise RetryableError("order store not available")
    rows = [r["order_id"] async for r in db[CORRELATIONS].find({"key": key}, {"order_id": 1})]
    docs = [d async for d in db[ORDERS].find({"_id": {"$in": rows}}, _FIELDS)] if rows else []
    if not docs:
        raise NoGroup(f"no fusion group {key!r} (no member reached the wait)")
    sent = []
    for doc in docs:
        node = _waiting_node(doc)
        if node is None or (doc.get("state") or {}).get("status") != "running":
            continue
        n = len(((doc.get("state") or {}).get("data") or {}).get("fusion_decisions") or [])
        env = Envelope(type="stage.submit", source="hub", protocol="internal", correlation_id=doc["_id"],
                       idempotency_key=f"fusion:{doc['_id']}:{decision}#{n}", product=doc.get("product"),
                       scenario=doc.get("scenario"),
                       payload={"stage": node, "data": {"decision": decision, **({"reason": reason} if reason else {})},
                                "submitted_by": who})
        outcome = await _emit(services, env, content={"decision": decision, "reason": reason})
        if not isinstance(outcome, bool):
            raise RetryableError(f"the decision for {doc['_id']} could not be stored (HTTP {outcome.status})")
        sent.append(doc["_id"])
        await _record(db, who=who, order_id=doc["_id"], reason=reason or f"fusion {decision} {key}", result="ok",
                      detail=f"fusion group {key}: {decision}", action=f"fusion_{decision}")
    if not sent:
        raise NothingWaiting(f"fusion group {key}: no member is waiting (nothing to {decision})")
    return {"fusion_key": key, "decision": decision, "orders": sent, "waiting": len(sent)}


def mask_group(group: dict[str, Any], mask: Any) -> dict[str, Any]:
    """The listing's masking (SPEC §7) of a group, except its takers' names and phones: those are the
    maintenance team's work contacts, which D.1.7 requires shown on every member (透明化展示), not
    customer data. The installation address and customer fields stay masked."""
    out = dict(mask(group))
    out["takers"] = group["takers"]
    for masked, plain in zip(out["members"], group["members"], strict=True):
        masked["taker"] = plain["taker"]
    return out
