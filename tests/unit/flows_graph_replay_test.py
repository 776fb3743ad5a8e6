"""Replay: recorded event sequences (tests/fixtures/flows/replay/*.json) give identical commands.

Why: the engine is pure, so what a running order does next is fully decided by its blueprint and its
events. A blueprint or engine edit that would change that for orders already recorded fails here. When
the change is meant, re-record: ``.venv/bin/python -m tests.unit.flows_graph_replay_test``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit import flows_graph_cancel_test as cancel
from tests.unit import flows_graph_scenarios_test as sc
from tests.unit.flows_graph_harness import FIXTURES, Driver, fixture_blueprint, record, replay

REPLAYS = FIXTURES / "replay"


def _p04_loop() -> Driver:
    d = sc.p04()
    sc.design_reply(d)
    d.send({"type": "submission", "node": "network_change", "fields": {"change_done": True}, "user": {"id": "u1"}})
    d.send({"type": "submission", "node": "verification", "fields": {"test_ok": False}, "user": {"id": "u2"}},
           after=600)
    d.send({"type": "submission", "node": "verification", "fields": {"test_ok": True}, "user": {"id": "u2"}},
           after=600)
    close = next(c for c in d.steps[-1]["commands"] if c["type"] == "send_call")
    d.send({"type": "call_result", "call_id": close["call_id"], "result": {"checkResult": "1"}}, after=2)
    return d


def _p04_cancel() -> Driver:
    d = sc.p04()
    sc.design_reply(d)
    d.send({"type": "submission", "node": "network_change", "fields": {"change_done": True}})
    d.send({"type": "cancel", "reason": "撤单"}, after=30)
    return d


def _p06_pon() -> Driver:
    d = sc.p06("PON")
    sc.pass_gate(d, sc.design(d))
    gpon = next(c for c in d.steps[-1]["commands"] if c["type"] == "send_call")
    timer = next(c for c in d.send({"type": "call_result", "call_id": gpon["call_id"], "pending": True})
             if c["type"] == "start_timer")
    d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=60)
    sr = next(c for c in d.send({"type": "call_result", "call_id": gpon["call_id"], "via": "poll",
                             "result": {"status": "success"}}, after=1) if c["type"] == "send_call")
    d.send({"type": "call_result", "call_id": sr["call_id"], "via": "callback", "result": {"status": "success"}})
    return d


def _fusion() -> Driver:
    a, b = sc.fusion("A1"), sc.fusion("B1")
    sc.finish_branches(a)
    pub_b = next(c for c in sc.finish_branches(b) if c["type"] == "publish")
    cmds = a.send({"type": "message", "key": pub_b["key"], "order_id": pub_b["order_id"], "payload": pub_b["payload"]})
    timer = next(c for c in cmds if c["type"] == "start_timer")
    a.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=100_000)
    return a


def _p14_child() -> Driver:
    d = Driver(fixture_blueprint("p14_construction"))
    d.send({"type": "order_received", "order_id": "O1:9:child", "data": {"order_id": "O1", "address": "A1"}})
    call = next(c for c in d.steps[0]["commands"] if c["type"] == "send_call")
    d.send({"type": "call_result", "call_id": call["call_id"], "via": "callback", "result": {"status": "done"}},
           after=86400)
    return d


SCENARIOS: dict[str, tuple[str, Callable[[], Driver]]] = {
    "p04_1_audit_loop": ("p04_1_transmission_open", _p04_loop),
    "p04_1_cancel": ("p04_1_transmission_open", _p04_cancel),
    "p06_4_pon_poll": ("p06_4_srv6_change", _p06_pon),
    "fusion_two_orders": ("fusion_parallel", _fusion),
    "p14_child": ("p14_construction", _p14_child),
    "p26_4_withdraw": ("p26_4_5g_withdraw", cancel.recorded_withdraw),
    "p26_4_suspend_resume": ("p26_4_5g_withdraw", cancel.recorded_suspend),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recorded_events_replay_to_identical_commands(name: str) -> None:
    path = REPLAYS / f"{name}.json"
    assert path.is_file(), f"missing {path}: re-record (see the module docstring)"
    assert replay(path) == []


def test_every_exemplar_blueprint_has_a_replay() -> None:
    recorded = {SCENARIOS[n][0] for n in SCENARIOS}
    assert recorded == {p.stem for p in FIXTURES.glob("*.yaml")}


def test_a_blueprint_edit_that_changes_a_running_order_fails_the_replay() -> None:
    bp = fixture_blueprint("p04_1_transmission_open")
    node = bp.nodes["design_refine"]
    step0 = node.steps[0]  # type: ignore[attr-defined]
    edited_step = step0.model_copy(update={"payload": {**step0.payload, "bandwidth": "data.bandwidth * 2"}})
    edited = bp.model_copy(update={"nodes": {**bp.nodes, "design_refine": node.model_copy(
        update={"steps": [edited_step]})}})
    diffs = replay(REPLAYS / "p04_1_audit_loop.json", edited)
    assert [i for i, _, _ in diffs] == [0]
    (recorded,), (replayed,) = ([c for c in cmds if c["type"] == "send_call"] for cmds in diffs[0][1:])
    assert recorded["payload"]["bandwidth"] == 100 and replayed["payload"]["bandwidth"] == 200


def _record_all(folder: Path = REPLAYS) -> None:
    for name, (blueprint_file, scenario) in SCENARIOS.items():
        record(folder / f"{name}.json", blueprint_file, scenario())


if __name__ == "__main__":
    _record_all()
