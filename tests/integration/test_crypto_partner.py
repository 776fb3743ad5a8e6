"""Per-field encryption wired into REST, against real servers: the REST sink encrypts the declared
request fields after mapping and decrypts the declared answer fields (the partner here is an HTTP
server on loopback that uses only pycryptodome, an independent implementation); the REST intake of a
partner whose file declares ``crypto:`` decrypts the declared fields before validation, so the
envelope on Kafka holds the clear order, and refuses the same fields sent in clear."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.delivery import build_sink
from app.runtime import Runtime
from app.web import build_web_app
from connectors.base import Outcome
from connectors.context import ConnectorContext
from hub import topics
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.settings import Settings
from tests.partner_crypto import KEYS, oaep, seal, unseal
from tests.support import topic_envelopes

pytestmark = pytest.mark.integration
FIELDS = ["customer.name", "customer.contact_phone", "customer.id_number"]


def _crypto_block(partner_pub: str, fields: str) -> str:
    return f"""crypto:
  cipher: aes
  mode: gcm
  key_wrap: {{scheme: rsa-oaep, hash: sha256, mgf1_hash: sha1}}
  partner_keys: [{{id: partner-2026a, file: {KEYS / partner_pub}}}]
  our_keys:
    - {{id: hub-2026b, file: {KEYS / 'test-hub-2026b.key.pem'}}}
    - {{id: hub-2026a, file: {KEYS / 'test-hub-2026a.key.pem'}}}
{fields}"""


async def _call_partner(settings: Settings, tmp_path: Path, answer_key: str) -> tuple[Outcome, list[dict[str, Any]]]:
    """One resource_entry call through the partner's REST sink; the partner answers with its ID number
    sealed under the request's data key (``answer_key="request"``) or under another key."""
    seen: list[dict[str, Any]] = []

    async def entry(request: web.Request) -> web.Response:  # the partner, without our code
        body = await request.json()
        key = oaep("test-partner-2026a.key.pem").decrypt(base64.b64decode(request.headers["X-Encrypted-Key"]))
        seen.append({"key_id": request.headers["X-Key-Id"], "body": body,
                     "clear": {p: unseal(key, body["customer"][p.split(".")[1]]) for p in FIELDS}})
        sealing = key if answer_key == "request" else os.urandom(32)
        return web.json_response({"code": "0", "customer": {"id_number": seal(sealing, "110101199003077777")}})

    app = web.Application()
    app.router.add_post("/resource/api/entry", entry)
    server = TestServer(app)
    await server.start_server()
    try:
        (tmp_path / "partners").mkdir()
        (tmp_path / "partners" / "acme.yaml").write_text(f"""name: acme
outbound:
  protocol: rest
  config:
    base_url: {server.make_url('/resource/api')}
    operations:
      resource_entry:
        path: /entry
        template: {{orderId: "{{order_id}}", customer: {{name: "{{customer.name}}", contact_phone: "{{customer.phone}}",
                   id_number: "{{customer.id}}"}}}}
        success: {{field: code, equals: "0"}}
""" + _crypto_block("test-partner-2026a.pub.pem", f"""  fields:
    resource_entry: {{request: {FIELDS}, response: [customer.id_number]}}
"""), encoding="utf-8")
        sink = build_sink(load_partners(tmp_path)["acme"], ConnectorContext(settings))
        await sink.start()
        try:
            outcome = await sink.deliver(Envelope(
                type="call.request", source="hub", protocol="internal", correlation_id="ord-c1",
                idempotency_key="call:ord-c1:resource_entry",
                payload={"operation": "resource_entry", "request": {
                    "order_id": "ord-c1", "customer": {"name": "张三", "phone": "13800138000", "id": "X1"}}}))
        finally:
            await sink.stop()
    finally:
        await server.close()
    return outcome, seen


async def test_rest_sink_encrypts_request_fields_and_decrypts_the_answer(settings: Settings, tmp_path: Path) -> None:
    outcome, seen = await _call_partner(settings, tmp_path, "request")
    assert outcome.ok, outcome.error
    (call,) = seen
    assert call["key_id"] == "partner-2026a" and call["body"]["orderId"] == "ord-c1"  # mapped, then encrypted
    assert call["clear"] == {"customer.name": "张三", "customer.contact_phone": "13800138000",
                             "customer.id_number": "X1"}
    assert "张三" not in json.dumps(call["body"], ensure_ascii=False) + json.dumps(outcome.details, ensure_ascii=False)
    assert outcome.response is not None
    assert outcome.response["body"] == {"code": "0", "customer": {"id_number": "110101199003077777"}}


async def test_an_answer_that_does_not_decrypt_is_a_rejected_call_not_retried(settings: Settings,
                                                                               tmp_path: Path) -> None:
    outcome, seen = await _call_partner(settings, tmp_path, "another")
    assert len(seen) == 1 and not outcome.ok and not outcome.retryable
    assert "answer does not decrypt" in (outcome.error or "") and "customer.id_number" in (outcome.error or "")


@pytest.mark.parametrize("route", ["route file", "implied"])
async def test_rest_intake_decrypts_declared_fields_before_validation(
        settings: Settings, tmp_path: Path, aiohttp_client: Any, route: str) -> None:
    config = tmp_path / "config"
    await asyncio.to_thread(shutil.copytree, settings.config_dir, config)  # ~200 files: CPU, off the loop
    if route == "implied":  # without the route file, the REST route esop.yaml implies: same crypto
        (config / "routes" / "esop-rest-orders.yaml").unlink()
    esop = config / "partners" / "esop.yaml"
    esop.write_text(esop.read_text(encoding="utf-8") + _crypto_block("test-partner-2026a.pub.pem",
                    f"  inbound_fields: {FIELDS}\n"), encoding="utf-8")
    runtime = await asyncio.to_thread(Runtime, settings.model_copy(update={"config_dir": config}))  # CPU: off the loop
    client: TestClient = await aiohttp_client(await asyncio.to_thread(build_web_app, runtime))
    key = os.urandom(32)
    order: dict[str, Any] = {
        "external_order_id": "E-C1", "product": "internet_line", "scenario": "open",
        "customer": {"name": seal(key, "杭州某某科技有限公司"), "contact_phone": seal(key, "13800000000"),
                     "id_number": seal(key, "110101199003077777")},
        "addresses": [{"role": "install", "city": "杭州", "district": "西湖区", "detail": "文三路1号"}],
        "bandwidth_mbps": 100, "access_type": "PON"}
    headers = {"X-Api-Key": "dev-esop-key-0001",
               # ESOP has not rotated yet: it wraps with our previous public key and says so
               "X-Encrypted-Key": base64.b64encode(oaep("test-hub-2026a.pub.pem").encrypt(key)).decode(),
               "X-Key-Id": "hub-2026a"}
    resp = await client.post("/api/v1/partners/esop/orders", json=order, headers=headers)
    assert resp.status == 202, await resp.text()
    (env,) = await topic_envelopes(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    assert env.payload["customer"] == {"name": "杭州某某科技有限公司", "contact_phone": "13800000000",
                                       "id_number": "110101199003077777"}
    clear = {**order, "external_order_id": "E-C2",
             "customer": {"name": "杭州某某科技有限公司", "contact_phone": "13800000000"}}
    resp = await client.post("/api/v1/partners/esop/orders", json=clear, headers={"X-Api-Key": "dev-esop-key-0001"})
    assert resp.status == 400 and "without the wrapped key" in (await resp.json())["detail"]
    tampered = {**order, "external_order_id": "E-C3",
                "customer": {**order["customer"], "contact_phone": seal(os.urandom(32), "13800000000")}}
    resp = await client.post("/api/v1/partners/esop/orders", json=tampered, headers=headers)
    problem = await resp.json()
    assert resp.status == 400 and problem["errors"][0]["field"] == "customer.contact_phone", problem


async def test_a_missing_key_fails_the_intake_at_start_not_at_the_first_order(settings: Settings) -> None:
    from connectors.rest.config import RestSourceConfig
    from connectors.rest.source import RestOrderSource
    from hub.errors import ConfigError

    config = RestSourceConfig.model_validate({
        "partner": "acme", "auth": {"keys": ["acme-key-0001"]},
        "crypto": {"our_keys": [{"id": "gone", "env": "TEST_S1_NO_SUCH_KEY"}], "inbound_fields": ["customer.name"]}})
    source = RestOrderSource(config, ConnectorContext(settings))

    async def emit(envelope: Envelope) -> Any:
        raise AssertionError("nothing is emitted")

    with pytest.raises(ConfigError, match="TEST_S1_NO_SUCH_KEY is not set"):
        await source.start(emit)
