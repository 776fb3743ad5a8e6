"""Was a letter of a dead replay sent after all? Read it back from the topic.

A replay marks a letter ``replayed`` right after the broker acknowledged it. A replay killed with
SIGKILL between those two steps leaves letters that *were* sent but whose lease lapses back to
pending; re-sending them would put a second copy on the topic. Every replayed envelope carries its
claim token (``headers["replay-claim"]``), so for letters whose lease lapsed the next replay looks
on the source topic for a record with that letter id *and that claim* — written by the dead
process, not by anyone else — and marks those replayed instead of sending them again.

Bounded: only letters whose lease lapsed are looked up (i.e. only after a crash), and only the
records written between the dead claim's start and its lease end are read (a dead process writes
nothing after its lease), located with the broker's time index.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.kafka import client_options
from hub.settings import Settings

log = logging.getLogger(__name__)
REPLAY_CLAIM = "replay-claim"
SKEW = timedelta(seconds=5)  # broker and replayer clocks


@dataclass(frozen=True)
class Lapsed:
    letter_id: str
    topic: str
    claim: str
    claimed_at: datetime
    lease_until: datetime


async def already_sent(settings: Settings, lapsed: list[Lapsed]) -> set[str]:
    """Ids among ``lapsed`` whose envelope is on its topic under its (dead) claim."""
    if not lapsed:
        return set()
    wanted = {(x.letter_id, x.claim) for x in lapsed}
    found: set[str] = set()
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False,
                                group_id=None, request_timeout_ms=settings.kafka_request_timeout_ms)
    await consumer.start()
    try:
        for topic in sorted({x.topic for x in lapsed}):
            mine = [x for x in lapsed if x.topic == topic]
            start = int((min(x.claimed_at for x in mine) - SKEW).timestamp() * 1000)
            stop = int((max(x.lease_until for x in mine) + SKEW).timestamp() * 1000)
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                continue
            ends = await consumer.end_offsets(tps)
            begins = await consumer.offsets_for_times({tp: start for tp in tps})
            consumer.assign(tps)
            todo = {}
            for tp in tps:
                at = begins.get(tp)
                offset = at.offset if at is not None and at.timestamp >= 0 else 0  # no time index: from the start
                if offset < ends[tp]:
                    consumer.seek(tp, offset)
                    todo[tp] = ends[tp]
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=1000)
                if not batch:
                    break
                for tp, records in batch.items():
                    for r in records:
                        if r.timestamp <= stop:
                            hit = _claim_of(r.value)
                            if hit in wanted:
                                found.add(hit[0])
                        if r.offset + 1 >= todo.get(tp, 0) or r.timestamp > stop:
                            todo.pop(tp, None)
    finally:
        await consumer.stop()
    if found:
        log.warning("%d dead letters were sent by an interrupted replay; marked replayed, not sent again",
                    len(found))
    return found


def _claim_of(value: bytes | None) -> tuple[str, str] | None:
    try:
        headers = json.loads(value or b"{}").get("headers") or {}
    except (ValueError, AttributeError):
        return None
    if "replay-of" in headers and REPLAY_CLAIM in headers:
        return str(headers["replay-of"]), str(headers[REPLAY_CLAIM])
    return None
