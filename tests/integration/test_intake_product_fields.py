"""Issue 11 §2: the product-specific order fields (config/products/<product>.yaml) are checked at intake
on every protocol with the intake's usual answers — REST 400 problem+json naming each field, SOAP
fault, a rejected SFTP record, a refused AMQP message — and nothing reaches the broker.

The configuration is a copy whose internet_line file is stricter than the shipped one (bandwidth at
most 150, access type PON or SPN), so the shipped orders of the other tests are the bad input here."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from zeep.exceptions import Fault

from app.runtime import Runtime
from connectors.context import ConnectorContext
from connectors.registry import registry
from hub import topics
from hub.envelope import Envelope
from hub.errors import ValidationFailed
from hub.settings import Settings
from routes.loader import load_route_file
from routes.pipeline import RouteEmit
from tests.integration.test_intake import ESOP_KEY, URL, config_copy, order
from tests.integration.test_soap_inbound import call, serve, work_order, zeep_client
from tests.support import read_topic

STRICT = """product: internet_line
fields:
  bandwidth_mbps: {path: bandwidth_mbps, type: int, max: 150, title: 带宽}
  access_type: {path: access_type, enum: [PON, SPN], required: [open]}
  pon_vendor: {enum: [huawei, zte, bell, fiberhome]}
"""


@pytest.fixture
def strict(settings: Settings, tmp_path: Path) -> Settings:
    copied = config_copy(settings, tmp_path)
    for folder in (copied.config_dir / "flows").iterdir():  # only the products used here: independent of the rest
        if folder.is_dir() and folder.name not in ("internet_line", "fragments"):
            shutil.rmtree(folder)
    (copied.config_dir / "products" / "internet_line.yaml").write_text(STRICT, encoding="utf-8")
    return copied


@pytest.fixture
async def client(strict: Settings, aiohttp_client: Any) -> TestClient:
    return await serve(aiohttp_client, strict)


async def test_rest_and_soap_orders_with_bad_product_fields_are_refused_naming_each_field(
    client: TestClient, strict: Settings
) -> None:
    bad = order("E-bad", bandwidth_mbps=200, fusion=None, extensions={"pon_vendor": "nokia"})
    del bad["access_type"]
    resp = await client.post(URL, json=bad, headers=ESOP_KEY)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert "3 invalid internet_line field(s)" in problem["detail"]
    assert {e["field"]: e["type"] for e in problem["errors"]} == {
        "bandwidth_mbps": "invalid", "access_type": "missing", "extensions.pon_vendor": "invalid"}
    assert any(e["message"] == "bandwidth_mbps (带宽) must be at most 150" for e in problem["errors"])

    zc = await asyncio.to_thread(zeep_client, client)
    with pytest.raises(Fault) as info:
        await call(zc, "receiveWorkOrder", **work_order("S-bad"))  # bandwidthMbps 200
    assert "bandwidth_mbps" in info.value.message and "at most 150" in info.value.message
    assert await read_topic(strict, topics.inbound(strict.topic_prefix, "esop"), wait=1.0) == []

    ok = order("E-ok", bandwidth_mbps=100, fusion=None, extensions={"pon_vendor": "zte"})
    resp = await client.post(URL, json=ok, headers=ESOP_KEY)
    assert resp.status == 202, await resp.text()


@pytest.mark.allow_blocking(reason="the test builds route emits and their blueprints on its own task")
async def test_sftp_record_and_amqp_message_with_bad_product_fields_are_rejected(strict: Settings) -> None:
    """Both go through ``RouteEmit.prepare``: the SFTP source rejects the record (file → failed/ with the
    reason), the AMQP source dead-letters the message (tests/connectors/test_amqp.py)."""
    runtime = Runtime(strict)
    await runtime.start()
    try:
        boss = load_route_file(strict.config_dir / "routes" / "boss-sftp-orders.yaml").route
        emit = RouteEmit(boss, prefix=strict.topic_prefix, intake=runtime.intake, producer=runtime.producer)
        source = registry.new_source("sftp", boss.source,
                                     ConnectorContext(strict, boss.name))
        rows = source.sample((strict.config_dir / "routes" / "samples" / "ORD_boss.csv").read_bytes())
        (opened,) = [env for env in rows if env.payload.get("SCENE") == "01"]  # BW 100, no access type
        with pytest.raises(ValidationFailed, match="internet_line field") as info:
            emit.prepare(opened)
        assert [e["field"] for e in info.value.errors] == ["access_type"]

        amqp = load_route_file(strict.config_dir / "routes" / "amqp-workorders.yaml").route
        emit = RouteEmit(amqp, prefix=strict.topic_prefix, intake=runtime.intake, producer=runtime.producer)
        raw = Envelope(type="raw", source="group", protocol="amqp", correlation_id="m-1", idempotency_key="m-1",
                       payload={"orderNo": "A-1", "productCode": "internet_line", "scenarioCode": "01",
                                "customerName": "某公司", "bandwidthMbps": 100})  # access_type defaults to fiber
        with pytest.raises(ValidationFailed) as info:
            emit.prepare(raw)
        assert [(e["field"], e["type"]) for e in info.value.errors] == [("access_type", "invalid")]
    finally:
        await runtime.stop()
