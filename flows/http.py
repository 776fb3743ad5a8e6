"""HTTP endpoints of the flow engine:

* ``POST /api/v1/partners/{partner}/callbacks`` — a partner's asynchronous answer (design reply,
  activation result, construction progress…). Authenticated with the partner's
  ``outbound.callback_auth`` key, else like its REST intake (API key, HMAC signature or TLS client
  certificate) and held to its intake's ``rate_limit`` (a bucket of its own: callbacks do not spend
  the orders' budget; over it ⇒ 429 + Retry-After); put on ``{p}.orders`` through the idempotent
  intake (the same callback twice ⇒ one envelope) and matched there to the waiting call. A partner
  replying in stages posts interim callbacks (``status`` accepted/processing/…): the call stays open
  until the final one (flows/runtime/progress.py); the final's duplicate after it closed is a 202
  duplicate, any other callback for an order not waiting for the partner a 403.
* ``POST /api/v1/orders/{order_id}/stages/{stage}/submit`` — a person or the field app submits a
  manual stage (admin bearer token, role ``operator``). Checked against the order's current stage
  and the stage's ``required_fields`` before anything is written; 202 once durable on Kafka.

* ``POST /api/v1/orders/{order_id}/stages/{stage}/retry`` — the user clicks again (G2: re-send a
  stage's failed gated reports; P06.4 刷新: query a polling step now); role ``operator``.

Both bodies are nesting-limited before they are parsed (``HUB_INTAKE_MAX_DEPTH``,
``hub/jsonlimits.py``) and the envelope is round-tripped as the engine will read it before it is
journaled: a body that could only fail later is a 400 now, never a 500 or a lost event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, PyMongoError

from flows.admission import load_at_start
from flows.documents import ORDERS
from flows.graph.rules import check_submission
from flows.runtime.agents import FLOW_RUNNER_V2, pinned_blueprint
from flows.store import EVENTS
from hub import jsonlimits, topics, tracing
from hub.auth import PRINCIPAL, requires
from hub.batching import DUPLICATE_KEY, WRITE_DELAY_S, BulkReader, MicroBatcher
from hub.envelope import Envelope, TraceContext
from hub.errors import ConfigError, RetryableError, ValidationFailed
from hub.intake import MAX_RECORD_BYTES, check_envelope
from hub.metrics import INTAKE_REQUESTS
from hub.partner_auth import ClientCertAuth, HmacAuth, Refusal, Verifiers
from hub.partners import PartnerAuth
from hub.problem import problem
from hub.services import SERVICES, ServiceKey, Services
from hub.settings import AdminToken

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

CALLBACK_PATH = "/api/v1/partners/{partner}/callbacks"
#: signed callbacks' nonce caches, one per partner with ``kind: hmac`` (hub/partner_auth.py)
CALLBACK_VERIFIERS = Verifiers()
SUBMIT_PATH = "/api/v1/orders/{order_id}/stages/{stage}/submit"
RETRY_PATH = "/api/v1/orders/{order_id}/stages/{stage}/retry"


class CallbackBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    order_id: str = Field(min_length=1, max_length=128, description="the hub order id sent in the request")
    callback_ref: str | None = Field(default=None, max_length=64, description="echo of the request's callback_ref")
    operation: str | None = Field(default=None, max_length=64)
    status: str = Field(default="ok", max_length=16, examples=["ok", "failed"])
    result: dict[str, Any] = Field(default_factory=dict)


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict)
    submitted_by: str | None = Field(
        default=None, max_length=100,
        description="who the submission is made for (recorded as on_behalf_of); the stage records the token's name")


class _JournaledInserts:
    """The callbacks' and retries' event records: concurrent inserts as one journaled ``insert``.

    Why not :class:`hub.batching.BulkWriter`: its group commit writes the batch with ``w: 1`` and then
    a journaled marker update, two round trips, because SecantusDB syncs a bulk's *updates* one by
    one. A batch of inserts is one command and one commit there (hub/batching.py), so written with
    the collection's own ``{j: true}`` it is durable when answered — the same guarantee in one round
    trip (one ``journal_sync`` update less per callback). A record already there (the same callback
    twice) is ``False`` for its caller: its duplicate-key error, the others are inserted (unordered)."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self._batcher: MicroBatcher[dict[str, Any], bool] = MicroBatcher(self._insert, 256, WRITE_DELAY_S)

    async def insert_if_missing(self, _id: str, fields: dict[str, Any]) -> bool:
        """Insert the record unless one exists (kept as it is); True if this one was inserted."""
        return await self._batcher.submit({"_id": _id, **fields})

    async def _insert(self, docs: Sequence[dict[str, Any]]) -> list[bool | BaseException]:
        try:
            await self.collection.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise  # not known to be durable: every caller of the batch is told so (503, retried)
            errors = {e["index"]: e for e in exc.details.get("writeErrors", [])}
            return [True if i not in errors else False if errors[i].get("code") == DUPLICATE_KEY
                    else PyMongoError(str(errors[i].get("errmsg"))) for i in range(len(docs))]
        return [True] * len(docs)


class _Batched:
    """The callback path's MongoDB work, batched across concurrent requests (hub/batching.py).

    Why: every partner callback cost one ``find_one`` on the order (may this partner post for it?)
    and one journaled write on the event journal, each a round trip — bench/flow.py measured them as
    the slowest writes per order. Batched, concurrent callbacks share one ``$in`` lookup and one
    journaled ``insert`` (:class:`_JournaledInserts`); each request is still answered only after *its*
    record is durable. The lookup is skipped when this process's worker holds the order and it says
    yes (:func:`_owns`). Submissions keep the single ``find_one_and_update``: they are rare and must
    read back what was recorded under the key (the 409 on other content)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.events = _JournaledInserts(db[EVENTS])
        self.owners = BulkReader(db[ORDERS], projection={"partner": 1, "open_calls": 1, "trace": 1})


_BATCHED: ServiceKey[_Batched] = ServiceKey("flows_http_batched")


def _batched(runtime: Services) -> _Batched | None:
    """The runtime's batchers, rebuilt if its database handle changed (None without one)."""
    if runtime.db is None:
        return None
    current = runtime.get(_BATCHED)
    if current is None or current.db is not runtime.db:
        current = runtime.put(_BATCHED, _Batched(runtime.db))
    return current


def _runtime(request: web.Request) -> Services:
    return request.app[SERVICES]


def _tokens(request: web.Request) -> list[AdminToken]:
    return list(getattr(_runtime(request).settings, "admin_tokens", []))


async def _load_blueprints(app: web.Application) -> None:
    await load_at_start(app[SERVICES])


async def _json(request: web.Request, max_depth: int) -> Any:
    """The decoded body, None when it is not JSON; raises TooDeep before ``json.loads`` recurses."""
    body = await request.read()
    try:
        return jsonlimits.loads(body.decode("utf-8"), max_depth)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)]


async def _parse(request: web.Request, model: type[M], what: str) -> tuple[dict[str, Any], M] | web.Response:
    """The body as a JSON object validated by ``model``, or the 400 problem answer naming every bad field."""
    limit = _runtime(request).settings.intake_max_depth
    try:
        raw = await _json(request, limit)
    except jsonlimits.TooDeep as exc:
        return problem(400, "Bad Request", str(exc), errors=exc.errors, max_depth=exc.limit)
    if not isinstance(raw, dict):
        return problem(400, "Bad Request", "body must be a JSON object")
    try:
        return raw, model.model_validate(raw)
    except ValidationError as exc:
        return problem(400, "Bad Request", f"invalid {what}", errors=_errors(exc))


async def _emit(runtime: Services, envelope: Envelope, *, content: dict[str, Any] | None = None
                ) -> web.Response | bool:
    """Journal the event in MongoDB (the source of truth: recovery re-emits it after a restart or a
    wiped broker), then produce it to the orders topic (acks=all). Returns "was a duplicate"; a
    duplicate is produced again anyway — the engine applies an event once, and the first delivery
    may not have reached Kafka.

    ``content`` is what makes two events under one idempotency key the same (a submission's data):
    kept in the journal record, and a later event under that key with other content is refused
    (409, naming what was recorded) instead of being answered ``duplicate`` and dropped."""
    try:
        check_envelope(envelope)
    except ValidationFailed as exc:
        if any(e.get("type") == "too_large" for e in exc.errors):  # retrying never helps: 413, not 400/503
            return problem(413, "Payload Too Large", str(exc), errors=exc.errors, max_bytes=MAX_RECORD_BYTES)
        return problem(400, "Bad Request", str(exc), errors=exc.errors)
    try:
        if runtime.db is None:
            raise RetryableError("order store not available")
        fields: dict[str, Any] = {"order_id": envelope.correlation_id, "type": envelope.type,
                                  "received_at": envelope.created_at}
        if runtime.settings.journal_events:  # the embedded broker may lose it (docs/flows.md)
            fields["envelope"] = envelope.model_dump(mode="json")
        if content is not None:
            fields["content"] = content
        batched = _batched(runtime)
        if content is None and batched is not None:  # a callback or a retry: nothing to read back
            duplicate = not await batched.events.insert_if_missing(envelope.idempotency_key, fields)
            await runtime.producer.send(topics.orders(runtime.settings.topic_prefix), envelope)
            return duplicate
        before = await runtime.db[EVENTS].find_one_and_update(
            {"_id": envelope.idempotency_key}, {"$setOnInsert": fields}, upsert=True,
            projection={"content": 1}, return_document=ReturnDocument.BEFORE)
        if before is not None and content is not None and before.get("content") not in (None, content):
            log.info("refused %s for %s: another %s was recorded under %s", envelope.type,
                     envelope.correlation_id, envelope.type, envelope.idempotency_key)
            INTAKE_REQUESTS.labels("hub", "rest", "rejected_conflict").inc()
            return problem(409, "Conflict", "a different submission was already accepted for this stage visit",
                           submitted=before["content"], idempotency_key=envelope.idempotency_key)
        await runtime.producer.send(topics.orders(runtime.settings.topic_prefix), envelope)
    except (RetryableError, PyMongoError):
        return problem(503, "Service Unavailable", "could not be stored durably; retry later",
                       headers={"Retry-After": "5"})
    return before is not None


def _waits_for(doc: dict[str, Any], partner: str) -> bool:
    return doc.get("partner") == partner or any(
        isinstance(c, dict) and c.get("partner") == partner for c in (doc.get("open_calls") or {}).values())


def _trace_of(doc: dict[str, Any]) -> TraceContext | None:
    raw = doc.get("trace")
    return TraceContext.model_validate(raw) if raw else None


async def _owns(runtime: Services, partner: str, order_id: str) -> tuple[bool | None, TraceContext | None]:
    """May ``partner`` post events for ``order_id``? Its own order, or one waiting for an answer
    from it (an open call or report to that partner). None: the order store cannot say now.
    With it the order's trace, which the callback continues (hub/tracing.py).

    The worker of this process usually holds the order (its runner's cache: the document as it last
    wrote it, flows/runtime/store.py ``cached``), and a yes from it is taken without a database read
    (one ``find`` less per callback). Only a yes: a no, or no cached copy, is asked of MongoDB, so a
    call opened by another worker is never refused for want of a read. A cached yes another worker
    has since made stale (its partition moved and the call closed there) lets through a callback of a
    partner that did have a call on the order; the engine matches it to no waiting call and nothing
    changes — the rule still keeps out every partner that never had business with the order."""
    batched = _batched(runtime)
    if batched is None:
        return None, None
    runner = runtime.get(FLOW_RUNNER_V2)
    cached = runner.store.cached(order_id) if runner is not None else None
    if cached is not None and _waits_for(cached, partner):
        return True, _trace_of(cached)
    try:
        doc = await batched.owners.get(order_id)
    except PyMongoError:
        return None, None
    if doc is None:
        return False, None
    return _waits_for(doc, partner), _trace_of(doc)


async def _not_waiting(runtime: Services, name: str, order_id: str, key: str) -> web.Response:
    """The answer to a callback for an order with no open call to ``name``.

    The same body again after the final callback closed the call (a partner that lost our 202 and
    retries) is answered as the duplicate it is — 202, ``duplicate: true``, nothing produced, so no
    second effect — instead of a 403 the partner would log as a refusal. The journal is asked only
    here, off the accepted path; its key names the partner and the body's digest, so it tells a
    partner nothing about orders it never posted for. Anything else is refused: another partner's
    order, none at all, or a different callback after the final (a late stage) — the same 403, so
    ids cannot be probed."""
    try:
        journaled = runtime.db is not None and await runtime.db[EVENTS].find_one({"_id": key}, {"_id": 1})
    except PyMongoError:
        return problem(503, "Service Unavailable", "order store not available; retry later",
                       headers={"Retry-After": "5"})
    if journaled:
        log.info("callback from %s for %s again after its call closed: answered as a duplicate", name, order_id)
        INTAKE_REQUESTS.labels(name, "rest", "duplicate").inc()
        return web.json_response({"accepted": True, "duplicate": True}, status=202)
    log.warning("callback from %s refused: order %r is neither its own nor waiting for it", name, order_id)
    INTAKE_REQUESTS.labels(name, "rest", "rejected_forbidden").inc()
    return problem(403, "Forbidden", f"order {order_id!r} is not waiting for an answer from {name!r}")


async def callback(request: web.Request) -> web.Response:
    runtime = _runtime(request)
    name = request.match_info["partner"]
    partner = runtime.partners.get(name)
    auth: PartnerAuth | None = partner.outbound.callback_auth if partner and partner.outbound else None
    if auth is None and partner and partner.inbound and partner.inbound.rest:
        auth = partner.inbound.rest.auth
    refused: Refusal | None = None
    if isinstance(auth, HmacAuth):  # signed like the partner's REST intake
        signed_body = await request.read()  # bounded by the app's client_max_size; _parse reads it again from memory
        refused = CALLBACK_VERIFIERS.get(name, auth).verify(request.method, request.rel_url.raw_path,
                                                            request.headers, signed_body)
    elif isinstance(auth, ClientCertAuth):  # its TLS client certificate, like its REST intake
        refused = CALLBACK_VERIFIERS.client_cert(name, auth).verify(
            request.transport.get_extra_info("ssl_object") if request.transport else None)
    elif partner is None or auth is None or not auth.check(request.headers.get(auth.header)):
        # an unknown partner is answered like a wrong key: nothing here names which partners exist
        header = auth.header if auth is not None else "X-Api-Key"
        INTAKE_REQUESTS.labels(name if auth is not None else "unknown", "rest", "rejected_auth").inc()
        return problem(401, "Unauthorized", f"missing or invalid {header} header",
                       headers={"WWW-Authenticate": f'ApiKey header="{header}"'})
    limit = partner.inbound.rest.rate_limit if partner and partner.inbound and partner.inbound.rest else None
    if refused is None and limit is not None and not await CALLBACK_VERIFIERS.limiter(name, limit).admit():
        # after authentication, like the intake: a stranger cannot spend the partner's budget
        refused = Refusal(429, f"over {limit.per_second:g} callbacks/s (burst {limit.burst}) for {name}",
                          retry_after=CALLBACK_VERIFIERS.limiter(name, limit).retry_after)
    if refused is not None:
        INTAKE_REQUESTS.labels(name, "rest", refused.outcome).inc()
        log.info("callback from %s refused: %s %s", name, refused.status, refused.logged)
        return problem(refused.status, refused.title, refused.detail, headers=refused.headers)
    parsed = await _parse(request, CallbackBody, "callback")
    if isinstance(parsed, web.Response):
        return parsed
    raw, body = parsed
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    key = f"callback:{name}:{body.callback_ref or body.operation}:{body.order_id}:{digest}"
    owns, trace = await _owns(runtime, name, body.order_id)
    if owns is None:
        return problem(503, "Service Unavailable", "order store not available; retry later",
                       headers={"Retry-After": "5"})
    if not owns:
        return await _not_waiting(runtime, name, body.order_id, key)
    envelope = Envelope(
        type="callback", source=name, protocol="rest", correlation_id=body.order_id,
        idempotency_key=key,
        payload=body.model_dump(mode="json"),
        headers={k: v for k, v in (("partner-request-id", request.headers.get("X-Request-Id")),) if v},
        **({"trace": trace} if trace is not None else {}),
    )
    with tracing.hop(envelope.trace, "hub.intake", "callback", body.order_id,
                     kind="server") as span:  # back into the order's trace: the engine's span is its child
        envelope.trace = span.trace
        outcome = await _emit(runtime, envelope)
        if isinstance(outcome, web.Response):
            span.fail(f"rejected_{outcome.status}")
            return outcome
    return web.json_response({"accepted": True, "duplicate": outcome}, status=202)


@requires("operator", _tokens)
async def submit(request: web.Request) -> web.Response:
    runtime = _runtime(request)
    order_id, stage_name = request.match_info["order_id"], request.match_info["stage"]
    parsed = await _parse(request, SubmitBody, "submission")
    if isinstance(parsed, web.Response):
        return parsed
    _, body = parsed
    if runtime.db is None:
        return problem(503, "Service Unavailable", "order store not available")
    doc = await runtime.db[ORDERS].find_one({"_id": order_id}, {"stages": 0, "order": 0})
    if doc is None:
        return problem(404, "Not Found", f"no order {order_id!r}")
    return await _submit(request, runtime, doc, stage_name, body)


async def _submit(request: web.Request, runtime: Services, doc: dict[str, Any], node: str,
                     body: SubmitBody) -> web.Response:
    """A v2 order: the node must be a ``user`` node a token is waiting at; its field rules (types,
    regex, enums, list sizes, locks and defaults — flows/graph/rules.py) are checked here, against
    the order as stored, so the submitter gets the errors now (400) instead of an accepted 202 the
    engine would refuse; the engine checks again when it applies the submission."""
    order_id = doc["_id"]
    state = doc.get("state") or {}
    try:
        bp = await pinned_blueprint(runtime, doc)
    except ConfigError as exc:
        return problem(503, "Service Unavailable", f"the order's blueprint is not available: {exc}")
    spec = bp.nodes.get(node) if bp is not None else None
    if spec is None:
        return problem(404, "Not Found", f"order {order_id} has no stage {node!r}")
    if spec.kind != "user":
        return problem(409, "Conflict", f"stage {node!r} is {spec.kind}; it is not submitted by hand")
    waiting = [t for t in state.get("tokens", {}).values() if t["node"] == node and t.get("phase") == "active"]
    if state.get("status") != "running" or not waiting:
        return problem(409, "Conflict", f"order {order_id} is not waiting for {node!r} "
                       f"(current stage {doc.get('current_stage')!r}, {doc.get('status')})")
    who = f"operator:{request[PRINCIPAL].name}"  # the authenticated identity, whatever the body says
    scope = {"data": state.get("data", {}), "now": 0.0, "order_id": order_id, "user": {"id": who}}
    _, errors = check_submission(list(getattr(spec, "fields", [])), dict(body.data), scope)
    if errors:
        return problem(400, "Bad Request", f"{len(errors)} field(s) rejected",
                       errors=[{"field": f"data.{e['field']}", "message": e["message"]} for e in errors])
    visit = sum(1 for e in state.get("trail", []) if e["node"] == node)
    envelope = Envelope(
        type="stage.submit", source="hub", protocol="rest", correlation_id=order_id,
        idempotency_key=f"submit:{order_id}:{node}#{visit}", product=doc.get("product"),
        scenario=doc.get("scenario"),
        payload={"stage": node, "visit": visit, "data": body.data, "submitted_by": who,
                 **({"on_behalf_of": body.submitted_by} if body.submitted_by else {})},
        **({"trace": TraceContext.model_validate(doc["trace"])} if doc.get("trace") else {}))
    with tracing.hop(envelope.trace, "hub.intake", "stage.submit", order_id, kind="server") as span:
        envelope.trace = span.trace
        outcome = await _emit(runtime, envelope, content={"data": body.data, "submitted_by": who})
        if isinstance(outcome, web.Response):
            span.fail(f"rejected_{outcome.status}")
            return outcome
    return web.json_response({"order_id": order_id, "stage": node, "accepted": True, "duplicate": outcome},
                             status=202)


@requires("operator", _tokens)
async def retry(request: web.Request) -> web.Response:
    """The user clicks again (G2; P06.4 刷新): re-send a stage's failed gated progress reports, or
    query a polling step's result now. 409 when the order is not held at that stage."""
    runtime = _runtime(request)
    order_id, node = request.match_info["order_id"], request.match_info["stage"]
    if runtime.db is None:
        return problem(503, "Service Unavailable", "order store not available")
    doc = await runtime.db[ORDERS].find_one({"_id": order_id}, {"state.tokens": 1, "status": 1, "engine": 1})
    if doc is None or doc.get("engine") != 2:
        return problem(404, "Not Found", f"no v2 order {order_id!r}")
    tokens = ((doc.get("state") or {}).get("tokens") or {}).values()
    if doc.get("status") in ("completed", "failed", "cancelled") or not any(t["node"] == node for t in tokens):
        return problem(409, "Conflict", f"order {order_id} is not at stage {node!r}")
    who = f"operator:{request[PRINCIPAL].name}"
    envelope = Envelope(type="order.retry", source="hub", protocol="rest", correlation_id=order_id,
                        idempotency_key=f"retry:{order_id}:{node}:{uuid.uuid4().hex}",
                        payload={"node": node, "by": who})
    outcome = await _emit(runtime, envelope)
    if isinstance(outcome, web.Response):
        return outcome
    return web.json_response({"order_id": order_id, "stage": node, "accepted": True}, status=202)


def add_routes(app: web.Application) -> None:
    app.on_startup.append(_load_blueprints)
    app.router.add_post(CALLBACK_PATH, callback)
    app.router.add_post(SUBMIT_PATH, submit)
    app.router.add_post(RETRY_PATH, retry)
