"""A manual submission carries only the fields its node declares (flows/graph/rules.py): it is merged
into the order document, so an undeclared field would overwrite the order's own data."""

from __future__ import annotations

from flows.graph.rules import FieldRule, check_submission


def test_an_undeclared_field_is_refused_not_merged() -> None:
    rules = [FieldRule(name="designer", type="str", required=True)]
    _, errors = check_submission(rules, {"designer": "李工", "external_order_id": "X", "team": "t"}, {})
    assert sorted(e["field"] for e in errors) == ["external_order_id", "team"]
    assert all(e["message"] == "not a field of this stage" for e in errors)


def test_declared_fields_pass() -> None:
    rules = [FieldRule(name="designer", type="str", required=True)]
    fields, errors = check_submission(rules, {"designer": "李工"}, {})
    assert errors == [] and fields == {"designer": "李工"}


def test_a_node_without_fields_accepts_only_an_empty_submission() -> None:
    assert check_submission([], {}, {}) == ({}, [])
    assert check_submission([], {"x": 1}, {})[1] == [{"field": "x", "message": "not a field of this stage"}]
