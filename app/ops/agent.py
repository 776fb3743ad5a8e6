"""The periodic evaluator in every worker (``AGENT_MODULES``): a Faust timer every
``HUB_OPS_EVAL_INTERVAL_S`` runs :meth:`app.ops.evaluator.Evaluator.cycle`; the cycle's lease makes
one worker of several evaluate per interval. The first tick seeds the rule library from
config/rules/*.yaml (rules never seen before only) — a bad rules file stops the worker at start,
like a bad blueprint. The same tick runs the replay policies (app/ops/replay_policy.py) under their
own lease."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust

from app.admin.replay import ReplayService
from app.ops.actions import RetryAction
from app.ops.evaluator import Evaluator, take_lease
from app.ops.notify import Notifier
from app.ops.replay_policy import run_policies
from app.ops.rules import RuleStore, load_rule_files
from app.ops.settings import OpsSettings
from hub.services import Services

__all__ = ["register_agents"]

log = logging.getLogger(__name__)


def register_agents(app: faust.App, runtime: Services) -> None:
    ops = OpsSettings()
    config = load_rule_files(runtime.settings.config_dir)  # ConfigError (file:line: key) before start
    state: dict[str, Any] = {}

    async def tick() -> None:
        db = runtime.db
        if db is None:
            return
        ev = state.get("evaluator")
        if ev is None or ev.db is not db:
            await RuleStore(db).seed(config.rules)
            replays = ReplayService(db, runtime.producer, runtime.partners,
                                    max_patched_bytes=runtime.settings.replay_patch_max_bytes)
            state["replays"] = replays
            ev = state["evaluator"] = Evaluator(db, settings=ops, owner=runtime.settings.worker_id,
                                                on_raised=[RetryAction(replays), Notifier(config.sinks, db)])
        try:
            report = await ev.cycle()
        except Exception:  # the database down: the next tick tries again
            log.exception("rule evaluation cycle failed")
            return
        if report is not None and (report.raised or report.cleared or report.errors):
            log.info("rules: %d orders, %d rules, %d raised, %d cleared, %.2fs", report.orders, report.rules,
                     report.raised, report.cleared, report.wall_s)
        now = time.time()
        if await take_lease(db, "replay-policies", runtime.settings.worker_id, now, ops.eval_interval_s * 0.9):
            try:
                for run in await run_policies(db, state["replays"], datetime.fromtimestamp(now, UTC)):
                    if run.get("replayed"):
                        log.info("replay policy %s: %d replayed (%s)", run["partner"], run["replayed"],
                                 run.get("because"))
            except Exception:
                log.exception("replay policies failed")

    app.timer(ops.eval_interval_s, name="ops-rules")(tick)
