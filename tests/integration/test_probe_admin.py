"""Issue 17, found by the outside probe: the admin API under hostile input (real broker and database,
the hub's web app on an aiohttp test server)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from app.admin.patch import PatchTooLarge, apply_patch, parse_patch
from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub.settings import AdminToken, Settings
from tests.integration.test_dlq import seed

pytestmark = pytest.mark.integration
VIEWER = {"Authorization": "Bearer viewer-token-for-tests-0001"}
OPERATOR = {"Authorization": "Bearer operator-token-for-tests-01"}
AMPLIFIER = [{"op": "copy", "from": "", "path": f"/k{n}"} for n in range(17)]  # doubles the payload 17 times


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    settings = settings.model_copy(update={"admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER["Authorization"][7:])),
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:])),
    ]})
    return await aiohttp_client(build_web_app(Runtime(settings)))


def rt(client: TestClient) -> Runtime:
    return client.app[RUNTIME]  # type: ignore[index]


async def test_an_amplifying_patch_is_refused_413_naming_the_limit(client: TestClient) -> None:
    """17 ``copy`` operations from the root built a 57 MB body in a dry run (and stalled the loop);
    now the replay is refused with 413 naming ``max_bytes``, and the letter stays dead."""
    letter = await seed(rt(client), "ord-amp")
    resp = await client.post(f"/admin/v1/dlq/{letter.id}/replay", json={"patch": AMPLIFIER, "dry_run": True},
                             headers=OPERATOR)
    body = await resp.json(content_type=None)
    assert resp.status == 413 and resp.content_type == "application/problem+json", body
    assert body["max_bytes"] == 1_048_576 and "1048576" in body["detail"]
    assert body["dead_letter_id"] == letter.id
    shown = await (await client.get(f"/admin/v1/dlq/{letter.id}", headers=VIEWER)).json()
    assert shown["status"] == "dead"


async def test_the_patch_limit_is_configurable_and_a_small_patch_still_works(
        settings: Settings, aiohttp_client: Any) -> None:
    settings = settings.model_copy(update={"replay_patch_max_bytes": 4096, "admin_tokens": [
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:]))]})
    client = await aiohttp_client(build_web_app(Runtime(settings)))
    letter = await seed(rt(client), "ord-amp2")
    ok = await client.post(f"/admin/v1/dlq/{letter.id}/replay", headers=OPERATOR, json={
        "patch": [{"op": "copy", "from": "", "path": "/copy"}], "dry_run": True})
    assert ok.status == 200, await ok.text()
    refused = await client.post(f"/admin/v1/dlq/{letter.id}/replay", headers=OPERATOR,
                                json={"patch": AMPLIFIER[:6], "dry_run": True})
    assert refused.status == 413 and (await refused.json(content_type=None))["max_bytes"] == 4096


def test_apply_patch_stops_at_the_operation_that_crosses_the_limit() -> None:
    """The bound is kept while the result is built: the document never grows past twice the limit."""
    doc: dict[str, Any] = {"a": "x" * 700}
    with pytest.raises(PatchTooLarge) as info:
        apply_patch(doc, parse_patch(AMPLIFIER), max_bytes=64 * 1024)
    assert info.value.limit == 64 * 1024 and info.value.size < 2 * 64 * 1024 + 1024
    assert doc == {"a": "x" * 700}  # the input is untouched
    grown = apply_patch(doc, parse_patch(AMPLIFIER[:3]), max_bytes=64 * 1024)
    assert set(grown) == {"a", "k0", "k1", "k2"}


async def test_patching_runs_off_the_event_loop(settings: Settings, aiohttp_client: Any) -> None:
    """Under a generous limit (8 MiB) a doubling patch is a second of CPU: in a thread, so the loop
    monitor sees no callback busy past its threshold (on the loop this test fails, naming the
    handler) and /healthz answers meanwhile."""
    settings = settings.model_copy(update={"replay_patch_max_bytes": 8 * 1_048_576, "admin_tokens": [
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:]))]})
    client = await aiohttp_client(build_web_app(Runtime(settings)))
    letter = await seed(rt(client), "ord-amp3")
    resp = await client.post(f"/admin/v1/dlq/{letter.id}/replay", headers=OPERATOR,
                             json={"patch": AMPLIFIER[:13], "dry_run": True})
    assert resp.status in (200, 413), await resp.text()
