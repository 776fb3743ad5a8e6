"""Typed product fields (hub/products.py, config/products/*.yaml): the file format and its errors, the
per-scenario rules an order is checked against at intake, the demo's samples, the shipped files and
the JSON schema's staleness. (The intake answers on every protocol: tests/integration/test_intake_product_fields.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.errors import ConfigError, ValidationFailed
from hub.order import Scenario, WorkOrder
from hub.products import ProductSpec, check_order, load_products, products_schema, sample_extensions
from hub.settings import PROJECT_ROOT

SHIPPED_SCHEMA = PROJECT_ROOT / "docs" / "products.schema.json"

SRV6 = ProductSpec.model_validate({
    "product": "srv6_vpn",
    "fields": {
        "change_type": {"title": "变更类型", "enum": ["speed_up", "speed_down", "move"], "required": ["change"]},
        "replace_device": {"title": "更换设备", "type": "bool", "forbidden": ["survey"]},
        "pe_ce_access": {"type": "int", "min": 1, "max": 7},
        "dnn": {"regex": r"^[a-z]{2}5GSYZW[A-Za-z]+\.ZJ$", "sample": "hz5GSYZWacme.ZJ"},
        "access_type": {"path": "access_type", "enum": ["PON", "SPN"]},
    },
})


def order(**extensions: Any) -> dict[str, Any]:
    return {"external_order_id": "G-1", "product": "srv6_vpn", "scenario": "change", "customer": {"name": "某公司"},
            "extensions": extensions}


def errors(scenario: str, doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as info:
        check_order(SRV6, scenario, doc)
    return {e["field"]: e["type"] for e in info.value.errors}


def test_required_per_scenario_types_enums_regex_bounds_and_forbidden_are_all_reported_at_once() -> None:
    check_order(SRV6, "open", order())  # nothing required for open
    check_order(SRV6, "change", order(change_type="move", replace_device=True, pe_ce_access=7))
    bad = order(replace_device="是", pe_ce_access=9, dnn="hz5GSYZWacme.zj")
    bad["access_type"] = "OTN"
    assert errors("change", bad) == {"extensions.change_type": "missing", "extensions.replace_device": "invalid",
                                     "extensions.pe_ce_access": "invalid", "extensions.dnn": "invalid",
                                     "access_type": "invalid"}
    assert errors("survey", order(replace_device=True)) == {"extensions.replace_device": "forbidden"}
    assert errors("open", order(pe_ce_access=True)) == {"extensions.pe_ce_access": "invalid"}  # bool is not int


def test_the_messages_name_the_field_its_title_and_the_rule() -> None:
    with pytest.raises(ValidationFailed) as info:
        check_order(SRV6, "change", order(change_type="faster"))
    (err,) = info.value.errors
    assert err["message"] == "change_type (变更类型) must be one of speed_up, speed_down, move"
    assert "1 invalid srv6_vpn field(s)" in str(info.value)


def test_samples_pass_the_rules_and_make_a_valid_canonical_order() -> None:
    for scenario in ("open", "change", "survey"):
        doc = order()
        for path, value in sample_extensions(SRV6, scenario).items():
            target = doc
            *parents, last = path.split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[last] = value
        check_order(SRV6, scenario, doc)
        WorkOrder.model_validate({**doc, "scenario": scenario})
        assert ("replace_device" in doc["extensions"]) == (scenario != "survey")


@pytest.mark.parametrize("text, where", [
    ("product: p\nfields:\n  a:\n    type: text\n", r"p.yaml:4: fields.a.type"),
    ("product: p\nfields:\n  a:\n    enum: [1, 2]\n", r"p.yaml:3: fields.a: .*enum value 1 is not a str"),
    ("product: p\nfields:\n  a:\n    regex: '('\n", r"p.yaml:4: fields.a.regex: .*does not compile"),
    ("product: p\nfields:\n  a:\n    required: [opening]\n", r"p.yaml:4: fields.a.required"),
    ("product: p\nfields:\n  a: {path: nowhere.x}\n", r"p.yaml:1: .*'nowhere' is not a canonical order field"),
    ("product: q\n", r"p.yaml:1: product: 'q' must match the file name 'p'"),
])
def test_a_bad_product_file_is_file_line_key(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "p.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=where):
        load_products(tmp_path)


def test_the_shipped_product_files_load_and_their_samples_are_valid_orders() -> None:
    products = load_products(PROJECT_ROOT / "config")
    assert {"internet_line", "5g_lan"} <= set(products)
    for name, spec in products.items():
        for scenario in Scenario:
            doc: dict[str, Any] = {"external_order_id": "X-1", "product": name, "scenario": scenario.value,
                                   "customer": {"name": "c"}, "extensions": {}}
            for path, value in sample_extensions(spec, scenario.value).items():
                parent, _, last = path.rpartition(".")
                (doc["extensions"] if parent == "extensions" else doc)[last] = value
            check_order(spec, scenario.value, doc)
            WorkOrder.model_validate(doc)


def test_every_catalogue_scenario_the_blueprint_authors_use_is_in_the_vocabulary() -> None:
    """Catalogue I and II rows (P01–P40, D.3, D.4) — English values, one per scenario the rows name."""
    for value in ("password_change", "concurrency_up", "concurrency_down", "elastic_scale", "ai_open", "camera_type",
                  "duration_change", "transfer_owner", "cutover", "onu_replace", "unsubscribe", "remove",
                  "change_survey", "join", "leave", "adjust", "hang_test", "delivery_test", "member_sync"):
        assert Scenario(value).value == value
    assert "".join(["a", "b"]) == "ab" and Scenario.open.join(["x", "y"]) == "xopeny"  # no member shadows str


def test_shipped_schema_is_not_stale() -> None:
    """docs/products.schema.json = the model now; regenerate with
    ``hub flows products-schema -o docs/products.schema.json``."""
    shipped = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(products_schema())), \
        "stale: run hub flows products-schema -o docs/products.schema.json"
