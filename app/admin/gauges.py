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
from hub.metrics import CONSUMER_LAG, DEAD_LETTERS_PENDING, ORDERS_IN_FLIGHT

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)
_lag_checked = 0.0


async def refresh(runtime: Runtime, *, timeout: float = 2.0, lag_ttl: float = 15.0) -> None:
    global _lag_checked
    jobs: list[Any] = [_mongo(runtime)]
    if time.monotonic() - _lag_checked > lag_ttl:
        _lag_checked = time.monotonic()
        jobs.append(_lag(runtime))
    for job in asyncio.as_completed([asyncio.wait_for(j, timeout) for j in jobs]):
        try:
            await job
        except Exception as exc:  # a scrape must never fail because a dependency is slow
            log.debug("gauge refresh skipped: %r", exc)


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
    not parse in aiokafka, the consumer's does.
    """
    s = runtime.settings
    names = sorted(set(runtime.topic_names()))
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=2000)
    await admin.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups()][:max_groups]
    finally:
        await admin.close()
    lags: dict[tuple[str, str], int] = {}
    for group in groups:
        consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=group, enable_auto_commit=False,
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
    CONSUMER_LAG.clear()
    for (group, topic), lag in lags.items():
        CONSUMER_LAG.labels(group, topic).set(lag)
