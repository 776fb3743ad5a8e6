"""What one partner callback costs MongoDB (flows/http.py), counted by the hub's own command listener
(``hub_mongo_commands_total``, hub/mongostats.py) around each request; the web app on an aiohttp test
server, the real broker and database.

Why: a callback was three round trips — the order's ``find`` (may this partner post for it?), the
journal record's ``insert`` with ``w: 1`` and the group commit's journaled ``journal_sync`` update — while
the worker of the same process usually holds the order in its cache, and a batch of inserts is durable
in one journaled command. Now: one journaled ``insert`` when the worker holds the order (one ``find``
more when it does not), and the rule stays: no open call to the partner, no record (403).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.infra.servers import MongoServer
from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from flows.http import _JournaledInserts
from flows.runtime.agents import FLOW_RUNNER_V2, load_v2_library
from flows.runtime.runner import FlowRunner
from flows.settings import FlowSettings
from hub.db import connect
from hub.metrics import MONGO_COMMANDS
from hub.settings import Settings
from tests.conftest import free_port
from tests.integration.test_probe_flows_http import RESOURCE, journaled, seed_v2
from tests.support import eventually

pytestmark = pytest.mark.integration
COUNTED = [("orders", "find"), ("order_events", "insert"), ("order_events", "findAndModify"),
           ("journal_sync", "update")]


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(build_web_app(Runtime(settings)))


def _counts() -> dict[str, float]:
    return {f"{c}.{n}": MONGO_COMMANDS.labels(c, n)._value.get() for c, n in COUNTED}


async def _post(client: TestClient, body: dict[str, Any]) -> tuple[int, Any, dict[str, int]]:
    before = _counts()
    resp = await client.post("/api/v1/partners/resource/callbacks", json=body, headers=RESOURCE)
    after = _counts()
    return resp.status, await resp.json(content_type=None), {k: int(after[k] - before[k]) for k in after
                                                            if after[k] != before[k]}


async def test_a_callback_is_one_journaled_insert_when_the_worker_holds_the_order(client: TestClient) -> None:
    runtime: Runtime = client.app[RUNTIME]
    doc = await seed_v2(runtime, "ord-rt", open_call_to="resource")
    cid = "ord-rt:3:call"

    # no worker in this process: the order is read (one find) and the record is one journaled insert
    status, body, cost = await _post(client, {"order_id": "ord-rt", "callback_ref": cid, "status": "processing",
                                              "result": {"phase": "设计中"}})
    assert (status, body) == (202, {"accepted": True, "duplicate": False})
    assert cost == {"orders.find": 1, "order_events.insert": 1}, cost

    # the worker holds the order with the call open: no read at all
    runner = FlowRunner(runtime, load_v2_library(runtime), FlowSettings(), "http://hub")
    runtime.put(FLOW_RUNNER_V2, runner)
    runner.store._remember({**doc, "rev": "r1"})
    final = {"order_id": "ord-rt", "callback_ref": cid, "status": "ok", "result": {"design_id": "D-1"}}
    status, body, cost = await _post(client, final)
    assert (status, body) == (202, {"accepted": True, "duplicate": False})
    assert cost == {"order_events.insert": 1}, cost
    assert await journaled(runtime, "ord-rt") == 2

    # the final applied (the call closed, in the worker's copy and the database): the same body again is
    # answered as the duplicate it is, a new one is refused; neither is journaled
    runner.store._remember({**doc, "open_calls": {}, "rev": "r2"})
    assert runtime.db is not None
    await runtime.db["orders"].update_one({"_id": "ord-rt"}, {"$set": {"open_calls": {}}})
    status, body, _ = await _post(client, final)
    assert (status, body) == (202, {"accepted": True, "duplicate": True})
    status, body, _ = await _post(client, {**final, "status": "processing", "result": {"phase": "返工"}})
    assert status == 403, body
    assert await journaled(runtime, "ord-rt") == 2


async def test_every_callback_record_acknowledged_survives_a_kill_9(settings: Settings, tmp_path: Path) -> None:
    """The records go without the group commit's marker, as one journaled insert per batch: what a
    caller was told is stored must be there after a ``kill -9`` of the database (as
    tests/integration/test_mongo_durability.py holds the BulkWriter to), and a repeat is told so."""
    mine = settings.model_copy(update={"home": tmp_path / "mongo-home", "mongo_port": free_port(), "mongo_url": None})
    server = MongoServer(mine)
    await asyncio.to_thread(server.process.start, server.argv())
    try:
        await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
        client = connect(mine)
        journal = _JournaledInserts(client[mine.mongo_db]["order_events"])
        for r in range(6):  # concurrent callbacks (batched) and one at a time
            inserted = await asyncio.gather(*(journal.insert_if_missing(f"cb:{r}:{i}", {"order_id": f"O{i}"})
                                              for i in range(30)))
            assert all(inserted)
            assert await journal.insert_if_missing(f"cb:{r}:single", {"order_id": "O"})
        again = await asyncio.gather(*(journal.insert_if_missing(f"cb:5:{i}", {"order_id": "x"}) for i in range(3)),
                                     journal.insert_if_missing("cb:new", {"order_id": "O"}))
        assert again == [False, False, False, True]
        client.close()
        await asyncio.to_thread(server.process.stop, 0)  # SIGKILL at once, right after the last answer
        await asyncio.to_thread(server.process.start, server.argv())
        await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
        client = connect(mine)
        assert await client[mine.mongo_db]["order_events"].count_documents({}) == 6 * 31 + 1
        client.close()
    finally:
        await asyncio.to_thread(server.process.stop)
