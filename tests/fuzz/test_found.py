"""What the schemathesis run found, each as the request it sent, against the real app: it must fail
on the code before the fix (a 500) and pass after (a 4xx problem+json)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import Settings

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]
OPERATOR = {"Authorization": "Bearer dev-operator-token-0001"}


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(build_web_app(Runtime(settings)))


@pytest.mark.parametrize(("path", "body"), [
    # schemathesis: `int(rate * lease / 3)` in ReplayService.replay was an OverflowError → 500
    ("/admin/v1/dlq/replay", {"all": True, "dry_run": True, "rate": 1.1895990557645197e+308}),
    ("/admin/v1/dlq/replay", {"all": True, "dry_run": True, "rate": 10, "lease_s": 4.756856582473038e+235}),
    ("/admin/v1/calls/recall", {"filter": {"order_id": None}, "limit": 225468, "rate": 1.2514310841249153e+308}),
])
async def test_a_replay_rate_or_lease_past_its_bound_is_a_400_naming_it(
        client: TestClient, path: str, body: dict[str, Any]) -> None:
    resp = await client.post(path, json=body, headers=OPERATOR)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    fields = {e["field"] for e in (await resp.json())["errors"]}
    assert fields & {"rate", "lease_s"}, fields


async def test_a_page_skip_past_the_int64_range_is_a_400_not_an_overflow(client: TestClient) -> None:
    """schemathesis: ``GET /admin/v1/dlq?skip=861630536671806357504`` was a 500 (the driver's
    OverflowError: BSON integers are 8 bytes)."""
    for path in ("/admin/v1/dlq", "/admin/v1/orders"):
        resp = await client.get(path, params={"skip": "861630536671806357504"}, headers=OPERATOR)
        assert resp.status == 400, (path, await resp.text())
        assert (await resp.json())["errors"][0]["field"] == "skip"
