"""What a rule sees of an order: a small flat dict of *facts* computed from the order document.

Why facts and not the document: a rule author writes ``data.time_in_stage_s > 4 * 3600``, not a walk
through the engine's tokens and trail, and the evaluator reads only the fields the facts need
(:data:`PROJECTION`) from 100,000 open orders per cycle. The facts are pure functions of the document
and ``now`` (an injected clock: tests never sleep). Times are seconds; a fact that does not apply is
``null`` (``has()`` is not needed: compare against null or use ``data.x != null``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["FACTS", "OPEN_STATUSES", "PROJECTION", "facts"]

OPEN_STATUSES = ("in_flight", "waiting")

#: the fields of an order document the facts are computed from
PROJECTION: dict[str, int] = {
    "product": 1, "scenario": 1, "partner": 1, "current_stage": 1, "status": 1, "sla_deadline": 1,
    "created_at": 1, "updated_at": 1, "blocked_reason": 1, "waiting_for": 1, "external_order_id": 1,
    "state.tokens": 1, "state.data._calls": 1, "open_calls": 1,
}

#: every fact a rule may read as ``data.<name>``, and what it means (docs/operations.md lists them)
FACTS: dict[str, str] = {
    "order_id": "the hub's order id",
    "product": "the order's product (e.g. internet_line)",
    "scenario": "its scenario (open, change, ...)",
    "partner": "the partner the order came from",
    "stage": "the current stage (node) name",
    "status": "in_flight (a call or report is out) or waiting (callback, user, gate, timer)",
    "waiting_for": "what the order waits for, as `hub orders show` prints it",
    "blocked": "true when the order is held by a failure (blocked_reason is set)",
    "age_s": "seconds since the order was received",
    "time_in_stage_s": "seconds since the current stage was entered",
    "since_answer_s": "seconds since the last partner answer (since receipt when none came yet)",
    "failed_calls": "partner calls of this order that failed (engine log)",
    "dead_letters": "calls whose delivery gave up and wait in the dead-letter queue",
    "open_calls": "calls and reports sent and not yet answered",
    "oldest_call_s": "seconds the oldest unanswered call has waited (null when none)",
    "gate_failed": "true when a gated progress report was refused and waits for a retry",
    "gate_held_s": "seconds the stage has been held by its gated reports (null when none)",
    "sla_left_s": "seconds until the SLA deadline, negative once overdue (null without SLA)",
    "sla_share": "share of the stage's SLA already used: 0.8 = 80 % (null without SLA)",
    "overdue": "true when past the SLA deadline",
}


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def facts(doc: dict[str, Any], now: float) -> dict[str, Any]:
    """The facts of one order document (projected with :data:`PROJECTION`) at ``now`` (epoch s)."""
    state = doc.get("state") or {}
    tokens = list((state.get("tokens") or {}).values())
    stage = doc.get("current_stage")
    created = _epoch(doc.get("created_at")) or now
    here = [t for t in tokens if t.get("node") == stage]
    since = min((_epoch(t.get("since")) or now for t in here), default=None)
    if since is None:
        since = _epoch(doc.get("updated_at")) or created
    log = (state.get("data") or {}).get("_calls") or []
    answered = max((_epoch(c.get("at")) or 0.0 for c in log), default=0.0)
    open_calls = list((doc.get("open_calls") or {}).values())
    sent = [s for s in (_epoch(c.get("sent_at")) for c in open_calls) if s is not None]
    held = [now - (_epoch(t.get("since")) or now) for t in tokens if t.get("phase") in ("enter", "exit")]
    deadline = _epoch(doc.get("sla_deadline"))
    share = None
    if deadline is not None:
        span = deadline - since
        share = round((now - since) / span, 4) if span > 0 else (1.0 if now >= deadline else 0.0)
    return {
        "order_id": doc.get("_id"), "product": doc.get("product") or "", "scenario": doc.get("scenario") or "",
        "partner": doc.get("partner") or "", "stage": stage or "", "status": doc.get("status") or "",
        "waiting_for": doc.get("waiting_for") or "", "blocked": bool(doc.get("blocked_reason")),
        "age_s": round(now - created, 3), "time_in_stage_s": round(now - since, 3),
        "since_answer_s": round(now - (answered or created), 3),
        "failed_calls": sum(1 for c in log if c.get("ok") is False),
        "dead_letters": sum(1 for c in open_calls if c.get("dead_letter_id")),
        "open_calls": len(open_calls),
        "oldest_call_s": round(now - min(sent), 3) if sent else None,
        "gate_failed": any(g.get("ok") is False for t in tokens for g in (t.get("gates") or {}).values()),
        "gate_held_s": round(max(held), 3) if held else None,
        "sla_left_s": round(deadline - now, 3) if deadline is not None else None,
        "sla_share": share,
        "overdue": deadline is not None and deadline < now,
    }
