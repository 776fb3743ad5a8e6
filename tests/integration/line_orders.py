"""Internet-line orders (config/flows/internet_line/open.yaml, P02.1) driven to the end in the
fault tests: the field user fills the manual 业务验证 stage as it comes up, and the assertions a
user makes about a finished order (its timeline, its calls, one close-report each).

Why a helper: the v2 line flow has a manual ``verification`` stage (v1 had none), so an order in a
kill or broker-restart test only completes when someone submits it. An empty form passes (the
international-sites question defaults to 否); a submission repeated for the same visit is one
effect (idempotency key ``submit:<id>:verification#<visit>``), so submitting on every probe is safe.
"""

from __future__ import annotations

from typing import Any

from tests.integration.flow_harness import FlowEnv

#: the timeline of a completed internet-line order with construction (every node the order entered)
LINE_STAGES = ["accept", "design", "construction", "resource_entry", "resource_config", "activation",
               "verification", "archive", "close_report", "done"]
#: the partner operations a completed order called, each once, in the flat ``calls`` collection
LINE_CALLS = {"design_request", "construction_order", "resource_entry", "resource_config", "activation",
              "archive", "close_report"}


async def all_completed(env: FlowEnv, ids: list[str]) -> bool:
    """True once every order completed; meanwhile submits ``verification`` of each order waiting at it."""
    done = 0
    async for doc in env.db.orders.find({"_id": {"$in": ids}}, {"status": 1, "current_stage": 1}):
        if doc.get("status") == "completed":
            done += 1
        elif doc.get("current_stage") == "verification":
            status, body = await env.submit(doc["_id"], "verification", {})
            assert status in (202, 409), (status, body)  # 409: applied since we read it
    return done == len(ids)


async def stuck(env: FlowEnv, ids: list[str]) -> list[dict[str, Any]]:
    """What the orders that did not complete show an operator (for the failure message)."""
    keys = ("_id", "status", "current_stage", "blocked_reason", "waiting_for", "outbox", "timers")
    return [{k: d.get(k) for k in keys}
            async for d in env.db.orders.find({"_id": {"$in": ids}, "status": {"$ne": "completed"}})]


async def calls_by_order(env: FlowEnv, ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """order id → sorted (operation, outcome) of its settled calls (the flat ``calls`` collection)."""
    out: dict[str, list[tuple[str, str]]] = {order_id: [] for order_id in ids}
    async for c in env.db.calls.find({"order_id": {"$in": ids}}, {"order_id": 1, "operation": 1, "outcome": 1}):
        out[c["order_id"]].append((c["operation"], c["outcome"]))
    return {order_id: sorted(calls) for order_id, calls in out.items()}


def line_calls_ok() -> list[tuple[str, str]]:
    """What :func:`calls_by_order` shows for a completed line order: each operation once, ok."""
    return sorted((op, "ok") for op in LINE_CALLS)
