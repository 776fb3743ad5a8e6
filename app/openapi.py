"""The OpenAPI 3.1 document of every HTTP endpoint of the hub, served at ``GET /openapi.json``.

Why one module that knows every endpoint: the route table (aiohttp's router) says *which* endpoints
exist, the pydantic models that validate the requests say *what* they take, and the table
:data:`OPERATIONS` below says what each one answers. :func:`document` walks the router and looks
every route up in that table, so an endpoint added without a description is an
:class:`UndescribedRoute` error (``tests/unit/test_openapi.py``), and a description whose route was
removed is one too. Request bodies and query parameters are the JSON Schemas of the models the
handlers validate with (``hub.order.WorkOrder``, ``flows.http.CallbackBody``, ``app.admin.api``'s
request models and filters…); the answers the handlers build as plain dicts have their models here
(:class:`OrderAccepted`, :class:`Problem`…), and the fuzz test (``tests/fuzz/test_schemathesis.py``)
checks every answer of the live hub against them — which is what keeps this table honest.

Errors are RFC 9457 problem documents (``application/problem+json``, :class:`Problem`) everywhere,
except where a protocol says otherwise: SOAP answers faults as ``text/xml`` with HTTP 500 (SOAP 1.1
§6.2), and the admin replay endpoints answer a refused or failed action with its
:class:`~app.admin.replay.ActionResult` (409 / 502), which names the letter and why.

**Unauthenticated on purpose**: the document is generated from code only — no partner names, keys,
addresses or config paths (an unknown partner gets the same 401 as a wrong key, and the document
must not undo that) — so it tells a caller nothing the published interface does not; partners need
it to build their clients before they have credentials, like the WSDL at ``/soap/{partner}?wsdl``.

``python -m app.openapi -o docs/openapi.json`` regenerates the shipped copy (a test fails when it is
stale).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from app.admin import api as admin_api
from app.admin.fusion_openapi import operations as fusion_operations
from app.admin.queries import CallFilter, DeadLetterFilter, OrderFilter
from app.admin.replay import ActionResult, Summary
from app.admin.traces import TRACE_SCHEMA
from app.openapi_tasks import operations as task_operations
from app.ops.openapi_ops import operations as ops_operations
from app.reports.openapi_reports import operations as report_operations
from flows.cancel import CancelBody, ResumeBody
from flows.http import CallbackBody, SubmitBody
from hub.errors import ConfigError
from hub.order import WorkOrder
from hub.problem import PROBLEM_TYPE

OPENAPI_PATH = "/openapi.json"
TITLE = "The hub"
VERSION = "1"


# --- answers the handlers build as dicts ---------------------------------------------------------
class ProblemError(BaseModel):
    """One bad field of a 400: which field and what is wrong with it (never its value)."""

    model_config = ConfigDict(extra="allow")

    field: str | None = Field(default=None, description="the field's dotted path; `(body)` for the whole body")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details (``hub.problem.problem``): the one shape of every HTTP error."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(default="about:blank", description="always about:blank: the status says it")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    errors: list[ProblemError] | None = Field(default=None, description="every bad field, for a 400")


class OrderAccepted(BaseModel):
    """202 of the REST intake: the envelope is on Kafka (acks=all)."""

    order_id: str = Field(examples=["ord-3c0d3a5bd0e1f2a3b4c5"])
    envelope_id: str


class CallbackAccepted(BaseModel):
    accepted: Literal[True]
    duplicate: bool = Field(description="the same callback was accepted before (one event either way)")


class StageSubmitted(BaseModel):
    order_id: str
    stage: str
    accepted: Literal[True]
    duplicate: bool = Field(description="the same submission was accepted before for this stage visit")


class StageRetried(BaseModel):
    order_id: str
    stage: str
    accepted: Literal[True]


class ActionRequested(BaseModel):
    """202 of a cancel, suspend or resume (``flows.cancel.Requested``)."""

    order_id: str
    envelope_id: str
    accepted: Literal[True]
    duplicate: bool


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Per dependency and for the routes, whether it answers (``/readyz`` shows no addresses or paths)."""

    status: Literal["ready", "not ready"]
    checks: dict[str, dict[str, Any]]


class DeadLetterPage(BaseModel):
    total: int = Field(ge=0)
    items: list[dict[str, Any]] = Field(description="dead letters, masked")


class CallStats(BaseModel):
    since: datetime
    until: datetime | None
    operations: list[dict[str, Any]] = Field(description="per partner operation: counts, outcomes, latency")


# --- the operations ------------------------------------------------------------------------------
Security = Literal["none", "partner", "partner_or_wss", "viewer", "operator"]


@dataclass(frozen=True)
class Answer:
    """One response: a model (JSON), a raw media type (``schema`` for its body), headers."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # name → description
    #: further media types the same status may answer with (an export: JSON, or the file), type → schema
    also: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _problem(description: str, **headers: str) -> Answer:
    return Answer(description, Problem, PROBLEM_TYPE, headers=headers)


@dataclass(frozen=True)
class Query:
    """The query parameters of a handler that validates them with ``model`` (``param`` → field)."""

    model: type[BaseModel] | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # param → schema (paging, ids)


@dataclass(frozen=True)
class Operation:
    """One HTTP operation. ``route`` is the router's path (``formatter``); ``path`` the OpenAPI path
    when one route serves several documented operations (``/{action:suspend|resume}``)."""

    method: str
    route: str
    operation_id: str
    summary: str
    tag: str
    security: Security
    answers: Mapping[int, Answer]
    description: str = ""
    body: type[BaseModel] | None = None
    body_required: bool = True
    body_media_type: str = "application/json"
    body_schema: Mapping[str, Any] | None = None
    body_example: Any = None  # a valid request: for readers, and the fuzzer's first (explicit) example
    query: Query | None = None
    path: str | None = None
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def openapi_path(self) -> str:
        return self.path or self.route


# Answers shared by many operations.
P400 = _problem("bad input: invalid JSON, nested too deep (`max_depth`), or fields that fail validation "
                "(`errors` names every one)")
P401_PARTNER = _problem("missing or invalid credentials — an unknown partner gets the same answer",
                        **{"WWW-Authenticate": "`ApiKey header=\"X-Api-Key\"`, `HMAC-SHA256 …` or the client "
                                               "certificate challenge"})
P401_ADMIN = _problem("missing or invalid admin bearer token", **{"WWW-Authenticate": "`Bearer realm=\"hub-admin\"`"})
P403_ROLE = _problem("the token's role is below the one required")
P404 = _problem("no such order, stage or dead letter")
P408 = _problem("the request body did not arrive within `HUB_HTTP_BODY_TIMEOUT_S`; the connection is closed")
P409 = _problem("not possible in the order's current state")
P413 = _problem("the body is over the limit (`max_bytes` names it where known)")
P503 = _problem("Kafka or MongoDB not reachable: nothing was accepted, retry later", **{"Retry-After": "seconds"})
P503_DB = _problem("MongoDB did not answer in time (`database_error` names the error); narrow the filter or retry",
                   **{"Retry-After": "seconds"})

ADMIN_ERRORS: dict[int, Answer] = {400: _problem("invalid query parameters or body (`errors`)"), 401: P401_ADMIN,
                                   403: P403_ROLE}
ADMIN_WRITE_ERRORS: dict[int, Answer] = {**ADMIN_ERRORS, 408: P408}
PAGING = {"limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50,
                    "description": "page size (clamped to 1…1000)"},
          "skip": {"type": "integer", "minimum": 0, "maximum": admin_api.MAX_SKIP, "default": 0}}
LIMIT = {"limit": PAGING["limit"]}
ID_PARAM = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]+$"}
NAME_PARAM = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.-]+$"}
SOAP_XML = {"type": "string", "description": "a SOAP 1.1 envelope; no DTDs or entities"}
ORDER_EXAMPLE = {"external_order_id": "E-1", "product": "internet_line", "scenario": "open",
                 "customer": {"name": "Acme"}, "addresses": [{"city": "Hangzhou", "detail": "1 Wensan Rd"}]}
SOAP_EXAMPLE = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                '<o:queryOrderStatus xmlns:o="http://hub.example.com/ws/orders"><o:orderNo>E-1</o:orderNo>'
                "</o:queryOrderStatus></s:Body></s:Envelope>")
SOAP_FAULT = Answer("a SOAP 1.1 Fault (`soap:Client`: the caller's mistake, `soap:Server`: retry later); "
                    "SOAP 1.1 answers every fault with HTTP 500", media_type="text/xml", schema=SOAP_XML)

OPERATIONS: tuple[Operation, ...] = (
    # probes and metrics
    Operation("GET", "/healthz", "healthz", "The process is up", "health", "none", {200: Answer("up", Health)}),
    Operation("GET", "/readyz", "readyz", "Kafka and MongoDB answer; routes' names and states", "health", "none",
              {200: Answer("ready", Readiness), 503: Answer("not ready (the checks say which)", Readiness)},
              description="For load balancers: no server addresses, config paths or error texts "
                          "(those are on `/admin/v1/readiness`)."),
    Operation("GET", "/admin/v1/readiness", "admin_readiness", "/readyz in full: addresses, route files, problems",
              "admin", "viewer", {200: Answer("the checks (200 whether ready or not)", Readiness),
                                   401: P401_ADMIN, 403: P403_ROLE}),
    Operation("GET", "/metrics", "metrics", "Prometheus metrics", "health", "none",
              {200: Answer("the Prometheus text exposition format", media_type="text/plain",
                           schema={"type": "string"})}),
    Operation("GET", OPENAPI_PATH, "openapi", "This document", "health", "none",
              {200: Answer("the OpenAPI 3.1 document", schema={"type": "object"})},
              description="Unauthenticated: generated from code only, it names no partner, key or address."),
    # partners
    Operation("POST", "/api/v1/partners/{partner}/orders", "submit_order", "A partner sends a work order", "intake",
              "partner", {
                  202: Answer("accepted: the envelope is durable on Kafka", OrderAccepted,
                              headers={"Hub-Duplicate": "`true` when the same order was accepted before"}),
                  400: P400, 401: P401_PARTNER, 408: P408, 413: P413,
                  415: _problem("not `application/json` in UTF-8"),
                  429: _problem("over the partner's rate limit", **{"Retry-After": "seconds"}), 503: P503},
              body=WorkOrder, body_example=ORDER_EXAMPLE, path_params={"partner": NAME_PARAM},
              description="The canonical order; a partner whose route has a `transform` sends its own field names, "
                          "and a partner with a `crypto` contract sends its `inbound_fields` encrypted."),
    Operation("POST", "/api/v1/partners/{partner}/callbacks", "partner_callback",
              "A partner's asynchronous answer to a call (design reply, activation result…)", "callbacks", "partner",
              {202: Answer("accepted (journaled, then on Kafka)", CallbackAccepted), 400: P400, 401: P401_PARTNER,
               403: _problem("the order is neither the partner's nor waiting for an answer from it"), 408: P408,
               413: P413, 429: _problem("over the partner's rate limit", **{"Retry-After": "seconds"}), 503: P503},
              body=CallbackBody, path_params={"partner": NAME_PARAM}),
    # people and the field app
    Operation("POST", "/api/v1/orders/{order_id}/stages/{stage}/submit", "submit_stage", "Submit a manual stage",
              "stages", "operator",
              {202: Answer("accepted (journaled, then on Kafka)", StageSubmitted), 400: P400, 401: P401_ADMIN,
               403: P403_ROLE, 404: P404, 408: P408,
               409: _problem("not waiting for this stage, not a manual stage, or a different submission was "
                             "accepted for this visit (`submitted` shows it)"), 413: P413, 503: P503},
              body=SubmitBody, body_required=False, path_params={"order_id": ID_PARAM, "stage": NAME_PARAM},
              description="The stage records the token's identity; `submitted_by` is kept as `on_behalf_of`."),
    Operation("POST", "/api/v1/orders/{order_id}/stages/{stage}/retry", "retry_stage",
              "Re-send a stage's failed gated reports, or poll now", "stages", "operator",
              {202: Answer("accepted", StageRetried), 401: P401_ADMIN, 403: P403_ROLE, 404: P404, 409: P409,
               413: P413, 503: P503},
              path_params={"order_id": ID_PARAM, "stage": NAME_PARAM}),
    Operation("POST", "/api/v1/orders/{order_id}/cancel", "cancel_order", "Cancel a running order now", "orders",
              "operator", {202: Answer("accepted", ActionRequested), 400: P400, 401: P401_ADMIN, 403: P403_ROLE,
                           404: P404, 408: P408, 409: P409, 503: P503},
              body=CancelBody, path_params={"order_id": ID_PARAM}),
    Operation("POST", "/api/v1/orders/{order_id}/{action}", "suspend_order", "Suspend a running v2 order", "orders",
              "operator", {202: Answer("accepted", ActionRequested), 400: P400, 401: P401_ADMIN, 403: P403_ROLE,
                           404: P404, 408: P408, 409: P409, 503: P503},
              body=CancelBody, path="/api/v1/orders/{order_id}/suspend", path_params={"order_id": ID_PARAM}),
    Operation("POST", "/api/v1/orders/{order_id}/{action}", "resume_order", "Resume a suspended v2 order", "orders",
              "operator", {202: Answer("accepted", ActionRequested), 400: P400, 401: P401_ADMIN, 403: P403_ROLE,
                           404: P404, 408: P408, 409: P409, 503: P503},
              body=ResumeBody, body_required=False, path="/api/v1/orders/{order_id}/resume",
              path_params={"order_id": ID_PARAM}),
    # SOAP
    Operation("GET", "/soap/{partner}", "soap_wsdl", "The WSDL (`?wsdl`) or its XSD (`?xsd`)", "soap", "none",
              {200: Answer("the WSDL or the XSD", media_type="text/xml", schema={"type": "string"}),
               400: Answer("neither `?wsdl` nor `?xsd`", media_type="text/plain", schema={"type": "string"}),
               500: SOAP_FAULT},
              query=Query(extra={"wsdl": {"type": "string", "maxLength": 0, "description": "present: the WSDL"},
                                 "xsd": {"type": "string", "maxLength": 0, "description": "present: the XSD"}}),
              path_params={"partner": NAME_PARAM}),
    Operation("POST", "/soap/{partner}", "soap_call", "A SOAP 1.1 call (order, status, withdraw)", "soap",
              "partner_or_wss",
              {200: Answer("the operation's response element", media_type="text/xml", schema=SOAP_XML),
               408: P408, 500: SOAP_FAULT,
               413: Answer("a `soap:Client` Fault: the request is over `max_body_bytes` (default "
                           "`HUB_INTAKE_MAX_BODY_BYTES`)", media_type="text/xml", schema=SOAP_XML),
               429: Answer("a `soap:Server` Fault: over the partner's rate limit", media_type="text/xml",
                           schema=SOAP_XML, headers={"Retry-After": "seconds"})},
              body_media_type="text/xml", body_schema=SOAP_XML, body_example=SOAP_EXAMPLE,
              path_params={"partner": NAME_PARAM},
              description="WS-Security UsernameToken (PasswordText or PasswordDigest with a strict base64 nonce) "
                          "in the envelope's header, or the partner's API key header. The Body's request element "
                          "is validated against the route's XSD (`?xsd`)."),
    # admin API: dead letters
    Operation("GET", "/admin/v1/dlq", "dlq_list", "Dead letters", "admin", "viewer",
              {200: Answer("one page, masked", DeadLetterPage), **ADMIN_ERRORS},
              query=Query(DeadLetterFilter, admin_api.DLQ_QUERY, PAGING)),
    Operation("GET", "/admin/v1/dlq/history", "dlq_history", "Replays and discards, newest first", "admin", "viewer",
              {200: Answer("the actions, masked", schema={"type": "array", "items": {"type": "object"}}),
               **ADMIN_ERRORS},
              query=Query(extra={"id": {"type": "string", "description": "one dead letter"},
                                 "who": {"type": "string", "description": "who acted (`api:<token>`)"},
                                 "since": {"type": "string", "description": "ISO 8601 or a duration: `30m`, `1h`, "
                                                                            "`7d`"},
                                 **LIMIT})),
    Operation("GET", "/admin/v1/dlq/{id}", "dlq_show", "One dead letter", "admin", "viewer",
              {200: Answer("the letter, masked", schema={"type": "object"}), 404: P404, **ADMIN_ERRORS},
              path_params={"id": ID_PARAM}),
    Operation("POST", "/admin/v1/dlq/{id}/replay", "dlq_replay", "Replay one dead letter (optionally patched)",
              "admin", "operator",
              {200: Answer("replayed, or what a dry run would send", ActionResult),
               404: P404, 409: Answer("refused in the letter's state", ActionResult),
               413: _problem("the patched payload is over `HUB_REPLAY_PATCH_MAX_BYTES` (`max_bytes`)"),
               502: Answer("the broker did not take it", ActionResult), **ADMIN_WRITE_ERRORS},
              body=admin_api.ReplayRequest, body_required=False, path_params={"id": ID_PARAM}),
    Operation("POST", "/admin/v1/dlq/replay", "dlq_replay_bulk", "Replay dead letters by ids or a filter", "admin",
              "operator", {200: Answer("counts and the first results", Summary), **ADMIN_WRITE_ERRORS},
              body=admin_api.BulkReplayRequest),
    Operation("POST", "/admin/v1/dlq/{id}/discard", "dlq_discard", "Discard one dead letter", "admin", "operator",
              {200: Answer("discarded", ActionResult), 404: P404,
               409: Answer("refused in the letter's state", ActionResult), **ADMIN_WRITE_ERRORS},
              body=admin_api.DiscardRequest, path_params={"id": ID_PARAM}),
    # admin API: orders
    Operation("GET", "/admin/v1/orders", "orders_list", "Orders", "admin", "viewer",
              {200: Answer("one page, masked", schema={"type": "array", "items": {"type": "object"}}),
               **ADMIN_ERRORS, 503: P503_DB},
              query=Query(OrderFilter, admin_api.ORDER_QUERY, PAGING)),
    Operation("GET", "/admin/v1/orders/{id}", "orders_show", "One order: stages, calls, dead letters", "admin",
              "viewer", {200: Answer("the order, masked", schema={"type": "object"}), 404: P404, **ADMIN_ERRORS},
              path_params={"id": ID_PARAM}),
    Operation("GET", "/admin/v1/orders/{id}/trace", "orders_trace",
              "One order's call chain: spans with service, operation, duration and outcome", "admin", "viewer",
              {200: Answer("the spans in call order (each after its parent, with its depth)", schema=TRACE_SCHEMA),
               404: P404, **ADMIN_ERRORS},
              path_params={"id": ID_PARAM}),
    Operation("POST", "/admin/v1/orders/{id}/retry", "orders_retry", "Re-run an order's failed call", "admin",
              "operator",
              {200: Answer("replayed, or what a dry run would send", ActionResult), 404: P404,
               409: Answer("refused in the letter's state", ActionResult),
               413: _problem("the patched payload is over `HUB_REPLAY_PATCH_MAX_BYTES` (`max_bytes`)"),
               502: Answer("the broker did not take it", ActionResult), **ADMIN_WRITE_ERRORS},
              body=admin_api.ReplayRequest, body_required=False, path_params={"id": ID_PARAM}),
    Operation("POST", "/admin/v1/orders/{id}/cancel", "orders_cancel", "Cancel a running order now", "admin",
              "operator", {202: Answer("accepted", ActionRequested), 404: P404, 409: P409, 503: P503,
                           **ADMIN_WRITE_ERRORS},
              body=CancelBody, path_params={"id": ID_PARAM}),
    # admin API: calls
    Operation("GET", "/admin/v1/calls", "calls_list", "Partner calls", "admin", "viewer",
              {200: Answer("newest first, masked", schema={"type": "array", "items": {"type": "object"}}),
               **ADMIN_ERRORS},
              query=Query(CallFilter, admin_api.CALL_QUERY, LIMIT)),
    Operation("GET", "/admin/v1/calls/stats", "calls_stats", "Call statistics per partner operation", "admin",
              "viewer", {200: Answer("since defaults to 1 h ago", CallStats), **ADMIN_ERRORS},
              query=Query(CallFilter, admin_api.CALL_QUERY)),
    Operation("POST", "/admin/v1/calls/recall", "calls_recall", "Re-call failed calls", "admin", "operator",
              {200: Answer("counts and the first results", Summary),
               404: _problem("none of the calls has a dead letter"), **ADMIN_WRITE_ERRORS},
              body=admin_api.RecallRequest),
)
OPERATIONS = (*OPERATIONS, *report_operations())  # issue 16: described in app/reports/openapi_reports.py
OPERATIONS = (*OPERATIONS, *ops_operations())  # issue 14: described beside their routes (app/ops/openapi_ops.py)
OPERATIONS = (*OPERATIONS, *fusion_operations())  # issue 13: app/admin/fusion_openapi.py
OPERATIONS = (*OPERATIONS, *task_operations())  # issue 11: wireless task batches (app/openapi_tasks.py)

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "partnerApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                      "description": "The partner's API key (`auth.kind: api_key`; the header name is the "
                                     "partner's `auth.header`, `X-Api-Key` by default)."},
    "partnerHmacSignature": {
        "type": "apiKey", "in": "header", "name": "X-Hub-Signature",
        "description": "`auth.kind: hmac`: lower-case hex HMAC-SHA256(secret, METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\n"
                       "hex(SHA-256(body))), optionally `sha256=`-prefixed; sent with X-Hub-Timestamp and "
                       "X-Hub-Nonce (docs/security.md)."},
    "partnerHmacTimestamp": {"type": "apiKey", "in": "header", "name": "X-Hub-Timestamp",
                             "description": "Unix seconds; at most `max_skew_s` (300) from the hub's clock."},
    "partnerHmacNonce": {"type": "apiKey", "in": "header", "name": "X-Hub-Nonce",
                         "description": "16–64 of `A-Za-z0-9_-`, new per request (a replay is refused)."},
    "partnerClientCert": {"type": "mutualTLS",
                          "description": "`auth.kind: client_cert`: over HTTPS (`HUB_HTTP_TLS_CLIENT_CA`), a client "
                                         "certificate whose names or SHA-256 pin the partner's file lists."},
    "adminBearer": {"type": "http", "scheme": "bearer",
                    "description": "An admin token (`HUB_ADMIN_TOKENS`, `name:role:token`): role `viewer` reads, "
                                   "`operator` also acts. Its name is recorded as who acted."},
}
PARTNER_SECURITY: list[dict[str, list[str]]] = [{"partnerApiKey": []},
                    {"partnerHmacSignature": [], "partnerHmacTimestamp": [], "partnerHmacNonce": []},
                    {"partnerClientCert": []}]
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "none": [],
    "partner": PARTNER_SECURITY,
    "partner_or_wss": [*PARTNER_SECURITY, {}],  # {}: WS-Security inside the envelope, no HTTP credential
    "viewer": [{"adminBearer": []}],
    "operator": [{"adminBearer": []}],
}


class UndescribedRoute(ConfigError):
    """A route without a description in :data:`OPERATIONS`, or a description without its route."""


def route_keys(router: web.UrlDispatcher) -> set[tuple[str, str]]:
    """(method, path) of every route; HEAD is left out where aiohttp added it for a GET."""
    keys: set[tuple[str, str]] = set()
    for route in router.routes():
        if route.resource is None:
            continue
        info = route.resource.get_info()
        path = str(info.get("path") or info.get("formatter") or "")
        if path == "/console" or path.startswith("/console/"):
            continue  # the operator web console: HTML pages for a browser (docs/console.md), not API operations
        keys.add((route.method, path))
    return {(m, p) for m, p in keys if not (m == "HEAD" and ("GET", p) in keys)}


def check_described(router: web.UrlDispatcher, operations: Sequence[Operation] = OPERATIONS) -> None:
    """Raise :class:`UndescribedRoute` naming each route with no operation, and each operation with no route."""
    routes = route_keys(router)
    described = {(op.method, op.route) for op in operations}
    problems = [f"{m} {p}: no description in app/openapi.py OPERATIONS" for m, p in sorted(routes - described)]
    problems += [f"{m} {p}: described in app/openapi.py but not routed" for m, p in sorted(described - routes)]
    if problems:
        raise UndescribedRoute("the OpenAPI document does not match the route table", problems)


def _model_schemas(operations: Sequence[Operation]) -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    """Every model's JSON Schema (draft 2020-12, what OpenAPI 3.1 uses) with shared components."""
    wanted: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []
    for op in operations:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        for answer in op.answers.values():
            if answer.model is not None:
                wanted.append((answer.model, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, defs = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    return {key: value for key, value in refs.items()}, dict(defs.get("$defs", {}))


def _query_parameters(query: Query) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if query.model is not None:
        props = query.model.model_json_schema(ref_template="#/components/schemas/{model}").get("properties", {})
        for param, fld in query.mapping.items():
            schema: dict[str, Any] = dict(props.get(fld, {}))
            description = schema.pop("description", None)
            schema.pop("title", None)
            if fld in ("since", "until"):  # parse_when: an ISO 8601 time or a duration before now
                schema = {"type": "string", "minLength": 1}
                description = "ISO 8601 time, or a duration before now: `30m`, `1h`, `7d`"
            params.append({"name": param, "in": "query", "required": False, "schema": schema,
                           **({"description": description} if description else {})})
    for param, declared in query.extra.items():
        extra = dict(declared)
        description = extra.pop("description", None)
        params.append({"name": param, "in": "query", "required": False, "schema": extra,
                       **({"description": description} if description else {})})
    return params


def _content(media_type: str, schema: Any, example: Any = None) -> dict[str, Any]:
    return {media_type: {"schema": schema, **({"example": example} if example is not None else {})}}


def _operation(op: Operation, refs: Mapping[tuple[Any, str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    params = [{"name": name, "in": "path", "required": True, "schema": dict(schema)}
              for name, schema in op.path_params.items()]
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": _content(op.body_media_type, refs[(op.body, "validation")], op.body_example)}
    elif op.body_schema is not None:
        out["requestBody"] = {"required": True,
                              "content": _content(op.body_media_type, dict(op.body_schema), op.body_example)}
    responses: dict[str, Any] = {}
    for status in sorted(op.answers):
        answer = op.answers[status]
        entry: dict[str, Any] = {"description": answer.description}
        schema = refs[(answer.model, "serialization")] if answer.model is not None else dict(answer.schema or {})
        entry["content"] = _content(answer.media_type, schema)
        entry["content"].update({kind: {"schema": dict(extra)} for kind, extra in answer.also.items()})
        if answer.headers:
            entry["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                for name, text in answer.headers.items()}
        responses[str(status)] = entry
    out["responses"] = responses
    out["security"] = SECURITY[op.security]
    return out


def document(router: web.UrlDispatcher, operations: Sequence[Operation] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``router``'s routes; :class:`UndescribedRoute` if they differ from
    ``operations``. Pure CPU (the models' schemas): call it off the event loop."""
    check_described(router, operations)
    refs, components = _model_schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(operations, key=lambda o: (o.openapi_path, o.method)):
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "Every HTTP endpoint of the hub: partner intake and callbacks, manual stages, "
                                "the admin API, the SOAP endpoint, probes and metrics. Errors are RFC 9457 "
                                "problem documents (`application/problem+json`) except SOAP faults. GET also "
                                "answers HEAD. Generated by `python -m app.openapi` from the route table and the "
                                "request models."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def render(doc: Mapping[str, Any]) -> bytes:
    """The document as stored and served: sorted keys, two-space indent, UTF-8, final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def endpoint() -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /openapi.json``: rendered once from the app's router, in a thread (≈ tens of ms of CPU)."""
    rendered: list[bytes] = []
    lock = asyncio.Lock()

    async def openapi_json(request: web.Request) -> web.Response:
        if not rendered:
            async with lock:
                if not rendered:
                    router = request.app.router
                    rendered.append(await asyncio.to_thread(lambda: render(document(router))))
        return web.Response(body=rendered[0], content_type="application/json", charset="utf-8")

    return openapi_json


def generate() -> bytes:
    """The document of the hub as ``hub run`` serves it (its router, built but not started)."""
    from app.runtime import Runtime  # the composition root; imported here, not at module level (app.web imports us)
    from app.web import build_web_app
    from hub.settings import Settings

    return render(document(build_web_app(Runtime(Settings())).router))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.openapi", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    body = generate()
    if args.output is None:
        sys.stdout.buffer.write(body)
    else:
        args.output.write_bytes(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
