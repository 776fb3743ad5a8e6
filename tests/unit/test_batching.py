"""The micro-batcher groups concurrent work and routes each result or error to its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hub.batching import MicroBatcher


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

    batcher: MicroBatcher[str, str] = MicroBatcher(echo)
    assert await asyncio.wait_for(batcher.submit("x"), 0.05) == "x"


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
