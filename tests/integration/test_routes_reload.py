"""A running hub picks up changed route files; an invalid change is rejected (old route keeps
running, error on /readyz); a deleted file stops its route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub.settings import Settings
from tests.support import eventually

URL = "/api/v1/partners/acme/orders"
ORDER = {"external_order_id": "A-1", "product": "internet_line", "scenario": "open", "customer": {"name": "甲"}}


VIEWER = {"Authorization": "Bearer dev-viewer-token-0001"}  # config/hub.yaml's dev token


def rest_route(key: str) -> str:
    return ("source:\n  connector: rest\n  partner: acme\n  auth:\n    header: X-Api-Key\n"
            f"    keys: [\"{key}\"]\ntarget:\n  topic: inbound\n")


@pytest.fixture
async def client(settings: Settings, tmp_path: Path, aiohttp_client: Any) -> TestClient:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "acme-rest.yaml").write_text(rest_route("first-key-0001"))
    rt = Runtime(settings.model_copy(update={"config_dir": tmp_path}), partners={})
    return await aiohttp_client(build_web_app(rt))


async def status(client: TestClient, key: str) -> int:
    resp = await client.post(URL, json=ORDER, headers={"X-Api-Key": key})
    return resp.status


async def test_changed_route_file_is_reloaded_without_restart(client: TestClient, tmp_path: Path) -> None:
    assert await status(client, "first-key-0001") == 202
    path = tmp_path / "routes" / "acme-rest.yaml"
    path.write_text(rest_route("second-key-0002"))
    # the watcher (2 s poll) applies it — no restart, no explicit reload call
    await eventually(lambda: _is(status(client, "second-key-0002"), 202), timeout=15, interval=0.3)
    assert await status(client, "first-key-0001") == 401

    runtime = client.app[RUNTIME]
    path.write_text(rest_route("second-key-0002").replace("connector: rest", "connector: rest\n  colour: red"))
    await runtime.routes.reload()
    assert await status(client, "second-key-0002") == 202  # the old route keeps running
    ready = await (await client.get("/admin/v1/readiness", headers=VIEWER)).json()  # /readyz names no files
    (rejected,) = ready["checks"]["routes"]["rejected"]
    assert rejected["file"] == str(path) and any(f"{path}:3: source.rest.colour: Extra inputs are not permitted"
                                                 in p for p in rejected["problems"])
    assert ready["checks"]["routes"]["routes"]["acme-rest"]["state"] == "running"
    metrics = await (await client.get("/metrics")).text()
    assert 'hub_route_up{connector="rest",route="acme-rest"} 1.0' in metrics

    path.write_text(rest_route("second-key-0002"))  # the bad edit reverted: no longer reported
    await runtime.routes.reload()
    assert (await (await client.get("/readyz")).json())["checks"]["routes"]["rejected"] == []

    path.write_text(rest_route("third-key-00003"))
    await runtime.routes.reload()
    assert await status(client, "third-key-00003") == 202
    assert (await (await client.get("/readyz")).json())["checks"]["routes"]["rejected"] == []

    path.unlink()
    await runtime.routes.reload()
    assert await status(client, "third-key-00003") == 401  # no such partner any more: answered like a bad key

    # a new file that is invalid is reported and not started; once fixed, it starts
    fresh = tmp_path / "routes" / "acme-new.yaml"
    fresh.write_text(rest_route("short"))
    assert await runtime.routes.reload() == []
    ready = (await (await client.get("/admin/v1/readiness", headers=VIEWER)).json())["checks"]["routes"]
    assert "acme-new" not in ready["routes"] and "at least 8 characters" in str(ready["rejected"])
    fresh.write_text(rest_route("fourth-key-0004"))
    assert await runtime.routes.reload() == ["added acme-new"]
    assert await status(client, "fourth-key-0004") == 202


async def _is(coro: Any, expected: int) -> bool:
    return bool(await coro == expected)
