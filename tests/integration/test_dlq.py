"""Dead-letter replay, discard, filters and history against the real broker and database.

Dead letters are seeded through the real path (``DeadLetters.publish``: MongoDB index + ``.dlq``
topic); replays are read back from the real source topic.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.admin.patch import parse_patch
from app.admin.queries import DeadLetterFilter, Queries
from app.admin.replay import NotFound, Refused, ReplayService
from app.runtime import Runtime
from hub import topics
from hub.deadletter import Attempt, DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.kafka import EnvelopeProducer
from hub.settings import Settings
from tests.support import records_before_marker, topic_envelopes

pytestmark = pytest.mark.integration


def call_envelope(order_id: str, *, phone: str = "13800001111", **headers: str) -> Envelope:
    return Envelope(
        type="call.request", source="hub", protocol="soap", correlation_id=order_id,
        idempotency_key=f"call:{order_id}:close:notifyOrderResult", product="internet_line", scenario="open",
        payload={"operation": "notifyOrderResult",
                 "order": {"customer": {"name": "杭州某某科技有限公司", "contact_phone": phone}}},
        headers=dict(headers),
    )


async def seed(runtime: Runtime, order_id: str, *, partner: str = "esop", error_class: str = "RetryableError",
               created_at: datetime | None = None, **headers: str) -> DeadLetter:
    """One dead-lettered outbound call, written the way the delivery agent writes it."""
    assert runtime.db is not None
    topic = topics.outbound(runtime.settings.topic_prefix, partner)
    now = created_at or datetime.now(UTC)
    letter = DeadLetter.for_envelope(
        topic, call_envelope(order_id, **headers), "HTTP 503 from partner", partner=partner, error_class=error_class,
        attempts=[Attempt(at=now - timedelta(seconds=s), outcome="error", status="503", duration_ms=20.0)
                  for s in (3, 2, 1)],
        origin={"agent": "delivery", "partition": 0, "offset": 7}, created_at=now,
    )
    return await DeadLetters(runtime.db, runtime.producer).publish(letter)


def service(runtime: Runtime, **kw: Any) -> ReplayService:
    assert runtime.db is not None
    return ReplayService(runtime.db, runtime.producer, runtime.partners, **kw)


async def test_replay_sends_the_original_envelope_once_with_its_idempotency_key(runtime: Runtime) -> None:
    letter = await seed(runtime, "ord-1")
    other = await seed(runtime, "ord-2")
    svc = service(runtime)

    result = await svc.replay_one(letter.id, who="test:alice")
    assert result.result == "ok" and result.replay_count == 1

    out = await topic_envelopes(runtime.settings, letter.source_topic, expect=1, wait=8)
    assert len(out) == 1  # only the replayed one; the other letter stays dead
    (env,) = out
    original = Envelope.model_validate(letter.envelope)
    assert env.id == original.id and env.idempotency_key == original.idempotency_key
    assert env.payload == original.payload
    assert env.headers["replay-count"] == "1" and env.headers["replay-of"] == letter.id

    q = Queries(runtime.db, runtime.partners)  # type: ignore[arg-type]
    shown = await q.dead_letter(letter.id)
    assert shown is not None and shown["status"] == "replayed" and shown["replay_count"] == 1
    assert [(h["who"], h["action"], h["result"]) for h in shown["history"]] == [("test:alice", "replay", "ok")]
    assert (await q.dead_letter(other.id) or {})["status"] == "dead"

    again = await svc.replay_one(letter.id, who="test:alice")  # already replayed: refused, nothing sent
    assert again.result == "refused" and "replayed" in (again.detail or "")
    with pytest.raises(NotFound):
        await svc.replay_one("no-such-letter", who="test:alice")


async def test_replay_with_patch_edits_payload_and_history_masks_the_value(runtime: Runtime) -> None:
    letter = await seed(runtime, "ord-p", phone="1380000")
    patch = parse_patch('[{"op": "test", "path": "/order/customer/contact_phone", "value": "1380000"},'
                        ' {"op": "replace", "path": "/order/customer/contact_phone", "value": "13912345678"}]')
    svc = service(runtime)
    dry = await svc.replay_one(letter.id, who="test:bob", patch=patch, dry_run=True)
    assert dry.result == "dry_run" and dry.envelope is not None
    assert dry.envelope["payload"]["order"]["customer"]["contact_phone"] != "13912345678"  # preview is masked

    result = await svc.replay_one(letter.id, who="test:bob", patch=patch, reason="phone fixed by CRM")
    assert result.result == "ok"
    (env,) = await topic_envelopes(runtime.settings, letter.source_topic, expect=1, wait=8)
    assert env.payload["order"]["customer"]["contact_phone"] == "13912345678"
    assert env.idempotency_key == letter.envelope["idempotency_key"]  # type: ignore[index]

    history = await Queries(runtime.db, runtime.partners).history(dead_letter_id=letter.id)  # type: ignore[arg-type]
    assert len(history) == 1 and history[0]["reason"] == "phone fixed by CRM"  # dry runs are not recorded
    recorded = repr(history[0]["patch"])
    assert "13912345678" not in recorded and "replace" in recorded


async def test_bad_patch_and_replay_cap_are_refused_and_nothing_is_sent(runtime: Runtime) -> None:
    bad = await seed(runtime, "ord-bad")
    capped = await seed(runtime, "ord-cap", **{"replay-count": "5"})
    svc = service(runtime, max_replays=5)
    r1 = await svc.replay_one(bad.id, who="t", patch=parse_patch('[{"op": "remove", "path": "/nope"}]'))
    r2 = await svc.replay_one(capped.id, who="t")
    assert (r1.result, r2.result) == ("refused", "refused")
    assert "cap 5" in (r2.detail or "")
    assert await records_before_marker(runtime.settings, bad.source_topic) == []
    q = Queries(runtime.db, runtime.partners)  # type: ignore[arg-type]
    assert [d["status"] for d in await q.dead_letters(DeadLetterFilter(ids=[bad.id, capped.id]))] == ["dead"] * 2
    refused = await q.history()
    assert sorted(h["dead_letter_id"] for h in refused if h["result"] == "refused") == sorted([bad.id, capped.id])


async def test_discard_needs_a_reason_and_is_final(runtime: Runtime) -> None:
    letter = await seed(runtime, "ord-d")
    svc = service(runtime)
    with pytest.raises(Refused):
        await svc.discard(letter.id, who="t:carol", reason="  ")
    done = await svc.discard(letter.id, who="t:carol", reason="order cancelled by customer")
    assert done.result == "ok"
    assert (await svc.replay_one(letter.id, who="t:carol")).result == "refused"
    assert (await svc.discard(letter.id, who="t:carol", reason="again")).result == "refused"
    history = await Queries(runtime.db, runtime.partners).history(dead_letter_id=letter.id)  # type: ignore[arg-type]
    assert [(h["action"], h["result"], h["who"]) for h in history][-1] == ("discard", "ok", "t:carol")
    assert history[-1]["reason"] == "order cancelled by customer"


async def test_filters_select_by_partner_error_class_order_and_time(runtime: Runtime) -> None:
    night = datetime.now(UTC) - timedelta(hours=10)
    a = await seed(runtime, "ord-a", partner="esop", created_at=night)
    b = await seed(runtime, "ord-b", partner="esop", error_class="PermanentError")
    c = await seed(runtime, "ord-c", partner="group", created_at=night)
    q = Queries(runtime.db, runtime.partners)  # type: ignore[arg-type]

    async def ids(**kw: Any) -> set[str]:
        return {d["id"] for d in await q.dead_letters(DeadLetterFilter(**kw))}

    assert await ids(partner="esop") == {a.id, b.id}
    assert await ids(source_topic=topics.outbound(runtime.settings.topic_prefix, "group")) == {c.id}
    assert await ids(error_class="PermanentError") == {b.id}
    assert await ids(order_id="ord-c") == {c.id}
    assert await ids(since=night - timedelta(minutes=1), until=night + timedelta(hours=1)) == {a.id, c.id}
    assert await ids(partner="esop", since="1h") == {b.id}
    listed = await q.dead_letters(DeadLetterFilter(partner="esop"))
    assert all("envelope" not in d for d in listed)  # listings are summaries
    shown = await q.dead_letter(a.id)
    assert shown is not None and len(shown["attempts"]) == 3
    assert shown["envelope"]["payload"]["order"]["customer"]["contact_phone"] != "13800001111"  # masked
    assert "杭州某某科技有限公司" not in repr(shown)


async def test_concurrent_bulk_replays_send_each_letter_exactly_once(runtime: Runtime) -> None:
    letters = [await seed(runtime, f"ord-{i}") for i in range(30)]
    ids = [x.id for x in letters]
    s1, s2 = service(runtime, chunk=7), service(runtime, chunk=11)
    r1, r2 = await asyncio.gather(s1.replay(ids, who="op1", rate=500), s2.replay(ids, who="op2"))
    assert r1.ok + r2.ok == 30 and r1.refused + r2.refused == 30
    out = await topic_envelopes(runtime.settings, letters[0].source_topic, expect=30, wait=10)
    assert sorted(e.correlation_id for e in out) == sorted(f"ord-{i}" for i in range(30))


async def test_broker_refusing_the_write_puts_the_letter_back(runtime: Runtime, settings: Settings) -> None:
    from tests.conftest import free_port

    letter = await seed(runtime, "ord-down")
    dead_broker = settings.model_copy(update={"kafka_url": f"127.0.0.1:{free_port()}", "kafka_request_timeout_ms": 500})
    assert runtime.db is not None
    svc = ReplayService(runtime.db, EnvelopeProducer(dead_broker), runtime.partners)
    result = await svc.replay_one(letter.id, who="t")
    assert result.result == "failed"
    doc = await runtime.db["dead_letters"].find_one({"_id": letter.id})
    assert doc is not None and doc["status"] == "dead" and doc["replay_count"] == 0
    assert (await service(runtime).replay_one(letter.id, who="t")).result == "ok"  # can be replayed later


async def test_force_resends_a_replayed_letter_with_the_same_key_and_counts_it(runtime: Runtime) -> None:
    letter = await seed(runtime, "ord-f")
    svc = service(runtime)
    assert (await svc.replay_one(letter.id, who="t")).result == "ok"
    again = await svc.replay_one(letter.id, who="t", force=True)
    assert again.result == "ok" and again.replay_count == 2
    out = await topic_envelopes(runtime.settings, letter.source_topic, expect=2, wait=8)
    assert [e.headers["replay-count"] for e in out] == ["1", "2"]
    assert len({e.idempotency_key for e in out}) == 1  # the partner side dedupes on this key


async def test_letters_of_a_dead_replay_are_pending_after_the_lease_and_never_sent_twice(runtime: Runtime) -> None:
    """Two letters left the way a SIGKILLed replay leaves them (claimed, lease lapsed); the dead
    process had sent one of them (it is on the topic under its claim), not the other. The next
    replay sends only the other, and both end ``replayed``."""
    assert runtime.db is not None
    sent_before, never_sent, holding = (await seed(runtime, "ord-k1"), await seed(runtime, "ord-k2"),
                                        await seed(runtime, "ord-k3"))
    now = datetime.now(UTC)
    for letter, lease in ((sent_before, -1), (never_sent, -1), (holding, 300)):
        await runtime.db["dead_letters"].update_one({"_id": letter.id}, {"$set": {
            "status": "replaying", "claim": "dead-claim", "claimed_by": "cli:gone (pid 1)",
            "claimed_at": now - timedelta(seconds=5), "lease_until": now + timedelta(seconds=lease)}})
    env = Envelope.model_validate(sent_before.envelope)
    env.headers.update({"replay-count": "1", "replay-of": sent_before.id, "replay-claim": "dead-claim"})
    await runtime.producer.send(sent_before.source_topic, env)  # what the dead process got acknowledged

    q = Queries(runtime.db, runtime.partners)  # type: ignore[arg-type]
    pending = {d["id"]: d["status"] for d in await q.dead_letters(DeadLetterFilter())}
    assert pending == {sent_before.id: "dead", never_sent.id: "dead"}  # lapsed: pending; held: not
    svc = service(runtime)
    assert set(await svc.select(DeadLetterFilter())) == {sent_before.id, never_sent.id}

    summary = await svc.replay([sent_before.id, never_sent.id, holding.id], who="t")
    assert (summary.ok, summary.refused) == (2, 1)  # the letter whose lease is held is not taken over
    out = await topic_envelopes(runtime.settings, sent_before.source_topic, expect=2, wait=8)
    assert sorted(e.headers["replay-of"] for e in out) == sorted([sent_before.id, never_sent.id])  # once each
    docs = {d["_id"]: d async for d in runtime.db["dead_letters"].find({})}
    assert [docs[x.id]["status"] for x in (sent_before, never_sent, holding)] == ["replayed", "replayed", "replaying"]
    assert docs[sent_before.id]["replay_count"] == 1 and "claim" not in docs[sent_before.id]
