"""G7 "the SLA timer starts on receipt": the order's SLA clock (flows/graph/sla.py) in the pure engine,
its shared fragment (config/flows/fragments/sla.yaml) and what the order document shows
(flows/runtime/document.py ``project``).

The clock is injected: :class:`Sweep` plays the runtime's timer sweep (flows/runtime/sweeps.py), firing
every live timer whose ``at`` has come when the test moves time on — so "fires at the deadline, not
before" is tested as the runtime would fire it, with no sleeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.graph import Blueprint
from flows.graph.library import load_library
from flows.runtime.document import apply_commands, epoch, new_document, project
from hub.errors import ConfigError
from tests.unit.flows_graph_harness import Driver, of_type, one, record, replay
from tests.unit.flows_library_test import SHIPPED_FRAGMENTS, operations, write

T0 = 1_700_000_000.0
SLA_S = 3600.0
SMS = {"partner": "sms", "operation": "send", "payload": {"order_id": "order_id", "team": "data.team"}}


def sla_bp(**sla: Any) -> Blueprint:
    return Blueprint.model_validate({"name": "sla-demo", "product": "demo", "scenario": "open", "start": "recv",
                                     "sla": {"after_s": SLA_S, "escalate": [SMS], **sla}, "nodes": {
        "recv": {"kind": "auto", "set": {"team": "'跨省班组'"}, "next": "work"},
        "work": {"kind": "user", "fields": [{"name": "ok", "type": "bool"}], "next": "done"},
        "done": {"kind": "end", "status": "completed"}}})


class Sweep:
    """The runtime's timers as the engine's commands leave them: started, cancelled, fired when due."""

    def __init__(self, d: Driver) -> None:
        self.d = d
        self.timers: dict[str, float] = {}

    def take(self, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for c in cmds:
            if c["type"] == "start_timer":
                self.timers[c["timer_id"]] = c["at"]
            elif c["type"] == "cancel_timer":
                self.timers.pop(c["timer_id"], None)
        return cmds

    def send(self, event: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
        return self.take(self.d.send(event, **kw))

    def until(self, at: float) -> list[dict[str, Any]]:
        """Move the clock to ``at``, firing each timer due by then at its own time; what they sent."""
        out: list[dict[str, Any]] = []
        while (due := sorted((t, i) for i, t in self.timers.items() if t <= at)):
            when, timer_id = due[0]
            del self.timers[timer_id]
            self.d.now = max(self.d.now, when)
            out += self.take(self.d.send({"type": "timer_fired", "timer_id": timer_id}))
        self.d.now = max(self.d.now, at)
        return out


def received(bp: Blueprint | None = None) -> tuple[Driver, Sweep, list[dict[str, Any]]]:
    d = Driver(bp or sla_bp(), now=T0)
    sweep = Sweep(d)
    return d, sweep, sweep.take(d.receive("S1", external_order_id="E-1"))


def escalations(cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in of_type(cmds, "send_report") if c["on"] == "escalate"]


def test_the_clock_starts_on_receipt_and_fires_at_the_deadline_not_before() -> None:
    d, sweep, cmds = received()
    timer = one(cmds, "start_timer")
    assert (timer["purpose"], timer["at"]) == ("sla", T0 + SLA_S) and cmds.index(timer) == 0  # first thing
    assert d.state is not None and d.state["sla"]["started_at"] == T0
    assert d.state["sla"]["due_soon_at"] == T0 + 0.8 * SLA_S  # the default share
    assert escalations(sweep.until(T0 + SLA_S - 1)) == []
    (sms,) = escalations(sweep.until(T0 + SLA_S))
    assert d.now == T0 + SLA_S and (sms["partner"], sms["operation"], sms["gate"]) == ("sms", "send", False)
    assert sms["payload"] == {"order_id": "S1", "team": "跨省班组"} and sms["node"] == "work"
    # the order goes on (an SLA is a promise, not a stop) and the clock fires once
    assert d.status == "running" and d.nodes() == ["work"] and d.state["sla"]["fired_at"] == T0 + SLA_S
    assert sweep.until(T0 + 10 * SLA_S) == []
    sweep.send({"type": "submission", "node": "work", "fields": {"ok": True}})
    assert d.status == "completed" and d.state["sla"]["met"] is False


def test_suspend_pauses_the_clock_and_resume_restarts_it_with_what_was_left() -> None:
    d, sweep, _ = received()
    sweep.until(T0 + 1000)
    cmds = sweep.send({"type": "suspend", "reason": "客户暂缓"})
    assert len(of_type(cmds, "cancel_timer")) == 1 and sweep.timers == {}
    assert d.state is not None and d.state["sla"]["remaining"] == SLA_S - 1000
    assert escalations(sweep.until(T0 + 5 * SLA_S)) == []  # held: the SLA does not run out
    restarted = one(sweep.send({"type": "resume"}), "start_timer")
    resumed = T0 + 5 * SLA_S
    assert restarted["purpose"] == "sla" and restarted["at"] == resumed + SLA_S - 1000
    assert d.state["sla"]["due_soon_at"] == T0 + 0.8 * SLA_S + (resumed - (T0 + 1000))  # moved by the hold
    # the old timer firing late matches nothing
    old = one(d.steps[0]["commands"], "start_timer")["timer_id"]
    assert d.send({"type": "timer_fired", "timer_id": old}) == []
    assert escalations(sweep.until(restarted["at"] - 1)) == []
    assert len(escalations(sweep.until(restarted["at"]))) == 1


def test_the_clock_stops_when_the_order_ends() -> None:
    d, sweep, cmds = received()
    timer = one(cmds, "start_timer")["timer_id"]
    done = sweep.send({"type": "submission", "node": "work", "fields": {"ok": True}}, after=600)
    assert d.status == "completed" and {"type": "cancel_timer", "timer_id": timer} in done
    assert d.state is not None and d.state["sla"]["met"] is True and d.state["sla"]["stopped_at"] == T0 + 600
    assert d.send({"type": "timer_fired", "timer_id": timer}, after=SLA_S) == []  # a late firing: nothing
    # a cancel stops it too (suspended: its timer was cancelled at the suspend, not again)
    d2, sweep2, _ = received()
    sweep2.send({"type": "suspend", "reason": "x"})
    out = sweep2.send({"type": "cancel", "reason": "撤单"})
    assert d2.status == "cancelled" and of_type(out, "cancel_timer") == [] and sweep2.timers == {}


def test_hours_the_default_and_the_share_are_read_from_the_blueprint() -> None:
    assert one(received(sla_bp(after_s=None, hours=48))[2], "start_timer")["at"] == T0 + 48 * 3600
    assert one(received(sla_bp(after_s=None))[2], "start_timer")["at"] == T0 + 72 * 3600  # DEFAULT_SLA_HOURS
    d, _, _ = received(sla_bp(due_soon_share=0.5))
    assert d.state is not None and d.state["sla"]["due_soon_at"] == T0 + SLA_S / 2
    with pytest.raises(ValueError, match="not both"):
        sla_bp(hours=1)
    plain = Blueprint.model_validate({**sla_bp().model_dump(mode="json"), "sla": None})
    d = Driver(plain, now=T0)
    assert of_type(d.receive("S2"), "start_timer") == [] and d.state is not None and "sla" not in d.state


def test_replay_is_deterministic(tmp_path: Path) -> None:
    def run() -> Driver:
        d, sweep, _ = received()
        sweep.until(T0 + 100)
        sweep.send({"type": "suspend", "reason": "hold"})
        sweep.send({"type": "resume"}, after=900)
        sweep.until(T0 + 2 * SLA_S)
        sweep.send({"type": "submission", "node": "work", "fields": {"ok": True}})
        return d

    first, second = run(), run()
    assert [s["commands"] for s in first.steps] == [s["commands"] for s in second.steps]
    record(tmp_path / "sla.json", "-", first)
    assert replay(tmp_path / "sla.json", sla_bp()) == []
    assert replay(tmp_path / "sla.json", sla_bp(after_s=SLA_S + 1))  # another SLA: the recording fails


def projected(d: Driver, cmds_so_far: list[dict[str, Any]]) -> dict[str, Any]:
    doc = new_document("S1", {"partner": "group"}, d.bp, T0)
    apply_commands(doc, cmds_so_far, d.now, 0)
    doc["state"] = d.state
    project(doc, d.bp, d.now)
    return doc


def test_the_order_document_shows_the_deadline_due_soon_and_overdue() -> None:
    d, sweep, cmds = received()
    seen = list(cmds)
    doc = projected(d, seen)
    assert epoch(doc["sla_deadline"]) == T0 + SLA_S and epoch(doc["sla"]["due_soon_at"]) == T0 + 0.8 * SLA_S
    assert doc["sla"]["fired_at"] is None and doc["sla"]["met"] is None
    seen += sweep.send({"type": "suspend", "reason": "hold"}, after=100)
    doc = projected(d, seen)
    assert doc["sla_deadline"] is None and doc["sla"]["paused_remaining_s"] == SLA_S - 100  # paused: no deadline
    seen += sweep.send({"type": "resume"}, after=400)
    seen += sweep.until(T0 + 500 + SLA_S)
    doc = projected(d, seen)
    # it ran out: the deadline stays (the order reads overdue), the escalation time is shown
    assert epoch(doc["sla_deadline"]) == T0 + 400 + SLA_S and epoch(doc["sla"]["fired_at"]) == T0 + 400 + SLA_S
    assert epoch(doc["sla_deadline"]) < d.now and doc["status"] != "completed"
    seen += sweep.send({"type": "submission", "node": "work", "fields": {"ok": True}})
    doc = projected(d, seen)
    assert doc["sla_deadline"] is None and doc["sla"]["met"] is False and doc["status"] == "completed"


FLOW = """\
name: demo-open
product: demo
scenario: open
start: recv
fragments: [sla]
{sla}nodes:
  recv: {{kind: auto, set: {{team: "'某班组'"}}, next: done}}
  done: {{kind: end}}
"""


def library_with(tmp_path: Path, sla: str) -> Any:
    for frag in SHIPPED_FRAGMENTS.glob("*.yaml"):
        write(tmp_path, f"fragments/{frag.name}", frag.read_text(encoding="utf-8"))
    write(tmp_path, "demo/open.yaml", FLOW.format(sla=sla))
    return load_library(tmp_path, operations())


def test_the_shared_fragment_gives_the_sla_and_a_product_sets_its_hours(tmp_path: Path) -> None:
    bp = library_with(tmp_path, "").get("demo", "open")
    assert bp.sla is not None and bp.sla.hours == 72 and bp.sla.escalate[0].operation == "send"
    own = library_with(tmp_path, "sla: {hours: 24}\n").get("demo", "open")
    assert own.sla.hours == 24 and own.sla.escalate == bp.sla.escalate  # key by key: the escalation stays
    quick = library_with(tmp_path, "sla: {after_s: 5}\n").get("demo", "open")  # replaces the fragment's hours
    assert quick.sla.after_s == 5 and quick.sla.hours is None and quick.sla.seconds == 5
    assert library_with(tmp_path, "sla: null\n").get("demo", "open").sla is None
    with pytest.raises(ConfigError) as info:
        library_with(tmp_path, "sla: {escalate: [{partner: sms, operation: nope}]}\n")
    assert any("demo/open.yaml:6: sla.escalate[0]" in p and "no operation 'nope'" in p
               for p in info.value.problems), info.value.problems
