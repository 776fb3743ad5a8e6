"""The admin API: ``/admin/v1/dlq…``, ``/admin/v1/orders…``, ``/admin/v1/calls…`` (bearer token + role).

Same service layer as the CLI (app/admin/replay.py, app/admin/queries.py). ``viewer`` may read,
``operator`` may also replay, discard, retry and re-call. Every listing is masked (SPEC §7); every
action is recorded with the token's name as ``api:<name>``. Errors are RFC 9457 problem documents.

    GET  /admin/v1/dlq                   ?topic&partner&order&error_class&status&since&until&limit&skip
    GET  /admin/v1/dlq/history           ?id&who&since&limit
    GET  /admin/v1/dlq/{id}
    POST /admin/v1/dlq/{id}/replay       {"patch": [...], "dry_run": false, "reason": "..."}
    POST /admin/v1/dlq/replay            {"ids": [...]} or {"filter": {...}} or {"all": true}, + patch, rate, limit
    POST /admin/v1/dlq/{id}/discard      {"reason": "..."}
    GET  /admin/v1/orders                ?product&scenario&status&stage&overdue&partner&since&until&limit&skip
    GET  /admin/v1/orders/{id}
    GET  /admin/v1/orders/{id}/trace     the call chain (app/admin/traces.py)
    POST /admin/v1/orders/{id}/retry     {"patch": [...], "dry_run": false}
    POST /admin/v1/orders/{id}/cancel    {"reason": "...", "by": "..."}   (flows/cancel.py: 404 / 409 / 202)
    GET  /admin/v1/calls                 ?partner&operation&outcome&order&since&until&limit
    GET  /admin/v1/calls/stats           ?since=1h&until&partner&operation
    POST /admin/v1/calls/recall          {"call_ids": [...]} or {"filter": {...}}, + dry_run, rate, limit
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from app.admin.patch import PatchOp, parse_patch
from app.admin.queries import CallFilter, DeadLetterFilter, OrderFilter, Queries, parse_when
from app.admin.replay import ActionResult, NotFound, Refused, ReplayService
from flows.cancel import CancelBody, CancelRefused, UnknownOrder, cancel_order
from hub.auth import PRINCIPAL, Handler, Role, requires
from hub.errors import RetryableError, ValidationFailed
from hub.problem import problem
from hub.services import SERVICES, ServiceKey
from hub.settings import AdminToken

PREFIX = "/admin/v1"
log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
#: bounds of a replay's ``rate`` and ``lease_s``: far above any real use, and finite — the chunk size is
#: ``int(rate * lease_s / 3)``, which was an OverflowError (a 500) for ``rate: 1e308`` (found by schemathesis)
MAX_RATE = 100_000.0
MAX_LEASE_S = 86_400.0
MAX_SKIP = 1_000_000_000


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patch: list[dict[str, Any]] | None = Field(default=None, description="RFC 6902 patch on the payload")
    dry_run: bool = False
    reason: str | None = Field(default=None, max_length=500)
    force: bool = Field(default=False, description="also re-send letters already marked replayed")

    def ops(self) -> list[PatchOp] | None:
        return parse_patch(self.patch) if self.patch else None


class BulkReplayRequest(ReplayRequest):
    ids: list[str] | None = Field(default=None, max_length=100_000)
    filter: DeadLetterFilter | None = None
    all: bool = Field(default=False, description="required to replay with neither ids nor a filter")
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE, description="max envelopes per second")
    limit: int | None = Field(default=None, ge=1)
    lease_s: float | None = Field(default=None, gt=0, le=MAX_LEASE_S,
                                  description="how long a claim holds if the replay dies")


class DiscardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class RecallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_ids: list[str] | None = Field(default=None, max_length=100_000)
    filter: CallFilter | None = None
    dry_run: bool = False
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE)
    limit: int | None = Field(default=None, ge=1)


def _json(data: Any, status: int = 200) -> web.Response:
    def default(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else str(v)

    return web.Response(status=status, body=json.dumps(data, ensure_ascii=False, default=default).encode(),
                        content_type="application/json", charset="utf-8")


ADMIN: ServiceKey[tuple[Queries, ReplayService]] = ServiceKey("admin")


def _services(request: web.Request) -> tuple[Queries, ReplayService]:
    runtime = request.app[SERVICES]
    cached = runtime.get(ADMIN)
    if cached is None or cached[0].db is not runtime.db:
        if runtime.db is None:
            raise web.HTTPServiceUnavailable(reason="MongoDB not connected")
        cached = (Queries(runtime.db, runtime.partners),
                  ReplayService(runtime.db, runtime.producer, runtime.partners,
                                max_patched_bytes=runtime.settings.replay_patch_max_bytes))
        runtime.put(ADMIN, cached)
    return cached


def _tokens(request: web.Request) -> list[AdminToken]:
    return request.app[SERVICES].settings.admin_tokens


def _who(request: web.Request) -> str:
    return f"api:{request[PRINCIPAL].name}"


def _query(request: web.Request, model: type[M], mapping: dict[str, str]) -> M:
    args: dict[str, Any] = {}
    for param, field in mapping.items():
        if param in request.query:
            args[field] = request.query[param]
    return model.model_validate(args)


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = min(max(int(request.query.get("limit", 50)), 1), 1000)
        skip = max(int(request.query.get("skip", 0)), 0)
    except ValueError as exc:
        raise ValidationFailed("limit and skip must be integers") from exc
    if skip > MAX_SKIP:  # past BSON's int64 the driver raised OverflowError (a 500; found by schemathesis)
        raise ValidationFailed(f"skip must be at most {MAX_SKIP}",
                               [{"field": "skip", "message": f"at most {MAX_SKIP}"}])
    return limit, skip


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        raw = await request.read()
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise ValidationFailed("invalid request body", [
            {"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]) from exc


def _errors(handler: Handler) -> Handler:
    """Map service errors to problem documents (404, 409, 400; 503 when MongoDB did not answer in time)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound as exc:
            return problem(404, "Not Found", str(exc))
        except Refused as exc:
            return problem(409, "Conflict", str(exc))
        except ValidationFailed as exc:
            return problem(400, "Bad Request", str(exc), errors=exc.errors)
        except ValidationError as exc:
            errs = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]}
                    for e in exc.errors(include_url=False, include_input=False)]
            return problem(400, "Bad Request", "invalid query", errors=errs)
        except (ConnectionFailure, ExecutionTimeout) as exc:  # over its time budget or unreachable: was a 500
            log.warning("admin %s %s: database error %r", request.method, request.path, exc)
            return problem(503, "Service Unavailable", "the database did not answer in time (MongoDB timeout); "
                           "narrow the filter (e.g. since) or retry", headers={"Retry-After": "5"},
                           database_error=type(exc).__name__)

    return wrapped


DLQ_QUERY = {"topic": "source_topic", "partner": "partner", "order": "order_id", "error_class": "error_class",
             "status": "status", "since": "since", "until": "until"}
ORDER_QUERY = {"product": "product", "scenario": "scenario", "status": "status", "stage": "stage",
               "overdue": "overdue", "partner": "partner", "since": "since", "until": "until"}
CALL_QUERY = {"partner": "partner", "operation": "operation", "outcome": "outcome", "order": "order_id",
              "since": "since", "until": "until"}


# --- dead letters -------------------------------------------------------------------------------
async def dlq_list(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    flt = _query(request, DeadLetterFilter, DLQ_QUERY)
    limit, skip = _paging(request)
    return _json({"total": await queries.count_dead_letters(flt),
                  "items": await queries.dead_letters(flt, limit=limit, skip=skip)})


def _found(doc: dict[str, Any] | None, what: str, key: str) -> web.Response:
    if doc is None:
        raise NotFound(f"no {what} {key}")
    return _json(doc)


def _outcome(result: ActionResult) -> web.Response:
    """200 done (or dry run), 409 refused in this state, 413 the patched payload over the limit
    (``HUB_REPLAY_PATCH_MAX_BYTES``, named as ``max_bytes``), 502 the broker did not take it."""
    if result.over_limit is not None:
        return problem(413, "Payload Too Large", result.detail, max_bytes=result.over_limit,
                       dead_letter_id=result.dead_letter_id)
    status = {"ok": 200, "dry_run": 200, "refused": 409, "failed": 502}[result.result]
    return _json(result.model_dump(mode="json"), status=status)


async def dlq_show(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    return _found(await queries.dead_letter(request.match_info["id"]), "dead letter", request.match_info["id"])


async def dlq_history(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    limit, _skip = _paging(request)
    return _json(await queries.history(dead_letter_id=request.query.get("id"), who=request.query.get("who"),
                                       since=parse_when(request.query.get("since")), limit=limit))


async def dlq_replay_one(request: web.Request) -> web.Response:
    _, replays = _services(request)
    body = await _body(request, ReplayRequest)
    result = await replays.replay_one(request.match_info["id"], who=_who(request), patch=body.ops(),
                                      dry_run=body.dry_run, reason=body.reason, force=body.force)
    return _outcome(result)


async def dlq_replay_bulk(request: web.Request) -> web.Response:
    _, replays = _services(request)
    body = await _body(request, BulkReplayRequest)
    if body.ids is None and body.filter is None and not body.all:
        raise ValidationFailed("give ids, a filter, or all=true")
    ids = body.ids if body.ids is not None else await replays.select(body.filter or DeadLetterFilter(),
                                                                      limit=body.limit)
    summary = await replays.replay(ids, who=_who(request), patch=body.ops(), dry_run=body.dry_run, rate=body.rate,
                                   reason=body.reason, force=body.force and body.ids is not None,
                                   lease_s=body.lease_s)
    return _json(summary.model_dump(mode="json"))


async def dlq_discard(request: web.Request) -> web.Response:
    _, replays = _services(request)
    body = await _body(request, DiscardRequest)
    result = await replays.discard(request.match_info["id"], who=_who(request), reason=body.reason)
    return _outcome(result)


# --- orders -------------------------------------------------------------------------------------
async def orders_list(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    limit, skip = _paging(request)
    return _json(await queries.orders(_query(request, OrderFilter, ORDER_QUERY), limit=limit, skip=skip))


async def orders_show(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    return _found(await queries.order(request.match_info["id"]), "order", request.match_info["id"])


async def orders_trace(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    return _found(await queries.order_trace(request.match_info["id"]), "order", request.match_info["id"])


async def orders_retry(request: web.Request) -> web.Response:
    _, replays = _services(request)
    body = await _body(request, ReplayRequest)
    order_id = request.match_info["id"]
    letter = await replays.letter_for_order(order_id)
    result = await replays.replay_one(letter, who=_who(request), patch=body.ops(), dry_run=body.dry_run,
                                      reason=body.reason or f"orders retry {order_id}")
    return _outcome(result)


async def orders_cancel(request: web.Request) -> web.Response:
    """Withdraw / terminate a running order now (issue 10 §5): the same ``order.cancel`` and the same
    checks as ``POST /api/v1/orders/{id}/cancel``; recorded in the action log as ``api:<token>``."""
    body = await _body(request, CancelBody)
    try:
        done = await cancel_order(request.app[SERVICES], request.match_info["id"], reason=body.reason, by=body.by,
                                  who=_who(request))
    except UnknownOrder as exc:
        raise NotFound(str(exc)) from exc
    except CancelRefused as exc:
        raise Refused(str(exc)) from exc
    except RetryableError as exc:
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
    return _json(done.answer(), status=202)


# --- calls --------------------------------------------------------------------------------------
async def calls_list(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    limit, _skip = _paging(request)
    return _json(await queries.calls(_query(request, CallFilter, CALL_QUERY), limit=limit))


async def calls_stats(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    flt = _query(request, CallFilter, CALL_QUERY)
    if flt.since is None:
        flt = flt.model_copy(update={"since": CallFilter(since="1h").since})
    return _json({"since": flt.since, "until": flt.until, "operations": await queries.call_stats(flt)})


async def calls_recall(request: web.Request) -> web.Response:
    _, replays = _services(request)
    body = await _body(request, RecallRequest)
    if body.call_ids is None and body.filter is None:
        raise ValidationFailed("give call_ids or a filter")
    letters = await replays.letters_for_calls(body.call_ids, body.filter, limit=body.limit)
    summary = await replays.replay(letters, who=_who(request), dry_run=body.dry_run, rate=body.rate,
                                   reason="calls recall")
    return _json(summary.model_dump(mode="json"))


def add_routes(app: web.Application) -> None:
    def r(role: Role, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Handler:
        return requires(role, _tokens)(_errors(handler))

    app.router.add_get(f"{PREFIX}/dlq", r("viewer", dlq_list))
    app.router.add_get(f"{PREFIX}/dlq/history", r("viewer", dlq_history))
    app.router.add_post(f"{PREFIX}/dlq/replay", r("operator", dlq_replay_bulk))
    app.router.add_get(f"{PREFIX}/dlq/{{id}}", r("viewer", dlq_show))
    app.router.add_post(f"{PREFIX}/dlq/{{id}}/replay", r("operator", dlq_replay_one))
    app.router.add_post(f"{PREFIX}/dlq/{{id}}/discard", r("operator", dlq_discard))
    app.router.add_get(f"{PREFIX}/orders", r("viewer", orders_list))
    app.router.add_get(f"{PREFIX}/orders/{{id}}", r("viewer", orders_show))
    app.router.add_get(f"{PREFIX}/orders/{{id}}/trace", r("viewer", orders_trace))
    app.router.add_post(f"{PREFIX}/orders/{{id}}/retry", r("operator", orders_retry))
    app.router.add_post(f"{PREFIX}/orders/{{id}}/cancel", r("operator", orders_cancel))
    app.router.add_get(f"{PREFIX}/calls", r("viewer", calls_list))
    app.router.add_get(f"{PREFIX}/calls/stats", r("viewer", calls_stats))
    app.router.add_post(f"{PREFIX}/calls/recall", r("operator", calls_recall))
