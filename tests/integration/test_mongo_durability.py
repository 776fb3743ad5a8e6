"""What MongoDB acknowledged survives a ``kill -9`` of the database (hub/db.py ``durable_writes``).

Without a journaled write concern the embedded SecantusDB lost the last ~12 % of the inserts it had
acknowledged; the flow engine had committed those orders' events on Kafka, so an order vanished
(tests/integration/test_flow_v2_faults.py saw its partner's callback refused as "not waiting").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.infra.servers import MongoServer
from hub.batching import BulkWriter
from hub.db import connect, durable_writes
from hub.settings import Settings
from tests.conftest import free_port
from tests.support import eventually

pytestmark = pytest.mark.integration


async def test_every_acknowledged_write_survives_a_kill_9_of_the_database(settings: Settings, tmp_path: Path) -> None:
    mine = settings.model_copy(update={"home": tmp_path / "mongo-home", "mongo_port": free_port(), "mongo_url": None})
    server = MongoServer(mine)
    server.process.start(server.argv())
    try:
        await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
        client = connect(mine)
        coll = client[mine.mongo_db]["durability"]
        for i in range(300):  # one at a time, as intake and the engine write under light load
            await coll.insert_one({"_id": i, "order": "x" * 500})
        client.close()
        await asyncio.to_thread(server.process.stop, 0)  # SIGKILL at once: no clean shutdown
        server.process.start(server.argv())
        await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
        client = connect(mine)
        assert await client[mine.mongo_db]["durability"].count_documents({}) == 300
        client.close()
    finally:
        server.process.stop()


async def test_every_write_a_bulk_writer_acknowledged_survives_a_kill_9(settings: Settings, tmp_path: Path) -> None:
    """hub/batching.py group commit: the batch goes with ``w: 1`` and one journaled marker write makes
    it durable before any caller is answered. Without the marker the last acknowledged batches were
    gone after the kill (the writes of a batch are not journaled one by one any more)."""
    mine = settings.model_copy(update={"home": tmp_path / "mongo-home", "mongo_port": free_port(), "mongo_url": None})
    server = MongoServer(mine)
    server.process.start(server.argv())
    try:
        await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
        client = connect(mine)
        coll = client[mine.mongo_db]["durability"]
        writer = BulkWriter(coll)
        docs = [{"_id": i, "round": 0, "order": "x" * 500} for i in range(40)]
        assert all(await asyncio.gather(*(writer.insert_new(d) for d in docs)))
        for r in range(1, 8):  # replaces (the engine's order saves) and upserts (call records), batched
            revs = [d["rev"] for d in docs]
            docs = [{**d, "round": r} for d in docs]
            won = await asyncio.gather(*(writer.replace_if_rev(d, rev) for d, rev in zip(docs, revs, strict=True)),
                                       *(writer.upsert(f"u{i}", {"round": r}) for i in range(40)))
            assert all(w for w in won[:40])
        client.close()
        await asyncio.to_thread(server.process.stop, 0)  # SIGKILL at once, right after the last answer
        server.process.start(server.argv())
        await eventually(lambda: asyncio.to_thread(server.answers), timeout=15, interval=0.1)
        client = connect(mine)
        rounds = [d["round"] async for d in client[mine.mongo_db]["durability"].find({}, {"round": 1})]
        assert rounds == [7] * 80
        client.close()
    finally:
        server.process.stop()


def test_a_write_concern_chosen_in_the_url_is_left_alone() -> None:
    assert durable_writes("mongodb://db:27017/?directConnection=true") == {"journal": True}
    assert durable_writes("mongodb://a,b,c/?replicaSet=rs0&w=majority") == {}
    assert durable_writes("mongodb://db/?journal=false") == {}
