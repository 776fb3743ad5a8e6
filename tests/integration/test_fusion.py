"""Fusion "one visit" orders on the real servers (issue 13 §Tests): two ``hub run`` workers sharing the
partitions, the maintenance simulator (代维管理系统), the fragment config/flows/fragments/
fusion_wait_dispatch.yaml on the fixture blueprint (tests/fixtures/fusion/fusion_one_visit.yaml) for two
test products. One environment for the module; the kill -9 test runs last (its victim stays down)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiokafka.partitioner import murmur2
from motor.motor_asyncio import AsyncIOMotorClient

from hub.settings import PROJECT_ROOT, Settings
from simulators import serve
from tests.conftest import _drop_topics, free_port
from tests.integration.flow_harness import ESOP_KEY, OPERATOR, FlowEnv, Hub, Sim, fast_config, hub_env
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
PRODUCTS = ("fusion_line", "fusion_camera")  # fusion_line is line-bearing (its taker leads, D.1.7)
WAIT_S = 3  # the test products' wait before a group is incomplete (config/fusion.yaml wait.products)
VIEWER = {"Authorization": "Bearer dev-viewer-token-0001"}


def config_dir(tmp: Path) -> Path:
    conf = fast_config(tmp / "config")
    fixture = yaml.safe_load((PROJECT_ROOT / "tests/fixtures/fusion/fusion_one_visit.yaml").read_text("utf-8"))
    fixture["nodes"]["after_fusion"] = {"kind": "auto", "title": "施工完成", "next": "done"}
    for product in PRODUCTS:
        (conf / "flows" / product).mkdir()
        bp = {**fixture, "name": f"{product.replace('_', '-')}-open", "product": product, "scenario": "open"}
        (conf / "flows" / product / "open.yaml").write_text(yaml.safe_dump(bp, allow_unicode=True), "utf-8")
    fusion = yaml.safe_load((conf / "fusion.yaml").read_text("utf-8"))
    fusion["wait"]["products"] = {p: WAIT_S for p in PRODUCTS}
    fusion["line_bearing"] = ["fusion_line"]
    (conf / "fusion.yaml").write_text(yaml.safe_dump(fusion, allow_unicode=True), "utf-8")
    return conf


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two(infra_settings: Settings, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[tuple[FlowEnv, Hub]]:
    """Two workers (a, b) on one topic prefix and database, for the whole module."""
    tmp = tmp_path_factory.mktemp("fusion")
    tag = uuid.uuid4().hex[:10]
    settings = infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}"})
    sim_port = free_port()
    runner, state = await serve(PROJECT_ROOT / "config", "127.0.0.1", sim_port)
    conf = await asyncio.to_thread(config_dir, tmp)
    b_env = hub_env(settings, conf, sim_port, "w-b")
    public = {"HUB_PUBLIC_URL": f"http://127.0.0.1:{b_env['HUB_HTTP_PORT']}"}  # callbacks reach the survivor
    a = Hub(settings=settings, env={**hub_env(settings, conf, sim_port, "w-a"), **public}, log_dir=tmp / "a")
    b = Hub(settings=settings, env={**b_env, **public}, log_dir=tmp / "b")
    for hub in (a, b):
        hub.log_dir.mkdir()
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    try:
        await asyncio.gather(a.start(), b.start())
        yield FlowEnv(hub=b, sim=Sim(f"http://127.0.0.1:{sim_port}", state), db=client[settings.mongo_db],
                      settings=settings), a
    finally:
        await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
        await runner.cleanup()
        await client.drop_database(settings.mongo_db)
        client.close()
        await asyncio.to_thread(_drop_topics, settings)


def member(key: str, ext: str, ids: list[str], product: str, detail: str, **fusion: Any) -> dict[str, Any]:
    return {"external_order_id": ext, "product": product, "scenario": "open", "customer": {"name": "某某酒店"},
            "addresses": [{"role": "install", "city": "郑州", "detail": detail}],
            "fusion": {"fusion_key": key, "is_fusion": True, "related_count": len(ids), "related_order_ids": ids,
                       **fusion}}


async def post(hub: Hub, body: dict[str, Any], expect: int = 202) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{hub.url}/api/v1/partners/esop/orders", json=body,
                                                    headers=ESOP_KEY) as r:
        assert r.status == expect, await r.text()
        return {**await r.json(content_type=None), "duplicate": r.headers.get("Hub-Duplicate") == "true"}


async def admin(hub: Hub, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    headers = OPERATOR if method == "POST" else VIEWER
    async with aiohttp.ClientSession() as s, s.request(method, f"{hub.url}/admin/v1{path}", headers=headers,
                                                       **kw) as r:
        return r.status, await r.json(content_type=None)


def cli(hub: Hub, *args: str) -> str:
    """``hub fusion …`` in this process (in a thread: it runs its own loop), on the test's database."""
    from typer.testing import CliRunner

    from app.cli.fusion import app

    env = {k: hub.env[k] for k in ("HUB_MONGO_DB", "HUB_TOPIC_PREFIX", "HUB_CONFIG_DIR")}
    out = CliRunner().invoke(app, list(args), env=env)
    assert out.exit_code == 0, out.output
    return out.stdout


def maintenance(env: FlowEnv, operation: str = "construction_order") -> list[Any]:
    return [c for c in env.sim.calls("maintenance", operation) if c.answered == "ok"]


async def completed(env: FlowEnv, ids: list[str], timeout: float = 90) -> None:
    async def done() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": ids}, "status": "completed"}) == len(ids)

    try:
        await eventually(done, timeout=timeout, interval=0.2)
    except AssertionError:
        rows = [(d["_id"], d.get("status"), d.get("current_stage")) async for d in env.db.orders.find(
            {"_id": {"$in": ids}}, {"status": 1, "current_stage": 1})]
        raise AssertionError(f"{rows}\n{env.hub.log_tail()}") from None


async def at_wait(env: FlowEnv, ids: list[str], state: str = "waiting") -> None:
    async def there() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": ids}, "current_stage": "fusion_wait",
                                                    "state.data.fusion_group.state": state}) == len(ids)

    await eventually(there, timeout=60, interval=0.2)


async def test_groups_across_partitions_and_workers_out_of_order_and_duplicated(two: tuple[FlowEnv, Hub]) -> None:
    env, other = two
    rng = random.Random(13)
    groups = {f"FG-{g}": [f"FG-{g}-{m}" for m in range(2 + g % 3)] for g in range(8)}
    bodies = [member(key, ext, ids, PRODUCTS[i % 2], "金水区花园路18号" if i < 2 else "中原区建设西路11号")
              for key, ids in groups.items() for i, ext in enumerate(ids)]
    rng.shuffle(bodies)
    answers = [await post((env.hub, other)[i % 2], body) for i, body in enumerate(bodies)]  # both workers' intakes
    for body in rng.sample(bodies, 6):  # ESOP sends some twice: the intake's duplicate, no second member
        assert (await post(other, body))["duplicate"] is True
    ids = [a["order_id"] for a in answers]
    partitions = {i: murmur2(i.encode()) & 0x7FFFFFFF % 4 for i in ids}
    assert len(set(partitions.values())) > 1  # the members land on several partitions (and both workers)
    await completed(env, ids)
    calls = maintenance(env)
    assert Counter(c.body["hubOrderId"] for c in calls) == Counter(dict.fromkeys(ids, 1))  # each member once
    tasks: dict[str, set[str]] = {}
    for c in calls:
        tasks.setdefault(c.body["task"]["task_id"], set()).add(c.body["orderId"])
        assert {m["external_order_id"] for m in c.body["task"]["members"]} <= set(groups[c.body["task"]["group_key"]])
    for key, exts in groups.items():  # one task per address: the first two members share one
        mine = [t for t, members in tasks.items() if members <= set(exts)]
        assert len(mine) == (1 if len(exts) == 2 else 2), (key, tasks)
    # D.1.6 / D.1.7 through the admin API: every member of a group shows every member's taker
    status, group = await admin(env.hub, "GET", "/fusion/FG-2")
    assert status == 200 and group["state"] == "dispatched" and group["arrived"] == 4 and group["tasks"] == 2
    assert all(t["taker"]["name"].endswith("接单人") and t["status"] == "completed" for t in group["takers"])
    assert {m["business_type"] for m in group["members"]} == set(PRODUCTS)
    assert all(m["link"] == f"/admin/v1/orders/{m['order_id']}" for m in group["members"])
    # the same through the CLI (hub fusion show KEY --json, hub fusion list --json)
    shown = json.loads(await asyncio.to_thread(cli, env.hub, "show", "FG-2", "--json"))
    assert shown["takers"] == group["takers"]
    assert shown["members"][0]["installation_address"]["detail"] != "金水区花园路18号"  # masked
    listed = json.loads(await asyncio.to_thread(cli, env.hub, "list", "--state", "dispatched", "--json"))
    assert set(groups) <= {r["fusion_key"] for r in listed}
    # a member contradicting itself is refused at the intake, with the reason
    refused = await post(env.hub, member("FG-X", "FG-X-0", ["FG-X-0"], PRODUCTS[0], "花园路1号"), expect=400)
    assert "related_count >= 2" in str(refused)


async def test_timeout_then_release_wait_and_cancel(two: tuple[FlowEnv, Hub]) -> None:
    env, other = two
    first = {}
    for key in ("FT-REL", "FT-WAIT", "FT-CAN"):
        first[key] = (await post(env.hub, member(key, f"{key}-0", [f"{key}-0", f"{key}-1"], PRODUCTS[0],
                                                 "金水区花园路18号")))["order_id"]
    await at_wait(env, list(first.values()), "incomplete")  # WAIT_S later: incomplete, an alert, still waiting
    doc = await env.order(first["FT-REL"])
    assert doc is not None and doc["blocked_reason"] == ("fusion group FT-REL incomplete: 1 of 2 orders after the "
                                                         "deadline; hub fusion release|wait|cancel FT-REL")
    assert [a["kind"] for a in doc["state"]["data"]["fusion_alerts"]] == ["incomplete"]
    status, rows = await admin(env.hub, "GET", "/fusion", params={"state": "incomplete"})
    assert status == 200 and {"FT-REL", "FT-WAIT", "FT-CAN"} <= {r["fusion_key"] for r in rows}
    assert await admin(env.hub, "POST", "/fusion/FT-REL/release", json={"reason": "客户催装"}) == (
        202, {"fusion_key": "FT-REL", "decision": "release", "orders": [first["FT-REL"]], "waiting": 1})
    assert (await admin(env.hub, "POST", "/fusion/FT-WAIT/wait", json={}))[0] == 202
    assert (await admin(env.hub, "POST", "/fusion/FT-CAN/cancel", json={"reason": "ESOP 未补单"}))[0] == 202
    await completed(env, [first["FT-REL"]])  # released alone: its task has only itself
    rel = [c for c in maintenance(env) if c.body["hubOrderId"] == first["FT-REL"]]
    assert len(rel) == 1 and rel[0].body["task"]["group_state"] == "released"
    await env.wait_order(first["FT-CAN"], lambda d: d["status"] == "cancelled")
    await at_wait(env, [first["FT-WAIT"]], "waiting")  # a new deadline
    late = (await post(other, member("FT-WAIT", "FT-WAIT-1", ["FT-WAIT-0", "FT-WAIT-1"], PRODUCTS[1],
                                     "金水区花园路18号")))["order_id"]
    await completed(env, [first["FT-WAIT"], late])
    actions = [a["action"] async for a in env.db.dlq_actions.find({"action": {"$regex": "^fusion_"}})]
    assert sorted(actions) == ["fusion_cancel", "fusion_release", "fusion_wait"]
    assert (await admin(env.hub, "POST", "/fusion/NO-SUCH/release", json={}))[0] == 404


async def test_withdrawn_while_waiting_and_count_mismatch(two: tuple[FlowEnv, Hub]) -> None:
    env, other = two
    ids = ["FW-0", "FW-1", "FW-2"]
    a = (await post(env.hub, member("FW", "FW-0", ids, PRODUCTS[0], "花园路18号")))["order_id"]
    b = (await post(other, member("FW", "FW-1", ids, PRODUCTS[1], "花园路18号")))["order_id"]
    await at_wait(env, [a, b])
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/api/v1/orders/{b}/cancel",
                                                    json={"reason": "ESOP 撤单"}, headers=OPERATOR) as r:
        assert r.status == 202, await r.text()
    await env.wait_order(b, lambda d: d["status"] == "cancelled")
    await env.wait_order(a, lambda d: d["state"]["data"]["fusion_group"]["arrived"] == 1)  # b taken back
    # a later member is not handed b's message any more (its correlation row is gone): 2 of 3, both wait
    c = (await post(other, member("FW", "FW-2", ids, PRODUCTS[1], "花园路18号")))["order_id"]
    await env.wait_order(c, lambda d: (d["state"]["data"].get("fusion_group") or {}).get("arrived") == 2)
    await env.wait_order(a, lambda d: d["state"]["data"]["fusion_group"]["arrived"] == 2)
    assert (await env.order(c) or {}).get("current_stage") == "fusion_wait"
    # a member contradicting the group (count 2, not 3) arrives later: refused with the reason, alert on a
    bad = (await post(other, member("FW", "FW-3", ["FW-0", "FW-3"], PRODUCTS[1], "花园路18号")))["order_id"]
    doc = await env.wait_order(bad, lambda d: d["status"] == "failed")
    assert "contradicts the group's 3" in str(doc["replies"])
    await env.wait_order(a, lambda d: [x["kind"] for x in d["state"]["data"].get("fusion_alerts", [])] == ["conflict"])
    assert [m for m in maintenance(env) if m.body["hubOrderId"] in (a, b, c, bad)] == []  # nothing dispatched


async def hold(env: FlowEnv, oid: str, verb: str, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/api/v1/orders/{oid}/{verb}", json=body,
                                                    headers=OPERATOR) as r:
        assert r.status == 202, await r.text()


async def test_suspend_and_resume_of_a_member_reach_the_maintenance_system(two: tuple[FlowEnv, Hub]) -> None:
    """D.1.8 停机 of a member whose visit is pending: the maintenance system gets suspend_member at once
    (the fragment's on_suspend, not queued behind the hold) and resume_member on resume; the group's
    other member completes meanwhile; the held member's callback, kept, completes it after resume."""
    env, other = two
    ids = ["FS-0", "FS-1"]
    await env.sim.mode("maintenance", "ok", callback_delay_s=10)  # both visits pending for a while
    try:
        a = (await post(env.hub, member("FS", "FS-0", ids, PRODUCTS[0], "花园路18号")))["order_id"]
        b = (await post(other, member("FS", "FS-1", ids, PRODUCTS[1], "花园路18号")))["order_id"]

        async def dispatched() -> bool:
            return {c.body["hubOrderId"] for c in maintenance(env)} >= {a, b}

        await eventually(dispatched, timeout=60, interval=0.1)
        task = next(c.body["task"]["task_id"] for c in maintenance(env) if c.body["hubOrderId"] == b)
        await hold(env, b, "suspend", {"reason": "ESOP 停机", "by": "esop-ops"})

        async def told(operation: str) -> list[Any]:
            return [c for c in maintenance(env, operation) if c.body["hubOrderId"] == b]

        await eventually(lambda: told("suspend_member"), timeout=30, interval=0.1)
        (sent,) = await told("suspend_member")
        assert sent.body["taskId"] == task and sent.body["reason"] == "ESOP 停机"
        doc = await env.order(b)
        assert doc is not None and doc["status"] != "completed" and doc["state"]["suspended"]
        await completed(env, [a])  # the other member goes on
        await env.wait_order(b, lambda d: bool(d["state"]["suspended"]["events"]))  # its callback, kept
        assert (await env.order(b) or {}).get("current_stage") == "fusion_dispatch"
        assert await told("resume_member") == []
        await hold(env, b, "resume", {"by": "esop-ops"})
        await completed(env, [b])
        (back,) = await eventually(lambda: told("resume_member"), timeout=30, interval=0.1)  # relayed apart
        assert back.body["taskId"] == task and back.at > sent.at
    finally:
        await env.sim.mode("maintenance", "ok")


async def test_kill_9_while_groups_wait_and_while_dispatching(two: tuple[FlowEnv, Hub]) -> None:
    env, victim = two
    waiting = [(await post(victim, member(f"FK-W{g}", f"FK-W{g}-0", [f"FK-W{g}-0", f"FK-W{g}-1"], PRODUCTS[0],
                                          "花园路18号")))["order_id"] for g in range(3)]
    await at_wait(env, waiting)
    await env.sim.mode("maintenance", "slow", delay_s=3)  # dispatch in flight at the kill
    sending = [(await post(victim, body))["order_id"] for g in range(3) for body in (
        member(f"FK-D{g}", f"FK-D{g}-0", [f"FK-D{g}-0", f"FK-D{g}-1"], PRODUCTS[0], "花园路18号"),
        member(f"FK-D{g}", f"FK-D{g}-1", [f"FK-D{g}-0", f"FK-D{g}-1"], PRODUCTS[1], "花园路18号"))]

    async def dispatching() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": sending}, "current_stage": "fusion_dispatch"}) > 0

    await eventually(dispatching, timeout=60, interval=0.1)
    await asyncio.to_thread(victim.kill)
    await env.sim.mode("maintenance", "ok")
    rest = [(await post(env.hub, member(f"FK-W{g}", f"FK-W{g}-1", [f"FK-W{g}-0", f"FK-W{g}-1"], PRODUCTS[1],
                                        "花园路18号")))["order_id"] for g in range(3)]
    mine = waiting + sending + rest
    await completed(env, mine, timeout=90)
    calls = [c for c in maintenance(env) if c.body["hubOrderId"] in mine]
    # each member accepted once by the maintenance system (a re-send after the takeover is its duplicate)
    assert Counter(c.body["hubOrderId"] for c in calls) == Counter(dict.fromkeys(mine, 1))
    tasks = Counter(c.body["task"]["task_id"] for c in calls)
    assert sorted(tasks.values()) == [2] * 6  # one task per group (one address), both members on it
