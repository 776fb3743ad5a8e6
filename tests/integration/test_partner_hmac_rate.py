"""Issue 17 §5 against a real app: a partner with ``kind: hmac`` auth and a ``rate_limit``
(config/partners/esop.yaml rewritten in a copy of config/, its route implied by the partner file)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from app.runtime import Runtime
from app.web import build_web_app
from hub.partner_auth import signed_headers
from hub.settings import Settings
from tests.integration.test_intake import URL, order

SECRET = "test-esop-hmac-secret-0123456789abcdef"


def _config(settings: Settings, tmp_path: Path, auth: str, rate: str = "") -> Settings:
    config = tmp_path / "config"
    shutil.copytree(settings.config_dir, config)
    (config / "routes" / "esop-rest-orders.yaml").unlink()  # the REST route esop.yaml implies
    esop = config / "partners" / "esop.yaml"
    text = esop.read_text(encoding="utf-8")
    text, n = re.subn(r"    auth:\n      header: X-Api-Key\n.*?\n      keys: \[.*?\]\n", auth + rate, text, flags=re.S)
    assert n == 1
    esop.write_text(text, encoding="utf-8")
    return settings.model_copy(update={"config_dir": config})


HMAC = f"    auth:\n      kind: hmac\n      secret: {SECRET}\n      max_skew_s: 300\n"


def _app(settings: Settings) -> Any:
    """The web app, built in a thread: loading ~40 partner files blocked the test's loop for 180 ms."""
    return build_web_app(Runtime(settings))


def _built(settings: Settings, tmp_path: Path, *extra: str) -> Any:
    """The config copy and the app, both in the thread: ``to_thread(_app, _config(...))`` copied the
    config on the loop (104-115 ms of CPU with the suite's four workers on 2 cores)."""
    return _app(_config(settings, tmp_path, *extra))


@pytest.fixture
async def hmac_client(settings: Settings, tmp_path: Path, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(await asyncio.to_thread(_built, settings, tmp_path, HMAC))


def signed(body: bytes, *, ts: int | None = None, nonce: str | None = None, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            **signed_headers(secret, "POST", URL, body, timestamp=ts, nonce=nonce)}


def _rejected(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_intake_requests_total",
                                     {"partner": "esop", "protocol": "rest", "outcome": outcome}) or 0.0


async def test_signed_request_is_accepted_and_every_bad_signature_is_401(hmac_client: TestClient) -> None:
    body = json.dumps(order("E-H1")).encode()
    good = signed(body)
    resp = await hmac_client.post(URL, data=body, headers=good)
    assert resp.status == 202, await resp.text()

    replay = await hmac_client.post(URL, data=body, headers=good)
    assert replay.status == 401 and "replay" in (await replay.json())["detail"]

    wrong = await hmac_client.post(URL, data=body, headers=signed(body, secret="x" * 40))
    assert wrong.status == 401 and "X-Hub-Signature" in (await wrong.json())["detail"]

    tampered = await hmac_client.post(URL, data=body.replace(b"E-H1", b"E-H2"), headers=signed(body))
    assert tampered.status == 401

    stale = await hmac_client.post(URL, data=body, headers=signed(body, ts=int(time.time()) - 301))
    assert stale.status == 401 and "300 s" in (await stale.json())["detail"]

    before = _rejected("rejected_auth")
    unsigned = await hmac_client.post(URL, data=body, headers={"Content-Type": "application/json",
                                                               "X-Api-Key": "dev-esop-key-0001"})
    assert unsigned.status == 401 and unsigned.content_type == "application/problem+json"
    assert unsigned.headers["WWW-Authenticate"].startswith("HMAC-SHA256")
    assert _rejected("rejected_auth") == before + 1


async def test_over_the_rate_is_429_with_retry_after_then_accepted_again(
        settings: Settings, tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connectors.rest.source")
    rate = "    rate_limit: {per_second: 1, burst: 2}\n"
    key = "    auth:\n      header: X-Api-Key\n      keys: [\"dev-esop-key-0001\"]\n"
    client: TestClient = await aiohttp_client(await asyncio.to_thread(_built, settings, tmp_path, key, rate))
    headers = {"X-Api-Key": "dev-esop-key-0001"}
    for i in range(2):  # the burst
        resp = await client.post(URL, json=order(f"E-R{i}"), headers=headers)
        assert resp.status == 202, await resp.text()
    before = _rejected("rejected_rate")
    over = await client.post(URL, json=order("E-R2"), headers=headers)
    assert over.status == 429 and over.content_type == "application/problem+json"
    assert over.headers["Retry-After"] == "1"
    assert _rejected("rejected_rate") == before + 1
    assert any("429 Too Many Requests" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(int(over.headers["Retry-After"]) + 0.1)
    again = await client.post(URL, json=order("E-R2"), headers=headers)
    assert again.status == 202, await again.text()


async def test_rate_limit_applies_to_signed_requests_after_the_signature(
        settings: Settings, tmp_path: Path, aiohttp_client: Any) -> None:
    rate = "    rate_limit: {per_second: 0.5, burst: 1}\n"
    client: TestClient = await aiohttp_client(await asyncio.to_thread(_built, settings, tmp_path, HMAC, rate))
    first = json.dumps(order("E-S1")).encode()
    assert (await client.post(URL, data=first, headers=signed(first))).status == 202
    bad = await client.post(URL, data=first, headers=signed(first, secret="y" * 40))
    assert bad.status == 401  # a stranger is not rate limited on the partner's budget: 401, not 429
    second = json.dumps(order("E-S2")).encode()
    over = await client.post(URL, data=second, headers=signed(second))
    assert over.status == 429 and over.headers["Retry-After"] == "2"


async def test_callbacks_of_an_hmac_partner_are_signed_too(hmac_client: TestClient) -> None:
    path = "/api/v1/partners/esop/callbacks"
    body = json.dumps({"order_id": "ord-nobody", "status": "ok"}).encode()
    good = {"Content-Type": "application/json", **signed_headers(SECRET, "POST", path, body)}
    passed = await hmac_client.post(path, data=body, headers=good)
    assert passed.status == 403, await passed.text()  # past authentication: the order is not waiting for esop
    replay = await hmac_client.post(path, data=body, headers=good)
    assert replay.status == 401 and "replay" in (await replay.json())["detail"]
    unsigned = await hmac_client.post(path, data=body, headers={"Content-Type": "application/json",
                                                                "X-Api-Key": "dev-esop-key-0001"})
    assert unsigned.status == 401
