"""The stage engine, event by event, without I/O: what the order document becomes and which
envelopes the hub would send. Uses the shipped blueprints and partner files."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.blueprint import load_blueprints
from flows.engine import Engine, Step
from flows.settings import FlowSettings
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "config"


def make_engine(config: Path = CONFIG) -> Engine:
    partners = load_partners(config)
    fs = FlowSettings(gate_retry_s=0.01, stale_after_s=60, recovery_interval_s=1)
    return Engine(load_blueprints(config, partners), partners, "t", fs, "http://hub.test")


def received(product: str = "internet_line", source: str = "esop", **order: Any) -> Envelope:
    payload = {"external_order_id": "EXT-1", "product": product, "scenario": "open",
               "customer": {"name": "n"}, "addresses": [{"city": "杭州", "detail": "d"}], **order}
    return Envelope(type="order.received", source=source, protocol="rest", correlation_id="ord-1",
                    idempotency_key="order:esop:EXT-1:open", product=product, scenario="open", payload=payload)


def result(step_or_env: Envelope, ok: bool = True, **extra: Any) -> Envelope:
    call = step_or_env
    return call.caused(type="call.result", source=call.payload["partner"], idempotency_key=f"r-{call.id}",
                       payload={"call_id": call.payload["call_id"], "round": call.payload["round"], "ok": ok,
                                "outcome": "ok" if ok else "dead_lettered", "error": None if ok else "boom",
                                "response": extra.pop("response", {"code": "0"}),
                                "attempts": [{"at": datetime.now(UTC).isoformat(), "outcome": "ok"}],
                                "finished_at": datetime.now(UTC).isoformat(), **extra})


def callback(call: Envelope, result_body: dict[str, Any] | None = None, status: str = "ok") -> Envelope:
    return Envelope(type="callback", source=call.payload["partner"], protocol="rest", correlation_id="ord-1",
                    idempotency_key=f"cb-{call.id}-{time.monotonic()}",
                    payload={"order_id": "ord-1", "callback_ref": call.payload["call_id"], "status": status,
                             "result": result_body or {}})


def only(step: Step) -> Envelope:
    assert len(step.outbox) == 1, [e.payload["operation"] for _, e in step.outbox]
    return step.outbox[0][1]


def test_internet_line_runs_stage_by_stage_and_completes() -> None:
    engine = make_engine()
    doc, step = engine.new_order(received())
    assert [s["stage"] for s in doc["stages"]] == ["accept", "design"]
    assert doc["data"]["accept"]["team"] == "hz-install-1"
    design = only(step)
    topic = step.outbox[0][0]
    assert topic == "t.out.resource" and design.payload["operation"] == "design_request"
    assert design.payload["request"]["callback_url"] == "http://hub.test/api/v1/partners/resource/callbacks"

    step = engine.apply(doc, result(design))  # accepted synchronously: still waiting for the reply
    assert step.outbox == [] and doc["current_stage"] == "design" and doc["status"] == "waiting"
    step = engine.apply(doc, callback(design, {"design_id": "D-1", "needs_construction": True}))
    construction = only(step)
    assert doc["current_stage"] == "construction" and doc["data"]["design"]["design_request"]["design_id"] == "D-1"

    # a duplicate and a late callback change nothing. The engine never bumps ``version`` (the store
    # does, on save), so the whole document is compared: calls, stages, data, status, history.
    before = copy.deepcopy(doc)
    assert not engine.apply(doc, callback(design, {"design_id": "D-2"})).changed
    assert doc == before
    assert doc["data"]["design"]["design_request"]["design_id"] == "D-1"

    entry = only(engine.apply(doc, callback(construction)))  # callback before the synchronous result: fine
    late = engine.apply(doc, result(construction))  # the late answer is logged, with no second effect
    assert late.outbox == [] and doc["current_stage"] == "resource_entry"
    assert not engine.apply(doc, result(construction)).changed
    assert entry.payload["operation"] == "resource_entry"
    config = only(engine.apply(doc, result(entry)))
    activation = only(engine.apply(doc, result(config)))
    engine.apply(doc, result(activation))
    archive = only(engine.apply(doc, callback(activation)))
    close = only(engine.apply(doc, result(archive)))  # close-report only after the archive succeeded
    assert (close.payload["partner"], close.payload["request"]["orderId"]) == ("esop", "EXT-1")
    engine.apply(doc, result(close, response={"checkResult": 1}))
    assert doc["status"] == "completed" and doc["current_stage"] is None
    assert all(s["duration_ms"] is not None for s in doc["stages"])
    assert len({c["idempotency_key"] for c in doc["calls"]}) == len(doc["calls"]) == 7


def test_skip_when_skips_construction() -> None:
    engine = make_engine()
    doc, step = engine.new_order(received())
    design = only(step)
    engine.apply(doc, result(design))
    entry = only(engine.apply(doc, callback(design, {"needs_construction": False})))
    assert entry.payload["operation"] == "resource_entry"
    assert [(s["stage"], s["outcome"]) for s in doc["stages"][:3]] == [("accept", "submitted"),
                                                                       ("design", "submitted"),
                                                                       ("construction", "skipped")]


def test_dead_lettered_call_blocks_visibly_and_a_replayed_success_resumes() -> None:
    engine = make_engine()
    doc, step = engine.new_order(received())
    design = only(step)
    engine.apply(doc, result(design, ok=False, dead_letter_id="dl-1"))
    assert doc["status"] == "waiting" and "design_request at resource failed: boom" in doc["blocked_reason"]
    assert doc["calls"][0]["outcome"] == "dead_lettered" and doc["calls"][0]["dead_letter_id"] == "dl-1"
    engine.apply(doc, result(design))  # replay delivered it
    assert doc["calls"][0]["outcome"] == "ok" and doc["blocked_reason"] is None


def test_gated_report_holds_the_order_and_a_new_round_moves_it_on() -> None:
    engine = make_engine()
    doc, step = engine.new_order(received("5g_lan", "group"))
    reports = {e.payload["partner"]: e for _, e in step.outbox}
    assert set(reports) == {"group", "esop"}
    assert all(e.payload["request"]["progress_code"] == "B001processing" for e in reports.values())
    engine.apply(doc, result(reports["group"]))
    engine.apply(doc, result(reports["esop"], ok=False))
    assert doc["phase"] == "entering" and "B001processing to esop failed" in doc["blocked_reason"]
    time.sleep(0.02)  # past gate_retry_s
    tick = Envelope(type="order.tick", source="hub", protocol="internal", correlation_id="ord-1",
                    idempotency_key="tick-1")
    retry = only(engine.apply(doc, tick))
    assert retry.payload["round"] == 2 and retry.idempotency_key == reports["esop"].idempotency_key
    assert not engine.apply(doc, result(reports["esop"], ok=False)).changed  # stale round-1 failure
    engine.apply(doc, result(retry))
    assert doc["current_stage"] == "core_design" and doc["phase"] == "active" and doc["blocked_reason"] is None


@pytest.mark.parametrize("data, accepted", [({"upf_list": ["u"]}, False),
                                            ({"upf_list": ["u"], "smf_list": ["s"], "udm_list": ["d"]}, True)])
def test_manual_submission_needs_required_fields(data: dict[str, Any], accepted: bool) -> None:
    engine = make_engine()
    doc, step = engine.new_order(received("5g_lan", "group"))
    for _, e in step.outbox:
        engine.apply(doc, result(e))
    submit = Envelope(type="stage.submit", source="hub", protocol="rest", correlation_id="ord-1",
                      idempotency_key="s-1", payload={"stage": "core_design", "visit": 1, "data": data,
                                                      "submitted_by": "operator:x"})
    engine.apply(doc, submit)
    assert (doc["current_stage"] != "core_design") is accepted


LOOP = """product: audit_line
scenario: open
stages:
  - name: verification
    kind: manual
  - name: audit
    kind: call
    calls: [{to: [resource], operation: config_plan}]
    transitions:
      - {to: verification, when: {field: data.audit.config_plan.body.result, equals: failed}}
"""


def test_conditional_transition_goes_back_and_the_second_visit_gets_new_keys(tmp_path: Path) -> None:
    import shutil

    cfg = tmp_path / "config"
    shutil.copytree(CONFIG, cfg)
    (cfg / "flows" / "audit.yaml").write_text(LOOP, encoding="utf-8")
    engine = make_engine(cfg)
    doc, _ = engine.new_order(received("audit_line"))

    def submit(n: int) -> Envelope:
        step = engine.apply(doc, Envelope(type="stage.submit", source="hub", protocol="rest", correlation_id="ord-1",
                                          idempotency_key=f"s{n}", payload={"stage": "verification", "data": {}}))
        return only(step)

    first = submit(1)
    engine.apply(doc, result(first, response={"http_status": 200, "body": {"result": "failed"}}))
    assert doc["current_stage"] == "verification" and [s["visit"] for s in doc["stages"]] == [1, 1, 2]
    second = submit(2)
    assert second.idempotency_key != first.idempotency_key
    engine.apply(doc, result(second, response={"http_status": 200, "body": {"result": "passed"}}))
    assert doc["status"] == "completed"


def test_unknown_product_fails_the_order_visibly() -> None:
    doc, step = make_engine().new_order(received("no_such_product"))
    assert doc["status"] == "failed" and "no blueprint" in doc["outcome"]
    # ... and the origin is told through its close-report (issue 8 item 2: never a silent failure)
    assert [e.payload["operation"] for _, e in step.outbox] == ["close_report"]
