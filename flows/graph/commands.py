"""The shapes of what goes into the pure engine (events) and what comes out (commands).

Why plain dicts: the state, the events and the commands are all documents that are stored (the order
document and its outbox, issue 10 §4) and recorded (the replay fixtures under tests/fixtures/flows/),
so they must be JSON as they are — no objects to serialise, nothing that differs between a live run
and a replay. These helpers are the one place that spells each shape; the docs (docs/flows-v2.md)
list the same fields.

Commands (``type``):
  ``send_call``      {call_id, partner, operation, payload, purpose: call|poll|cancel|compensate, node}
  ``send_report``    {report_id, partner, operation, payload, node, on: enter|exit|escalate|suspend|resume, gate}
  ``start_timer``    {timer_id, at, purpose: timeout|poll|timer|sla, node}   ``cancel_timer`` {timer_id}
  ``publish``        {key, order_id, payload}           (a correlation message for ``receive`` nodes)
  ``start_subflow``  {child_id, blueprint, input, node} ``cancel_subflow`` {child_id}
  ``reply``          {to: origin|submitter, node?, payload, errors?}
  ``finish``         {status: completed|failed|cancelled, reason}

Events (``type``):
  ``order_received`` {order_id, blueprint?, data}
  ``call_result``    {call_id, ok?, result, via: sync|callback|poll, pending?}
  ``report_result``  {report_id, ok, error?}           ``retry`` {node}  (G2: re-send failed gate reports)
  ``submission``     {node, fields, user}              ``timer_fired`` {timer_id}
  ``message``        {key, order_id, payload}          ``subflow_finished`` {child_id, status, data}
  ``cancel``         {reason, by?}                   (withdraw / terminate: interrupt, compensate, finish)
  ``suspend``        {reason, by?}                   ``resume`` {by?}  (D.1.8: both take effect at once)
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["EVENT_TYPES", "Command", "Event", "Status", "call", "finish", "reply", "report", "timer"]

Command = dict[str, Any]
Event = dict[str, Any]
Status = Literal["completed", "failed", "cancelled"]

EVENT_TYPES = frozenset({
    "order_received", "call_result", "report_result", "retry", "submission", "timer_fired", "message",
    "subflow_finished", "cancel", "suspend", "resume",
})


def call(call_id: str, partner: str, operation: str, payload: dict[str, Any], *, purpose: str,
         node: str) -> Command:
    return {"type": "send_call", "call_id": call_id, "partner": partner, "operation": operation,
            "payload": payload, "purpose": purpose, "node": node}


def report(report_id: str, partner: str, operation: str, payload: dict[str, Any], *, node: str, on: str,
           gate: bool) -> Command:
    return {"type": "send_report", "report_id": report_id, "partner": partner, "operation": operation,
            "payload": payload, "node": node, "on": on, "gate": gate}


def timer(timer_id: str, at: float, *, purpose: str, node: str) -> Command:
    return {"type": "start_timer", "timer_id": timer_id, "at": at, "purpose": purpose, "node": node}


def reply(to: Literal["origin", "submitter"], payload: dict[str, Any], **extra: Any) -> Command:
    return {"type": "reply", "to": to, "payload": payload, **extra}


def finish(status: Status, reason: str = "") -> Command:
    return {"type": "finish", "status": status, "reason": reason}
