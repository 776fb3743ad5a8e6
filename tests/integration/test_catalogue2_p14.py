"""P14 in the cross-province and international opens through a real hub (CATALOGUE P08.5, P09.3, P10.3,
P11.6; issue 12): tansu + SecantusDB, the simulators in-process, the shipped blueprints, one ``hub run``.

The resource center's simulator answers every design request with needs_construction true (no
resources): each of the three transmission / MPLS opens starts its p14-construction child, whose push
reaches the construction platform's simulator; the platform's staged replies (阶段回复) end in the
result, the child completes and hands its construction record back, and the parent goes on to
verification and completes. The simulator's allocation answer carries no such flag: the cross-province
internet open (P11.6) goes on without construction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.settings import Settings
from tests.integration.flow_harness import FlowEnv, running_flow_env

pytestmark = pytest.mark.integration

#: product → what its 业务验证 stage asks (config/flows/<product>/open.yaml)
ORDERS: dict[str, dict[str, Any]] = {
    "cross_province_transmission": {"test_standard": "RFC2544", "test_ok": True},
    "international_transmission": {"domestic_operator_address": "上海浦东1号", "building_type": "写字楼",
                                   "building_owner": "业主", "cabinet_owner": "运营商", "test_ok": True},
    "cross_province_mpls": {"test_ok": True},
    "cross_province_internet": {"intl_site_feedback": "可访问", "test_ok": True},
}


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    async with running_flow_env(settings, tmp_path) as e:
        yield e


async def test_without_resources_the_opens_dispatch_construction_at_the_platform_and_complete(env: FlowEnv) -> None:
    ids = {p: await env.post_order("group", f"G-P14-{i}", p) for i, p in enumerate(ORDERS)}
    for product, fields in ORDERS.items():
        await env.wait_order(ids[product], lambda d: d.get("current_stage") == "verification", timeout=60)
        assert (await env.submit(ids[product], "verification", fields))[0] == 202
    docs = {p: await env.wait_order(ids[p], lambda d: d["status"] == "completed", timeout=60) for p in ORDERS}

    pushed = [c.body.get("externalOrderId") for c in env.sim.calls("construction", "construction_order")]
    assert sorted(pushed) == ["G-P14-0", "G-P14-1", "G-P14-2"]  # the three no-resource opens, once each
    for product in ("cross_province_transmission", "international_transmission", "cross_province_mpls"):
        data = docs[product]["state"]["data"]
        trail = [t["node"] for t in docs[product]["state"]["trail"]]
        assert trail.index("construction") < trail.index("verification"), product
        # the platform's staged replies merged into one record, handed back by the child
        assert data["construction"]["manager"] == "王工" and data["construction"]["cost"] == 1200, product
    internet = [t["node"] for t in docs["cross_province_internet"]["state"]["trail"]]
    assert "construction" not in internet and internet.count("resource_allocation") == 1
