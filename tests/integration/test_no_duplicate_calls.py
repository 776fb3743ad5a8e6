"""No partner sees a call twice (issue 10 §4, Tests): the delivery chain with the real REST sink
against the simulator (which dedupes and counts repeated keys, ``GET /_calls`` ``duplicates``) and
the real MongoDB ``deliveries`` — the same call envelope delivered concurrently by two consumers,
after its first owner died mid-call, and across a MongoDB outage of the record write.

Before the claims (check ``deliveries``, call, record) both consumers found no record and both
called, and a record write lost to an outage let the next delivery call again: the two duplicates
the issue saw at the resource center after a kill -9 and after a MongoDB outage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from app.delivery import build_sink
from app.infra.process import wait_until
from app.infra.servers import MongoServer
from connectors.base import Outcome, Sink
from connectors.context import ConnectorContext
from connectors.delivery import ChainSpec, MongoDeliveryLog, build_chain, trail
from connectors.registry import load_builtins
from hub.db import connect, database
from hub.envelope import Envelope
from hub.metrics import DELIVERY_AMBIGUOUS
from hub.partners import Partner, load_partners
from hub.retry import RetryPolicy
from hub.settings import PROJECT_ROOT, Settings
from simulators.server import STATE, build_app
from simulators.state import Control
from tests.conftest import free_port
from tests.support import eventually

pytestmark = pytest.mark.integration
POLICY = RetryPolicy(timeout_s=5, max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.1, jitter_s=0,
                     concurrency=16)


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestServer]:
    server = TestServer(build_app(PROJECT_ROOT / "config"))
    await server.start_server()
    monkeypatch.setenv("HUB_SIM_URL", str(server.make_url("")).rstrip("/"))
    yield server
    await server.close()


def _resource() -> Partner:
    """Partner YAML and the connector packages loaded in a thread (as the hub does before serving)."""
    load_builtins()
    return load_partners(PROJECT_ROOT / "config")["resource"]


async def _sink(settings: Settings) -> Sink:
    partner = await asyncio.to_thread(_resource)  # after HUB_SIM_URL points at the test simulator
    return build_sink(partner, ConnectorContext(settings, "deliver-resource"))


def _chain(sink: Sink, db: Any, owner: str, lease_s: float = 15.0) -> Sink:
    """One consumer ("process" ``owner``) of the resource center's delivery topic."""
    return build_chain(sink, ChainSpec(partner="resource", policy=POLICY, source_topic="t.out.resource",
                                       records=MongoDeliveryLog(db), owner=owner, lease_s=lease_s))


def _call(tag: str) -> Envelope:
    return Envelope(type="call.request", source="hub", protocol="rest", correlation_id=f"ord-{tag}",
                    idempotency_key=f"call:ord-{tag}:resource_entry",
                    payload={"operation": "resource_entry", "call_id": f"c-{tag}", "request": {"orderId": tag}})


async def _stats(sim: TestServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(sim.make_url("/_calls")) as resp:
        stats: dict[str, Any] = await resp.json()
    return stats


def _accepted(sim: TestServer, key: str) -> int:
    return sum(1 for c in sim.app[STATE].partner("resource").calls if c.idempotency_key == key)


async def test_two_consumers_of_one_call_make_one_call(settings: Settings, sim: TestServer) -> None:
    sim.app[STATE].partner("resource").control = Control(mode="slow", delay_s=0.3)  # the calls overlap
    client = connect(settings)
    sink = await _sink(settings)
    try:
        db = database(client, settings)
        a, b = _chain(sink, db, "worker-a"), _chain(sink, db, "worker-b")
        calls = [_call(f"{uuid.uuid4().hex[:6]}-{i}") for i in range(12)]
        outcomes = await asyncio.gather(*(chain.deliver(env) for env in calls for chain in (a, b)))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        stats = await _stats(sim)
        assert stats["duplicates"] == {}, stats["duplicates"]
        assert stats["counts"]["resource"]["resource_entry"] == len(calls)  # each call made exactly once
        for env, (first, second) in zip(calls, zip(outcomes[::2], outcomes[1::2], strict=True), strict=True):
            answered = [o for o in (first, second) if trail.recorded(o) is not None]
            assert len(answered) == 1 and answered[0].response == (first.response if answered[0] is second
                                                                   else second.response)
            stored = await db["deliveries"].find_one({"_id": env.idempotency_key})
            assert stored is not None and stored["state"] == "delivered"
    finally:
        await sink.stop()
        client.close()


async def test_a_claim_whose_owner_died_is_taken_over_once_and_counted_ambiguous(
        settings: Settings, sim: TestServer) -> None:
    client = connect(settings)
    sink = await _sink(settings)
    try:
        db = database(client, settings)
        env = _call(uuid.uuid4().hex[:6])
        # worker-a claimed the call and was killed mid-call (kill -9): its lease is no longer renewed
        await db["deliveries"].insert_one({"_id": env.idempotency_key, "state": "claimed", "owner": "worker-a",
                                           "lease_until": datetime.now(UTC) + timedelta(seconds=1)})
        before = DELIVERY_AMBIGUOUS.labels("resource")._value.get()
        taker, late = _chain(sink, db, "worker-b", lease_s=3), _chain(sink, db, "worker-c", lease_s=3)
        first, second = await asyncio.gather(taker.deliver(env), late.deliver(env))
        assert first.ok and second.ok
        assert DELIVERY_AMBIGUOUS.labels("resource")._value.get() - before == 1  # taken over once, counted
        assert _accepted(sim, env.idempotency_key) == 1 and (await _stats(sim))["duplicates"] == {}
        stored = await db["deliveries"].find_one({"_id": env.idempotency_key})
        assert stored is not None and (stored["state"], stored["taken_over_from"]) == ("delivered", "worker-a")
    finally:
        await sink.stop()
        client.close()


@pytest.fixture
def own_mongo(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, MongoServer]]:
    """A SecantusDB only this test uses, so it can be stopped without hurting other tests."""
    mine = settings.model_copy(update={"home": tmp_path, "mongo_port": free_port(), "mongo_timeout_ms": 1000})
    server = MongoServer(mine)
    server.prepare()
    server.process.start(server.argv())
    assert wait_until(server.answers, 20, 0.1), server.process.tail()
    yield mine, server
    server.process.stop()


class StopsMongoAfterTheCall:
    """The partner answers, then MongoDB goes away before the chain records the delivery."""

    name: ClassVar[str] = "stops-mongo"

    def __init__(self, sink: Sink, server: MongoServer) -> None:
        self.sink, self.server = sink, server
        self.stopped = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, envelope: Envelope) -> Outcome:
        outcome = await self.sink.deliver(envelope)
        await asyncio.to_thread(self.server.process.stop)
        self.stopped.set()
        return outcome


async def test_a_record_write_lost_to_a_mongodb_outage_is_retried_and_the_partner_not_called_again(
        own_mongo: tuple[Settings, MongoServer], sim: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    mine, server = own_mongo
    client = connect(mine)
    sink = await _sink(mine)
    try:
        db = database(client, mine)
        env = _call(uuid.uuid4().hex[:6])
        outage = StopsMongoAfterTheCall(sink, server)
        delivering = asyncio.ensure_future(_chain(outage, db, "worker-a").deliver(env))
        await outage.stopped.wait()

        async def write_failed() -> bool:
            return "not stored" in caplog.text

        await eventually(write_failed, timeout=30)  # the record write failed: the answer is held meanwhile
        assert not delivering.done()
        await asyncio.to_thread(server.process.start, server.argv())  # back, same data folder
        assert await asyncio.to_thread(wait_until, server.answers, 20, 0.1), server.process.tail()
        outcome = await asyncio.wait_for(delivering, 60)
        assert outcome.ok and outcome.response is not None  # the partner's answer, still returned (emitted)
        again = await _chain(sink, db, "worker-b").deliver(env)  # e.g. the envelope read again after a restart
        assert again.ok and trail.recorded(again) is not None and again.response == outcome.response
        assert _accepted(sim, env.idempotency_key) == 1 and (await _stats(sim))["duplicates"] == {}
    finally:
        await sink.stop()
        client.close()
