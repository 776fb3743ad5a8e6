"""The ``retry`` action of a raised alert: replay the order's stuck call (its dead letter) with the
same claim, audit record and idempotency key as ``hub orders retry`` (app/admin/replay.py), recorded
as ``rule:<id>``. An order with no dead letter (stuck for another reason) gets a handling record
saying so; nothing is sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.admin.replay import NotFound, Refused, ReplayService
from app.ops.alerts import ALERTS

__all__ = ["RetryAction"]


class RetryAction:
    def __init__(self, replays: ReplayService) -> None:
        self.replays = replays

    async def __call__(self, alert: dict[str, Any]) -> None:
        if alert.get("action") != "retry" or not alert.get("order_id"):
            return
        who = f"rule:{alert['rule_id']}"
        try:
            letter = await self.replays.letter_for_order(alert["order_id"])
        except (NotFound, Refused) as exc:
            note = f"nothing to retry: {exc}"
        else:
            result = await self.replays.replay_one(letter, who=who, reason=f"alert {alert['_id']}")
            note = f"replayed dead letter {letter}: {result.result} {result.detail or ''}".strip()
        await self.replays.db[ALERTS].update_one({"_id": alert["_id"]}, {"$push": {"records": {
            "at": datetime.now(UTC), "who": who, "action": "retry", "note": note}}})
