"""CEL expressions of v2 blueprints: only what an expression reads is passed in, with CEL's semantics kept."""

from __future__ import annotations

from typing import Any

import pytest

from flows.graph.expr import ExprError, compile_expr, compile_mapping, evaluate_mapping

DATA: dict[str, Any] = {"a": {"b": 1, "big": "x" * 1000}, "name": "abc", "items": [{"q": 1}, {"q": 2}], "m": {"k": 1}}


@pytest.mark.parametrize(("source", "expected"), [
    ("data.a.b == 1", True),
    ("has(data.a.c)", False),                       # a missing field stays missing after pruning
    ("has(data.a.b) && !has(data.zz)", True),
    ("data.name.startsWith('ab')", True),           # a method call is not a field
    ("size(data.m) == 1 && size(data) == 4", True),  # a bare name is passed whole
    ("data.items.all(i, i.q > 0) && data.items[1].q == 2", True),
    ("data['name'] == 'abc'", True),
    ("'data.zz' == 'data.zz'", True),
])
def test_pruned_evaluation_keeps_cel_semantics(source: str, expected: bool) -> None:
    assert compile_expr(source).evaluate({"data": DATA}) is expected


def test_only_the_named_fields_are_passed() -> None:
    expr = compile_expr("data.a.b == 1 && data.name == 'abc'")
    assert expr.paths == (("data", "a", "b"), ("data", "name"))


def test_conditions_are_true_only_for_boolean_true() -> None:
    assert compile_expr("data.name").test({"data": DATA}) is False  # a string is not "truthy" here


def test_evaluation_errors_are_hub_errors() -> None:
    with pytest.raises(ExprError, match="failed"):
        compile_expr("data.nothere.x == 1").evaluate({"data": DATA})


def test_mapping_results_must_be_json() -> None:
    with pytest.raises(ExprError, match="not JSON"):
        evaluate_mapping(compile_mapping({"t": "timestamp('2024-01-01T00:00:00Z')"}), {})
    assert evaluate_mapping(compile_mapping({"x": "[data.a.b, {'k': now}]"}), {"data": DATA, "now": 5.0}) == {
        "x": [1, {"k": 5.0}]}


@pytest.mark.parametrize("source", ["data.a.b", "data.items", "data.m", "now", "data . name"])
def test_a_bare_field_chain_is_read_directly_with_cels_result(source: str) -> None:
    expr = compile_expr(source)
    assert expr.lookup is not None
    scope = {"data": DATA, "now": 5.0}
    assert expr.evaluate(scope) == expr.program.execute(scope)


def test_a_missing_field_in_a_chain_is_an_error_as_in_cel() -> None:
    expr = compile_expr("data.a.zz")
    with pytest.raises(ExprError, match="no such key: zz"):
        expr.evaluate({"data": DATA})
    with pytest.raises(KeyError):
        expr.program.execute({"data": DATA})


def test_a_read_field_never_aliases_the_scope() -> None:
    out = evaluate_mapping(compile_mapping({"items": "data.items"}), {"data": DATA})
    out["items"][0]["q"] = 99
    assert DATA["items"][0]["q"] == 1
