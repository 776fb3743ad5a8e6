"""The shipped products end to end on the v2 engine, against real tansu + SecantusDB, a real
``hub run`` worker and the partner simulators (ESOP over SOAP): config/flows/internet_line/open.yaml
(P02.1) and config/flows/5g_lan/open.yaml (P25.2)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.flow_harness import FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.support import eventually

pytestmark = pytest.mark.integration

INTERNET_STAGES = ["accept", "design", "construction", "resource_entry", "resource_config", "activation",
                   "verification", "archive", "close_report", "done"]
INTERNET_CALLS = [("resource", "design_request"), ("construction", "construction_order"),
                  ("resource", "resource_entry"), ("resource", "resource_config"), ("ip_workbench", "activation"),
                  ("resource", "archive"), ("esop", "close_report")]
CONSTRUCTION = {"design_start": "2026-11-01", "designer": "李工", "designer_phone": "13900000001",
                "design_finish": "2026-11-03 18:00", "investment": 12000, "construction_start": "2026-11-04",
                "construction_manager": "王工", "construction_manager_phone": "13900000002",
                "construction_finish": "2026-11-20 17:30:00", "resource_entry_result": "ok"}


def done(doc: dict[str, Any]) -> bool:
    return doc["status"] == "completed"


def at(node: str, phase: str = "active") -> Any:
    """The order's one token waits at ``node`` in ``phase`` (enter: its entry reports are out)."""
    def check(doc: dict[str, Any]) -> bool:
        tokens = list(((doc.get("state") or {}).get("tokens") or {}).values())
        return [(t["node"], t["phase"]) for t in tokens] == [(node, phase)]
    return check


async def flat_calls(env: FlowEnv, order_id: str, kind: str = "call") -> list[dict[str, Any]]:
    """The order's settled calls in the flat ``calls`` collection, in the order they finished."""
    docs = [d async for d in env.db.calls.find({"order_id": order_id, "kind": kind})]
    return sorted(docs, key=lambda d: d["finished_at"])


async def run_internet_line(env: FlowEnv, external_id: str) -> dict[str, Any]:
    """Post an ESOP order, submit 业务验证 (no international sites: an empty form) when it waits there."""
    order_id = await env.post_order("esop", external_id, "internet_line")
    await env.wait_order(order_id, at("verification"))
    status, body = await env.submit(order_id, "verification", {})
    assert status == 202, body
    return await env.wait_order(order_id, done)


async def test_esop_internet_line_completes_with_one_soap_close_report(flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    doc = await run_internet_line(env, "ESOP-E2E-1")
    order_id = doc["_id"]

    # every stage visited, in order, each with entered / finished time and a duration
    assert [s["stage"] for s in doc["stages"]] == INTERNET_STAGES
    for s in doc["stages"]:
        assert s["finished_at"] >= s["entered_at"] and s["duration_ms"] >= 0, s
    assert [s["outcome"] for s in doc["stages"]] == ["left"] * (len(INTERNET_STAGES) - 1) + ["ended"]
    assert doc["state"]["data"]["team"] == "hz-install-1"  # team matched by city
    assert doc["completed_at"] is not None and doc["outcome"] == "done"  # the end node it reached
    assert doc["outbox"] == [] and doc["open_calls"] == {}

    # every external call in the flat call log, with response, attempts and duration; archive before
    # the close-report. It is written just before the order document: it is complete once the order is.
    calls = await flat_calls(env, order_id)
    assert [(c["partner"], c["operation"]) for c in calls] == INTERNET_CALLS
    assert all(c["outcome"] == "ok" and c["attempts"] and c["duration_ms"] is not None for c in calls), calls
    assert calls[-1]["response"] == {"checkResult": 1, "parameterValue": "success"}
    assert doc["state"]["data"]["design"]["design_id"].startswith("D-")  # async reply matched to the call

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
    doc2 = await run_internet_line(env, "ESOP-E2E-2")
    assert [s["stage"] for s in doc2["stages"]] == INTERNET_STAGES
    assert [(c["partner"], c["operation"]) for c in await flat_calls(env, doc2["_id"])] == INTERNET_CALLS
    # design twice, the construction platform's four stages (阶段回复: three interim, the result), activation
    assert env.sim.state.callbacks_sent - sent_before == 7
    assert [c.body["orderId"] for c in env.sim.calls("esop", "notifyOrderResult")] == ["ESOP-E2E-1", "ESOP-E2E-2"]


def esop_reports(env: FlowEnv, answered: str | None = None) -> list[Any]:
    return [c for c in env.sim.calls("esop", "reportProgress") if answered is None or c.answered == answered]


async def test_failing_progress_report_holds_the_order_until_the_user_retries(
        flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    await env.sim.mode("esop", "error")  # ESOP answers checkResult=0 to every progress report
    order_id = await env.post_order("group", "GRP-5GLAN-1", "5g_lan")

    def held_by_esop(doc: dict[str, Any]) -> bool:
        return at("accept", "enter")(doc) and "progress_report to esop failed" in (doc.get("blocked_reason") or "")

    held = await env.wait_order(order_id, held_by_esop)
    assert held["status"] == "waiting" and held["current_stage"] == "accept"
    assert "ESOP模拟失败" in held["blocked_reason"]  # the partner's parameterValue, visible on the order
    assert [c.answered for c in esop_reports(env)] == ["rejected"]

    # G2: nothing is re-sent until the user clicks again; a retry while ESOP still refuses is refused again
    status, body = await env.retry(order_id, "accept")
    assert status == 202, body

    async def refused_twice() -> bool:
        failed = [c for c in await flat_calls(env, order_id, "report")
                  if c["partner"] == "esop" and c["outcome"] != "ok"]
        return len(failed) == 2

    await eventually(refused_twice, timeout=20)
    held = await env.wait_order(order_id, held_by_esop)
    assert [c.answered for c in esop_reports(env)] == ["rejected", "rejected"]
    assert [s["stage"] for s in held["stages"]] == ["accept"] and held["stages"][0]["finished_at"] is None
    status, _ = await env.retry(order_id, "core_design")
    assert status == 409  # not the stage the order is held at

    await env.sim.mode("esop", "ok")
    status, _ = await env.retry(order_id, "accept")
    assert status == 202
    doc = await env.wait_order(order_id, at("core_design"))
    assert doc["stages"][0]["finished_at"] is not None and doc["blocked_reason"] is None

    # manual stage: field rules checked before anything is accepted
    status, body = await env.submit(order_id, "core_design", {"upf_list": ["UPF-HZ-1"]})
    assert status == 400 and {e["field"] for e in body["errors"]} == {"data.smf_list", "data.udm_list"}
    status, body = await env.submit(order_id, "core_design", {"upf_list": ["UPF-HZ-1"], "smf_list": [],
                                                              "udm_list": ["UDM-1"]})
    assert status == 400 and {e["field"] for e in body["errors"]} == {"data.smf_list"}  # at least one each
    status, _ = await env.submit(order_id, "core_construction", CONSTRUCTION)
    assert status == 409  # not the current stage
    status, _ = await env.submit(order_id, "core_design", {"upf_list": ["UPF-HZ-1"], "smf_list": ["SMF-1"],
                                                          "udm_list": ["UDM-1"]})
    assert status == 202
    await env.wait_order(order_id, at("core_construction"))
    status, body = await env.submit(order_id, "core_construction",
                                    {k: v for k, v in CONSTRUCTION.items() if not k.endswith(("_start", "_finish"))})
    assert status == 400 and {e["field"] for e in body["errors"]} == {
        "data.design_start", "data.design_finish", "data.construction_start", "data.construction_finish"}
    status, _ = await env.submit(order_id, "core_construction", CONSTRUCTION)
    assert status == 202
    doc = await env.wait_order(order_id, done)

    # every progress code reached both partners, in the blueprint's order
    codes = [c.body["progressCode"] for c in env.sim.calls("group", "progress_report")]
    assert codes == ["B001processing", "B002finished", "B003finished", "B005finished", "B004finished",
                     "B006processing"]
    assert [c.body["progressCode"] for c in esop_reports(env, "ok")] == codes
    assert [c.body["descOutline"] for c in env.sim.calls("group", "progress_report")] == [1, 2, 2, 2, 2, 1]
    b002 = env.sim.calls("group", "progress_report")[1].body
    assert b002["operator"] == "operator:dev-operator"  # the submitter reports "finished"
    # P25.2 closes to ESOP only (CATALOGUE; v1 also sent 一编 notifyOrderResult5GSlice)
    assert len(env.sim.calls("group", "close_report")) == 0 and len(env.sim.calls("esop", "notifyOrderResult")) == 1
    assert [s["stage"] for s in doc["stages"]][-2:] == ["close_report", "done"]
