"""The order document of a v2 order: the engine state, the outbox, the timers and what operators read.

Why one document: the state, the commands an event caused and the timers it started are written in
**one single-document write** (MongoDB makes that atomic without transactions), so after a crash
either the event happened — and its commands are in the outbox, to be sent — or it did not, and the
event is redelivered (its Kafka offset is committed only after the write). Nothing sits between two
stores.

Top-level fields kept from v1 (flows/documents.py) because the admin API, the CLI and the console read
them: ``status`` (in_flight | waiting | completed | failed | cancelled), ``current_stage``, ``stages``
(the timeline, from the engine's ``trail``), ``sla_deadline``, ``blocked_reason``, timestamps. v2
adds ``state``, ``outbox`` (commands not yet carried out), ``open_calls`` (calls and reports sent,
no answer yet — re-sent from here after a broker loss), ``timers`` / ``next_timer_at`` (durable
timers), ``rev`` (fresh per write), ``blueprint`` / ``digest`` (the pinned version), ``applied``
(recent event ids: a redelivered event changes nothing), ``parent`` (a sub-flow's parent order),
``progress`` (a staged partner's interim callbacks per node, flows/runtime/progress.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from flows.graph.model import Blueprint

__all__ = ["RELAYED", "apply_commands", "epoch", "new_document", "project", "ts", "unrunnable_document"]

#: commands the relay carries out (the rest change the document itself)
RELAYED = frozenset({"send_call", "send_report", "publish", "start_subflow", "cancel_subflow", "notify_parent"})
MAX_APPLIED = 32
FINAL = frozenset({"completed", "failed", "cancelled"})


def ts(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class Pinned(Protocol):
    """What an order document records of its blueprint (a Blueprint, or nothing for an unrunnable order)."""

    @property
    def name(self) -> str | None: ...
    @property
    def product(self) -> str | None: ...
    @property
    def scenario(self) -> str | None: ...
    def digest(self) -> str | None: ...


def new_document(order_id: str, env_fields: dict[str, Any], bp: Pinned, now: float) -> dict[str, Any]:
    """An order document before its first event is applied (``env_fields``: origin, ids, payload)."""
    at = ts(now)
    return {
        "_id": order_id, "order_id": order_id, "partner": env_fields.get("partner", ""),
        "external_order_id": env_fields.get("external_order_id", ""), "product": bp.product or "",
        "scenario": bp.scenario or "", "order": env_fields.get("order", {}), "blueprint": bp.name,
        "digest": bp.digest(), "engine": 2, "parent": env_fields.get("parent"), "status": "in_flight",
        "state": None, "outbox": [], "open_calls": {}, "timers": {}, "next_timer_at": None, "timer_lease": 0.0,
        "outbox_at": None, "outbox_lease": 0.0, "applied": [], "replies": [], "current_stage": None,
        "current_nodes": [], "stages": [], "blocked_reason": None, "waiting_for": None, "sla_deadline": None,
        "created_at": at, "updated_at": at, "completed_at": None, "outcome": None,
        "received_via": env_fields.get("protocol"), "intake_envelope_id": env_fields.get("envelope_id"),
        "submitted_by": f"partner:{env_fields.get('partner', '')}",
    }


def apply_commands(doc: dict[str, Any], commands: list[dict[str, Any]], now: float, seq_base: int) -> None:
    """Fold one step's commands into the document: relayed ones into the outbox, timers into
    ``timers``, replies and the finish into the document itself."""
    for i, command in enumerate(commands):
        kind = command["type"]
        if kind == "start_timer":
            doc["timers"][command["timer_id"]] = {"at": float(command["at"]), "purpose": command["purpose"],
                                                  "node": command["node"]}
        elif kind == "cancel_timer":
            doc["timers"].pop(command["timer_id"], None)
        elif kind == "reply":
            doc["replies"] = [*doc["replies"][-19:], {**command, "at": now}]
        elif kind == "finish":
            doc["outcome"] = command.get("reason") or command["status"]
            if doc.get("parent"):
                doc["outbox"].append({"type": "notify_parent", "id": f"{doc['_id']}:finished",
                                      "parent": doc["parent"], "status": command["status"]})
        elif kind in RELAYED:
            entry = {**command, "id": _command_id(command, doc["_id"], seq_base, i)}
            doc["outbox"].append(entry)
            if kind in ("send_call", "send_report"):  # awaiting an answer until its result arrives
                doc["open_calls"][entry["id"]] = {**entry, "sent_at": None}
    if doc["outbox"]:
        doc["outbox_at"] = doc.get("outbox_at") or ts(now)
    due = [t["at"] for t in doc["timers"].values()]
    doc["next_timer_at"] = ts(min(due)) if due else None


def _command_id(command: dict[str, Any], order_id: str, seq_base: int, index: int) -> str:
    for key in ("call_id", "report_id", "child_id"):
        if command.get(key):
            return f"{command[key]}" + ("" if key != "child_id" else f":{command['type']}")
    return f"{order_id}:{seq_base}:{index}:{command['type']}"


def project(doc: dict[str, Any], bp: Blueprint, now: float) -> None:
    """Derive what operators read from the engine state (status, current stage, timeline, SLA: the
    order's G7 clock and its nodes' timeouts)."""
    state = doc["state"] or {}
    status = state.get("status", "running")
    tokens = sorted(state.get("tokens", {}).values(), key=lambda t: t["id"])
    doc["current_nodes"] = [t["node"] for t in tokens]
    doc["current_stage"] = tokens[0]["node"] if tokens else None
    doc["updated_at"] = ts(now)
    doc["stages"] = [_stage(e, bp) for e in state.get("trail", [])]
    _stage_progress(doc)
    doc["sla_deadline"], doc["sla"] = _sla(doc, state)
    if status in FINAL:
        doc.update(status=status, completed_at=doc.get("completed_at") or ts(now), current_stage=None,
                   waiting_for=None, blocked_reason=None if status == "completed" else doc.get("outcome"),
                   duration_ms=round((now - epoch(doc["created_at"])) * 1000, 1), sla_deadline=None)
        return
    doc["blocked_reason"] = _blocked(doc, bp, tokens)
    busy = any(not c.get("dead_letter_id") and (c["type"] == "send_report" or c.get("purpose") in ("call", "poll"))
               for c in doc["open_calls"].values())
    doc["status"] = "in_flight" if busy else "waiting"
    doc["waiting_for"] = ", ".join(_waiting(t, bp) for t in tokens) or None


def _sla(doc: dict[str, Any], state: dict[str, Any]) -> tuple[datetime | None, dict[str, Any] | None]:
    """``sla_deadline``: the earliest of the order's G7 clock (flows/graph/sla.py; still shown once it
    ran out, so the order reads overdue; none while an operator holds the order: the clock is paused)
    and its nodes' timeouts; and ``sla``, the clock itself as operators read it."""
    due = [t["at"] for t in doc["timers"].values() if t["purpose"] == "timeout"]
    clock = state.get("sla")
    if not clock:
        return (ts(min(due)) if due else None), None
    paused = "remaining" in clock
    if not paused and "stopped_at" not in clock:
        due.append(clock["deadline"])
    shown = {"started_at": ts(clock["started_at"]), "after_s": clock["after_s"],
             "deadline": None if paused else ts(clock["deadline"]),
             "due_soon_at": None if paused else ts(clock["due_soon_at"]),
             "fired_at": ts(clock["fired_at"]) if clock.get("fired_at") is not None else None,
             "paused_remaining_s": round(clock["remaining"], 3) if paused else None, "met": clock.get("met")}
    return (ts(min(due)) if due else None), shown


def _blocked(doc: dict[str, Any], bp: Blueprint, tokens: list[dict[str, Any]]) -> str | None:
    """Why the order does not move on, with what the user does about it (None: nothing is wrong).

    Three ways a failure holds a v2 order: a call whose delivery gave up (blocked until its dead
    letter is replayed), a gated report the partner refused (G2: the token waits in the node until
    the user's retry re-sends it) and a call the partner refused, sent down its ``on_failure`` path
    (G3: the order waits there; the reason is the engine's status text in ``data._calls``)."""
    blocked = [c for c in doc["open_calls"].values() if c.get("dead_letter_id")]
    if blocked:
        c = blocked[0]
        return (f"{c.get('operation')} at {c.get('partner')} failed: {c.get('error')}; "
                f"replay dead letter {c['dead_letter_id']} to continue")
    for token in tokens:
        spec = bp.nodes.get(token["node"])
        for gate in (token.get("gates") or {}).values():
            if gate.get("ok") is False and spec is not None and gate.get("index", len(spec.reports)) < len(
                    spec.reports):
                r = spec.reports[gate["index"]]
                return (f"{r.operation} to {r.partner} failed at {token['node']}: {gate.get('error')}; "
                        f"retry stage {token['node']} to send it again")
    for token in tokens:  # a fusion group past its deadline waits for an operator (flows/fusion/kinds.py)
        wait = token.get("wait") or {}
        if wait.get("incomplete"):
            return (f"fusion group {wait.get('key')} incomplete: {len(wait.get('messages') or {}) + 1} of "
                    f"{wait.get('count')} orders after the deadline; hub fusion release|wait|cancel {wait.get('key')}")
    data = (doc["state"] or {}).get("data") or {}
    log = data.get("_calls") or []
    last = log[-1] if log else {}
    failed = bp.nodes.get(str(last.get("node"))) if last and not last.get("ok") else None
    if failed is not None and getattr(failed, "on_failure", None) in {t["node"] for t in tokens}:
        partner = next((s.partner for s in getattr(failed, "steps", []) if s.operation == last.get("operation")),
                       "?")
        return f"{last.get('operation')} at {partner} failed: {last.get('text')}"
    return None


def _waiting(token: dict[str, Any], bp: Blueprint) -> str:
    spec = bp.nodes.get(token["node"])
    kind = spec.kind if spec is not None else "?"
    if token.get("phase") != "active":
        return f"{token['node']} (progress report)"
    return f"{token['node']} ({kind})"


def _stage_progress(doc: dict[str, Any]) -> None:
    """A staged partner's progress (flows/runtime/progress.py) on the timeline: the latest visit of
    its node shows the latest status, the fields reported so far and how many stages came."""
    for node, entry in (doc.get("progress") or {}).items():
        visits = [s for s in doc["stages"] if s["stage"] == node]
        if visits and isinstance(entry, dict):
            visits[-1]["progress"] = {"status": entry.get("status"), "at": entry.get("updated_at"),
                                      "fields": entry.get("fields") or {}, "stages": len(entry.get("stages") or []),
                                      "final": bool(entry.get("final"))}


def _stage(entry: dict[str, Any], bp: Blueprint) -> dict[str, Any]:
    spec = bp.nodes.get(entry["node"])
    left = entry.get("left_at")
    return {"stage": entry["node"], "title": (spec.title if spec else "") or entry["node"],
            "kind": spec.kind if spec else "?", "entered_at": ts(entry["at"]),
            "finished_at": ts(left) if left is not None else None, "outcome": entry.get("outcome"),
            "duration_ms": round((left - entry["at"]) * 1000, 1) if left is not None else None}


def unrunnable_document(order_id: str, env_fields: dict[str, Any], product: str, scenario: str, reason: str,
                        now: float, *, report_to_origin: bool) -> dict[str, Any]:
    """An accepted order no blueprint runs (one removed after intake admitted it; issue 8 item 2):
    ``failed`` with the reason — and, when the origin declares a ``close_report`` operation, a
    failure report to it in the outbox (same request shape as a blueprint's close-report,
    ``resultCode`` "0"), so an accepted order never fails silently."""
    at = ts(now)
    doc = {**new_document(order_id, env_fields, _NoBlueprint(product, scenario), now),
           "status": "failed", "outcome": reason, "blocked_reason": reason, "completed_at": at, "digest": None,
           "blueprint": None}
    if report_to_origin:
        call_id = f"{order_id}:0:call"
        command = {"type": "send_call", "id": call_id, "call_id": call_id, "partner": doc["partner"],
                   "operation": "close_report", "purpose": "call", "node": "intake",
                   "payload": {"orderId": doc["external_order_id"], "hubOrderId": order_id, "resultCode": "0",
                               "resultDesc": reason, "finishTime": at.isoformat(timespec="seconds")}}
        doc["outbox"] = [command]
        doc["open_calls"] = {call_id: {**command, "sent_at": None}}
        doc["outbox_at"] = at
    return doc


class _NoBlueprint:
    """What new_document reads of a blueprint, for an order that has none."""

    def __init__(self, product: str, scenario: str) -> None:
        self.product: str | None = product
        self.scenario: str | None = scenario
        self.name: str | None = None

    def digest(self) -> str | None:
        return None
