"""Network configuration tasks through the real servers: a ``hub run`` on tansu, SecantusDB and OpenSSH,
the partner simulators in-process, one hub for the module.

Wireless parameter tasks (CATALOGUE P36.1/P36.2): a REST batch and an ARAN file on the SFTP drop become
task chunks that reach the simulated NMS under the one dedicated account, a chunk per call; the alarm the
NMS reports on a pushed cell is judged critical (emergency order, service affected); a batch sent again
pushes nothing; a bad batch is a 400 naming the task; a chunk the NMS refuses ends failed with the NMS's
error text. Task orders (P40 from RC) and IoT orders (D.3) complete through the simulators' callback paths:
CAM's ONU replacement, BBOSS's M-HLR opening and product order, PBOSS's and the province operations
platform's sync reports."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from motor.motor_asyncio import AsyncIOMotorClient

from app.infra.servers import SftpServer
from hub.settings import PROJECT_ROOT, Settings
from simulators import serve
from tests.conftest import _drop_topics, free_port
from tests.integration.flow_harness import ESOP_KEY, FlowEnv, Hub, Sim, fast_config, hub_env
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
ARAN = {"X-Api-Key": "dev-aran-key-0001"}
ACCOUNT = "hub-aran-bulk"
PATH = "/api/v1/network-tasks/wireless"


def configure(config: Path, drop: str) -> Path:
    """A fast copy of config/ whose wireless tasks are judged at once and whose drop is the test's."""
    fast_config(config)
    path = config / "tasks" / "wireless.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["anomaly"].update(watch_s=0, poll_s=0.1)
    cfg["sftp"].update(dir=drop, poll_interval_s=0.3)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(infra_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FlowEnv]:
    """One hub run for the module (its start is most of the cost), its YAML work on threads: parsing four
    dozen partner files takes ~300 ms of CPU, which the loop check refuses on the test's loop."""
    tmp = tmp_path_factory.mktemp("network-tasks")
    tag = uuid.uuid4().hex[:10]
    settings = infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}"})
    (SftpServer(settings).root / f"t{tag}" / "aran").mkdir(parents=True)
    sim_port = free_port()
    runner, state = await serve(PROJECT_ROOT / "config", "127.0.0.1", sim_port)
    config_dir = await asyncio.to_thread(configure, tmp / "config", f"/t{tag}/aran")
    hub = Hub(settings=settings, env=hub_env(settings, config_dir, sim_port), log_dir=tmp)
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    try:
        await hub.start()
        yield FlowEnv(hub=hub, sim=Sim(f"http://127.0.0.1:{sim_port}", state), db=client[settings.mongo_db],
                      settings=settings)
    finally:
        await asyncio.to_thread(hub.stop)
        await runner.cleanup()
        await client.drop_database(settings.mongo_db)
        client.close()
        await asyncio.to_thread(_drop_topics, settings)


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


async def completed(env: FlowEnv, batch_id: str, timeout: float = 90.0) -> dict[str, Any]:  # 30 s: too short
    async def done() -> dict[str, Any] | None:
        doc = await batch(env, batch_id)
        return doc if doc.get("status") == "completed" else None

    try:
        return await eventually(done, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"batch {batch_id}: {await batch(env, batch_id)}\n{env.hub.log_tail()}") from None


def pushes(env: FlowEnv, batch_id: str) -> list[Any]:
    return [c for c in env.sim.calls("wireless_nms", "push_parameters") if c.body.get("batchId") == batch_id]


async def test_a_rest_batch_goes_out_in_chunks_under_one_account_and_its_anomaly_is_found(env: FlowEnv) -> None:
    # 1,200 tasks = 3 chunks of 500, each one NMS call under the dedicated account
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


async def test_an_aran_file_on_the_sftp_drop_is_one_batch(env: FlowEnv) -> None:
    local = SftpServer(env.settings).root / env.settings.topic_prefix / "aran"
    rows = tasks(1000, "F")
    raw = csv_file(rows)
    (local / "WPARAM_20261202_001.csv").write_bytes(raw)
    (local / "WPARAM_20261202_001.csv.ok").write_bytes(b"")
    file_batch = "file-" + hashlib.sha256(raw).hexdigest()[:24]
    doc = await completed(env, file_batch)
    assert (doc["source"], doc["file"], doc["received"], doc["ok"]) == ("sftp", "WPARAM_20261202_001.csv", 1000, 1000)
    assert {t["taskId"] for c in pushes(env, file_batch) for t in c.body["tasks"]} == {r["task_id"] for r in rows}
    assert (local / "processed" / "WPARAM_20261202_001.csv").is_file()


async def test_a_chunk_the_nms_refuses_ends_failed_with_its_error_text(env: FlowEnv) -> None:
    await env.sim.mode("wireless_nms", "error")
    try:
        status, _ = await post(env, {"batch_id": "B-REFUSED", "tasks": tasks(10, "N")})
        assert status == 202
        doc = await completed(env, "B-REFUSED")
    finally:
        await env.sim.mode("wireless_nms", "ok")
    assert (doc["ok"], doc["failed"]) == (0, 10)
    assert all("wireless_nms 模拟失败" in f["message"] for f in doc["failed_tasks"]), json.dumps(doc)[:500]


def order(product: str, scenario: str, external_id: str, **extensions: Any) -> dict[str, Any]:
    return {"external_order_id": external_id, "product": product, "scenario": scenario,
            "customer": {"name": "测试客户"}, "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
            "extensions": extensions}


async def post_order(env: FlowEnv, partner: str, key: str, body: dict[str, Any]) -> str:
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/api/v1/partners/{partner}/orders", json=body,
                                                    headers={"X-Api-Key": key}) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["order_id"])


async def test_task_and_iot_orders_complete_through_the_callback_simulators(env: FlowEnv) -> None:
    ec = {"ec_code": "EC571000123"}
    ids = await asyncio.gather(
        post_order(env, "resource", "dev-resource-in-key-0001", order(
            "onu_replacement", "onu_replace", "RC-ONU-9", service_type="voice_line", vendor="huawei",
            olt="OLT-HZ-01", pon_port="0/1/1", old_onu_sn="HWTC00000001", new_onu_sn="HWTC00000002")),
        post_order(env, "esop", ESOP_KEY["X-Api-Key"], order(
            "iot_member", "open", "ESOP-IOT-M1", iccid="8986000000000000009", member_products=["IOT-SMS"], **ec)),
        post_order(env, "esop", ESOP_KEY["X-Api-Key"], order(
            "iot_class1_local", "open", "ESOP-IOT-L1", iot_product="IOT-CLASS1-LOCAL", **ec)),
        post_order(env, "esop", ESOP_KEY["X-Api-Key"], order(
            "iot_class23", "open", "ESOP-IOT-23", iot_product="IOT-CLASS2-PLATFORM", **ec)))
    for order_id in ids:
        await env.wait_order(order_id, lambda d: d.get("status") == "completed", timeout=60)
    assert [c.body["newOnuSn"] for c in env.sim.calls("cam", "onu_replace")] == ["HWTC00000002"]
    assert [c.body["result"] for c in env.sim.calls("resource", "onu_replace_result")] == ["success"]
    (hlr,) = env.sim.calls("bboss", "member_open")
    assert hlr.body["ki"] == "0123456789ABCDEF0123456789ABCDEF" and hlr.body["msisdn"].startswith("1480")
    assert len(env.sim.calls("iot_pboss", "ec_order")) == len(env.sim.calls("iot_ops_province", "order_sync")) == 1
    assert len(env.sim.calls("esop", "notifyOrderResult")) == 3  # the SOAP operation of close_report


def hub_cli(env: FlowEnv, *args: str) -> Any:
    """``hub …`` in-process (a subprocess costs ~10 s of imports on a loaded machine), with the hub's settings."""
    from typer.testing import CliRunner

    from app.cli import app as cli

    keys = ("HUB_CONFIG_DIR", "HUB_MONGO_DB", "HUB_TOPIC_PREFIX")
    result = CliRunner().invoke(cli, list(args), env={k: env.hub.env[k] for k in keys})
    assert result.exit_code == 0, result.output[-2000:]
    return json.loads(result.stdout)


async def test_operators_see_the_batches_with_hub_tasks_wireless(env: FlowEnv) -> None:
    await completed(env, "B-REST-1")  # the first test's batch (module order)
    listed = await asyncio.to_thread(hub_cli, env, "tasks", "wireless", "list", "--json")
    shown = await asyncio.to_thread(hub_cli, env, "tasks", "wireless", "show", "B-REST-1", "--json")
    rows = {r["_id"]: r for r in listed}
    assert rows["B-REST-1"]["ok"] == 1200 and rows["B-REST-1"]["status"] == "completed"
    assert shown["account"] == ACCOUNT and [a["task_id"] for a in shown["anomaly_list"]] == ["R-000007"]
