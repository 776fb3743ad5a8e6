"""Issue 8 item 2: an order no blueprint can run is refused at intake, on every protocol — never
answered 202 and then silently ``failed``. With no flows installed, everything is admitted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from zeep.exceptions import Fault

from app.runtime import Runtime
from app.web import build_web_app
from connectors.context import ConnectorContext
from connectors.registry import registry
from hub import topics
from hub.errors import ValidationFailed
from hub.settings import Settings
from routes.loader import load_route_file
from routes.pipeline import RouteEmit
from tests.integration.test_intake import ESOP_KEY, URL, config_copy, order
from tests.integration.test_soap_inbound import call, serve, work_order, zeep_client
from tests.support import read_topic


def available(settings: Settings) -> list[str]:
    """What the shipped blueprints run (both catalogues: ~150 product/scenario pairs)."""
    from flows.admission import available as names
    from flows.graph.check import partner_operations
    from flows.graph.library import load_library
    from hub.partners import load_partners

    return names(load_library(settings.config_dir, partner_operations(load_partners(settings.config_dir))))


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await serve(aiohttp_client, settings)  # on its published public_url: zeep posts to the WSDL's address


async def test_rest_order_without_a_blueprint_is_a_400_naming_product_scenario_and_what_exists(
    client: TestClient, settings: Settings
) -> None:
    resp = await client.post(URL, json=order("E-change", scenario="change", fusion=None), headers=ESOP_KEY)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert "'internet_line'" in problem["detail"] and "'change'" in problem["detail"]
    (error,) = problem["errors"]
    assert error["type"] == "no_blueprint" and error["available"] == await asyncio.to_thread(available, settings)
    assert "internet_line/open" in error["available"] and "internet_line/change" not in error["available"]
    assert (error["product"], error["scenario"]) == ("internet_line", "change")
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []
    # the same partner's runnable order still goes through
    assert (await client.post(URL, json=order("E-open", fusion=None), headers=ESOP_KEY)).status == 202


async def test_with_no_flows_installed_everything_is_admitted(
    settings: Settings, tmp_path: Path, aiohttp_client: Any
) -> None:
    config = await asyncio.to_thread(config_copy, settings, tmp_path, no_flows=True)
    client = await aiohttp_client(await asyncio.to_thread(lambda: build_web_app(Runtime(config))))  # CPU: off the loop
    resp = await client.post(URL, json=order("E-any", scenario="change", fusion=None), headers=ESOP_KEY)
    assert resp.status == 202, await resp.text()


async def test_soap_order_without_a_blueprint_is_a_fault_naming_it(client: TestClient, settings: Settings) -> None:
    zc = await asyncio.to_thread(zeep_client, client)
    with pytest.raises(Fault) as info:
        await call(zc, "receiveWorkOrder", **work_order("S-change", scenarioCode="02"))  # 02 = change
    message = info.value.message
    assert "no flow runs product 'internet_line' scenario 'change'" in message
    assert "internet_line/open" in message and "5g_lan/open" in message
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []


@pytest.mark.allow_blocking(reason="the test builds a route emit and its blueprints on its own task")
async def test_file_row_without_a_blueprint_is_a_rejected_record(settings: Settings) -> None:
    """The SFTP source rejects a row when ``RouteEmit.prepare`` raises (the file goes to ``failed/``
    with the reason); the real BOSS route and the runtime's intake, on its GBK sample file."""
    route = load_route_file(settings.config_dir / "routes" / "boss-sftp-orders.yaml").route
    runtime = Runtime(settings)
    await runtime.start()
    try:
        emit = RouteEmit(route, prefix=settings.topic_prefix, intake=runtime.intake, producer=runtime.producer)
        source = registry.new_source("sftp", route.source,  # type: ignore[attr-defined]
                                     ConnectorContext(settings, route.name))  # type: ignore[attr-defined]
        rows = source.sample((settings.config_dir / "routes" / "samples" / "ORD_boss.csv").read_bytes())
        opened = [env for env in rows if env.payload.get("SCENE") == "01"]
        changed = [env for env in rows if env.payload.get("SCENE") == "02"]
        assert opened and changed
        assert emit.prepare(opened[0]).scenario == "open"
        with pytest.raises(ValidationFailed, match="no flow runs product 'internet_line' scenario 'change'"):
            emit.prepare(changed[0])
    finally:
        await runtime.stop()
