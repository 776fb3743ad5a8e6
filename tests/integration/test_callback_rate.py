"""Issue 17 §5: a partner's ``rate_limit`` holds for its callbacks too (it held for order intake
only): over it is 429 problem+json with Retry-After, a log line and ``rejected_rate``; checked
after authentication; a bucket of its own, so callbacks do not spend the partner's order budget."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import Settings
from tests.integration.test_intake import URL, order
from tests.integration.test_partner_hmac_rate import _config

pytestmark = pytest.mark.integration

CALLBACKS = "/api/v1/partners/esop/callbacks"
KEY = {"X-Api-Key": "dev-esop-key-0001"}


def _rejected(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_intake_requests_total",
                                     {"partner": "esop", "protocol": "rest", "outcome": outcome}) or 0.0


async def test_callbacks_over_the_partners_rate_are_429_with_retry_after(
        settings: Settings, tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flows.http")
    auth = "    auth:\n      header: X-Api-Key\n      keys: [\"dev-esop-key-0001\"]\n"
    rate = "    rate_limit: {per_second: 1, burst: 2}\n"
    config = await asyncio.to_thread(_config, settings, tmp_path, auth, rate)
    client: TestClient = await aiohttp_client(await asyncio.to_thread(lambda: build_web_app(Runtime(config))))
    body = {"order_id": "ord-nobody", "status": "ok"}
    stranger = await client.post(CALLBACKS, json=body, headers={"X-Api-Key": "not-the-key-000"})
    assert stranger.status == 401  # a stranger spends nothing of the partner's budget
    for _ in range(2):  # the burst: past the limit, refused only because the order is not esop's
        resp = await client.post(CALLBACKS, json=body, headers=KEY)
        assert resp.status == 403, await resp.text()
    before = _rejected("rejected_rate")
    over = await client.post(CALLBACKS, json=body, headers=KEY)
    assert over.status == 429 and over.content_type == "application/problem+json", await over.text()
    assert over.headers["Retry-After"] == "1" and "callbacks/s" in (await over.json())["detail"]
    assert _rejected("rejected_rate") == before + 1
    assert any("callback from esop refused: 429" in r.getMessage() for r in caplog.records)
    intake = await client.post(URL, json=order("E-CBR1"), headers=KEY)  # the orders' own bucket is untouched
    assert intake.status == 202, await intake.text()
    await asyncio.sleep(int(over.headers["Retry-After"]) + 0.1)
    again = await client.post(CALLBACKS, json=body, headers=KEY)
    assert again.status == 403, await again.text()
