"""The micro-batcher groups concurrent work and routes each result or error to its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from pymongo import ReplaceOne

from hub.batching import READ_DELAY_S, WRITE_DELAY_S, BulkReader, BulkWriter, MicroBatcher


async def test_concurrent_submissions_share_batches_and_get_their_own_results() -> None:
    calls: list[list[int]] = []

    async def double(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 2 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_batch=10)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(25)))
    assert results == [i * 2 for i in range(25)]
    assert len(calls) < 25 and max(len(c) for c in calls) <= 10
    assert sorted(i for c in calls for i in c) == list(range(25))


async def test_a_single_submission_is_not_delayed_waiting_for_company() -> None:
    async def echo(items: Sequence[str]) -> list[str]:
        return list(items)

    async def loop_turns_until_done(batcher: MicroBatcher[str, str]) -> int | None:
        # Counted in event-loop turns, not wall time: a loaded CI machine can stall a 50 ms
        # deadline, while "no timer was armed" holds at any load.
        task = asyncio.ensure_future(batcher.submit("x"))
        for turn in range(20):
            await asyncio.sleep(0)
            if task.done():
                assert task.result() == "x"
                return turn
        task.cancel()
        if batcher._task is not None:  # the drain task would otherwise outlive the test's loop
            batcher._task.cancel()
        return None

    assert await loop_turns_until_done(MicroBatcher(echo)) is not None
    # the same check fails for a batcher that does wait for company (so it can fail at all)
    assert await loop_turns_until_done(MicroBatcher(echo, max_delay_s=60)) is None


async def test_per_item_errors_reach_only_their_caller() -> None:
    async def picky(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(picky)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[3]) == "bad 3"


async def test_handler_failure_fails_the_whole_batch_but_not_the_next() -> None:
    fail = True

    async def flaky(items: Sequence[int]) -> list[int]:
        if fail:
            raise ConnectionError("db down")
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(flaky)
    with pytest.raises(ConnectionError):
        await batcher.submit(1)
    fail = False
    assert await batcher.submit(2) == 2


async def test_a_delay_window_gathers_items_that_arrive_within_it() -> None:
    """BulkWriter/BulkReader semantics: the first item opens a window; later ones join its batch."""
    calls: list[list[int]] = []

    async def record(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        return list(items)

    # A window far longer than the test: "not sent yet" holds by construction, not by a short sleep
    # racing the window on a busy machine; the second item fills the batch, which closes it at once.
    batcher: MicroBatcher[int, int] = MicroBatcher(record, max_batch=2, max_delay_s=60)
    first = asyncio.ensure_future(batcher.submit(1))
    for _ in range(10):  # let the drain task run as far as it will: it must be waiting on the window
        await asyncio.sleep(0)
    assert calls == []  # not sent before the window closed
    assert await asyncio.wait_for(asyncio.gather(first, batcher.submit(2)), 5) == [1, 2]
    assert calls == [[1, 2]]
    # and a batch that never fills goes out when its window closes
    short: MicroBatcher[int, int] = MicroBatcher(record, max_batch=2, max_delay_s=0.01)
    assert await asyncio.wait_for(short.submit(3), 5) == 3
    assert calls == [[1, 2], [3]]


async def test_a_full_batch_is_sent_without_waiting_for_the_window() -> None:
    async def echo(items: Sequence[int]) -> list[int]:
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(echo, max_batch=3, max_delay_s=5.0)
    assert await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(3))), 0.5) == [0, 1, 2]


class FakeResult:
    def __init__(self, matched: int, upserted: int) -> None:
        self.matched_count, self.upserted_count, self.inserted_count = matched, upserted, 0


class FakeCollection:
    """In-memory stand-in for the two motor calls the bulk classes make (``bulk_write``, ``find``)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.bulks: list[int] = []
        self.finds: list[list[str]] = []

    async def bulk_write(self, ops: list[Any], ordered: bool) -> FakeResult:
        assert ordered is False
        self.bulks.append(len(ops))
        matched = upserted = 0
        for op in ops:
            filt, doc = op._filter, op._doc
            stored = self.docs.get(filt["_id"])
            if isinstance(op, ReplaceOne):
                if stored is not None and stored.get("version") == filt["version"]:
                    self.docs[filt["_id"]] = dict(doc)
                    matched += 1
            elif stored is None:
                self.docs[filt["_id"]] = {"_id": filt["_id"], **doc["$set"]}
                upserted += 1
            else:
                stored.update(doc["$set"])
                matched += 1
        return FakeResult(matched, upserted)

    def find(self, query: dict[str, Any], projection: Any = None) -> Any:
        ids = query["_id"]["$in"]
        self.finds.append(list(ids))

        async def gen() -> Any:
            for i in ids:
                if i in self.docs:
                    yield self.docs[i]
        return gen()


async def test_bulk_writer_batches_writes_and_tells_a_stale_replace_it_lost() -> None:
    coll = FakeCollection()
    coll.docs["a"] = {"_id": "a", "version": 3}
    writer = BulkWriter(coll)  # type: ignore[arg-type]
    won, lost, _ = await asyncio.gather(
        writer.replace_versioned({"_id": "a", "version": 4}, 3),
        writer.replace_versioned({"_id": "b", "version": 2}, 1),  # no such document at version 1
        writer.upsert("c", {"x": 1}),
    )
    assert (won, lost) == (True, False)
    assert coll.bulks == [3] and coll.docs["c"]["x"] == 1


async def test_bulk_reader_sends_one_query_for_concurrent_lookups() -> None:
    coll = FakeCollection()
    coll.docs["k1"] = {"_id": "k1", "n": 1}
    reader = BulkReader(coll)  # type: ignore[arg-type]
    found = await asyncio.gather(reader.get("k1"), reader.get("k2"), reader.get("k1"))
    assert found == [{"_id": "k1", "n": 1}, None, {"_id": "k1", "n": 1}]
    assert coll.finds == [["k1", "k2"]]


def test_the_measured_waits_are_kept() -> None:
    """15 ms for the engine's writes, 10 ms for the delivery lookups (what the benchmarks measured)."""
    assert (WRITE_DELAY_S, READ_DELAY_S) == (0.015, 0.01)
    assert BulkWriter(FakeCollection())._batcher._delay == WRITE_DELAY_S  # type: ignore[arg-type]
    assert BulkReader(FakeCollection())._batcher._delay == READ_DELAY_S  # type: ignore[arg-type]
