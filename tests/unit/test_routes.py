"""Route files: validation with file:line: key errors, transforms, the JSON Schema, the dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.routes import routes_app
from hub.errors import ConfigError, ValidationFailed
from hub.settings import load_settings
from routes.dryrun import dry_run
from routes.loader import load_route_file, load_routes
from routes.models import route_model, route_schema
from routes.pipeline import apply_transform

ROOT = Path(__file__).resolve().parents[2]
ROUTES = ROOT / "config" / "routes"


def test_every_shipped_route_file_is_valid() -> None:
    loaded, problems = load_routes(ROOT / "config")
    assert problems == []
    names = {rf.route.name for rf in loaded.values()}  # type: ignore[attr-defined]
    assert {"esop-rest-orders", "esop-soap-orders", "boss-sftp-orders", "daily-report-files",
            "amqp-workorders"} <= names


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("source:\n  connector: ftp\n  partner: x\n", 1, "source", "does not match any of the expected tags"),
    ("source:\n  connector: sftp\n  partner: boss\n  connection: {embedded: true}\n  dir: /in\n  format: xls\n",
     6, "source.sftp.format", "Input should be 'csv', 'jsonl' or 'xml'"),
    ("source:\n  connector: sftp\n  partner: boss\n  connection: {embedded: true}\n  dir: /in\n"
     "  encoding: klingon\n", 1, "source.sftp", "unknown encoding 'klingon'"),
    ("source:\n  connector: amqp\n  partner: mq\n  queue: q\ntransform:\n  python: no_such_fn\n",
     6, "transform.python", "unknown python transform 'no_such_fn'"),
    ("source:\n  connector: amqp\n  partner: mq\n  queue: q\ntarget:\n  sink:\n    connector: sftp\n"
     "    partner: gw\n    connection: {host: h}\n    path_template: /GW/{x}\n", 9, "target.sink.sink.sftp.connection",
     "missing username, known_hosts, client_key or password"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, message: str) -> None:
    path = tmp_path / "bad-route.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_route_file(path)
    assert any(p.startswith(f"{path}:{line}: {key}") and message in p for p in info.value.problems), \
        info.value.problems


def test_transform_maps_fields_codes_defaults_and_named_python_hook() -> None:
    route = route_model().model_validate({
        "name": "t-1", "source": {"connector": "amqp", "partner": "mq", "queue": "q"},
        "transform": {"field_map": {"orderNo": "external_order_id", "cust.nm": "customer.name"},
                      "value_map": {"scenario": {"01": "open"}}, "strict_values": ["scenario"],
                      "defaults": {"access_type": "PON", "product": "internet_line"},
                      "python": "strip_blanks", "drop": ["internal"]}})
    out = apply_transform({"orderNo": "A-1", "cust": {"nm": "甲"}, "scenario": "01", "internal": "x",
                           "product": "5g_lan", "blank": "  "}, route.transform)  # type: ignore[attr-defined]
    assert out == {"external_order_id": "A-1", "customer": {"name": "甲"}, "scenario": "open",
                   "product": "5g_lan", "access_type": "PON"}  # cust emptied by the move: gone
    with pytest.raises(ValidationFailed) as info:
        apply_transform({"scenario": "99"}, route.transform)  # type: ignore[attr-defined]
    assert info.value.errors[0]["field"] == "scenario" and "unknown code '99'" in info.value.errors[0]["message"]


def test_json_schema_covers_every_connector_and_matches_the_models() -> None:
    schema = route_schema()
    mapping = schema["$defs"]["Route"]["properties"]["source"]["discriminator"]["mapping"] if "Route" in \
        schema.get("$defs", {}) else schema["properties"]["source"]["discriminator"]["mapping"]
    assert {"rest", "soap", "sftp", "amqp", "kafka"} <= set(mapping)
    import jsonschema
    import yaml

    for path in ROUTES.glob("*.yaml"):  # every shipped file validates against the exported schema too
        data = yaml.safe_load(path.read_text())
        data.setdefault("name", path.stem)
        if isinstance(data.get("enabled"), str):
            data["enabled"] = False
        jsonschema.validate(data, schema)


def test_dry_run_shows_the_envelope_and_rejects_a_bad_sample() -> None:
    settings = load_settings()
    route = load_route_file(ROUTES / "boss-sftp-orders.yaml").route
    envs = dry_run(route, (ROUTES / "samples" / "ORD_boss.csv").read_bytes(), settings)
    assert [e.idempotency_key for e in envs] == ["order:boss:B20260410001:open", "order:boss:B20260410002:change"]
    assert envs[0].payload["addresses"] == [{"role": "install", "province": "浙江", "city": "杭州",
                                             "detail": "西湖区文三路1号"}]
    bad = "ORDER_NO,PRODUCT,SCENE,CUST_NAME,CITY,ADDR,BW\nB1,internet_line,42,甲,杭州,路,10\n".encode("gbk")
    with pytest.raises(ValidationFailed, match="unknown code"):
        dry_run(route, bad, settings)


def test_cli_check_prints_the_envelope_and_fails_on_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(routes_app, ["check", str(ROUTES / "esop-soap-orders.yaml"), "--sample",
                                    str(ROUTES / "samples" / "esop-soap-order.xml")])
    assert ok.exit_code == 0, ok.output
    env = json.loads(ok.stdout[ok.stdout.index("{"):])
    assert env["idempotency_key"] == "order:esop:S-1001:open" and env["payload"]["bandwidth_mbps"] == 200
    evil = runner.invoke(routes_app, ["check", str(ROUTES / "esop-soap-orders.yaml"), "--sample",
                                      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                                      "<x>&e;</x>"])
    assert evil.exit_code == 1 and "not allowed" in evil.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("source:\n  connector: rest\n  partner: esop\n")
    res = runner.invoke(routes_app, ["check", str(bad)])
    assert res.exit_code == 1 and f"{bad}:1: source.rest.auth: Field required" in res.output


def test_hub_routes_schema_command_writes_a_json_schema(tmp_path: Path) -> None:
    out = tmp_path / "route.schema.json"
    res = CliRunner().invoke(routes_app, ["schema", "-o", str(out)])
    assert res.exit_code == 0, res.output
    schema = json.loads(out.read_text())
    assert schema["title"] == "hub route" and "source" in schema["required"]


def test_shipped_json_schema_is_not_stale() -> None:
    """docs/route.schema.json (referenced by every shipped route file for editors) = the models now;
    regenerate with ``hub routes schema -o docs/route.schema.json``."""
    shipped = json.loads((ROOT / "docs" / "route.schema.json").read_text())
    assert shipped == json.loads(json.dumps(route_schema())), "stale: run hub routes schema -o docs/route.schema.json"


def test_outbound_route_reuses_the_inbound_mapping_backwards() -> None:
    block = {"field_map": {"orderNo": "external_order_id", "scen": "scenario"},
             "value_map": {"scenario": {"01": "open", "02": "change"}}, "strict_values": ["scenario"]}
    inbound = route_model().model_validate({"name": "in-1", "transform": block,
                                            "source": {"connector": "amqp", "partner": "mq", "queue": "q"}})
    outbound = route_model().model_validate({"name": "out-1", "transform": {**block, "direction": "to_partner"},
                                             "source": {"connector": "amqp", "partner": "mq", "queue": "q"}})
    partner = {"orderNo": "A-1", "scen": "02"}
    canonical = apply_transform(partner, inbound.transform)  # type: ignore[attr-defined]
    assert canonical == {"external_order_id": "A-1", "scenario": "change"}
    assert apply_transform(canonical, outbound.transform) == partner  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed, match="unknown code"):
        apply_transform({"scenario": "terminate"}, outbound.transform)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="cannot invert"):
        route_model().model_validate({
            "name": "out-2", "source": {"connector": "amqp", "partner": "mq", "queue": "q"},
            "transform": {"value_map": {"s": {"1": "a", "2": "a"}}, "direction": "to_partner"}})
