"""The order document in MongoDB — the source of truth for an order's state.

One document per order in ``orders`` (``_id`` = hub order id). Every external call is also kept
flat in ``calls`` (one document per call, all attempts inside) so API statistics and "list failed
calls" never scan order documents. Outbound side effects that succeeded are recorded in
``deliveries`` by idempotency key, so a replay never repeats a partner side effect.

Pending work can be re-derived from these documents alone (the embedded broker keeps topics in
memory): an order whose ``status`` is ``in_flight``/``waiting`` names its ``current_stage`` and its
open calls.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from hub.db import declare_indexes, retire_indexes
from hub.deadletter import Attempt

ORDERS = "orders"
CALLS = "calls"
DELIVERIES = "deliveries"


class OrderStatus(StrEnum):
    in_flight = "in_flight"
    waiting = "waiting"  # for a callback, a manual submission, a gated report, a fusion group
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class CallOutcome(StrEnum):
    pending = "pending"
    ok = "ok"
    failed = "failed"  # attempts exhausted or permanent error → dead letter
    dead_lettered = "dead_lettered"


class CallRecord(BaseModel):
    """One external call (all attempts). Stored embedded in the order and flat in ``calls``."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    order_id: str
    partner: str
    operation: str = Field(examples=["notifyOrderResult", "design_request", "progress_report"])
    stage: str | None = None
    idempotency_key: str
    request: dict[str, Any] = Field(default_factory=dict, description="masked")
    response: Any = None
    outcome: CallOutcome = CallOutcome.pending
    error: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    dead_letter_id: str | None = None


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    kind: str
    entered_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    submitted_by: str | None = Field(default=None, examples=["system", "operator:zhang", "partner:resource"])
    outcome: str | None = None
    sla_deadline: datetime | None = None
    blocked_reason: str | None = Field(default=None, description="e.g. gated progress report failed")
    data: dict[str, Any] = Field(default_factory=dict)


# Every index is paid on every write of the collection: SecantusDB deletes and re-inserts each index
# entry of a replaced document whose fields changed (≈ 0.3-0.6 ms per index per write; an order is
# written ~9 times, a call row twice). So only what a frequent path needs: the SOAP/cancel lookup by
# external id, "what changed since" (the real-time report sweep: an ``updated_at`` range), the
# operators' "orders at stage X" and the listings' created_at sort; the status scans (recovery,
# gauges, the ops evaluator, the overview's drill-down) use app/admin/listing.py's by_status_created.
# Calls: by time (statistics, failed-call lists: a time range, partner/operation/outcome checked per
# row) and by order.
#
# by_updated replaced by_status_product (status, product, updated_at): the report sweep asked for
# every status with product and updated_at bounds, and the embedded server serves a query from the
# first clause an index leads with — ``status $in`` every status — so it read every order ever
# written, every 2 s: 1,348 ms per sweep at 20,000 orders (growing with the collection; in a 200 MB
# file ingest with the flows running it saturated the database at 20,000 orders and the ingest fell
# from ~330 to ~11 records/s). Led by ``updated_at`` it reads only what changed since the watermark:
# 4.4 ms. The same index count, and updated_at was already a field of the old one, so writes cost
# the same (1,000 updated_at writes 3.95-7.49 s vs 4.25-5.00 s, noise). Measured with
# `python -m bench.orders_indexes` (20,000 synthetic orders, SecantusDB, this machine, 2026-12-02).
declare_indexes(
    ORDERS,
    IndexModel([("partner", ASCENDING), ("external_order_id", ASCENDING)], name="by_external"),
    IndexModel([("updated_at", ASCENDING), ("status", ASCENDING), ("product", ASCENDING)], name="by_updated"),
    IndexModel([("current_stage", ASCENDING), ("status", ASCENDING)], name="by_stage"),
    IndexModel([("created_at", DESCENDING)], name="by_created"),
)
declare_indexes(CALLS, IndexModel([("order_id", ASCENDING)], name="by_order"))
retire_indexes(ORDERS, "by_overdue", "by_status_product")
retire_indexes(CALLS, "by_op_time", "by_outcome_time")
declare_indexes(DELIVERIES, IndexModel([("delivered_at", DESCENDING)], name="by_time"))
