"""Properties of the field mapping (transforms/mapping.py) over arbitrary JSON within the intake's
depth limit: the input is never modified, unmapped fields pass through unchanged, a rename moves
exactly the renamed value, ``to_partner`` undoes ``to_canonical``, and bodies nested deeper than
any limit are copied without recursion (``copy.deepcopy`` once turned a 300-deep body into a 500)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hub import jsonlimits
from hub.errors import ValidationFailed
from tests.fuzz.budget import budget
from transforms.mapping import Transform, apply_transform

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

KEYS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="."), min_size=1, max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=30)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=6)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@budget(75)
@given(OBJECTS)
def test_an_empty_transform_passes_every_field_through_and_never_touches_the_input(payload: dict[str, Any]) -> None:
    assert depth(payload) <= jsonlimits.DEFAULT_MAX_DEPTH
    before = copy.deepcopy(payload)
    out = apply_transform(payload, Transform())
    assert out == before and payload == before
    assert out is not payload


@budget(75)
@given(OBJECTS, JSON, st.sampled_from(["dst", "nested.dst", "a.b.c.dst"]))
def test_a_rename_moves_exactly_that_value(payload: dict[str, Any], value: Any, target: str) -> None:
    assume(not ({"src", "dst", "nested", "a"} & payload.keys()))
    source = {**payload, "src": value}
    before = copy.deepcopy(source)
    out = apply_transform(source, Transform(field_map={"src": target}))
    assert source == before  # the input is never modified
    node: Any = out
    for part in target.split("."):
        node = node[part]
    assert node == value
    rest = {k: v for k, v in out.items() if k != target.split(".")[0]}
    assert rest == payload


@budget(75)
@given(OBJECTS, st.lists(st.sampled_from(["01", "02", "03", "04"]), min_size=1, max_size=4, unique=True),
       st.sampled_from(["01", "02", "03", "04", "99"]))
def test_to_partner_undoes_to_canonical(payload: dict[str, Any], codes: list[str], sent: str) -> None:
    assume(not ({"ORDER_TYPE", "custName", "scenario", "customer"} & payload.keys()))
    value_map = {"scenario": {code: f"canon-{code}" for code in codes}}
    # renames whose source and target share their parent, as every shipped route's do (a rename out
    # of a nested object drops the emptied object, so it would not come back on the way out)
    field_map = {"ORDER_TYPE": "scenario", "customer.custName": "customer.name"}
    partner = {**payload, "ORDER_TYPE": sent, "customer": {"custName": "n", "level": 1}}
    canonical = apply_transform(partner, Transform(field_map=field_map, value_map=value_map))
    assert canonical["scenario"] == (f"canon-{sent}" if sent in codes else sent)
    back = apply_transform(canonical, Transform(field_map=field_map, value_map=value_map, direction="to_partner"))
    assert back == partner


@budget(50)
@given(OBJECTS, st.text(max_size=6))
def test_an_unknown_strict_code_is_our_error_naming_the_field(payload: dict[str, Any], code: str) -> None:
    assume(code not in ("01", "02"))
    transform = Transform(value_map={"kind": {"01": "a", "02": "b"}}, strict_values=["kind"])
    with pytest.raises(ValidationFailed) as err:
        apply_transform({**payload, "kind": code}, transform)
    assert err.value.errors[0]["field"] == "kind"


@budget(15)
@given(st.integers(1, 2000), st.sampled_from(["list", "dict"]))
def test_any_nesting_is_copied_without_recursion(levels: int, kind: str) -> None:
    """What the intake's depth check lets through is mapped; deeper text never reaches the mapping
    (``jsonlimits.loads`` refuses it first, without recursing either)."""
    text = ('{"x":' * levels + "1" + "}" * levels) if kind == "dict" else ("[" * levels + "1" + "]" * levels)
    payload_text = '{"deep":' + text + ',"src":1}'
    if levels + 1 > jsonlimits.DEFAULT_MAX_DEPTH:
        with pytest.raises(jsonlimits.TooDeep):
            jsonlimits.loads(payload_text)
    payload = json.loads(payload_text) if levels < 900 else {"deep": _nest(levels, kind), "src": 1}
    out = apply_transform(payload, Transform(field_map={"src": "dst"}))
    assert out["dst"] == 1 and "src" not in out


def _nest(levels: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"x": value} if kind == "dict" else [value]
    return value



def test_a_nested_partner_object_mapped_away_leaves_nothing_behind() -> None:
    out = apply_transform({"custInfo": {"name": "x"}, "orderNo": "1"},
                          Transform(field_map={"custInfo.name": "customer.name", "orderNo": "external_order_id"}))
    assert out == {"customer": {"name": "x"}, "external_order_id": "1"}
