"""A route whose target is a sink gets the partner delivery chain (connectors/delivery): a failing
partner is retried under the route's ``target.policy`` and ends in a dead letter with every attempt
— before, the route called its sink once, bare, and the source retried forever — the source moves
on past it, a record read twice is delivered once, and the replayed letter is delivered through the
route again (routes/replays.py), once however often it is replayed."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer

from app.admin.replay import ReplayService
from app.runtime import Runtime
from hub import topics
from hub.envelope import Envelope
from hub.kafka import EnvelopeProducer, ensure_topics
from hub.settings import PROJECT_ROOT, Settings
from simulators.server import STATE, build_app
from simulators.state import Control
from tests.support import eventually

pytestmark = pytest.mark.integration
FAST = {"session_timeout_ms": 4000, "heartbeat_interval_ms": 1000, "retry_delay_s": 0.2}
POLICY = {"timeout_s": 2, "max_attempts": 3, "concurrency": 4, "backoff_initial_s": 0.05, "backoff_max_s": 0.1,
          "jitter_s": 0}


def _entry(key: str) -> Envelope:
    return Envelope(type="call.request", source="hub", protocol="internal", correlation_id=f"ord-{key}",
                    idempotency_key=f"call:ord-{key}:resource_entry",
                    payload={"operation": "resource_entry", "request": {"orderId": f"ord-{key}"}})


async def test_route_sink_to_a_failing_partner_ends_in_a_dead_letter_with_attempts(
        settings: Settings, tmp_path: Path) -> None:
    sim = TestServer(build_app(PROJECT_ROOT / "config"))
    await sim.start_server()
    state = sim.app[STATE]
    state.partner("resource").control = Control(mode="http_error")  # 500 to every call
    tag = uuid.uuid4().hex[:8]
    topic = f"{settings.topic_prefix}.res-{tag}"
    await ensure_topics(settings, [topic], partitions=1)
    route: dict[str, Any] = {
        "source": {"connector": "kafka", "partner": "resource", "topic": topic, "body": "envelope", **FAST},
        "target": {"sink": {"connector": "rest", "base_url": str(sim.make_url("/resource/api")),
                            "operations": {"resource_entry": {"path": "/entry", "success": {
                                "field": "code", "equals": "0", "error_field": "msg"}}}},
                   "policy": POLICY},
    }
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "res-out.yaml").write_text(yaml.safe_dump(route))
    rt = Runtime(settings.model_copy(update={"config_dir": tmp_path}), partners={})
    producer = EnvelopeProducer(settings)
    await rt.start()
    try:
        await rt.start_routes(watch=False)
        assert rt.routes is not None and rt.routes.readiness()["routes"]["res-out"]["state"] == "running"
        sink: Any = next(r.sink for r in rt.routes.runners.values() if r.name == "res-out")
        # the sink's client gets the route's target.policy (timeout per attempt, connections)
        assert (sink.timeout_s, sink.concurrency) == (POLICY["timeout_s"], POLICY["concurrency"])
        assert rt.db is not None
        failing, later = _entry(f"A{tag}"), _entry(f"B{tag}")
        await producer.send(topic, failing)

        letter = await eventually(lambda: rt.db["dead_letters"].find_one(  # type: ignore[index]
            {"idempotency_key": failing.idempotency_key}), timeout=20)
        assert letter["source_topic"] == topics.route(settings.topic_prefix, "res-out")
        assert letter["error_class"] == "RetriesExhausted" and "simulated server error" in letter["error"]
        assert letter["origin"]["route"] == "res-out" and letter["envelope"]["id"] == failing.id
        assert len(letter["attempts"]) == POLICY["max_attempts"]
        assert all(a["status"] == "rejected" and "code='500'" in a["error"] for a in letter["attempts"])
        assert len(state.partner("resource").calls) == POLICY["max_attempts"]

        # the partner is back: the source went past the dead-lettered record (it is not retried)
        state.partner("resource").control = Control(mode="ok")
        await producer.send(topic, later)
        await producer.send(topic, later)  # read twice: delivered once (recorded per route)
        record = await eventually(lambda: rt.db["deliveries"].find_one(  # type: ignore[index]
            {"_id": f"route:res-out:{later.idempotency_key}", "state": "delivered"}), timeout=20)
        assert record["route"] == "res-out" and record["attempts"] == 1
        marker = _entry(f"C{tag}")  # a later record proves the duplicate was consumed before it
        await producer.send(topic, marker)
        await eventually(lambda: rt.db["deliveries"].find_one(  # type: ignore[index]
            {"_id": f"route:res-out:{marker.idempotency_key}", "state": "delivered"}), timeout=20)
        ok_calls = [c.idempotency_key for c in state.partner("resource").calls if c.answered == "ok"]
        assert ok_calls == [later.idempotency_key, marker.idempotency_key]

        # the operator replays the dead letter: it comes back through the route's chain, once
        replay = ReplayService(rt.db, rt.producer, {})
        summary = await replay.replay([letter["_id"]], who="test")
        assert summary.ok == 1
        await eventually(lambda: rt.db["deliveries"].find_one(  # type: ignore[index]
            {"_id": f"route:res-out:{failing.idempotency_key}", "state": "delivered"}),
            timeout=40)  # the replay consumer joins its group
        await replay.replay([letter["_id"]], who="test", force=True)  # replayed twice: delivered once
        again = _entry(f"D{tag}")
        await producer.send(topic, again)
        await eventually(lambda: rt.db["deliveries"].find_one(  # type: ignore[index]
            {"_id": f"route:res-out:{again.idempotency_key}", "state": "delivered"}), timeout=20)
        ok_calls = [c.idempotency_key for c in state.partner("resource").calls if c.answered == "ok"]
        assert ok_calls.count(failing.idempotency_key) == 1
    finally:
        await producer.stop()
        await rt.stop()
        await sim.close()
