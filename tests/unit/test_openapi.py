"""The OpenAPI document (app/openapi.py, docs/openapi.json): generated from the route table and the
request models, complete (a route without a description fails), valid OpenAPI 3.1, and shipped
current — like docs/route.schema.json (tests/unit/test_routes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web

from app.openapi import OPERATIONS, PROBLEM_TYPE, UndescribedRoute, document, generate, render
from app.runtime import Runtime
from app.web import build_web_app
from hub.order import WorkOrder
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def hub_router() -> web.UrlDispatcher:
    """The router of the web app ``hub run`` serves (built, never started: no server is reached)."""
    return build_web_app(Runtime(Settings())).router


def test_the_shipped_document_is_current() -> None:
    """docs/openapi.json = the route table and the models now; regenerate with
    ``python -m app.openapi -o docs/openapi.json``."""
    assert SHIPPED.read_bytes() == generate(), "stale: run python -m app.openapi -o docs/openapi.json"


def test_a_route_added_without_a_description_fails(hub_router: web.UrlDispatcher) -> None:
    app = build_web_app(Runtime(Settings()))

    async def new_endpoint(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/api/v1/partners/{partner}/complaints", new_endpoint)
    with pytest.raises(UndescribedRoute) as err:
        document(app.router)
    assert err.value.problems == ["POST /api/v1/partners/{partner}/complaints: no description in app/openapi.py "
                                  "OPERATIONS"]


def test_a_description_whose_route_is_gone_fails(hub_router: web.UrlDispatcher) -> None:
    extra = OPERATIONS[0].__class__("DELETE", "/admin/v1/everything", "wipe", "gone", "admin", "operator", {})
    with pytest.raises(UndescribedRoute) as err:
        document(hub_router, (*OPERATIONS, extra))
    assert err.value.problems == ["DELETE /admin/v1/everything: described in app/openapi.py but not routed"]


def test_the_document_is_valid_openapi_3_1_and_covers_every_route(hub_router: web.UrlDispatcher) -> None:
    doc = document(hub_router)
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert ("POST", "/api/v1/orders/{order_id}/suspend") in operations  # one route, two documented operations
    assert ("POST", "/soap/{partner}") in operations and ("GET", "/openapi.json") in operations
    assert len(operations) == len(OPERATIONS)


def test_request_bodies_are_the_models_the_handlers_validate_with(hub_router: web.UrlDispatcher) -> None:
    doc = document(hub_router)
    intake = doc["paths"]["/api/v1/partners/{partner}/orders"]["post"]["requestBody"]["content"]
    assert intake["application/json"]["schema"] == {"$ref": "#/components/schemas/WorkOrder"}
    shipped = doc["components"]["schemas"]["WorkOrder"]
    own = json.loads(json.dumps(WorkOrder.model_json_schema(ref_template="#/components/schemas/{model}")))
    own.pop("$defs", None)
    assert shipped == own
    soap = doc["paths"]["/soap/{partner}"]["post"]
    assert list(soap["requestBody"]["content"]) == ["text/xml"]
    assert soap["responses"]["500"]["content"].keys() == {"text/xml"}  # SOAP 1.1: a fault is a 500


def test_security_schemes_and_who_needs_which(hub_router: web.UrlDispatcher) -> None:
    doc = document(hub_router)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["adminBearer"] == {**schemes["adminBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["partnerClientCert"]["type"] == "mutualTLS"
    assert {schemes[n]["name"] for n in ("partnerApiKey", "partnerHmacSignature", "partnerHmacTimestamp",
                                         "partnerHmacNonce")} == {"X-Api-Key", "X-Hub-Signature", "X-Hub-Timestamp",
                                                                 "X-Hub-Nonce"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            names = {name for requirement in op["security"] for name in requirement}
            if path.startswith("/admin/") or path.startswith("/api/v1/orders/"):
                assert names == {"adminBearer"}, (method, path)
            elif path.startswith("/api/v1/partners/"):
                assert names == {"partnerApiKey", "partnerHmacSignature", "partnerHmacTimestamp",
                                 "partnerHmacNonce", "partnerClientCert"}, (method, path)
            elif path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
                assert op["security"] == [], path


def test_every_error_is_a_problem_document_but_soap_faults_and_replay_results(hub_router: web.UrlDispatcher) -> None:
    doc = document(hub_router)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) < 400 or path == "/readyz":
                    continue
                media = set(answer["content"])
                if path.startswith("/soap/"):
                    assert media <= {PROBLEM_TYPE, "text/xml", "text/plain"}, (method, path, status)
                elif status in ("409", "502") and op["operationId"] in ("dlq_replay", "orders_retry", "dlq_discard"):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ActionResult"}, (method, path, status)
                else:
                    assert media == {PROBLEM_TYPE}, (method, path, status)
                    assert answer["content"][PROBLEM_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_the_document_names_no_partner_key_or_address() -> None:
    """Served unauthenticated: it must not undo "an unknown partner is answered like a wrong key"."""
    doc = json.loads(SHIPPED.read_text(encoding="utf-8"))
    text = render(doc).decode()
    for secret in ("dev-", "127.0.0.1", "/work/", "config/partners", "X-Api-Key\": \"dev"):
        assert secret not in text, secret
    for ops in doc["paths"].values():
        for op in ops.values():
            for param in op.get("parameters", []):
                assert "enum" not in param["schema"] or param["name"] not in ("partner", "id", "order_id"), param
