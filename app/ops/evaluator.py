"""One evaluation cycle: every enabled stuck-order rule over every open order, alerts raised and
self-resolved, the overview snapshot written, the gauges set.

Continuous and safe with several workers: each worker's timer (app/ops/agent.py) calls
:meth:`Evaluator.cycle`; a lease document (``ops_leases``, a conditional update: one winner) lets one
worker run a cycle per interval and lets another take over ``lease_s`` after a worker died mid-cycle.
If two cycles overlap anyway (a lapsed lease, ``force``), the unique ``one_open`` index of
app/ops/alerts.py still gives each alert once, and only the insert that won notifies.

Cost: one indexed scan of the open orders (``by_status_created``: status prefix) with the projection
of app/ops/facts.py, in batches; facts and CEL run in a thread per batch (the loop is never held),
then one query of the open alert keys and two bulk writes. Time comes from ``clock`` (tests inject
it: no sleeps).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import DuplicateKeyError

from app.ops import metrics
from app.ops.alerts import AlertStore, open_key
from app.ops.facts import OPEN_STATUSES, PROJECTION, facts
from app.ops.kinds import indicator_holding, interface_holding
from app.ops.rules import RULES, Rule, RuleStore
from app.ops.settings import OpsSettings
from flows.documents import CALLS, ORDERS
from flows.graph.expr import ExprError, compile_expr

__all__ = ["OVERVIEW", "CycleReport", "Evaluator", "evaluate_batch"]

log = logging.getLogger(__name__)
LEASES = "ops_leases"
OVERVIEW = "ops_overview"
CYCLE = "order-rules"
COUNTS = ("in_flight", "overdue", "due_soon", "stuck", "blocked")

#: an action of a raised alert beyond storing it (retry, notify): ``(alert) -> None``
AlertHook = Callable[[dict[str, Any]], Awaitable[None]]


#: a rule holding for an order: the rule, the order's facts, its external id
Holding = tuple[Rule, dict[str, Any], Any]


def new_alert(held: Holding, order_id: str) -> dict[str, Any]:
    """The alert document (less what the store adds) of a rule that started holding for an order."""
    rule, f, external = held
    return {"kind": "order", "rule_id": rule.id, "rule_name": rule.name, "severity": rule.severity,
            "action": rule.action.type, "team": rule.action.team if rule.action.type == "escalate" else None,
            "notify": rule.notify, "subject": order_id, "order_id": order_id, "product": f["product"],
            "scenario": f["scenario"], "stage": f["stage"], "external_order_id": external,
            "summary": f"{rule.name}: order {order_id} at {f['stage'] or '-'} for "
                       f"{f['time_in_stage_s'] / 60:.0f} min", "facts": f}


async def take_lease(db: AsyncIOMotorDatabase[Any], name: str, owner: str, now: float, hold_s: float) -> bool:
    """Take the periodic job ``name`` for ``hold_s`` unless it is held (one conditional upsert: one winner)."""
    try:
        await db[LEASES].find_one_and_update({"_id": name, "lease_until": {"$lte": now}},
                                             {"$set": {"owner": owner, "lease_until": now + hold_s}}, upsert=True)
    except DuplicateKeyError:  # the document exists and a lease holds
        return False
    return True


@dataclass
class BatchResult:
    holding: dict[str, Holding] = field(default_factory=dict)  # open_key -> what holds
    rows: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class CycleReport:
    at: float
    orders: int = 0
    rules: int = 0
    holding: int = 0
    raised: int = 0
    cleared: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate_batch(docs: list[dict[str, Any]], rules: list[Rule], now: float, due_soon_share: float) -> BatchResult:
    """Pure and CPU-bound (run in a thread): the facts of each order, each rule in scope, the counts."""
    out = BatchResult()
    compiled = [(r, compile_expr(r.when)) for r in rules]
    for doc in docs:
        f = facts(doc, now)
        scope = {"data": f, "now": now, "order_id": doc["_id"]}
        stuck = False
        for rule, expr in compiled:
            if not rule.scope.matches(f):
                continue
            try:
                held = expr.test(scope)
            except ExprError as exc:
                out.errors[rule.id] = str(exc)
                out.error_counts[rule.id] = out.error_counts.get(rule.id, 0) + 1
                continue
            if not held:
                continue
            stuck = True
            out.matched[rule.id] = out.matched.get(rule.id, 0) + 1
            # only a reference: the alert document is built for the few that are new (new_alert)
            out.holding[open_key(rule.id, doc["_id"])] = (rule, f, doc.get("external_order_id"))
        row = out.rows.setdefault((f["product"], f["stage"]), dict.fromkeys(COUNTS, 0))
        row["in_flight"] += 1
        row["overdue"] += f["overdue"]
        row["due_soon"] += (not f["overdue"] and f["sla_share"] is not None and f["sla_share"] >= due_soon_share)
        row["stuck"] += stuck
        row["blocked"] += f["blocked"]
    return out


def _merge(into: BatchResult, part: BatchResult) -> None:
    into.holding.update(part.holding)
    for key, row in part.rows.items():
        mine = into.rows.setdefault(key, dict.fromkeys(COUNTS, 0))
        for k, v in row.items():
            mine[k] += v
    for rid, n in part.matched.items():
        into.matched[rid] = into.matched.get(rid, 0) + n
    for rid, n in part.error_counts.items():
        into.error_counts[rid] = into.error_counts.get(rid, 0) + n
    into.errors.update(part.errors)


class Evaluator:
    def __init__(self, db: AsyncIOMotorDatabase[Any], *, settings: OpsSettings | None = None,
                 clock: Callable[[], float] = time.time, owner: str = "hub",
                 on_raised: list[AlertHook] | None = None) -> None:
        self.db = db
        self.settings = settings or OpsSettings()
        self.clock = clock
        self.owner = owner
        self.alerts = AlertStore(db)
        self.rules = RuleStore(db)
        self.on_raised = on_raised or []

    async def _lease(self, now: float) -> bool:
        return await take_lease(self.db, CYCLE, self.owner, now, self.settings.lease_s)

    async def _release(self, started: float) -> None:
        """Hold the cycle until most of the interval has passed: a tick of another worker meanwhile
        skips it, the next interval's tick (of any worker) takes it."""
        await self.db[LEASES].update_one({"_id": CYCLE, "owner": self.owner},
                                         {"$set": {"lease_until": started + self.settings.eval_interval_s * 0.9}})

    async def cycle(self, *, force: bool = False) -> CycleReport | None:
        """One evaluation; None when another worker holds the cycle (``force`` ignores the lease)."""
        now = self.clock()
        if not force and not await self._lease(now):
            return None
        wall = time.perf_counter()
        cpu0 = time.process_time()
        every = await self.rules.enabled_rules()
        rules = [r for r in every if r.kind == "order"]
        report = CycleReport(at=now, rules=len(every))
        total = await self.scan(rules, now)
        report.orders = sum(r["in_flight"] for r in total.rows.values())
        at = datetime.fromtimestamp(now, UTC)
        raised, report.cleared = await self._settle("order", total.holding, lambda k, h: new_alert(h, h[1]["order_id"]),
                                                    at)
        report.holding, report.errors = len(total.holding), total.errors
        for kind, find in (("interface", interface_holding), ("indicator", indicator_holding)):
            mine = [r for r in every if r.kind == kind]
            held = await find(self.db, mine, now, report.errors) if mine else {}
            more, cleared = await self._settle(kind, held, lambda k, a: a, at)
            raised += more
            report.cleared += cleared
            report.holding += len(held)
            for r in mine:
                total.matched[r.id] = sum(1 for a in held.values() if a["rule_id"] == r.id)
        report.raised = len(raised)
        for rid, n in total.error_counts.items():
            metrics.RULE_ERRORS.labels(rid).inc(n)
        await self._rule_stats(rules, total, at)
        await self._snapshot(total, at)
        report.wall_s = round(time.perf_counter() - wall, 4)
        report.cpu_s = round(time.process_time() - cpu0, 4)
        metrics.CYCLE_SECONDS.observe(report.wall_s)
        if not force:
            await self._release(now)
        return report

    async def scan(self, rules: list[Rule], now: float, query: dict[str, Any] | None = None) -> BatchResult:
        """Every open order (or those of ``query``) through :func:`evaluate_batch`, batch by batch."""
        total = BatchResult()
        share = self.settings.due_soon_share
        batch: list[dict[str, Any]] = []
        cursor = self.db[ORDERS].find({"status": {"$in": list(OPEN_STATUSES)}, **(query or {})}, PROJECTION,
                                      batch_size=self.settings.batch)
        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= self.settings.batch:
                _merge(total, await asyncio.to_thread(evaluate_batch, batch, rules, now, share))
                batch = []
        if batch:
            _merge(total, await asyncio.to_thread(evaluate_batch, batch, rules, now, share))
        return total

    async def _settle(self, kind: str, holding: dict[str, Any], build: Callable[[str, Any], dict[str, Any]],
                      at: datetime) -> tuple[list[dict[str, Any]], int]:
        """Raise what newly holds (``build`` makes its alert), clear what no longer does; the raised
        alerts' hooks run here (retry, notify) — only for the inserts this worker won."""
        open_keys = await self.alerts.open_keys(kind)
        new = [build(k, h) for k, h in holding.items() if k not in open_keys]
        cleared = [aid for k, aid in open_keys.items() if k not in holding]
        raised = await self.alerts.raise_many(new, at)
        n_cleared = await self.alerts.clear(cleared, at)
        if cleared:
            metrics.ALERTS_CLEARED.labels(kind).inc(len(cleared))
        for alert in raised:
            metrics.ALERTS_RAISED.labels(alert["rule_id"], alert["severity"]).inc()
            for hook in self.on_raised:
                try:
                    await hook(alert)
                except Exception:  # an action failing (a sink down) must not stop the cycle
                    log.exception("action of alert %s failed", alert["_id"])
        return raised, n_cleared

    async def _rule_stats(self, rules: list[Rule], total: BatchResult, at: datetime) -> None:
        for rule in rules:
            await self.db[RULES].update_one({"_id": rule.id}, {"$set": {
                "last_evaluated_at": at, "holding": total.matched.get(rule.id, 0),
                "last_error": total.errors.get(rule.id)}})

    async def _snapshot(self, total: BatchResult, at: datetime) -> None:
        since = datetime.fromtimestamp(at.timestamp() - self.settings.failure_window_s, UTC)
        calls = self.db[CALLS]
        n_calls = await calls.count_documents({"started_at": {"$gte": since}})
        n_failed = await calls.count_documents({"started_at": {"$gte": since},
                                                "outcome": {"$in": ["failed", "dead_lettered"]}})
        rate = round(n_failed / n_calls, 4) if n_calls else 0.0
        rows: list[dict[str, Any]] = [{"product": p, "stage": s, **counts}
                                      for (p, s), counts in sorted(total.rows.items())]
        totals = {k: sum(r[k] for r in rows) for k in COUNTS}
        await self.db[OVERVIEW].replace_one({"_id": "orders"}, {
            "at": at, "rows": rows, "totals": totals, "due_soon_share": self.settings.due_soon_share,
            "api": {"window_s": self.settings.failure_window_s, "calls": n_calls, "failed": n_failed,
                    "failure_rate": rate}}, upsert=True)
        metrics.OVERVIEW.clear()
        for r in rows:
            for k in ("in_flight", "overdue", "due_soon", "stuck"):
                metrics.OVERVIEW.labels(r["product"] or "-", r["stage"] or "-", k).set(r[k])
        metrics.API_FAILURE_RATE.set(rate)
