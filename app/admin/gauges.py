"""Gauges refreshed when Prometheus scrapes ``/metrics``: pending dead letters per topic (``dead`` or
with a lapsed replay lease — the same definition as ``hub dlq list``), in-flight
orders per product and stage (MongoDB, indexed queries), and consumer lag per group and topic
(Kafka, best effort). Counters are incremented where events happen; these are *states*, so they
are read from the source of truth instead of being tracked in memory by one process of many.

Each refresh is bounded (``timeout``); a dependency that does not answer leaves the last values
and never fails the scrape. Consumer lag is cached for ``lag_ttl`` seconds: it costs a round trip
per group. On the embedded tansu broker end offsets are only exact with one record per batch
(hub/kafka.py), so lag there is indicative.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from flows.documents import ORDERS
from hub.deadletter import COLLECTION as DEAD_LETTERS
from hub.deadletter import pending_query
from hub.kafka import client_options
from hub.metrics import CONSUMER_LAG, DEAD_LETTERS_PENDING, ORDERS_IN_FLIGHT

if TYPE_CHECKING:
    from app.runtime import Runtime
    from hub.settings import Settings

log = logging.getLogger(__name__)
_lag_checked = 0.0
_lag_task: asyncio.Task[None] | None = None


async def refresh(runtime: Runtime, *, timeout: float = 2.0, lag_ttl: float = 15.0,
                  lag_timeout: float = 10.0) -> None:
    """Database gauges within ``timeout``; lag within ``lag_timeout`` but awaited at most ``timeout``.

    Lag costs a consumer start per group (0.1-1 s each on a busy machine) and is cached for
    ``lag_ttl``: a read that outlasts the scrape goes on in the background and the next scrape
    shows it, instead of being cancelled at every scrape and never shown.
    """
    global _lag_checked, _lag_task
    jobs: list[Any] = [asyncio.wait_for(_mongo(runtime), timeout)]
    if _lag_task is not None and _lag_task.get_loop() is not asyncio.get_running_loop():
        _lag_task = None  # started on a loop that is gone (the CLI's or a test's): never finishes
    if (_lag_task is None or _lag_task.done()) and time.monotonic() - _lag_checked > lag_ttl:
        _lag_checked = time.monotonic()
        _lag_task = asyncio.create_task(asyncio.wait_for(_lag(runtime), lag_timeout), name="gauges-lag")
        _lag_task.add_done_callback(_lag_done)
    if _lag_task is not None and not _lag_task.done():
        jobs.append(asyncio.wait_for(asyncio.shield(_lag_task), min(timeout, lag_timeout)))
    for job in asyncio.as_completed(jobs):
        try:
            await job
        except Exception as exc:  # a scrape must never fail because a dependency is slow
            log.debug("gauge refresh skipped: %r", exc)


def _lag_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("consumer lag skipped: %r", task.exception())


async def _mongo(runtime: Runtime) -> None:
    if runtime.db is None:
        return
    pending = [d async for d in runtime.db[DEAD_LETTERS].aggregate(
        [{"$match": pending_query()}, {"$group": {"_id": "$source_topic", "n": {"$sum": 1}}}])]
    in_flight = [d async for d in runtime.db[ORDERS].aggregate(
        [{"$match": {"status": {"$in": ["in_flight", "waiting"]}}},
         {"$group": {"_id": {"product": "$product", "stage": "$current_stage"}, "n": {"$sum": 1}}}])]
    DEAD_LETTERS_PENDING.clear()
    for d in pending:
        DEAD_LETTERS_PENDING.labels(str(d["_id"])).set(d["n"])
    ORDERS_IN_FLIGHT.clear()
    for d in in_flight:
        key = d["_id"] or {}
        ORDERS_IN_FLIGHT.labels(str(key.get("product") or "-"), str(key.get("stage") or "-")).set(d["n"])


async def _lag(runtime: Runtime, max_groups: int = 10) -> None:
    """Committed offsets of each consumer group on this hub's topics vs. the topics' end offsets.

    Committed offsets are read with a consumer of that group that never subscribes (so it never
    joins or rebalances the group): tansu's answer to the admin client's OffsetFetch version does
    not parse in aiokafka, the consumer's does. This hub's own groups (named after its topic prefix)
    come first and the groups are read concurrently: with more than ``max_groups`` groups on a
    shared cluster the hub's own lag was cut off, and read one after another they overran the
    budget so no lag was shown at all (CI, a tansu shared by a hundred test hubs).
    """
    s = runtime.settings
    names = sorted(set(runtime.topic_names()))
    admin = AIOKafkaAdminClient(**client_options(s), request_timeout_ms=2000)
    await admin.start()
    try:
        groups = sorted((str(g[0]) for g in await admin.list_consumer_groups()),
                        key=lambda g: (not g.startswith(s.topic_prefix), g))[:max_groups]
    finally:
        await admin.close()
    lags: dict[tuple[str, str], int] = {}
    await asyncio.gather(*(_group_lag(s, group, names, lags) for group in groups))
    CONSUMER_LAG.clear()
    for (group, topic), lag in lags.items():
        CONSUMER_LAG.labels(group, topic).set(lag)


async def _group_lag(settings: Settings, group: str, names: list[str], lags: dict[tuple[str, str], int]) -> None:
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group, enable_auto_commit=False,
                                request_timeout_ms=2000)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        committed = {tp: await consumer.committed(tp) for tp in tps}
        mine = {tp: off for tp, off in committed.items() if off is not None}
        ends = await consumer.end_offsets(list(mine)) if mine else {}
        for tp, offset in mine.items():
            key = (group, tp.topic)
            lags[key] = lags.get(key, 0) + max(ends.get(tp, offset) - offset, 0)
    finally:
        await consumer.stop()
