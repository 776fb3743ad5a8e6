"""Catalogue I's new partner simulators through a real hub (one ``hub run`` for the module's one test):
tansu + SecantusDB, the simulators in-process (simulators/partners/<partner>.yaml), the shipped blueprints.

Each reply path a new simulator has is taken by a shipped blueprint's order:
* callback — 政企交互平台 (P13.1 line extension: 业务转派, the stage completes only on result = success), 集客APP
  and 一体化平台 (P22.1 cloud-PC install, posted by 云能, a new inbound partner), 3A (P01.2 password change,
  a scenario of the new vocabulary);
* staged — 有线业务平台 (P33.1 企宽+酒店云PBX: the fusion member's task, a group of one, dispatched; the
  construction result in three callbacks: accepted, processing, completed; the install stage ends on the
  last). tests/integration/test_staged_callbacks.py spaces the stages out and checks each was accepted;
* poll — the activation module CAM (P15 voice line: GPON then SR, each "processing" to the first result
  query and done at the second), after the P14 construction sub-flow and before a manual verification.
The poll interval is shortened in the test's copy of the blueprint (30 s in the shipped file).
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

YUNNENG_KEY = {"X-Api-Key": "dev-yunneng-key-0001"}


def _fast_polls(flows: Path) -> None:
    path = flows / "voice_line" / "open.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("poll_interval_s: 30", "poll_interval_s: 0.3"),
                    encoding="utf-8")


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    async with running_flow_env(settings, tmp_path, _fast_polls) as e:
        yield e


async def _post(env: FlowEnv, partner: str, key: dict[str, str], body: dict[str, Any]) -> str:
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/api/v1/partners/{partner}/orders", json=body,
                                                    headers=key) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["order_id"])


def _ops(env: FlowEnv, partner: str) -> list[str]:
    return [c.operation for c in env.sim.calls(partner)]


async def test_callback_and_poll_partners_carry_their_orders_to_the_end(env: FlowEnv) -> None:
    line_ext = await env.post_order("esop", "ESOP-C1-ZQ", "line_extension")
    password = await env.post_order("esop", "ESOP-C1-3A", "dynamic_ip_line", scenario="password_change")
    voice = await env.post_order("esop", "ESOP-C1-VOICE", "voice_line")
    pbx = await env.post_order("esop", "ESOP-C1-PBX", "broadband_pbx")
    cloud_pc = await _post(env, "yunneng", YUNNENG_KEY, {
        "external_order_id": "YN-C1-1", "product": "cloud_pc", "scenario": "install",
        "customer": {"name": "测试客户"}, "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
        "extensions": {"serial_no": "YN-20260101-0001", "install_type": "新装", "provision_mode": "终端",
                       "terminal_count": 5}})

    # callback: ZQ's result (success) completes 业务转派, then the ESOP close ends the order
    doc = await env.wait_order(line_ext, lambda d: d["status"] == "completed")
    assert doc["state"]["data"]["dispatch_result"]["result"] == "success"
    assert _ops(env, "zq") == ["install_dispatch"]
    # callback: 3A's answer to the password change
    doc = await env.wait_order(password, lambda d: d["status"] == "completed")
    assert doc["state"]["data"]["aaa_result"]["ok"] is True and _ops(env, "aaa") == ["password_change"]
    # callback: two 集客APP to-dos answered in turn, then the syncs; 云能 gets no close (none is stated)
    doc = await env.wait_order(cloud_pc, lambda d: d["status"] == "completed")
    assert [c.body["task"] for c in env.sim.calls("fieldapp")] == ["service_delivery", "service_verify"]
    assert "cloud_pc_sync" in _ops(env, "yth") and doc["state"]["data"]["serial_no"] == "YN-20260101-0001"

    # staged: the WSP dispatch of the member's task waits through the interim callbacks, ends on the completed one
    await env.wait_order(pbx, lambda d: d.get("current_stage") == "design")
    status, body = await env.submit(pbx, "design", {"scheme": "酒店云PBX 20 分机"})
    assert status == 202, body
    doc = await env.wait_order(pbx, lambda d: d["status"] == "completed")
    assert doc["state"]["data"]["construction_result"]["phase"] == "施工完成"
    assert doc["state"]["data"]["construction_result"]["result"] == "success"
    assert doc["state"]["data"]["fusion_task"]["group_state"] == "single"
    assert [s["stage"] for s in doc["stages"]][-3:] == ["install", "close_report", "done"]

    # poll: the voice line reaches its manual verification only after GPON then SR were each queried to the end
    try:
        doc = await env.wait_order(voice, lambda d: d.get("current_stage") == "verification", timeout=45)
    except AssertionError as exc:  # say what the activation module was asked and answered
        seen = [(c.operation, c.body, c.answered) for c in env.sim.calls("cam")]
        now = await env.order(voice) or {}
        raise AssertionError(f"{seen}\n{now.get('state', {}).get('data', {}).get('_last_error')}\n"
                             f"{str(exc)[:600]}") from None
    cam = _ops(env, "cam")
    assert cam[0] == "gpon_activate" and cam.index("sr_activate") > cam.index("result_query"), cam
    assert cam.count("result_query") >= 4, cam  # "processing" once, then the result, for each of the two
    assert doc["state"]["data"]["sr"]["status"] == "success"
    assert await env.db.orders.find_one({"parent": voice, "status": "completed"}) is not None  # P14 child
    status, body = await env.submit(voice, "verification", {"verify_result": "通过"})
    assert status == 202, body
    await env.wait_order(voice, lambda d: d["status"] == "completed")
    closes = sorted(c.body["orderId"] for c in env.sim.calls("esop", "notifyOrderResult"))
    assert closes == ["ESOP-C1-3A", "ESOP-C1-PBX", "ESOP-C1-VOICE", "ESOP-C1-ZQ"]
