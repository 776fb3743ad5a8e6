"""Intake checks of ESOP's four fusion fields (D.1.1): what one order can be refused for on its own.

Why at the intake: ESOP gets the reason in its answer instead of an order that waits for a group that
can never be complete. What needs the other members (the count, the ids or the key contradicting an
earlier member of the group) is checked where the members meet, at the wait (flows/fusion/kinds.py):
the intake's admission check is synchronous and has no database, and a contradicting member may
arrive days later — it is failed there with the reason, and an alert is recorded.
"""

from __future__ import annotations

from typing import Any

from hub.envelope import Envelope
from hub.errors import ValidationFailed

# related_order_ids may list the whole group or the other members (ESOP's 关联工单号 does not say): the
# group is the ids plus this order, and it must not exceed related_count (which includes this order).


def problems(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reason the order's fusion fields are refused (empty: admitted)."""
    f = payload.get("fusion")
    if not isinstance(f, dict):
        return []
    out: list[dict[str, Any]] = []
    count, ids, me = f.get("related_count"), list(f.get("related_order_ids") or []), payload.get("external_order_id")

    def bad(field: str, message: str) -> None:
        out.append({"field": f"fusion.{field}", "message": message, "type": "fusion_inconsistent"})

    if f.get("is_fusion", True) is False:
        if (isinstance(count, int) and count > 1) or len(ids) > 1:
            bad("is_fusion", f"is_fusion is false but the order names {max(count or 0, len(ids))} related orders")
        return out
    if not isinstance(count, int) or count < 2:
        bad("related_count", f"a fusion order needs related_count >= 2 (the group includes this order), got {count}")
    if len(set(ids)) != len(ids):
        bad("related_order_ids", f"related_order_ids lists an order twice: {ids}")
    group = set(ids) | {me}
    if ids and isinstance(count, int) and len(group) > count:
        bad("related_order_ids", f"related_order_ids and this order make {len(group)} orders but related_count "
                                 f"is {count}")
    return out


def admission(runtime: Any) -> Any:
    """The check the intake calls on every envelope (``hub.intake.Admit``; app/plugins.py)."""

    def admit(envelope: Envelope) -> None:
        if envelope.type != "order.received" or not isinstance(envelope.payload, dict):
            return
        found = problems(envelope.payload)
        if found:
            key = (envelope.payload.get("fusion") or {}).get("fusion_key")
            raise ValidationFailed(f"fusion group {key}: " + "; ".join(p["message"] for p in found), found)

    return admit
