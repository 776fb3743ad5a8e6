"""The resource center's simulator has no resources for the demo's orders (CATALOGUE P11.6, "P14
applies"; issue 12): ``hub demo --all`` must exercise the cross-province internet open's P14
construction sub-flow, which the blueprint takes only when 资管's allocation answer says
needs_construction true. Every other order (the integration tests' G-… ids) keeps the with-resources
answer (no flag), so tests/integration/test_catalogue2_p14.py's P11.6 still goes on without construction.
Served by the real simulator app on loopback, the shipped simulators/partners/resource.yaml."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from flows.graph.check import partner_operations
from flows.graph.library import load_library
from hub.partners import load_partners
from hub.products import load_products
from hub.settings import PROJECT_ROOT
from simulators.demo import all_samples
from simulators.server import build_app
from simulators.spec import PartnerSim, load_sims

CONFIG: Path = PROJECT_ROOT / "config"


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    app = await asyncio.to_thread(build_app, CONFIG)
    async with TestServer(app, host="127.0.0.1") as srv:
        yield str(srv.make_url(""))


async def _allocate(url: str, external_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}/resource/api/allocation",
                                                    json={"orderId": "O-1", "externalOrderId": external_id}) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_the_demo_orders_get_no_resources_and_the_others_do(sim_url: str) -> None:
    demo = await _allocate(sim_url, "DEMO-ab12cd-0042")
    assert demo["code"] == "0" and demo["needs_construction"] is True
    other = await _allocate(sim_url, "G-P14-3")
    assert other["code"] == "0" and "needs_construction" not in other


def test_the_demo_posts_p11_6_with_an_external_id_the_case_matches() -> None:
    """The case keys on the demo's external ids: a change of their shape must not silently lose P14."""
    library = load_library(CONFIG, partner_operations(load_partners(CONFIG)))
    samples = all_samples(library, load_products(CONFIG), "ab12cd", ["cross_province_internet"])
    opens = [body for _, body in samples if body["scenario"] == "open"]
    assert len(opens) == 1
    op = load_sims()["resource"].operations["resource_allocation"]
    assert op.result_for({"externalOrderId": opens[0]["external_order_id"]}).get("needs_construction") is True


def test_cases_only_go_with_a_result_and_need_a_match() -> None:
    base: dict[str, Any] = {"partner": "x", "accepted": {}, "rejected": {}}
    with pytest.raises(ValueError, match="cases are for a result"):
        PartnerSim.model_validate({**base, "operations": {"a": {
            "path": "/a", "reply": "staged", "stages": [{"status": "accepted"}, {"status": "ok"}],
            "cases": [{"match": {"x": "1"}, "result": {"y": 1}}]}}})
    with pytest.raises(ValueError, match="match"):
        PartnerSim.model_validate({**base, "operations": {"a": {"path": "/a", "cases": [{"match": {},
                                                                                        "result": {"y": 1}}]}}})
