"""The operations center's service layer, shared by the admin API (app/ops/api.py) and the CLI
(app/cli/rules.py, alerts.py, overview.py): rules checked against the blueprint library and the
configured sinks, alert handling, and every change recorded in the admin action log (``dlq_actions``,
the same collection and shape as replays, discards and cancels: ``hub dlq history`` shows them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.ops.alerts import AlertFilter, AlertStore
from app.ops.rules import RuleStore, load_rule_files, parse_rule
from flows.graph.check import partner_operations
from flows.graph.library import load_library
from hub.deadletter import ACTIONS
from hub.envelope import new_id
from hub.metrics import DLQ_ACTIONS
from hub.partners import Partner

__all__ = ["ALERT_COLUMNS", "OpsService", "scopes_of"]

ALERT_COLUMNS = [("id", "alert"), ("kind", "kind"), ("rule_id", "rule"), ("rule_name", "rule name"),
                 ("severity", "severity"), ("status", "status"), ("subject", "subject"), ("order_id", "order"),
                 ("product", "product"), ("stage", "stage"), ("assignee", "assignee"), ("raised_at", "raised (UTC)"),
                 ("cleared_at", "cleared (UTC)"), ("updated_at", "updated (UTC)"), ("summary", "summary")]


_SCOPES: dict[Path, dict[str, set[str]]] = {}


def scopes_of(config_dir: Path, partners: dict[str, Partner]) -> dict[str, set[str]]:
    """``product -> node names`` of every blueprint the worker runs (what a rule scope may name);
    once per process and folder (the library's checks cost seconds; blueprints change with a deploy)."""
    cached = _SCOPES.get(config_dir)
    if cached is not None:
        return cached
    scopes: dict[str, set[str]] = {}
    for bp in load_library(config_dir, partner_operations(partners)):
        if bp.product:
            scopes.setdefault(bp.product, set()).update(bp.nodes)
    _SCOPES[config_dir] = scopes
    return scopes


class OpsService:
    def __init__(self, db: AsyncIOMotorDatabase[Any], config_dir: Path, partners: dict[str, Partner]) -> None:
        self.db = db
        config = load_rule_files(config_dir)
        self.config_rules = config.rules
        self.rules = RuleStore(db, None, [s.name for s in config.sinks])
        self.alerts = AlertStore(db)
        self.config_dir = config_dir
        self.partners = partners

    async def _scopes(self) -> None:
        """The blueprint library is loaded (in a thread: ~2 s of CPU for the shipped flows) the first
        time a rule is written, not for every listing."""
        if self.rules.scopes is None:
            self.rules.scopes = await asyncio.to_thread(scopes_of, self.config_dir, self.partners)

    async def audit(self, who: str, action: str, detail: str, *, order_id: str | None = None,
                    reason: str | None = None) -> None:
        DLQ_ACTIONS.labels(action, "ok").inc()
        await self.db[ACTIONS].insert_one({
            "_id": new_id(), "at": datetime.now(UTC), "who": who, "action": action, "result": "ok",
            "dead_letter_id": None, "topic": None, "order_id": order_id, "detail": detail, "replay_count": None,
            "patch": None, "reason": reason, "batch": None})

    # --- rules --------------------------------------------------------------------------------------
    async def seed(self) -> int:
        return await self.rules.seed(self.config_rules)

    async def add_rule(self, data: dict[str, Any], who: str) -> dict[str, Any]:
        rule = parse_rule(data)
        await self._scopes()
        out = await self.rules.add(rule, who)
        await self.audit(who, "rule.add", f"rule {rule.id}: {rule.when}")
        return out

    async def edit_rule(self, rule_id: str, changes: dict[str, Any], who: str) -> dict[str, Any]:
        await self._scopes()
        out = await self.rules.edit(rule_id, changes, who)
        await self.audit(who, "rule.edit", f"rule {rule_id}: {', '.join(sorted(changes))}")
        return out

    async def enable_rule(self, rule_id: str, enabled: bool, who: str) -> dict[str, Any]:
        out = await self.rules.set_enabled(rule_id, enabled, who)
        await self.audit(who, "rule.enable" if enabled else "rule.disable", f"rule {rule_id}")
        return out

    async def delete_rule(self, rule_id: str, who: str) -> bool:
        done = await self.rules.delete(rule_id, who)
        if done:
            await self.audit(who, "rule.delete", f"rule {rule_id}")
        return done

    # --- alerts -------------------------------------------------------------------------------------
    async def act(self, alert_id: str, action: str, who: str, *, note: str = "",
                  assignee: str | None = None) -> dict[str, Any]:
        out = await self.alerts.act(alert_id, action, who, note=note, assignee=assignee)
        await self.audit(who, f"alert.{action}", f"alert {alert_id}: {note or assignee or ''}".strip(),
                         order_id=out.get("order_id"))
        return out

    async def alert_batches(self, flt: AlertFilter, limit: int, chunk: int = 2000
                            ) -> AsyncIterator[list[dict[str, Any]]]:
        """The alerts of ``flt`` in export batches (newest first, at most ``limit``)."""
        done = 0
        while done < limit:
            rows = await self.alerts.list(flt, limit=min(chunk, limit - done), skip=done)
            if not rows:
                return
            yield rows
            done += len(rows)
