"""A staged partner's callbacks through the runner (flows/runtime/runner.py + progress.py): the open-call rule.

Why: the callback endpoint lets a partner post only for an order with an open call to it (flows/http.py
``_owns``). The runner dropped the call on the first, interim callback, so every later stage and the
final result were refused (403 "not waiting for an answer from wsp", found by ``hub demo --all``) and
the order waited for ever. Here the shipped P14 construction sub-flow (CATALOGUE P14, 工单推送 then
阶段回复) is driven through the runner's own apply path — the real engine, the real document code, an
in-memory order store in place of MongoDB — with interim, interim, final, a duplicate and a late one.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

from flows.graph import Blueprint
from flows.runtime.progress import MAX_VALUE_CHARS
from flows.runtime.runner import FlowRunner
from hub.envelope import Envelope
from tests.unit.catalogue1_world import blueprint

P14 = "config/flows/p14_construction/dispatch.yaml"


class MemoryStore:
    """The order store's contract (flows/runtime/store.py) over a dict: load, create, replace under a rev."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.writes = 0

    async def load(self, order_id: str) -> dict[str, Any] | None:
        return self.docs.get(order_id)

    async def create(self, doc: dict[str, Any]) -> bool:
        if doc["_id"] in self.docs:
            return False
        self.writes += 1
        self.docs[doc["_id"]] = {**doc, "rev": uuid.uuid4().hex}
        return True

    async def replace(self, doc: dict[str, Any], expected_rev: str | None) -> bool:
        if self.docs[doc["_id"]].get("rev") != expected_rev:
            return False
        self.writes += 1
        self.docs[doc["_id"]] = {**doc, "rev": uuid.uuid4().hex}
        return True

    async def keep_versions(self, blueprints: list[Blueprint]) -> None:
        return None

    def forget(self, order_id: str) -> None:
        return None


class Library:
    def __init__(self, bp: Blueprint) -> None:
        self.bp = bp

    def by_name(self, name: str) -> Blueprint | None:
        return self.bp if name == self.bp.name else None

    def by_digest(self, digest: str) -> Blueprint | None:
        return self.bp if digest == self.bp.digest() else None

    def get(self, product: str | None, scenario: str | None) -> Blueprint | None:
        return None


def _runner(bp: Blueprint) -> tuple[FlowRunner, MemoryStore]:
    runtime: Any = SimpleNamespace(db=None, producer=None, settings=SimpleNamespace(topic_prefix="hub"), partners={})
    runner = FlowRunner(runtime, library=Library(bp), fs=None, callback_base_url="http://hub")  # type: ignore[arg-type]
    store = MemoryStore()
    runner._store = store  # type: ignore[assignment]
    runner.clock = iter(float(1_700_000_000 + 60 * i) for i in range(1000)).__next__
    return runner, store


def _callback(call_id: str, status: str, result: dict[str, Any]) -> Envelope:
    """As flows/http.py builds it: the same body gives the same idempotency key (and a new envelope id)."""
    key = f"callback:construction:{call_id}:C1:{status}:{sorted(result.items())}"
    return Envelope(type="callback", source="construction", protocol="rest", correlation_id="C1",
                    idempotency_key=key[:256],
                    payload={"order_id": "C1", "callback_ref": call_id, "status": status, "result": result})


async def _apply(runner: FlowRunner, env: Envelope) -> None:
    await runner._apply(env)


def test_a_call_stays_open_across_interim_callbacks_until_its_final_result() -> None:
    asyncio.run(_staged())


async def _staged() -> None:
    bp = blueprint(P14)
    runner, store = _runner(bp)
    received = Envelope(type="order.received", source="hub", protocol="internal", correlation_id="C1",
                        idempotency_key="child:C1", headers={"blueprint": bp.name},
                        payload={"external_order_id": "E-1", "product": "voice_line", "team": "杭州施工队"})
    await _apply(runner, received)
    doc = store.docs["C1"]
    [push] = doc["open_calls"].values()
    assert (push["partner"], push["operation"], push["awaits_callback"]) == ("construction", "construction_order", True)
    call_id = push["call_id"]
    accepted = Envelope(type="call.result", source="hub", protocol="internal", correlation_id="C1",
                        idempotency_key=f"result:{call_id}", payload={"call_id": call_id, "ok": True,
                                                                       "response": {"code": "0"}})
    await _apply(runner, accepted)  # the push's synchronous "accepted": the call stays open, no write
    assert call_id in store.docs["C1"]["open_calls"] and store.writes == 1

    stages = [("accepted", {"status": "已派单", "designer": "李工"}),
              ("processing", {"status": "设计完成", "manager": "王工", "phone": "13800000000"}),
              ("processing", {"status": "施工中", "start_date": "2026-01-02"})]
    for i, (status, result) in enumerate(stages, 1):
        await _apply(runner, _callback(call_id, status, result))
        doc = store.docs["C1"]
        assert call_id in doc["open_calls"], f"stage {i} closed the call: later callbacks would be refused"
        assert doc["status"] in ("in_flight", "waiting") and doc["current_stage"] == "dispatch"
        progress = doc["progress"]["dispatch"]
        assert (progress["status"], len(progress["stages"]), progress["final"]) == (status, i, False)
    assert store.docs["C1"]["stages"][-1]["progress"]["fields"] == {
        "status": "施工中", "designer": "李工", "manager": "王工", "phone": "13800000000", "start_date": "2026-01-02"}

    await _apply(runner, _callback(call_id, "processing", {"note": "现场" * 400}))  # free text: kept short
    assert len(store.docs["C1"]["progress"]["dispatch"]["stages"][-1]["result"]["note"]) == MAX_VALUE_CHARS

    writes = store.writes
    await _apply(runner, _callback(call_id, *stages[1]))  # the same stage delivered twice: one effect
    assert store.writes == writes and len(store.docs["C1"]["progress"]["dispatch"]["stages"]) == 4

    final = _callback(call_id, "completed", {"status": "completed", "end_date": "2026-01-03", "cost": 1200})
    await _apply(runner, final)
    doc = store.docs["C1"]
    assert doc["status"] == "completed" and doc["open_calls"] == {}
    # the saved construction record: the final's fields over what the stages reported (施工项目经理, 经理电话, 设计员)
    construction = doc["state"]["data"]["construction"]
    assert {k: construction[k] for k in ("status", "manager", "phone", "designer", "cost")} == {
        "status": "completed", "manager": "王工", "phone": "13800000000", "designer": "李工", "cost": 1200}
    assert doc["progress"]["dispatch"]["final"] is True and len(doc["progress"]["dispatch"]["stages"]) == 5
    completed = doc["state"]

    writes = store.writes
    for late in (final, _callback(call_id, *stages[2]), _callback(call_id, "processing", {"status": "返工"})):
        await _apply(runner, late)  # the final again, a stage again, a new stage after the final: nothing
    assert store.writes == writes and store.docs["C1"]["state"] == completed
    assert store.docs["C1"]["open_calls"] == {}  # so the endpoint refuses the partner for this order now (403)
