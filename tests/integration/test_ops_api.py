"""The operations center over HTTP (aiohttp test server, real MongoDB): roles, rule CRUD with clear
errors and the audit log, the overview and its drill-down, alert handling, exports, /metrics."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openpyxl import load_workbook

from app.admin.replay import ReplayService
from app.ops.actions import RetryAction
from app.ops.evaluator import Evaluator
from app.ops.settings import OpsSettings
from flows.documents import ORDERS
from hub.deadletter import ACTIONS
from hub.deadletter import COLLECTION as DEAD_LETTERS
from tests.integration.test_admin_api import OPERATOR, VIEWER, client, rt
from tests.integration.test_dlq import seed
from tests.unit.ops_rules_test import T0, order

pytestmark = pytest.mark.integration
__all__ = ["client"]  # the fixture, shared with test_admin_api
RULE = {"id": "DESIGN-1H", "name": "internet line design over an hour",
        "scope": {"product": "internet_line", "stage": "design"}, "when": "data.time_in_stage_s > 3600",
        "severity": "major"}


async def _rules_crud_roles_errors_and_audit(client: TestClient) -> None:
    assert (await client.post("/admin/v1/rules", json=RULE, headers=VIEWER)).status == 403
    assert (await client.get("/admin/v1/rules")).status == 401
    bad = await client.post("/admin/v1/rules", headers=OPERATOR, json={
        **RULE, "when": "data.time_in_stge_s > 1", "scope": {"product": "nope"}})
    problem = await bad.json()
    assert bad.status == 400 and bad.content_type == "application/problem+json"
    assert [e["field"] for e in problem["errors"]] == ["when"] and "unknown fact" in problem["errors"][0]["message"]
    scoped = await client.post("/admin/v1/rules", headers=OPERATOR, json={**RULE, "scope": {"product": "nope"}})
    assert scoped.status == 400 and "no blueprint runs product 'nope'" in (await scoped.json())["errors"][0]["message"]
    created = await client.post("/admin/v1/rules", json=RULE, headers=OPERATOR)
    assert created.status == 201 and (await created.json())["version"] == 1
    assert (await client.post("/admin/v1/rules", json=RULE, headers=OPERATOR)).status == 409
    found = await (await client.get("/admin/v1/rules?q=line%20DESIGN", headers=VIEWER)).json()
    assert [r["id"] for r in found] == ["DESIGN-1H"]
    assert await (await client.get("/admin/v1/rules?q=nothing-like-it", headers=VIEWER)).json() == []
    edited = await client.patch("/admin/v1/rules/DESIGN-1H", headers=OPERATOR,
                                json={"when": "data.time_in_stage_s > 7200", "scope": {"stage": "archive"}})
    body = await edited.json()
    assert edited.status == 200 and body["version"] == 2 and body["scope"] == {
        "product": "internet_line", "scenario": None, "stage": "archive", "partner": None, "operation": None} and (
        body["updated_by"] == "api:otto")
    wrong = await client.patch("/admin/v1/rules/DESIGN-1H", headers=OPERATOR, json={"scope": {"stage": "nowhere"}})
    assert wrong.status == 400
    assert (await (await client.post("/admin/v1/rules/DESIGN-1H/disable", headers=OPERATOR)).json())["enabled"] is False
    assert (await client.delete("/admin/v1/rules/DESIGN-1H", headers=OPERATOR)).status == 204
    assert (await client.get("/admin/v1/rules/DESIGN-1H", headers=VIEWER)).status == 404
    db = rt(client).db
    assert db is not None
    audit = [(d["who"], d["action"]) async for d in db[ACTIONS].find({}).sort("at", 1)]
    assert audit == [("api:otto", "rule.add"), ("api:otto", "rule.edit"), ("api:otto", "rule.disable"),
                     ("api:otto", "rule.delete")]


async def _overview_alerts_handling_and_exports(client: TestClient) -> None:
    db = rt(client).db
    assert db is not None
    assert (await client.post("/admin/v1/rules", json=RULE, headers=OPERATOR)).status == 201  # again: deleted
    now = T0 + 7200
    await db[ORDERS].insert_many([order("late", since=T0, deadline=now - 5), order("new", since=now - 10),
                                  order("g", product="5g_lan", stage="accept")])
    await Evaluator(db, settings=OpsSettings(), clock=lambda: now).cycle()
    snap = await (await client.get("/admin/v1/overview", headers=VIEWER)).json()
    cell = next(r for r in snap["rows"] if r["product"] == "internet_line")
    assert (cell["in_flight"], cell["overdue"], cell["stuck"]) == (2, 1, 1) and snap["totals"]["in_flight"] == 3
    drill = await (await client.get("/admin/v1/overview/orders?state=stuck&product=internet_line",
                                    headers=VIEWER)).json()
    assert [o["order_id"] for o in drill["items"]] == ["late"] and drill["items"][0]["alerts"][0]["rule_id"] == (
        "DESIGN-1H")
    assert (await client.get("/admin/v1/overview/orders?state=bogus", headers=VIEWER)).status == 400
    listed = await (await client.get("/admin/v1/alerts?rule=DESIGN-1H", headers=VIEWER)).json()
    assert listed["total"] == 1
    aid = listed["items"][0]["id"]
    assert (await client.post(f"/admin/v1/alerts/{aid}/ack", headers=VIEWER)).status == 403
    acked = await client.post(f"/admin/v1/alerts/{aid}/ack", headers=OPERATOR, json={"note": "on it"})
    assert acked.status == 200 and (await acked.json())["status"] == "tracking"
    refused = await client.post(f"/admin/v1/alerts/{aid}/close", headers=OPERATOR)
    assert refused.status == 409 and refused.content_type == "application/problem+json"
    assert (await client.post("/admin/v1/alerts/AL-nope/ack", headers=OPERATOR)).status == 404
    shown = await (await client.get(f"/admin/v1/alerts/{aid}", headers=VIEWER)).json()
    assert [(r["who"], r["action"]) for r in shown["records"]] == [("system", "raised"), ("api:otto", "ack")]

    resp = await client.get("/admin/v1/alerts/export?format=csv&status=any", headers=VIEWER)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert [(r["alert"], r["status"], r["order"], r["assignee"]) for r in rows] == [(aid, "tracking", "late",
                                                                                    "api:otto")]
    resp = await client.get("/admin/v1/alerts/export?format=xlsx", headers=VIEWER)
    ws = load_workbook(io.BytesIO(await resp.read()), read_only=True)["alerts"]
    table: list[Any] = list(ws.iter_rows(values_only=True))
    assert table[0][:3] == ("alert", "kind", "rule") and table[1][:3] == (aid, "order", "DESIGN-1H")
    assert (await client.get("/admin/v1/alerts/export?format=pdf", headers=VIEWER)).status == 400
    listed_orders = await (await client.get("/admin/v1/exports/orders?product=internet_line", headers=VIEWER)).json()
    assert {o["id"] for o in listed_orders} == {"late", "new"} and all("first_dispatch_at" in o for o in listed_orders)
    stage_csv = await client.get("/admin/v1/exports/stages?format=csv", headers=VIEWER)
    assert stage_csv.status == 200 and (await stage_csv.read()).decode("utf-8-sig").startswith("product,stage")
    metrics = await (await client.get("/metrics")).text()
    assert 'hub_ops_orders{product="internet_line",stage="design",state="stuck"} 1.0' in metrics


async def _retry_action_replays_the_stuck_call(client: TestClient) -> None:
    """``action: retry``: the order's dead letter is replayed once, audited as ``rule:<id>``."""
    runtime = rt(client)
    db = runtime.db
    assert db is not None
    letter = await seed(runtime, "held")
    rule = {"id": "HELD", "name": "held by a dead letter", "when": "data.dead_letters > 0",
            "action": {"type": "retry"}}
    assert (await client.post("/admin/v1/rules", json=rule, headers=OPERATOR)).status == 201
    await db[ORDERS].insert_one(order("held", open_calls={"c": {"sent_at": T0, "dead_letter_id": letter.id}}))
    replays = ReplayService(db, runtime.producer, runtime.partners)
    ev = Evaluator(db, settings=OpsSettings(), clock=lambda: T0 + 60, on_raised=[RetryAction(replays)])
    await ev.cycle(force=True)
    await ev.cycle(force=True)  # still holding: not replayed twice
    stored = await db[DEAD_LETTERS].find_one({"_id": letter.id})
    assert stored is not None and stored["status"] == "replayed" and stored["replay_count"] == 1
    who = [d["who"] async for d in db[ACTIONS].find({"dead_letter_id": letter.id})]
    assert who == ["rule:HELD"]
    (alert,) = (await (await client.get("/admin/v1/alerts?rule=HELD", headers=VIEWER)).json())["items"]
    shown = await (await client.get(f"/admin/v1/alerts/{alert['id']}", headers=VIEWER)).json()
    assert shown["records"][-1]["who"] == "rule:HELD" and f"replayed dead letter {letter.id}: ok" in (
        shown["records"][-1]["note"])


async def test_rules_overview_and_alerts_over_http(client: TestClient) -> None:
    """One hub for every part (a runtime start costs seconds): the CRUD first, then the same rule
    id added again after its deletion raises, is handled and exported; then the retry action and the
    replay policies."""
    await _rules_crud_roles_errors_and_audit(client)
    await _overview_alerts_handling_and_exports(client)
    await _retry_action_replays_the_stuck_call(client)
    await _replay_policies_replay_once_the_partner_answers_again(client)


async def _replay_policies_replay_once_the_partner_answers_again(client: TestClient) -> None:
    """Paused, outside its hours, partner still failing: nothing; the partner answered: replayed with
    the policy's audit name; a second run finds nothing pending. Policies over HTTP with roles."""
    from datetime import UTC, datetime, timedelta

    from app.ops.replay_policy import run_policies
    from flows.documents import CALLS

    runtime = rt(client)
    db = runtime.db
    assert db is not None
    letters = [await seed(runtime, f"p{i}") for i in range(3)]
    body = {"rate": 50, "hours": "00:00-24:00", "max_per_run": 10}
    assert (await client.put("/admin/v1/replay-policies/esop", json=body, headers=VIEWER)).status == 403
    bad = await client.put("/admin/v1/replay-policies/esop", json={**body, "hours": "8-20"}, headers=OPERATOR)
    assert bad.status == 400 and "hours" in (await bad.json())["detail"]
    assert (await client.put("/admin/v1/replay-policies/esop", json=body, headers=OPERATOR)).status == 200
    replays = ReplayService(db, runtime.producer, runtime.partners)
    now = datetime.now(UTC)
    (run,) = await run_policies(db, replays, now)
    assert run["replayed"] == 0 and "not answered" in run["skipped"]
    await db[CALLS].insert_one({"_id": "ok1", "partner": "esop", "operation": "notifyOrderResult",
                                "outcome": "ok", "started_at": now + timedelta(seconds=1)})
    assert (await client.post("/admin/v1/replay-policies/esop/pause", headers=OPERATOR)).status == 200
    assert (await run_policies(db, replays, now))[0]["skipped"] == "paused"
    await client.post("/admin/v1/replay-policies/esop/resume", headers=OPERATOR)
    night = {**body, "hours": "22:00-06:00"}
    await client.put("/admin/v1/replay-policies/esop", json=night, headers=OPERATOR)
    noon = now.replace(hour=12)
    assert "outside" in (await run_policies(db, replays, noon))[0]["skipped"]
    await client.put("/admin/v1/replay-policies/esop", json=body, headers=OPERATOR)
    (run,) = await run_policies(db, replays, now)
    assert run["replayed"] == 3 and run["because"].startswith("call ok1")
    for letter in letters:
        stored = await db[DEAD_LETTERS].find_one({"_id": letter.id})
        assert stored is not None and stored["status"] == "replayed"
    ids = [x.id for x in letters]
    assert {d["who"] async for d in db[ACTIONS].find({"action": "replay", "dead_letter_id": {"$in": ids}})} == {
        "policy:esop"}
    assert (await run_policies(db, replays, now))[0]["skipped"] == "no pending dead letters"
    listed = await (await client.get("/admin/v1/replay-policies", headers=VIEWER)).json()
    assert listed[0]["partner"] == "esop" and listed[0]["last_run"]["skipped"] == "no pending dead letters"
    assert (await client.delete("/admin/v1/replay-policies/esop", headers=OPERATOR)).status == 204
