"""hub/batching.py ``BulkWriter.insert_or_set`` against the real MongoDB: the usual first write of a
record is an insert (cheaper on SecantusDB than the upsert), and a second write of the same record —
a redelivered call result, a dead-lettered call answered after its replay — still lands, as ``$set``."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hub.batching import BulkWriter
from hub.db import connect, database
from hub.settings import Settings

pytestmark = pytest.mark.integration


async def test_insert_or_set_inserts_new_records_and_updates_existing_ones(settings: Settings) -> None:
    client = connect(settings)
    coll = database(client, settings)[f"calls_{uuid.uuid4().hex[:8]}"]
    try:
        writer = BulkWriter(coll)
        await asyncio.gather(*(writer.insert_or_set(f"c{i}", {"outcome": "dead_lettered", "n": i}) for i in range(5)))
        await asyncio.gather(writer.insert_or_set("c1", {"outcome": "ok"}),
                             writer.insert_or_set("c9", {"outcome": "ok"}))
        docs = {d["_id"]: d async for d in coll.find({})}
        assert sorted(docs) == ["c0", "c1", "c2", "c3", "c4", "c9"]
        assert docs["c1"] == {"_id": "c1", "outcome": "ok", "n": 1} and docs["c0"]["outcome"] == "dead_lettered"
    finally:
        await coll.drop()
        client.close()
