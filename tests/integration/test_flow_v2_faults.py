"""The v2 runtime under faults (issue 10 Tests), on the real servers with real ``hub run`` workers:

* a MongoDB outage under load → every order completes after it, no event is dead-lettered;
* two workers share the partitions; one is killed with SIGKILL under load → the survivor takes its
  partitions, every order completes exactly once within 30 s of the kill, and no update is lost
  (a lost write of one branch would leave its join waiting forever);
* in every run, no partner sees a call twice.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from app.infra.servers import MongoServer
from hub.settings import PROJECT_ROOT, Settings
from simulators import serve
from tests.conftest import free_port
from tests.integration.flow_harness import (
    FlowEnv,
    Hub,
    Sim,
    fast_config,
    hub_env,
    replace_shipped_flows,
    unexplained_duplicates,
)
from tests.support import eventually

pytestmark = pytest.mark.integration
FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "flows" / "runtime"
N = 24


def config_with_fixtures(tmp_path: Path) -> Path:
    config_dir = fast_config(tmp_path / "config")
    for fixture in FIXTURES.glob("*.yaml"):
        shutil.copy(fixture, config_dir / "flows" / fixture.name)
    replace_shipped_flows(config_dir / "flows")
    return config_dir


def duplicates(sim: Sim, partner: str, hubs: list[Hub] | None = None) -> dict[str, int]:
    """Keys the partner got twice, but for a logged take-over from an owner killed mid-call."""
    return unexplained_duplicates((c.idempotency_key for c in sim.calls(partner)), hubs or [])


async def wait_all(env: FlowEnv, ids: list[str], timeout: float) -> float:
    started = time.monotonic()

    async def done() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": ids}, "status": "completed"}) == len(ids)

    try:
        await eventually(done, timeout=timeout, interval=0.3)
    except AssertionError:
        stuck = [{k: d.get(k) for k in ("_id", "status", "current_nodes", "blocked_reason", "timers", "outbox",
                                                         "open_calls", "applied")}
                 async for d in env.db.orders.find({"_id": {"$in": ids}, "status": {"$ne": "completed"}})]
        raise AssertionError(f"{len(stuck)} order(s) not completed: {stuck[:3]}\n{env.hub.log_tail()}") from None
    return time.monotonic() - started


@pytest.fixture
async def outage_env(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[FlowEnv, MongoServer]]:
    """The flow harness on a SecantusDB only this test uses (so it can be stopped and started)."""
    mine = settings.model_copy(update={"home": tmp_path / "mongo-home", "mongo_port": free_port(), "mongo_url": None})
    server = MongoServer(mine)
    server.process.start(server.argv())
    await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
    sim_port = free_port()
    runner, state = await serve(PROJECT_ROOT / "config", "127.0.0.1", sim_port)
    config_dir = await asyncio.to_thread(config_with_fixtures, tmp_path)
    env = hub_env(settings, config_dir, sim_port, f"w-{settings.topic_prefix}",
                  HUB_MONGO_URL=mine.mongo_uri)
    hub = Hub(settings=settings, env=env, log_dir=tmp_path)
    client = AsyncIOMotorClient(mine.mongo_uri, tz_aware=True)
    try:
        await hub.start()
        yield FlowEnv(hub=hub, sim=Sim(f"http://127.0.0.1:{sim_port}", state), db=client[settings.mongo_db],
                      settings=settings), server
    finally:
        await asyncio.to_thread(hub.stop)
        await runner.cleanup()
        client.close()
        server.process.stop()


async def test_every_order_completes_after_a_mongodb_outage_under_load(
        outage_env: tuple[FlowEnv, MongoServer]) -> None:
    env, server = outage_env
    ids = [await env.post_order("esop", f"ESOP-OUT-{i}", "internet_line", scenario="move") for i in range(N)]

    async def some_started() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": ids}}) >= N // 2

    await eventually(some_started, timeout=30)
    await asyncio.to_thread(server.process.stop, 0)  # kill -9: MongoDB is gone mid-flight
    await asyncio.sleep(6)
    server.process.start(server.argv())
    await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
    took = await wait_all(env, ids, timeout=60)
    assert await env.db.dead_letters.count_documents({}) == 0  # waited out, not dead-lettered
    assert duplicates(env.sim, "resource") == {} and duplicates(env.sim, "esop") == {}
    closes = Counter(c.body["orderId"] for c in env.sim.calls("esop", "notifyOrderResult"))
    assert closes == Counter({f"ESOP-OUT-{i}": 1 for i in range(N)}), took


@pytest.fixture
async def two_workers(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[FlowEnv, Hub]]:
    sim_port = free_port()
    runner, state = await serve(PROJECT_ROOT / "config", "127.0.0.1", sim_port)
    config_dir = await asyncio.to_thread(config_with_fixtures, tmp_path)
    b_env = hub_env(settings, config_dir, sim_port, "w-b")
    # partners call back the hub's public address (in production a load balancer in front of every
    # worker); here that is the survivor, so callbacks of the victim's calls still arrive
    public = {"HUB_PUBLIC_URL": f"http://127.0.0.1:{b_env['HUB_HTTP_PORT']}"}
    a = Hub(settings=settings, env={**hub_env(settings, config_dir, sim_port, "w-a"), **public}, log_dir=tmp_path / "a")
    b = Hub(settings=settings, env={**b_env, **public}, log_dir=tmp_path / "b")
    for hub in (a, b):
        hub.log_dir.mkdir()
    client = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    try:
        await a.start()
        await b.start()
        yield FlowEnv(hub=b, sim=Sim(f"http://127.0.0.1:{sim_port}", state), db=client[settings.mongo_db],
                      settings=settings), a
    finally:
        await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
        await runner.cleanup()
        client.close()


async def test_a_worker_killed_while_another_runs_its_orders_complete_once_within_30s(
        two_workers: tuple[FlowEnv, Hub]) -> None:
    env, victim = two_workers  # env.hub is the survivor
    ids = [await env.post_order("esop", f"ESOP-TWO-{i}", "internet_line", scenario="move") for i in range(N)]

    async def in_flight() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": ids}, "timers": {"$ne": {}}}) >= N // 2

    await eventually(in_flight, timeout=30)
    victim.kill()
    took = await wait_all(env, ids, timeout=30)
    assert took < 30
    hubs = [env.hub, victim]
    assert duplicates(env.sim, "resource", hubs) == {} and duplicates(env.sim, "esop", hubs) == {}
    closes = Counter(c.body["orderId"] for c in env.sim.calls("esop", "notifyOrderResult"))
    assert closes == Counter({f"ESOP-TWO-{i}": 1 for i in range(N)})


async def test_a_second_worker_joining_under_load_loses_no_update(two_workers: tuple[FlowEnv, Hub]) -> None:
    """A rebalance under load (a worker stopped and started again while orders run): events of one
    order may be applied by two processes around the hand-over; the revision token makes the loser
    reload, so no branch's update is lost (a lost one would leave its join waiting) and every order
    completes once."""
    env, other = two_workers
    ids = [await env.post_order("esop", f"ESOP-REB-{i}", "internet_line", scenario="move") for i in range(N)]
    await asyncio.to_thread(other.stop)  # partitions move to the survivor…
    await other.start()  # …and back: two rebalances while the orders run
    await wait_all(env, ids, timeout=60)
    assert duplicates(env.sim, "resource") == {} and duplicates(env.sim, "esop") == {}
    closes = Counter(c.body["orderId"] for c in env.sim.calls("esop", "notifyOrderResult"))
    assert closes == Counter({f"ESOP-REB-{i}": 1 for i in range(N)})
