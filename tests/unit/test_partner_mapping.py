"""One way to map a partner's fields: the route ``transform`` — also for REST intake, also for the
REST route a partner file implies (``inbound.transform``), with the same 400-style field errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.context import ConnectorContext
from connectors.rest.source import RestOrderSource
from hub.errors import ConfigError, ValidationFailed
from hub.partners import OrderSchema, load_partners
from hub.settings import load_settings
from routes.loader import implied_rest_routes, load_routes
from transforms.mapping import Transform

ROOT = Path(__file__).resolve().parents[2]
ACME = """name: acme
inbound:
  rest:
    auth: {keys: ["acme-key-00001"]}
  order_schema: {scenarios: [open, change]}
  transform:
    field_map: {orderNo: external_order_id, prod: product, scene: scenario, custName: customer.name}
    value_map: {scenario: {"01": open, "02": change}}
    strict_values: [scenario]
"""


def _acme(tmp_path: Path, text: str = ACME) -> Path:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "acme.yaml").write_text(text)
    return tmp_path


def _source(route: object) -> RestOrderSource:
    ctx = ConnectorContext(load_settings(), route.name, transform=route.transform)  # type: ignore[attr-defined]
    return RestOrderSource(route.source, ctx)  # type: ignore[attr-defined]


def test_the_implied_rest_route_maps_with_the_partners_transform(tmp_path: Path) -> None:
    config = _acme(tmp_path)
    (rf,) = implied_rest_routes(load_partners(config), [], 1_048_576, config)
    route = rf.route
    assert isinstance(route.transform, Transform)  # type: ignore[attr-defined]
    body = {"orderNo": "A-1", "prod": "internet_line", "scene": "02", "custName": "Acme",
            "addresses": [{"city": "Hangzhou", "detail": "1 Wensan Rd"}]}
    (env,) = _source(route).sample(json.dumps(body).encode())
    mapped = (env.payload["external_order_id"], env.scenario, env.payload["customer"]["name"])
    assert mapped == ("A-1", "change", "Acme")
    assert env.idempotency_key.endswith("A-1:change")
    assert env.headers["hub-canonical"] == "true"  # RouteEmit.prepare does not map it a second time


def test_an_unknown_strict_code_and_bad_fields_are_named_like_a_400(tmp_path: Path) -> None:
    config = _acme(tmp_path)
    (rf,) = implied_rest_routes(load_partners(config), [], 1_048_576, config)
    with pytest.raises(ValidationFailed) as info:
        _source(rf.route).sample(json.dumps({"orderNo": "A-1", "prod": "x", "scene": "99"}).encode())
    assert [e["field"] for e in info.value.errors] == ["scenario"]
    with pytest.raises(ValidationFailed) as info:
        _source(rf.route).sample(json.dumps({"scene": "01"}).encode())
    assert {"external_order_id", "product", "customer"} <= {e["field"] for e in info.value.errors}


def test_a_bad_transform_in_a_partner_file_names_file_line_and_key(tmp_path: Path) -> None:
    config = _acme(tmp_path, ACME.replace("    strict_values: [scenario]\n", "    python: no_such_fn\n"))
    with pytest.raises(ConfigError) as info:
        implied_rest_routes(load_partners(config), [], 1_048_576, config)
    path = config / "partners" / "acme.yaml"
    assert any(p.startswith(f"{path}:9: inbound.transform.python: ") and "no_such_fn" in p
               for p in info.value.problems), info.value.problems


def test_partner_order_schema_is_admission_only_and_esop_rest_is_configured_once() -> None:
    assert set(OrderSchema.model_fields) == {"products", "scenarios"}  # mapping is the route transform's job
    partners = load_partners(ROOT / "config")
    assert "order_schema" not in partners["esop"].inbound.model_fields_set  # type: ignore[union-attr]
    loaded, _ = load_routes(ROOT / "config")
    declared = [rf.route for rf in loaded.values()]
    rest = [r for r in declared if r.source.connector == "rest"]  # type: ignore[attr-defined]
    # the task intakes (bboss, resource, wsp: issue 11) have REST routes of their own; ESOP has exactly one
    assert [r.source.partner for r in rest].count("esop") == 1  # type: ignore[attr-defined]
    implied = implied_rest_routes(partners, declared, 1_048_576, ROOT / "config")
    assert "esop" not in {rf.route.source.partner for rf in implied}  # type: ignore[attr-defined]
