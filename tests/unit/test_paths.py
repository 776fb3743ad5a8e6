"""Unit tests: hub/paths.py, the one dotted-path reader and writer (mapping, templates, rules, masking)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hub import paths
from hub.retry import SuccessRule
from hub.templates import render
from transforms.mapping import apply_mapping

DOC: dict[str, Any] = {
    "customer": {"name": "Zhang San", "tags": ["a", "b"], "none": None},
    "addresses": [{"city": "Hangzhou", "detail": "1 Wensan Rd"}, {"city": "Beijing", "detail": "2 Chang'an"}],
    "code": "1",
    "result": SimpleNamespace(checkResult="1", inner=SimpleNamespace(msg="ok")),
    "0": {"key": "digits are keys in a dict"},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("customer.name", "Zhang San"),
        ("customer", DOC["customer"]),
        ("customer.tags.1", "b"),  # a digit segment indexes a list
        ("customer.tags.2", None),  # out of range
        ("customer.tags.x", None),  # not an index
        ("addresses.0.city", "Hangzhou"),
        ("addresses.city", None),  # get never fans out (targets does)
        ("customer.none", None),
        ("customer.none.deeper", None),
        ("customer.name.upper", None),  # a str is a scalar: no attribute of it is a value
        ("result.checkResult", "1"),  # zeep-like result objects are read by attribute
        ("result.inner.msg", "ok"),
        ("result.missing", None),
        ("0.key", "digits are keys in a dict"),
        ("nope", None),
        ("code.x", None),
    ],
)
def test_get_reads_dicts_list_indexes_and_attributes(path: str, expected: Any) -> None:
    assert paths.get(DOC, path) == expected


def test_get_default_tells_absent_from_none() -> None:
    assert paths.get(DOC, "customer.none", "absent") is None
    assert paths.get(DOC, "customer.missing", "absent") == "absent"


@pytest.mark.parametrize(
    ("start", "path", "value", "expected"),
    [
        ({}, "a.b.c", 1, {"a": {"b": {"c": 1}}}),
        ({"a": {"x": 0}}, "a.b", 1, {"a": {"x": 0, "b": 1}}),
        ({"a": "scalar"}, "a.b", 1, {"a": {"b": 1}}),  # a scalar in the way is replaced
        ({"a": [1, 2]}, "a.b", 1, {"a": {"b": 1}}),  # so is a list the segment cannot index
        ({"a": [{"b": 0}, {"b": 5}]}, "a.1.b", 1, {"a": [{"b": 0}, {"b": 1}]}),  # an index writes into it
        ({"a": [0, 5]}, "a.1", 1, {"a": [0, 1]}),
        ({"a": [0]}, "a.3", 1, {"a": {"3": 1}}),  # out of range: not a list position
    ],
)
def test_set_creates_dicts_and_writes_list_items(start: dict[str, Any], path: str, value: Any,
                                                 expected: dict[str, Any]) -> None:
    paths.set(start, path, value)
    assert start == expected


@pytest.mark.parametrize(
    ("start", "path", "popped", "left"),
    [
        ({"a": {"b": 1, "c": 2}}, "a.b", 1, {"a": {"c": 2}}),
        ({"a": {"b": 1}}, "a.x", paths.MISSING, {"a": {"b": 1}}),
        ({"a": {"b": 1}}, "x.b", paths.MISSING, {"a": {"b": 1}}),
        ({"a": "s"}, "a.b", paths.MISSING, {"a": "s"}),
        ({"a": [1, 2, 3]}, "a.1", 2, {"a": [1, 3]}),
        ({"a": [{"b": 1}]}, "a.0.b", 1, {"a": [{}]}),
    ],
)
def test_pop_removes_and_tells_missing(start: dict[str, Any], path: str, popped: Any, left: dict[str, Any]) -> None:
    result = paths.pop(start, path)
    assert result is popped if popped is paths.MISSING else result == popped
    assert start == left


def test_nest_builds_the_tree_get_reads_back() -> None:
    assert paths.nest("order.customer.name", "x") == {"order": {"customer": {"name": "x"}}}
    assert paths.get(paths.nest("a.0.b", 7), "a.0.b") == 7


def _found(doc: Any, path: str) -> list[Any]:
    holders: list[tuple[Any, Any]] = list(paths.targets(doc, path))
    return [holder[key] for holder, key in holders]


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("addresses.detail", ["1 Wensan Rd", "2 Chang'an"]),  # lists on the way fan out
        ("addresses.1.detail", ["2 Chang'an"]),  # unless the segment picks one item
        ("customer.tags", [["a", "b"]]),
        ("customer.missing", []),
        ("code.x", []),
    ],
)
def test_targets_fan_out_over_lists(path: str, found: list[Any]) -> None:
    assert _found(DOC, path) == found


def test_targets_and_copy_do_not_recurse_on_deep_trees() -> None:
    deep: Any = {"a": "leaf"}
    for _ in range(5_000):
        deep = [deep]
    doc = {"x": deep}
    assert _found(doc, "x.a") == ["leaf"]
    copied = paths.copy_json(doc)
    assert _found(copied, "x.a") == ["leaf"] and copied["x"] is not deep  # (== would recurse)


def test_every_reader_means_the_same_path() -> None:
    """Mapping, templates and success rules all read through hub.paths: list indexes and
    attributes work for each of them."""
    payload = {"items": [{"code": "1"}], "cust": {"nm": "A"}}
    out = apply_mapping(payload, {"cust.nm": "customer.name"}, {"items.0.code": {"1": "open"}})
    assert out == {"items": [{"code": "open"}], "customer": {"name": "A"}}  # cust emptied by the move: gone
    assert render({"id": "{order.items.0.code}", "who": "to {order.customer.name}"}, {"order": out}) == {
        "id": "open", "who": "to A"}
    rule = SuccessRule(field="result.checkResult", equals="1")
    assert rule.judge(200, DOC) == (True, None)
    assert rule.judge(200, {"result": {"checkResult": "0"}}) == (False, "result.checkResult='0'")
