"""Several workers and intake processes (issue 18; docs/deploy.md "Processes"): real ``hub run``
processes against the suite's tansu and SecantusDB, each test on its own topic prefix and database.

* An intake process (``--role intake``) takes an ESOP order in (202) and puts it on Kafka, and runs no
  engine: no faust app (its group's leader topic is never made), no order document. A worker
  process (``--role worker``) started after it, same broker, database and prefix, completes the
  order — the partners' callbacks and the field app's submission reach it only through the intake
  process (the worker serves no callback endpoint: its partners are told to call back on the
  intake's address, ``HUB_PUBLIC_URL``).
* Two intake processes bound with ``HUB_HTTP_REUSE_PORT`` share one port: both start, and requests on
  the shared port are answered by both (each one's own ``/metrics``, on its ``HUB_HTTP_PROBE_PORT``,
  counts its share).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from motor.motor_asyncio import AsyncIOMotorClient

from app.web import serve
from hub import topics
from hub.settings import Settings
from simulators import serve as serve_simulators
from tests.conftest import free_port
from tests.integration.flow_harness import ESOP_KEY, HUB, OPERATOR, fast_config, hub_env
from tests.integration.test_flow_e2e import INTERNET_STAGES, at, done
from tests.support import eventually, read_topic

pytestmark = pytest.mark.integration


@dataclass
class Process:
    """One ``hub run`` subprocess of a given role; ``url`` is its own listener."""

    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env.get('HUB_HTTP_PROBE_PORT') or self.env['HUB_HTTP_PORT']}"

    async def start(self, role: str) -> dict[str, Any]:
        """Start ``hub run --role role``; returns its first ready ``/readyz`` body."""
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([HUB, "run", "--role", role], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

        async def ready() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, body = await get(f"{self.url}/readyz")
            except aiohttp.ClientError:
                return None
            return body if status == 200 else None

        return dict(await eventually(ready, timeout=90, interval=0.3))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


async def get(url: str) -> tuple[int, Any]:
    """Status and body: decoded JSON, else the text (``/metrics``)."""
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
        text = await r.text()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


async def post(url: str, body: Any, headers: dict[str, str], *, fresh: bool = False) -> tuple[int, Any]:
    """``fresh``: a new connection for this request (the kernel picks a listener per connection)."""
    connector = aiohttp.TCPConnector(force_close=True) if fresh else None
    async with aiohttp.ClientSession(connector=connector) as s, s.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as r:
        return r.status, await r.json(content_type=None)


async def topic_names(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def faust_leader_topic(settings: Settings) -> str:
    """The topic a faust app makes for its group's leader election as it starts (tansu lists no
    consumer groups, so this is what shows a faust app ran on the group)."""
    return f"{settings.group_id}-__assignor-__leader"


@pytest.fixture
async def split(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Process, Process, Any, Any]]:
    """An intake and a worker process (not started) on this test's prefix and database, with the simulators;
    the worker tells partners to call back on the intake's listener (``HUB_PUBLIC_URL``)."""
    sim_port = free_port()
    runner, state = await serve_simulators(Path(__file__).resolve().parents[2] / "config", "127.0.0.1", sim_port)
    config_dir = await asyncio.to_thread(fast_config, tmp_path / "config")
    intake_env = hub_env(settings, config_dir, sim_port, worker="intake-1")
    worker_env = hub_env(settings, config_dir, sim_port, worker="engine-1",
                         HUB_PUBLIC_URL=f"http://127.0.0.1:{intake_env['HUB_HTTP_PORT']}")
    intake = Process("intake", intake_env, tmp_path / "intake.log")
    worker = Process("worker", worker_env, tmp_path / "worker.log")
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    try:
        yield intake, worker, client[settings.mongo_db], state
    finally:
        await asyncio.gather(asyncio.to_thread(intake.stop), asyncio.to_thread(worker.stop))
        await runner.cleanup()
        client.close()


ORDER = {"external_order_id": "ROLES-1", "product": "internet_line", "scenario": "open",
         "customer": {"name": "测试客户"}, "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
         "bandwidth_mbps": 100, "access_type": "PON"}


async def test_an_intake_process_takes_the_order_in_and_a_worker_process_completes_it(
        settings: Settings, split: tuple[Process, Process, Any, Any]) -> None:
    intake, worker, db, sim = split
    ready = await intake.start("intake")
    assert ready["role"] == "intake" and {"kafka", "mongo"} <= set(ready["checks"]), ready

    status, body = await post(f"{intake.url}/api/v1/partners/esop/orders", ORDER, ESOP_KEY)
    assert status == 202, body
    order_id = body["order_id"]
    # durable on the partner's inbound topic, where a worker's router will find it
    records = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    assert [json.loads(r.value)["correlation_id"] for r in records] == [order_id]
    # ... and nothing in this process moves it: no consumer group, no order document, no engine log
    await asyncio.sleep(2.0)
    assert await db.orders.find_one({"_id": order_id}) is None
    assert faust_leader_topic(settings) not in await topic_names(settings)
    assert not re.search(r"flow-engine|intake-router|Worker ready", intake.tail(10**6)), intake.tail()
    status, _ = await get(f"{intake.url}/metrics")
    assert status == 200

    ready = await worker.start("worker")
    assert ready["role"] == "worker" and "routes" not in ready["checks"], ready
    # the worker takes no partner traffic: callbacks must go to the intake (they do: HUB_PUBLIC_URL)
    status, _ = await post(f"{worker.url}/api/v1/partners/esop/orders", ORDER, ESOP_KEY)
    assert status == 404
    status, _ = await get(f"{worker.url}/metrics")
    assert status == 200

    async def order(check: Any) -> dict[str, Any] | None:
        doc = await db.orders.find_one({"_id": order_id})
        return doc if doc is not None and check(doc) else None

    try:
        await eventually(lambda: order(at("verification")), timeout=90, interval=0.3)
        status, body = await post(f"{intake.url}/api/v1/orders/{order_id}/stages/verification/submit",
                                  {"data": {}}, OPERATOR)
        assert status == 202, body
        doc = await eventually(lambda: order(done), timeout=60, interval=0.3)
    except AssertionError:
        raise AssertionError(f"intake:\n{intake.tail()}\nworker:\n{worker.tail()}") from None
    assert [s["stage"] for s in doc["stages"]] == INTERNET_STAGES
    assert sim.callbacks_sent >= 2  # design and activation replies at least, all through the intake's listener
    assert len([c for c in sim.partner("esop").calls if c.operation == "notifyOrderResult"]) == 1
    assert faust_leader_topic(settings) in await topic_names(settings)  # the worker's faust app made it


UNKNOWN_401 = {"partner": "unknown", "protocol": "rest", "outcome": "rejected_auth"}


async def test_two_intake_processes_share_one_port_with_reuse_port(settings: Settings, tmp_path: Path) -> None:
    shared = free_port()
    procs = []
    for i in (1, 2):
        env = hub_env(settings, tmp_path, free_port(), worker=f"intake-{i}", HUB_HTTP_PORT=str(shared),
                      HUB_HTTP_REUSE_PORT="true", HUB_HTTP_PROBE_PORT=str(free_port()))
        env["HUB_CONFIG_DIR"] = str(Path(__file__).resolve().parents[2] / "config")
        procs.append(Process(f"intake-{i}", env, tmp_path / f"intake-{i}.log"))
    try:
        readies = await asyncio.gather(*(p.start("intake") for p in procs))
        assert [r["role"] for r in readies] == ["intake", "intake"]
        assert all(p.proc is not None and p.proc.poll() is None for p in procs)  # the second bind did not fail

        # 40 requests on the shared port, each on a new connection: an unknown partner's callback, 401
        # (nothing written), counted by whichever process took the connection
        for _ in range(40):
            status, _ = await post(f"http://127.0.0.1:{shared}/api/v1/partners/nobody/callbacks",
                                   {"order_id": "x"}, {}, fresh=True)
            assert status == 401
        counts = []
        for p in procs:
            _, text = await get(f"{p.url}/metrics")
            counts.append(sum(int(float(ln.rsplit(" ", 1)[1])) for ln in text.splitlines()
                              if ln.startswith("hub_intake_requests_total{")
                              and all(f'{k}="{v}"' in ln for k, v in UNKNOWN_401.items())))
        assert sum(counts) == 40 and min(counts) > 0, counts
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


async def test_without_reuse_port_a_second_listener_cannot_bind(tmp_path: Path) -> None:
    """Why the setting exists: two listeners on one port need SO_REUSEPORT on both."""
    from aiohttp import web

    port = free_port()
    plain = Settings(home=tmp_path, http_port=port)
    shared = plain.model_copy(update={"http_reuse_port": True})
    first = await serve(web.Application(), plain)
    try:
        with pytest.raises(OSError):
            await serve(web.Application(), plain)
    finally:
        await first.cleanup()
    runners = [await serve(web.Application(), shared), await serve(web.Application(), shared)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        for r in runners:
            await r.cleanup()
