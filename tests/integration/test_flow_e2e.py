"""The first products end to end, against real tansu + SecantusDB, a real ``hub run`` worker and
the partner simulators (ESOP over SOAP)."""

from __future__ import annotations

import pytest

from tests.integration.flow_harness import FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.support import eventually

pytestmark = pytest.mark.integration

INTERNET_STAGES = ["accept", "design", "construction", "resource_entry", "resource_config", "activation",
                   "close_out"]
CONSTRUCTION = {"designer": "李工", "designer_phone": "13900000001", "construction_manager": "王工",
                "construction_manager_phone": "13900000002", "investment": 12000, "resource_entry_result": "ok"}


def done(doc: dict) -> bool:
    return doc["status"] == "completed"


async def test_esop_internet_line_completes_with_one_soap_close_report(flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    order_id = await env.post_order("esop", "ESOP-E2E-1", "internet_line")
    doc = await env.wait_order(order_id, done)

    # every stage visited, in order, each with entered / finished time and a duration
    assert [s["stage"] for s in doc["stages"]] == INTERNET_STAGES
    for s in doc["stages"]:
        assert s["finished_at"] >= s["entered_at"] and s["duration_ms"] >= 0, s
        assert s["outcome"] == "submitted"
    assert doc["stages"][0]["data"]["team"] == "hz-install-1"  # team matched by city
    assert doc["completed_at"] is not None and doc["outcome"] == "completed"

    # every external call recorded, with request, response, attempts and duration; archive before close-report
    ops = [(c["partner"], c["operation"]) for c in doc["calls"]]
    assert ops == [("resource", "design_request"), ("construction", "construction_order"),
                   ("resource", "resource_entry"), ("resource", "resource_config"), ("ip_workbench", "activation"),
                   ("resource", "archive"), ("esop", "close_report")]
    assert all(c["outcome"] == "ok" and c["attempts"] and c["duration_ms"] is not None for c in doc["calls"])
    close = doc["calls"][-1]
    assert close["response"] == {"checkResult": 1, "parameterValue": "success"}
    design = doc["calls"][0]
    assert design["callback"]["result"]["design_id"].startswith("D-")  # async reply matched to the call
    # the flat call log (API statistics) is written right after the order document: it catches up at once
    async def flat_calls_ok() -> bool:
        return await env.db.calls.count_documents({"order_id": order_id, "outcome": "ok"}) == 7

    await eventually(flat_calls_ok, timeout=5)

    # ESOP received exactly one notifyOrderResult, a real SOAP call carrying the partner's order id
    received = env.sim.calls("esop", "notifyOrderResult")
    assert len(received) == 1
    assert received[0].body["orderId"] == "ESOP-E2E-1" and received[0].body["hubOrderId"] == order_id

    # the same order posted again is answered as a duplicate and has no second effect
    assert await env.post_order("esop", "ESOP-E2E-1", "internet_line") == order_id
    # the next order meets a duplicating 资管 and a late IP workbench: still one effect each
    sent_before = env.sim.state.callbacks_sent
    await env.sim.mode("resource", "duplicate_callback")
    await env.sim.mode("ip_workbench", "late_callback", delay_s=1.5)
    second = await env.post_order("esop", "ESOP-E2E-2", "internet_line")
    doc2 = await env.wait_order(second, done)
    assert [s["stage"] for s in doc2["stages"]] == INTERNET_STAGES and len(doc2["calls"]) == 7
    assert env.sim.state.callbacks_sent - sent_before == 4  # design twice, construction, activation
    assert [c.body["orderId"] for c in env.sim.calls("esop", "notifyOrderResult")] == ["ESOP-E2E-1", "ESOP-E2E-2"]


async def _count(env: FlowEnv, operation: str, n: int) -> bool:
    return len(env.sim.calls("esop", operation)) >= n


async def test_failing_progress_report_holds_the_order_until_the_partner_recovers(
        flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    await env.sim.mode("esop", "error")  # ESOP answers checkResult=0 to every progress report
    order_id = await env.post_order("group", "GRP-5GLAN-1", "5g_lan")

    held = await env.wait_order(order_id, lambda d: d["status"] == "waiting" and "B001processing to esop failed"
                                in (d.get("blocked_reason") or ""))
    assert held["current_stage"] == "accept" and held["phase"] == "entering"
    assert "ESOP模拟失败" in held["blocked_reason"]  # the partner's parameterValue, visible on the order
    # retried, and still held: it never entered the next stage
    await eventually(lambda: _count(env, "reportProgress", 3), timeout=20)
    held = await env.order(order_id)
    assert held is not None and [s["stage"] for s in held["stages"]] == ["accept"]
    assert held["stages"][0]["finished_at"] is None

    await env.sim.mode("esop", "ok")
    doc = await env.wait_order(order_id, lambda d: d["current_stage"] == "core_design" and d["phase"] == "active")
    assert doc["stages"][0]["finished_at"] is not None and doc["blocked_reason"] is None

    # manual stage: required fields checked before anything is accepted
    status, body = await env.submit(order_id, "core_design", {"upf_list": ["UPF-HZ-1"]})
    assert status == 400 and {e["field"] for e in body["errors"]} == {"data.smf_list", "data.udm_list"}
    status, _ = await env.submit(order_id, "core_construction", CONSTRUCTION)
    assert status == 409  # not the current stage
    status, _ = await env.submit(order_id, "core_design", {"upf_list": ["UPF-HZ-1"], "smf_list": ["SMF-1"],
                                                          "udm_list": ["UDM-1"]})
    assert status == 202
    await env.wait_order(order_id, lambda d: d["current_stage"] == "core_construction" and d["phase"] == "active")
    status, _ = await env.submit(order_id, "core_construction", CONSTRUCTION)
    assert status == 202
    doc = await env.wait_order(order_id, done)

    # every progress code reached both partners, in the blueprint's order
    codes = [c.body["progressCode"] for c in env.sim.calls("group", "progress_report")]
    assert codes == ["B001processing", "B002finished", "B003finished", "B005finished", "B004finished",
                     "B006processing"]
    ok_esop = [c.body["progressCode"] for c in env.sim.calls("esop", "reportProgress") if c.answered == "ok"]
    assert ok_esop == codes
    assert [c.body["descOutline"] for c in env.sim.calls("group", "progress_report")] == [1, 2, 2, 2, 2, 1]
    b002 = env.sim.calls("group", "progress_report")[1].body
    assert b002["operator"] == "operator:dev-operator"  # the submitter reports "finished"
    assert len(env.sim.calls("group", "close_report")) == 1 and len(env.sim.calls("esop", "notifyOrderResult")) == 1
    assert [s["stage"] for s in doc["stages"]][-1] == "close_report"
