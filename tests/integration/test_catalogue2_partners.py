"""Catalogue II's new simulator reply paths through a real hub (one ``hub run`` for the module's one test):
tansu + SecantusDB, the simulators in-process (simulators/partners/*.yaml), the shipped blueprints.

* 一编's reply interfaces (issue 12 §7): success is HTTP 201 — the two-sided cloud-network merge (P16.3)
  pre-occupies and configures each side at 一编 and keeps the answers' fields; a refusal is HTTP 400 with
  the error text in parameterValue — a credit-control cancel (P11.3) whose order reply 一编 refuses waits
  in failed_call with the G3 text naming 一编's text, and is sent again when the user clicks;
* the resource center's new callbacks — the SD-WAN design (P07.2) arrives by callback between manual stages;
* 集团局管 (new partner jgj, synchronous) — the 大区 NE data order (P25.5) echoes its names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.settings import Settings
from tests.integration.flow_harness import FlowEnv, running_flow_env

pytestmark = pytest.mark.integration


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    async with running_flow_env(settings, tmp_path) as e:
        yield e


def _ops(env: FlowEnv, partner: str) -> list[str]:
    return [c.operation for c in env.sim.calls(partner)]


async def test_group_201_and_parameter_value_resource_callbacks_and_jgj(env: FlowEnv) -> None:
    merge = await env.post_order("group", "G-C2-MERGE", "edge_cloud_line", scenario="cloud_network_merge")
    sdwan = await env.post_order("group", "G-C2-SDWAN", "sdwan_cross_border", scenario="suspend")
    ne_data = await env.post_order("esop", "E-C2-NE", "5g_lan", scenario="ne_data",
                                   extensions={"smf": "SMF-HZ-1", "upf": "UPF-HZ-1", "dnn": "hz.lan"})

    # 201 from 一编 for each side's pre-occupation and configuration; the answers' fields kept on the order
    doc = await env.wait_order(merge, lambda d: d["status"] == "completed")
    mine = [c.operation for c in env.sim.calls("group") if c.body.get("orderId") == merge]
    assert mine == ["resource_preoccupy", "cloud_config", "resource_preoccupy", "cloud_config"]
    data = doc["state"]["data"]
    assert data["net_nePeName"] == "HZ-PE-01" and data["cloud_cloudPeName"] == "HZ-CPE-01"
    assert data["net_rd"] == data["cloud_rd"] == "65000:1"

    # 集团局管 answers synchronously with the names it was sent
    doc = await env.wait_order(ne_data, lambda d: d["status"] == "completed")
    assert doc["state"]["data"]["jgj_smf_name"] == "SMF-HZ-1" and _ops(env, "jgj") == ["ne_data"]

    # SD-WAN: manual accept, RC's design by callback, review, network change without activation / install
    await env.wait_order(sdwan, lambda d: d.get("current_stage") == "accept")
    teams = {k: "SD-WAN班组" for k in ("design_team", "network_change_team", "install_team", "verify_team")}
    assert (await env.submit(sdwan, "accept", teams))[0] == 202
    await env.wait_order(sdwan, lambda d: d.get("current_stage") == "design_review")
    design = env.sim.calls("resource", "sdwan_design_request")
    assert len(design) == 1 and design[0].body["action"] == "暂停"
    assert (await env.submit(sdwan, "design_review", {"review_result": "通过"}))[0] == 202
    await env.wait_order(sdwan, lambda d: d.get("current_stage") == "network_change")
    assert (await env.submit(sdwan, "network_change", {"start_activation": "否", "start_install": "否"}))[0] == 202
    await env.wait_order(sdwan, lambda d: d.get("current_stage") == "verification")
    assert (await env.submit(sdwan, "verification", {"label_printed": True}))[0] == 202
    doc = await env.wait_order(sdwan, lambda d: d["status"] == "completed")
    assert not env.sim.calls("ip_workbench")
    assert [c.operation for c in env.sim.calls("resource")][-1] == "order_archive"
    assert doc["state"]["data"]["sdwan_scheme"].startswith("SD-WAN 方案")

    # 一编 refuses (HTTP 400, text in parameterValue): the order waits for the user with the G3 text
    await env.sim.mode("group", "error")
    cancel = await env.post_order("group", "G-C2-CANCEL", "cross_province_internet", scenario="credit_cancel",
                                  extensions={"dispatch_kind": "重派", "cancel_reason": "长期欠费"})
    doc = await env.wait_order(cancel, lambda d: d.get("current_stage") == "failed_call")
    (refused,) = [c for c in doc["state"]["data"]["_calls"] if c["operation"] == "order_reply"]
    assert refused["ok"] is False and "一编模拟失败" in refused["text"] and refused["text"].endswith("按钮")
    await env.sim.mode("group", "ok")
    assert (await env.submit(cancel, "failed_call", {}))[0] == 202
    doc = await env.wait_order(cancel, lambda d: d["status"] == "completed")
    replies = [c.body for c in env.sim.calls("group", "order_reply") if c.body.get("orderId") == "G-C2-CANCEL"]
    assert len(replies) >= 2 and replies[-1]["dispatchKind"] == "重派"
