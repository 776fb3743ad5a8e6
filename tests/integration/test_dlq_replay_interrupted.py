"""An interrupted ``hub dlq replay`` hides nothing and loses nothing (issue 8, item 10).

The replay runs as the operator runs it — ``hub dlq replay --all --rate N`` in a subprocess against
the session's real broker and database — and is stopped mid-way: with SIGINT (Ctrl-C) the claims
not sent are given back at once; with SIGKILL they lapse after the (short, for the test) lease.
Afterwards every letter is either sent exactly once (on the topic, and ``replayed``) or pending
again, and a second replay completes the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.admin import gauges
from app.admin.queries import DeadLetterFilter, Queries
from app.runtime import Runtime
from hub import topics
from hub.deadletter import DeadLetter
from hub.envelope import Envelope
from tests.support import eventually, read_topic

pytestmark = pytest.mark.integration


async def seed(runtime: Runtime, n: int) -> tuple[str, list[str]]:
    """``n`` dead-lettered ESOP calls in their real shape (``DeadLetter`` model), in one insert."""
    assert runtime.db is not None
    topic = topics.outbound(runtime.settings.topic_prefix, "esop")
    docs = []
    for i in range(n):
        order_id = f"ord-int-{i:05d}"
        env = Envelope(type="call.request", source="hub", protocol="soap", correlation_id=order_id,
                       idempotency_key=f"call:{order_id}:close_out:close_report", payload={"operation": "close_report"})
        doc = DeadLetter.for_envelope(topic, env, "SOAP fault", partner="esop", error_class="RetriesExhausted",
                                      created_at=datetime.now(UTC)).model_dump()
        doc["_id"] = doc.pop("id")
        docs.append(doc)
    await runtime.db["dead_letters"].insert_many(docs)
    return topic, [d["_id"] for d in docs]


def hub_env(runtime: Runtime) -> dict[str, str]:
    s = runtime.settings
    return {**os.environ, "HUB_TOPIC_PREFIX": s.topic_prefix, "HUB_MONGO_DB": s.mongo_db}


async def start_replay(runtime: Runtime, topic: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "dlq", "replay", "--all", "--topic", topic, "--yes", "--json", *args,
        env=hub_env(runtime), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_interruptible)


def _interruptible() -> None:
    """Ctrl-C reaches the replay as it would in a terminal. A suite started in the background
    (``./scripts/dev test &``) runs with SIGINT ignored, every child inherits that, and Python then
    installs no KeyboardInterrupt handler: the replay ignored the signal and sent all 10,000 (the
    failures of 2026-12-02, "assert 10000 < 10000", "still running 60 s after signal 2")."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def replayed(runtime: Runtime) -> set[str]:
    assert runtime.db is not None
    return {d["_id"] async for d in runtime.db["dead_letters"].find({"status": "replayed"}, {"_id": 1})}


async def sent(runtime: Runtime, topic: str, expect: int | None = None) -> Counter[str]:
    """Dead-letter ids of every replay on the topic (``replay-of``), with how often each was sent."""
    records = await read_topic(runtime.settings, topic, expect=expect, wait=20 if expect else 3)
    return Counter(json.loads(r.value)["headers"]["replay-of"] for r in records)


async def interrupt_mid_way(runtime: Runtime, proc: asyncio.subprocess.Process, sig: int, after: int) -> None:
    async def enough() -> bool:
        assert proc.returncode is None, (await proc.communicate())
        return len(await replayed(runtime)) >= after

    await eventually(enough, timeout=60, interval=0.05)
    proc.send_signal(sig)
    # The interrupted replay waits for every send already on the wire (up to the producer's timeout) before
    # it gives its claims back; 15 s was too short twice in full runs on the shared 2-core machine (it passes
    # in ~1 s alone). What it printed is kept for the failure message rather than lost in a bare TimeoutError.
    try:
        await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        stacks = await _stacks(proc.pid)
        proc.kill()
        _, err = await proc.communicate()
        raise AssertionError(f"replay still running 60 s after signal {sig}: {err.decode()[-3000:]}\n"
                             f"its threads then:\n{stacks}") from None


async def _stacks(pid: int) -> str:
    """The process's thread stacks by py-spy when it is installed (a hung MongoDB or Kafka call shows in a
    worker thread; an idle loop means an asyncio-level wait), else a note saying it is not."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "(py-spy not installed)"
    dump = await asyncio.create_subprocess_exec(spy, "dump", "--pid", str(pid), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(dump.communicate(), 30)
    return out.decode()[-6000:]


async def settled(runtime: Runtime) -> set[str]:
    """The replayed letters once the writes a killed process left on the wire have landed."""
    last: set[str] = set()

    async def stable() -> set[str] | None:
        nonlocal last
        now = await replayed(runtime)
        same = now == last
        last = now
        return now if same else None

    await asyncio.sleep(0.3)
    return await eventually(stable, timeout=10, interval=0.3)


async def pending_count(runtime: Runtime) -> int:
    assert runtime.db is not None
    return await Queries(runtime.db, runtime.partners).count_dead_letters(DeadLetterFilter())


@pytest.mark.allow_blocking(reason="the test seeds 3,000 dead letters in one batch on its own task")
async def test_ctrl_c_during_a_bulk_replay_gives_back_every_claim_not_sent(runtime: Runtime) -> None:
    """The issue's case was 10,000 letters; 3,000 keep the replay running long after the signal
    (interrupted at >= 100, at 200/s) while the second replay of the rest no longer costs 50-80 s
    of the suite: what is checked — claims given back at once, none sent twice — is per letter."""
    assert runtime.db is not None
    topic, ids = await seed(runtime, 3_000)
    proc = await start_replay(runtime, topic, "--rate", "200")  # default lease (300 s): nothing may wait for it
    await interrupt_mid_way(runtime, proc, signal.SIGINT, after=100)

    done = await replayed(runtime)
    on_topic = await sent(runtime, topic, expect=len(done))
    assert 100 <= len(done) < len(ids)
    assert set(on_topic) == done and set(on_topic.values()) == {1}  # sent ⇔ replayed, each once
    assert await runtime.db["dead_letters"].count_documents({"status": "replaying"}) == 0
    assert await pending_count(runtime) == len(ids) - len(done)  # at once, not after the lease
    audited = {a["dead_letter_id"] async for a in runtime.db["dlq_actions"].find({"action": "replay", "result": "ok"})}
    assert audited == done  # the audit trail has every letter that was sent, and only those

    proc = await start_replay(runtime, topic)  # the rest, no duplicates
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["ok"] == len(ids) - len(done)
    on_topic = await sent(runtime, topic, expect=len(ids))
    assert set(on_topic) == set(ids) and set(on_topic.values()) == {1}
    assert await pending_count(runtime) == 0


async def test_replay_killed_with_sigkill_lets_its_claims_lapse_back_to_pending(runtime: Runtime) -> None:
    assert runtime.db is not None
    topic, ids = await seed(runtime, 400)
    lease = 8.0
    proc = await start_replay(runtime, topic, "--rate", "40", "--lease", str(lease))
    await interrupt_mid_way(runtime, proc, signal.SIGKILL, after=20)
    killed_at = time.monotonic()
    done = await settled(runtime)  # a mark already on the wire when the process died still lands
    held = await runtime.db["dead_letters"].count_documents({"status": "replaying"})
    assert held > 0  # the dead process still holds claims: not pending yet, not lost
    assert await pending_count(runtime) == len(ids) - len(done) - held
    assert time.monotonic() - killed_at < lease  # (checked while the lease still held)

    on_topic = await sent(runtime, topic)
    assert set(on_topic.values()) == {1} and done <= set(on_topic)  # replayed ⇒ sent, once
    in_doubt = set(on_topic) - done  # acknowledged by the broker, but the process died before marking it
    print(f"SIGKILL: {len(done)} replayed, {len(in_doubt)} sent but not marked, {held} claims held")

    # the lease lapses: pending again everywhere — list, replay selection, gauges
    await asyncio.sleep(max(0.0, lease + 0.5 - (time.monotonic() - killed_at)))
    assert await pending_count(runtime) == len(ids) - len(done)
    listed = json.loads(await hub_cli(runtime, "dlq", "list", "--topic", topic, "--json", "-n", "1000"))
    assert listed["total"] == len(ids) - len(done) and {i["status"] for i in listed["items"]} == {"dead"}
    await gauges.refresh(runtime)
    assert REGISTRY.get_sample_value("hub_dead_letters_pending", {"topic": topic}) == len(ids) - len(done)

    proc = await start_replay(runtime, topic)
    _out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(_out)["ok"] == len(ids) - len(done)  # the in-doubt ones found on the topic count as ok
    on_topic = await sent(runtime, topic, expect=len(ids))
    assert set(on_topic) == set(ids) and set(on_topic.values()) == {1}  # no duplicates, in doubt or not
    assert await replayed(runtime) == set(ids)


async def hub_cli(runtime: Runtime, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hub", *args, env=hub_env(runtime),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()
