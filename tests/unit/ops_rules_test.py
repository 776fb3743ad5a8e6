"""The operations center's pure parts: order facts, rule validation (clear errors, file:line for config
files), the shipped default rules, and one evaluation batch (scope, conditions, overview counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.ops.evaluator import evaluate_batch, new_alert
from app.ops.facts import FACTS, facts
from app.ops.rules import Rule, check_scope, load_rule_files, parse_rule
from hub.errors import ConfigError, ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


def order(oid: str = "O1", *, product: str = "internet_line", stage: str = "design", since: float = T0,
          deadline: float | None = None, calls: list[dict[str, Any]] | None = None,
          open_calls: dict[str, Any] | None = None, phase: str = "active",
          gates: dict[str, Any] | None = None) -> dict[str, Any]:
    from datetime import UTC, datetime

    def dt(x: float | None) -> datetime | None:
        return None if x is None else datetime.fromtimestamp(x, UTC)

    return {"_id": oid, "product": product, "scenario": "open", "partner": "esop", "current_stage": stage,
            "status": "waiting", "sla_deadline": dt(deadline), "created_at": dt(T0 - 600), "updated_at": dt(since),
            "blocked_reason": None, "waiting_for": f"{stage} (call)", "external_order_id": f"E-{oid}",
            "open_calls": open_calls or {},
            "state": {"tokens": {f"{oid}:1:token": {"node": stage, "since": since, "phase": phase,
                                                     "gates": gates or {}}},
                      "data": {"_calls": calls or []}}}


def test_facts_of_an_order() -> None:
    doc = order(since=T0, deadline=T0 + 1000, calls=[{"ok": False, "at": T0 - 300}, {"ok": True, "at": T0 - 100}],
                open_calls={"c": {"sent_at": T0 + 10, "dead_letter_id": "dl1"}, "d": {"sent_at": None}})
    f = facts(doc, T0 + 850)
    assert f["time_in_stage_s"] == 850 and f["age_s"] == 1450 and f["since_answer_s"] == 950
    assert f["failed_calls"] == 1 and f["dead_letters"] == 1 and f["open_calls"] == 2 and f["oldest_call_s"] == 840
    assert f["sla_share"] == 0.85 and f["sla_left_s"] == 150 and f["overdue"] is False
    assert f["gate_failed"] is False and f["gate_held_s"] is None
    late = facts(doc, T0 + 1001)
    assert late["overdue"] is True and late["sla_left_s"] == -1
    held = facts(order(phase="exit", gates={"r": {"ok": False}}), T0 + 7200)
    assert held["gate_failed"] is True and held["gate_held_s"] == 7200
    assert set(f) == set(FACTS)  # every fact documented, none undocumented


@pytest.mark.parametrize(("when", "message"), [
    ("data.time_in_stage_s >", "syntax error"),
    ("data.time_in_stge_s > 10", "unknown fact data.time_in_stge_s"),
    ("result.ok", "not result"),
    ("size(foo) > 1", "unknown name foo"),
])
def test_a_bad_condition_is_refused_with_what_is_wrong(when: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_rule({"id": "R1", "name": "r", "when": when})
    assert exc.value.errors[0]["field"] == "when" and message in exc.value.errors[0]["message"]


def test_other_rule_errors() -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_rule({"id": "bad id!", "name": "r", "when": "true", "severity": "huge",
                    "action": {"type": "escalate"}})
    fields = {e["field"]: e["message"] for e in exc.value.errors}
    assert set(fields) == {"id", "severity", "action"} and "names the team" in fields["action"]
    rule = parse_rule({"id": "R1", "name": "r", "when": "true", "scope": {"product": "internet_lin"}})
    scopes = {"internet_line": {"design", "archive"}, "5g_lan": {"accept"}}
    with pytest.raises(ValidationFailed, match="scope") as exc:
        check_scope(rule, scopes)
    assert "no blueprint runs product 'internet_lin'" in exc.value.errors[0]["message"]
    with pytest.raises(ValidationFailed):
        check_scope(parse_rule({"id": "R1", "name": "r", "when": "true", "scope": {"stage": "nowhere"}}), scopes)
    check_scope(parse_rule({"id": "R1", "name": "r", "when": "true", "scope": {"stage": "accept"}}), scopes)


def test_a_bad_rules_file_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text(
        "rules:\n  - id: A\n    name: a\n    when: data.age_s > 1\n"
        "  - id: B\n    name: b\n    when: data.nope > 1\n", encoding="utf-8")
    (tmp_path / "rules" / "b.yaml").write_text(
        "rules:\n  - {id: A, name: again, when: 'true', notify: [pager]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_rule_files(tmp_path)
    text = "\n".join(exc.value.problems)
    assert f"{tmp_path / 'rules' / 'a.yaml'}:7: rules[1].when:" in text and "unknown fact data.nope" in text
    (tmp_path / "rules" / "a.yaml").write_text("rules:\n  - {id: A, name: a, when: 'true'}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_rule_files(tmp_path)
    assert any("rule A is also defined" in p for p in exc.value.problems)
    assert any("unknown sink 'pager'" in p for p in exc.value.problems)


def test_the_shipped_default_rules_load_and_fire_on_what_they_name() -> None:
    rules = {r.id: r for r in load_rule_files(ROOT / "config").rules}
    assert len(rules) >= 5 and all(r.description for r in rules.values())
    now = T0 + 5 * 3600
    docs = [order("quiet", since=now - 60),
            order("no-answer", since=T0, open_calls={"c": {"sent_at": T0}}),
            order("overdue", since=T0, deadline=now - 1),
            order("due-soon", since=T0, deadline=now + 3600),  # 5 of 6 hours used
            order("refused", since=now - 7200, phase="exit", gates={"r": {"ok": False}})]
    held = {k: new_alert(h, h[1]["order_id"]) for k, h in evaluate_batch(docs, list(rules.values()), now,
                                                                           0.8).holding.items()}
    by_order: dict[str, set[str]] = {}
    for a in held.values():
        by_order.setdefault(a["order_id"], set()).add(a["rule_id"])
    assert "quiet" not in by_order
    assert "STUCK-NO-ANSWER" in by_order["no-answer"]
    assert by_order["overdue"] >= {"SLA-OVERDUE"} and "SLA-DUE-SOON" not in by_order["overdue"]
    assert "SLA-DUE-SOON" in by_order["due-soon"]
    assert "STUCK-REPORT-REFUSED" in by_order["refused"]
    escalated = next(a for a in held.values() if a["rule_id"] == "SLA-OVERDUE")
    assert escalated["team"] == "ops-duty" and escalated["severity"] == "critical"


def test_one_batch_scope_and_counts() -> None:
    rules = [Rule(id="DESIGN-1H", name="design over 1h", scope={"product": "internet_line", "stage": "design"},
                  when="data.time_in_stage_s > 3600"),
             Rule(id="BROKEN", name="type error", when="data.stage > 3")]
    now = T0 + 7200
    docs = [order("a", since=T0), order("b", since=now - 60), order("c", since=T0, stage="archive"),
            order("d", since=T0, product="5g_lan"), order("e", since=T0, deadline=now - 5),
            order("f", since=T0, deadline=now + 600)]
    out = evaluate_batch(docs, rules, now, 0.8)
    assert sorted(f["order_id"] for _, f, _ in out.holding.values()) == ["a", "e", "f"]
    assert out.error_counts == {"BROKEN": 6} and "BROKEN" in out.errors  # a failing rule never stops the others
    assert out.rows[("internet_line", "design")] == {"in_flight": 4, "overdue": 1, "due_soon": 1, "stuck": 3,
                                                     "blocked": 0}
    assert out.rows[("internet_line", "archive")]["stuck"] == 0
    assert out.rows[("5g_lan", "design")]["in_flight"] == 1


def test_interface_and_indicator_rules_are_checked_for_their_own_facts() -> None:
    with pytest.raises(ValidationFailed, match=r"unknown fact data\.time_in_stage_s"):
        parse_rule({"id": "I", "name": "i", "kind": "interface", "when": "data.time_in_stage_s > 1"})
    with pytest.raises(ValidationFailed, match="not product/scenario/stage"):
        parse_rule({"id": "I", "name": "i", "kind": "interface", "scope": {"stage": "x"}, "when": "data.calls > 1"})
    with pytest.raises(ValidationFailed, match="says what it counts"):
        parse_rule({"id": "B", "name": "b", "kind": "indicator", "when": "data.value > 1"})
    with pytest.raises(ValidationFailed, match="cannot be matched on current_stage"):
        parse_rule({"id": "B", "name": "b", "kind": "indicator", "when": "data.value > 1",
                    "indicator": {"source": "calls", "match": {"current_stage": "x"}}})
    with pytest.raises(ValidationFailed, match="order rules only"):
        parse_rule({"id": "I", "name": "i", "kind": "interface", "when": "data.calls > 1", "action": {"type": "retry"}})
    ok = parse_rule({"id": "I", "name": "i", "kind": "interface", "scope": {"partner": "esop"},
                     "when": "data.success_rate != null && data.success_rate < 0.9 && data.per_min > 1"})
    assert ok.window_s == 900
