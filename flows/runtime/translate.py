"""Envelopes on ``{p}.orders`` → engine events, and engine commands → outbound envelopes. Pure.

Why a separate module: the engine speaks plain JSON events and commands (flows/graph/commands.py);
the hub speaks envelopes (hub/envelope.py) on topics. This is the one place that maps one onto the
other, so the runner stays glue and the mapping is unit-tested without servers.

Mapping (envelope ``type`` → event):

* ``order.received`` → ``order_received`` (``data`` = the canonical order payload)
* ``call.result`` (the delivery agent's answer) → ``call_result`` or ``report_result`` (the id says
  which: engine ids end in ``:report`` for reports). A *successful* synchronous answer of a step in
  ``callback`` or ``poll`` mode means "accepted" (``pending``); a poll's answer is the result unless
  it says it is not ready (``pending: true`` or ``status`` pending/processing/running). A partner's
  "no" (``rejected``: it answered, by its success rule a refusal) is handed to the engine as a failed
  result — the blueprint decides (``on_failure``, the G3 text). A delivery that could not reach the
  partner (attempts exhausted, dead-lettered) is **not** a "no": the call stays open and the order
  shows it blocked until the dead letter is replayed (one command away, README). Reports: any failure
  is the G2 gate's business (``report_result ok false``, re-sent by ``order.retry``).
* ``callback`` → ``call_result via callback`` (``callback_ref`` is the engine's call id); an interim
  callback of a partner that replies in stages (``status`` accepted/processing/…, the construction
  platform's 阶段回复) is ``pending``: the step waits for the final one, whose result is handed over
  on top of the fields the interim stages reported (``progress``, flows/runtime/progress.py)
* ``stage.submit`` → ``submission``; ``order.retry`` → ``retry``; ``order.cancel`` → ``cancel``;
  ``order.suspend`` / ``order.resume``; ``timer.fired`` → ``timer_fired``; ``order.message`` →
  ``message``; ``subflow.finished``.
"""

from __future__ import annotations

from typing import Any

from flows.graph.model import Blueprint, CallSpec
from hub.envelope import Envelope

__all__ = ["PENDING_STATUSES", "call_step", "to_event"]

#: a poll answer with one of these ``status`` values means "no result yet"
PENDING_STATUSES = frozenset({"pending", "processing", "running", "doing", "in_progress", "accepted"})
_OK_TEXTS = frozenset({"ok", "success", "succeeded", "0", "1", "true", "completed", "done"})
_SIMPLE = {"order.retry": "retry", "order.cancel": "cancel", "order.suspend": "suspend", "order.resume": "resume",
           "timer.fired": "timer_fired", "order.message": "message", "subflow.finished": "subflow_finished"}


def what(command_id: str) -> str:
    """What an engine id names (``O1:7:report`` → ``report``)."""
    return command_id.rsplit(":", 1)[-1]


def call_step(bp: Blueprint, state: dict[str, Any], call_id: str) -> CallSpec | None:
    """The call step a token waits on with ``call_id`` (its mode decides how answers are read)."""
    for token in state.get("tokens", {}).values():
        wait = token.get("wait") or {}
        if wait.get("call_id") == call_id and "step" in wait:
            spec = bp.nodes.get(token["node"])
            steps = getattr(spec, "steps", None)
            if steps and wait["step"] < len(steps):
                step: CallSpec = steps[wait["step"]]
                return step
    return None


def _poll_pending(response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    if response.get("pending") is True:
        return True
    return str(response.get("status", "")).lower() in PENDING_STATUSES


def _rest_body(response: Any) -> Any:
    """A REST sink's answer is ``{http_status, body}``: a poll's "not yet" and its result are the body
    (CAM's 结果执行查询接口 answers ``status: processing`` there, B.7)."""
    if isinstance(response, dict) and "http_status" in response and isinstance(response.get("body"), dict):
        return response["body"]
    return response


def to_event(env: Envelope, bp: Blueprint | None, state: dict[str, Any] | None,
             open_calls: dict[str, dict[str, Any]], progress: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The engine event for ``env`` (None: nothing for the engine — e.g. a dead-lettered call).

    ``open_calls`` are the document's commands awaiting an answer (id → command), which say what a
    result answers (a poll answers the call it queries); ``progress`` the document's staged replies
    so far (node → what the interim callbacks reported)."""
    p = env.payload
    t = env.type
    if t == "order.received":
        return {"type": "order_received", "order_id": env.correlation_id, "data": dict(p)}
    if t in _SIMPLE:
        event = {k: v for k, v in p.items() if k != "type"}
        event["type"] = _SIMPLE[t]
        return event
    if t == "stage.submit":
        user = {"id": str(p.get("submitted_by") or "operator")}
        return {"type": "submission", "node": p.get("stage"), "fields": dict(p.get("data") or {}), "user": user}
    if t == "callback":
        if str(p.get("status", "")).lower() in PENDING_STATUSES:  # a staged partner's interim reply
            return {"type": "call_result", "call_id": p.get("callback_ref"), "pending": True, "via": "callback"}
        ok = str(p.get("status", "ok")).lower() in _OK_TEXTS
        result = _staged(p, progress)
        result.setdefault("ok", ok)
        return {"type": "call_result", "call_id": p.get("callback_ref"), "ok": ok, "result": result,
                "via": "callback"}
    if t == "call.result":
        return _result_event(p, bp, state, open_calls)
    return None


def _staged(p: dict[str, Any], progress: dict[str, Any] | None) -> dict[str, Any]:
    """A final callback's ``result`` over the fields its call's interim stages reported (the later
    wins), so a blueprint's ``save`` keeps what only an interim stage said (P14's 设计员, say)."""
    own = dict(p.get("result") or {})
    ref = p.get("callback_ref")
    for entry in (progress or {}).values():
        if isinstance(entry, dict) and ref and entry.get("call_id") == ref and not entry.get("final"):
            return {**(entry.get("fields") or {}), **own}
    return own


def _result_event(p: dict[str, Any], bp: Blueprint | None, state: dict[str, Any] | None,
                  open_calls: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    cid = str(p.get("call_id") or "")
    ok = bool(p.get("ok"))
    response = p.get("response")
    if what(cid) == "report":
        error = None if ok else str(p.get("error") or "report not accepted")
        return {"type": "report_result", "report_id": cid, "ok": ok, "error": error}
    command = open_calls.get(cid) or {}
    result = response if isinstance(response, dict) else {"response": response}
    if not ok and p.get("rejected"):  # the partner said no: the blueprint decides (on_failure, G3 text)
        target = cid if command.get("purpose") != "poll" else str((command.get("payload") or {}).get("call_id"))
        return {"type": "call_result", "call_id": target, "ok": False,
                "result": {**result, "ok": False, "error": p.get("error")}, "via": "sync"}
    if not ok:
        return None  # delivery gave up: the call stays open, blocked until its dead letter is replayed
    if command.get("purpose") == "poll":
        target = str((command.get("payload") or {}).get("call_id") or "")
        answer = _rest_body(response)
        if _poll_pending(answer):
            return {"type": "call_result", "call_id": target, "pending": True, "via": "poll"}
        return {"type": "call_result", "call_id": target, "result": answer if isinstance(answer, dict) else result,
                "via": "poll"}
    step = call_step(bp, state, cid) if bp is not None and state is not None else None
    if step is not None and step.mode in ("callback", "poll"):
        return {"type": "call_result", "call_id": cid, "pending": True, "via": "sync"}
    result = dict(result)
    result.setdefault("ok", True)
    return {"type": "call_result", "call_id": cid, "ok": True, "result": result, "via": "sync"}
