"""A staged partner's interim callbacks: the call stays open and the order shows where the work is.

Why: a partner that replies in stages (the construction platform's 阶段回复, CATALOGUE P14 §1.3; WSP's
fusion_dispatch: accepted → processing 上门施工 → completed) posts several callbacks for one call. The
engine reads an interim one as "not yet" (flows/runtime/translate.py PENDING_STATUSES) and changes
nothing; the runtime must then (1) keep the call in ``open_calls`` — the callback endpoint lets a
partner post only for an order with an open call to it (flows/http.py ``_owns``), so dropping the call
on the first interim callback refused every later one with 403 (found by ``hub demo --all``, 0ddd58b) —
and (2) record what the stage said, because §3.1.1.5 wants the construction's live progress
(施工项目经理, 经理电话, 工程状态, 设计员, …) on the order page while it runs, not only at the end.

What is kept, in ``doc["progress"][node]`` (runtime-owned, outside the engine state):
``call_id``, ``partner``, ``operation``, ``status`` (the latest callback's), ``updated_at``, ``final``,
``fields`` (every stage's ``result`` merged, the later winning) and ``stages`` (each callback: status,
time, result; at most :data:`MAX_STAGES`). The order's timeline entry of that node carries the same
summary (``project`` in document.py). A duplicate delivery (the same body twice: the same idempotency
key, recorded per stage) records nothing again. The final callback's result handed to the engine is
the merged fields under the final's own (translate.py ``to_event``), so a blueprint's ``save`` keeps what
only an interim stage said (the designer of the design stage, say).
"""

from __future__ import annotations

from typing import Any

from flows.runtime.document import ts
from flows.runtime.translate import PENDING_STATUSES
from hub.envelope import Envelope

__all__ = ["MAX_STAGES", "interim", "record"]

#: stages kept per node (a partner that reports every few minutes must not grow the document forever)
MAX_STAGES = 20
#: characters of a stage's text value kept (a partner's free text is shown, not stored whole: twenty stages
#: of a callback near the 1 MiB intake limit would not fit the 16 MiB order document)
MAX_VALUE_CHARS = 500


def interim(payload: dict[str, Any]) -> bool:
    """Is this callback an interim stage (the call stays open), not the final result?"""
    return str(payload.get("status", "")).lower() in PENDING_STATUSES


def _clip(value: Any) -> Any:
    return value[:MAX_VALUE_CHARS] if isinstance(value, str) else value


def record(work: dict[str, Any], env: Envelope, now: float) -> bool:
    """Record the callback ``env`` on the open call it answers (``work``: the document being written).

    Interim: the call stays open, the stage is added to the node's progress. Final: the call leaves
    ``open_calls``; a node with progress gets the final status. True when the document changed
    (False: no open call for it — late, or another order's — or a duplicate of a recorded stage)."""
    p = env.payload
    ref = str(p.get("callback_ref") or "")
    call = work["open_calls"].get(ref)
    if call is None:
        return False
    node = str(call.get("node") or "")
    progress = dict(work.get("progress") or {})
    entry = progress.get(node)
    if entry is None or entry.get("call_id") != ref:  # first stage of this call (or a new visit of the node)
        entry = {"call_id": ref, "partner": call.get("partner"), "operation": call.get("operation"),
                 "fields": {}, "stages": [], "final": False}
    else:
        entry = {**entry, "fields": dict(entry.get("fields") or {}), "stages": list(entry.get("stages") or [])}
    if any(s.get("key") == env.idempotency_key for s in entry["stages"]):
        return False  # the same callback delivered again: one effect
    is_interim = interim(p)
    if not is_interim:
        del work["open_calls"][ref]
        if not entry["stages"]:
            return True  # a one-callback reply: nothing staged to show beyond the engine's result
    raw = p.get("result")
    result: dict[str, Any] = raw if isinstance(raw, dict) else {}
    at = ts(now)
    shown = {str(k): _clip(v) for k, v in result.items()}
    entry["fields"].update(shown)
    entry["stages"] = [*entry["stages"][-(MAX_STAGES - 1):],
                       {"status": str(p.get("status", "")), "at": at, "result": shown, "key": env.idempotency_key}]
    entry.update(status=str(p.get("status", "")), updated_at=at, final=not is_interim)
    progress[node] = entry
    work["progress"] = progress
    return True
