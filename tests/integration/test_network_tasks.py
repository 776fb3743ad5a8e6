"""Wireless parameter tasks (CATALOGUE P36.1/P36.2) through the real servers: a ``hub run`` on tansu,
SecantusDB and OpenSSH, the partner simulators in-process. A REST batch and an ARAN file on the SFTP drop
become task chunks that reach the simulated NMS under the one dedicated account, a chunk per call; the
alarm the NMS reports on a pushed cell is judged critical (emergency order, service affected); a batch
sent again pushes nothing; a bad batch is a 400 naming the task; a chunk the NMS refuses ends failed with
the NMS's error text. One hub for the whole module's test (its start is most of the cost)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from motor.motor_asyncio import AsyncIOMotorClient

from app.infra.servers import SftpServer
from hub.settings import PROJECT_ROOT, Settings
from simulators import serve
from simulators.server import callback_keys
from tests.conftest import free_port
from tests.integration.flow_harness import FlowEnv, Hub, Sim, fast_config, hub_env
from tests.support import eventually

ARAN = {"X-Api-Key": "dev-aran-key-0001"}
ACCOUNT = "hub-aran-bulk"
PATH = "/api/v1/network-tasks/wireless"


@asynccontextmanager
async def task_env(settings: Settings, tmp_path: Path, configure: Callable[[Path], None]) -> AsyncIterator[FlowEnv]:
    """flow_harness.running_flow_env, with its YAML work (four dozen partner files: ~300 ms of CPU) on
    a thread instead of the test's event loop."""
    await asyncio.to_thread(callback_keys, PROJECT_ROOT / "config")  # cached: serve() finds it parsed
    sim_port = free_port()
    runner, state = await serve(PROJECT_ROOT / "config", "127.0.0.1", sim_port)
    config_dir = await asyncio.to_thread(fast_config, tmp_path / "config")
    await asyncio.to_thread(configure, config_dir)
    hub = Hub(settings=settings, env=hub_env(settings, config_dir, sim_port), log_dir=tmp_path)
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    try:
        await hub.start()
        yield FlowEnv(hub=hub, sim=Sim(f"http://127.0.0.1:{sim_port}", state), db=client[settings.mongo_db],
                      settings=settings)
    finally:
        await asyncio.to_thread(hub.stop)
        await runner.cleanup()
        client.close()


def tasks(n: int, prefix: str) -> list[dict[str, str]]:
    """``n`` tasks; the 8th is an emergency change on CELL-000007, where the simulated NMS has an alarm."""
    return [{"task_id": f"{prefix}-{i:06d}", "order_no": f"WO-{prefix}-{i // 100}",
             "order_type": "emergency" if i == 7 else "optimisation", "ne": f"gNB-{i // 3:05d}",
             "cell": f"CELL-{i:06d}", "parameter": "pMax", "value": str(20 + i % 5)} for i in range(n)]


def csv_file(rows: list[dict[str, str]]) -> bytes:
    lines = ["TASK_ID,ORDER_NO,ORDER_TYPE,NE,CELL,PARAM,VALUE"]
    lines += [",".join((t["task_id"], t["order_no"], t["order_type"], t["ne"], t["cell"], t["parameter"],
                        t["value"])) for t in rows]
    return ("\n".join(lines) + "\n").encode()


async def post(env: FlowEnv, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(env.hub.url + PATH, json=body, headers=ARAN) as r:
        return r.status, await r.json(content_type=None)


async def batch(env: FlowEnv, batch_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{env.hub.url}{PATH}/{batch_id}", headers=ARAN) as r:
        return await r.json(content_type=None) if r.status == 200 else {}


async def completed(env: FlowEnv, batch_id: str, timeout: float = 30.0) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        doc = await batch(env, batch_id)
        return doc if doc.get("status") == "completed" else None

    try:
        return await eventually(done, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"batch {batch_id}: {await batch(env, batch_id)}\n{env.hub.log_tail()}") from None


def pushes(env: FlowEnv, batch_id: str) -> list[Any]:
    return [c for c in env.sim.calls("wireless_nms", "push_parameters") if c.body.get("batchId") == batch_id]


@pytest.mark.timeout(180)
async def test_wireless_tasks_from_rest_and_sftp_reach_the_nms_in_chunks_under_one_account(
        settings: Settings, tmp_path: Path) -> None:
    server = SftpServer(settings)
    tag = uuid.uuid4().hex[:8]
    local = server.root / f"t{tag}" / "aran"
    local.mkdir(parents=True)

    def configure(config: Path) -> None:
        path = config / "tasks" / "wireless.yaml"
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        cfg["anomaly"].update(watch_s=0, poll_s=0.1)
        cfg["sftp"].update(dir=f"/t{tag}/aran", poll_interval_s=0.3)
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")

    async with task_env(settings, tmp_path, configure) as env:
        # REST: 1,200 tasks = 3 chunks of 500, each one NMS call under the dedicated account
        status, answer = await post(env, {"batch_id": "B-REST-1", "tasks": tasks(1200, "R")})
        assert status == 202, answer
        assert answer == {"batch_id": "B-REST-1", "received": 1200, "tasks": 1200, "duplicate": False,
                          "account": ACCOUNT}
        doc = await completed(env, "B-REST-1")
        assert (doc["received"], doc["ok"], doc["failed"], doc["chunks"], doc["chunks_done"]) == (1200, 1200, 0, 3, 3)
        calls = pushes(env, "B-REST-1")
        assert sorted(len(c.body["tasks"]) for c in calls) == [200, 500, 500]
        assert {c.body["account"] for c in calls} == {ACCOUNT}
        assert {t["taskId"] for c in calls for t in c.body["tasks"]} == {t["task_id"] for t in tasks(1200, "R")}
        # P36.2: the alarm on CELL-000007 (an emergency order, service affected) is critical; CELL-999999 is
        # nobody's task, and no other pushed cell has an alarm
        assert doc["anomalies"] == 1
        (anomaly,) = doc["anomaly_list"]
        assert (anomaly["task_id"], anomaly["verdict"], anomaly["alarm"]) == ("R-000007", "critical", "小区退服")

        # the same batch again: accepted as a duplicate, nothing pushed twice
        status, again = await post(env, {"batch_id": "B-REST-1", "tasks": tasks(1200, "R")})
        assert (status, again["duplicate"], again["received"]) == (202, True, 0)
        assert len(pushes(env, "B-REST-1")) == 3

        # a bad batch is refused whole, naming the task and field
        bad = tasks(3, "X")
        bad[1]["cell"] = ""
        status, problem = await post(env, {"batch_id": "B-BAD", "tasks": bad})
        assert status == 400 and {"field": "tasks[1].cell", "message": "required"} in problem["errors"]
        assert await batch(env, "B-BAD") == {}

        # an ARAN file on the SFTP drop: one batch per file, processed/ after its chunks are stored
        rows = tasks(1000, "F")
        raw = csv_file(rows)
        (local / "WPARAM_20261202_001.csv").write_bytes(raw)
        (local / "WPARAM_20261202_001.csv.ok").write_bytes(b"")
        file_batch = "file-" + hashlib.sha256(raw).hexdigest()[:24]
        doc = await completed(env, file_batch)
        assert (doc["source"], doc["file"], doc["received"], doc["ok"]) == ("sftp", "WPARAM_20261202_001.csv",
                                                                           1000, 1000)
        assert {t["taskId"] for c in pushes(env, file_batch) for t in c.body["tasks"]} == {r["task_id"] for r in rows}
        assert (local / "processed" / "WPARAM_20261202_001.csv").is_file()

        # the NMS refuses: the chunk ends failed with the NMS's own error text, the batch still completes
        await env.sim.mode("wireless_nms", "error")
        status, _ = await post(env, {"batch_id": "B-REFUSED", "tasks": tasks(10, "N")})
        assert status == 202
        doc = await completed(env, "B-REFUSED")
        assert (doc["ok"], doc["failed"]) == (0, 10)
        assert all("wireless_nms 模拟失败" in f["message"] for f in doc["failed_tasks"]), json.dumps(doc)[:500]
