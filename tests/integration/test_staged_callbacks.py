"""Partners that reply in stages, through a real hub (one ``hub run``: tansu + SecantusDB, the simulators
in-process, the shipped blueprints).

Why: ``hub demo --all`` found the hub refusing a staged partner's later callbacks (403 "not waiting for an
answer from wsp": the first interim callback closed the call the endpoint checks), which left P33 orders
waiting; the simulators had been cut back to one callback. Now both staged partners of the documents
reply in stages again and each order goes to the end:

* 有线业务平台 WSP (P33.1 企宽+酒店云PBX, fusion_dispatch): accepted, processing 上门施工, completed;
* 工程建设平台 (the P14 construction sub-flow of a P15 voice line, 工单推送 then 阶段回复 §1.3): dispatched,
  designed, under construction, completed — the live progress fields on the child's construction stage
  while it runs, and all of them in the construction record the parent gets.

Then the endpoint's answers after the final: the same final body again is a duplicate (202, nothing
produced), a new stage after it is refused (403), and the construction platform's key is refused for
the WSP order, which has no open call to it (403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.settings import Settings
from tests.integration.flow_harness import FlowEnv, running_flow_env

pytestmark = pytest.mark.integration

KEYS = {"wsp": {"X-Api-Key": "dev-wsp-key-0001"}, "construction": {"X-Api-Key": "dev-construction-key-0001"}}


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    async with running_flow_env(settings, tmp_path) as e:
        yield e


async def _callback(env: FlowEnv, partner: str, body: dict[str, Any], key: str | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/api/v1/partners/{partner}/callbacks", json=body,
                                                    headers=KEYS[key or partner]) as r:
        return r.status, await r.json(content_type=None)


def _sent(env: FlowEnv, partner: str, order_id: str) -> list[tuple[str, int]]:
    return [(c.body["status"], c.status) for c in env.sim.state.sent
            if c.partner == partner and c.body.get("order_id") == order_id]


async def test_staged_partners_carry_their_orders_to_the_end(env: FlowEnv) -> None:
    # a stage a second after the one before, as a real partner reports: the hub has applied each interim
    # callback before the next arrives (back to back, the next one raced ahead of it and hid the refusal)
    for partner in KEYS:
        await env.sim.mode(partner, "ok", callback_delay_s=1.0)
    pbx = await env.post_order("esop", "ESOP-STAGED-PBX", "broadband_pbx")
    voice = await env.post_order("esop", "ESOP-STAGED-VOICE", "voice_line")

    # P33.1: the WSP dispatch waits through its interim callbacks and ends on the completed one
    await env.wait_order(pbx, lambda d: d.get("current_stage") == "design")
    status, body = await env.submit(pbx, "design", {"scheme": "酒店云PBX 20 分机"})
    assert status == 202, body
    doc = await env.wait_order(pbx, lambda d: d["status"] == "completed", timeout=60)
    assert _sent(env, "wsp", pbx) == [("accepted", 202), ("processing", 202), ("completed", 202)]
    assert doc["state"]["data"]["construction_result"]["phase"] == "施工完成"
    assert [s["stage"] for s in doc["stages"]][-3:] == ["install", "close_report", "done"]
    install = next(s for s in doc["stages"] if s["stage"] == "install")
    assert (install["progress"]["stages"], install["progress"]["final"]) == (3, True)
    assert [s["status"] for s in doc["progress"]["install"]["stages"]] == ["accepted", "processing", "completed"]
    assert doc["progress"]["install"]["fields"]["installer"] == "吴工"

    # P14: the construction sub-flow through the platform's 阶段回复
    parent = await env.wait_order(voice, lambda d: any(s["stage"] == "construction" and s["finished_at"]
                                                       for s in d["stages"]), timeout=60)
    child = await env.db.orders.find_one({"parent": voice})
    assert child is not None and child["status"] == "completed", child and child.get("status")
    assert _sent(env, "construction", child["_id"]) == [
        ("accepted", 202), ("processing", 202), ("processing", 202), ("completed", 202)]
    progress = child["progress"]["dispatch"]
    assert [s["result"]["status"] for s in progress["stages"]] == ["已派单", "设计完成", "施工中", "completed"]
    record = child["state"]["data"]["construction"]  # 施工项目经理, 经理电话, 工程状态, 设计员, 设计/施工时间, 投资
    assert {k for k in ("manager", "phone", "status", "designer", "design_start", "design_end", "start_date",
                        "end_date", "cost") if k in record} == {"manager", "phone", "status", "designer",
                                                                "design_start", "design_end", "start_date",
                                                                "end_date", "cost"}, record
    assert (record["manager"], record["status"]) == ("王工", "completed")
    assert parent["state"]["data"]["construction"]["designer"] == "李工"  # said by the first stage only

    # after the final: its duplicate is a duplicate, a new stage and a stranger's key are refused
    [final] = [c.body for c in env.sim.state.sent if c.partner == "wsp" and c.body.get("order_id") == pbx
               and c.body["status"] == "completed"]
    assert await _callback(env, "wsp", final) == (202, {"accepted": True, "duplicate": True})
    late = {**final, "status": "processing", "result": {"phase": "返工"}}
    status, problem = await _callback(env, "wsp", late)
    assert status == 403 and "not waiting for an answer from 'wsp'" in problem["detail"], problem
    status, _ = await _callback(env, "construction", {**final, "operation": "construction_order"}, key="construction")
    assert status == 403
    again = await env.order(pbx)
    assert again is not None and again["status"] == "completed"
    assert len(again["progress"]["install"]["stages"]) == 3 and again["rev"] == doc["rev"]
