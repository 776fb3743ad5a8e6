"""Admin API of the operations center (bearer token + role, problem+json errors, actions audited):

    GET    /admin/v1/overview                 ?live=true  (default: the last cycle's snapshot)
    GET    /admin/v1/overview/orders          ?state=in_flight|overdue|due_soon|stuck|blocked&product&stage&limit
    GET    /admin/v1/rules                    ?q (code or name, fuzzy)&enabled
    POST   /admin/v1/rules                    a rule (operator)
    GET    /admin/v1/rules/{id}
    PATCH  /admin/v1/rules/{id}               changed fields (operator)
    DELETE /admin/v1/rules/{id}               (operator)
    POST   /admin/v1/rules/{id}/enable | /disable   (operator)
    GET    /admin/v1/exports/orders           ?format=json|csv|xlsx + the order list's filters (C.4 (7) fields)
    GET    /admin/v1/exports/stages           ?format=json|csv|xlsx&product&since&until (C.7 stage durations)
    GET    /admin/v1/replay-policies          every partner's automatic replay and its last run
    PUT    /admin/v1/replay-policies/{partner}   {"rate", "hours", "max_per_run", "probe_url", "paused"} (operator)
    POST   /admin/v1/replay-policies/{partner}/pause | /resume;  DELETE …/{partner}   (operator)
    GET    /admin/v1/alerts                   ?status=active|open|tracking|resolved|closed|any&kind&rule&severity
                                              &product&stage&order&assignee&since&until&limit&skip
    GET    /admin/v1/alerts/export            ?format=csv|xlsx + the list's filters (streamed)
    GET    /admin/v1/alerts/{id}              with its handling records
    POST   /admin/v1/alerts/{id}/ack | assign | note | resolve | close | reopen
                                              {"note": "...", "assignee": "..."} (operator)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from app.admin.api import ORDER_QUERY, PREFIX, _body, _errors, _json, _paging, _query, _tokens, _who
from app.admin.api import _services as _admin_services
from app.admin.queries import OrderFilter, parse_when
from app.admin.replay import NotFound
from app.ops.alerts import TRANSITIONS, AlertFilter
from app.ops.exports import CONTENT_TYPES, csv_chunks, xlsx_chunks
from app.ops.overview import State, drill_down, overview
from app.ops.replay_policy import PolicyStore, parse_policy
from app.ops.reports import ORDER_COLUMNS, STAGE_COLUMNS, order_batches, stage_durations, with_fields
from app.ops.service import ALERT_COLUMNS, OpsService
from hub.auth import Handler, Role, requires
from hub.errors import ValidationFailed
from hub.services import SERVICES, ServiceKey

__all__ = ["add_routes"]

OPS: ServiceKey[OpsService] = ServiceKey("ops")
ALERT_QUERY = {"status": "status", "kind": "kind", "rule": "rule_id", "severity": "severity", "product": "product",
               "stage": "stage", "order": "order_id", "assignee": "assignee", "since": "since", "until": "until"}
MAX_EXPORT = 1_000_000


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)
    assignee: str | None = Field(default=None, max_length=200)


class Free(BaseModel):
    """A JSON object checked by the rule model afterwards (its errors name the rule's fields)."""

    model_config = ConfigDict(extra="allow")


def _ops(request: web.Request) -> OpsService:
    runtime = request.app[SERVICES]
    cached = runtime.get(OPS)
    if cached is None or cached.db is not runtime.db:
        if runtime.db is None:
            raise web.HTTPServiceUnavailable(reason="MongoDB not connected")
        cached = OpsService(runtime.db, runtime.settings.config_dir, runtime.partners)
        runtime.put(OPS, cached)
    return cached


def _flag(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValidationFailed(f"{name} must be true or false", [{"field": name, "message": "true or false"}])
    return raw.lower() in ("true", "1", "yes")


async def get_overview(request: web.Request) -> web.Response:
    return _json(await overview(_ops(request).db, live=bool(_flag(request, "live"))))


async def get_overview_orders(request: web.Request) -> web.Response:
    state = request.query.get("state", "in_flight")
    if state not in ("in_flight", "overdue", "due_soon", "stuck", "blocked"):
        raise ValidationFailed("state must be in_flight, overdue, due_soon, stuck or blocked",
                               [{"field": "state", "message": f"unknown state {state!r}"}])
    limit, _ = _paging(request)
    rows = await drill_down(_ops(request).db, cast(State, state), product=request.query.get("product"),
                            stage=request.query.get("stage"), limit=limit)
    return _json({"state": state, "items": rows})


async def rules_list(request: web.Request) -> web.Response:
    return _json(await _ops(request).rules.find(enabled=_flag(request, "enabled"), q=request.query.get("q")))


async def rules_add(request: web.Request) -> web.Response:
    body = await _body(request, Free)
    return _json(await _ops(request).add_rule(body.model_dump(), _who(request)), status=201)


async def rules_show(request: web.Request) -> web.Response:
    rule = await _ops(request).rules.get(request.match_info["id"])
    if rule is None:
        raise NotFound(f"no rule {request.match_info['id']}")
    return _json(rule)


async def rules_edit(request: web.Request) -> web.Response:
    body = await _body(request, Free)
    return _json(await _ops(request).edit_rule(request.match_info["id"], body.model_dump(), _who(request)))


async def rules_delete(request: web.Request) -> web.Response:
    if not await _ops(request).delete_rule(request.match_info["id"], _who(request)):
        raise NotFound(f"no rule {request.match_info['id']}")
    return web.Response(status=204)


def _enable(enabled: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return _json(await _ops(request).enable_rule(request.match_info["id"], enabled, _who(request)))

    return handler


async def alerts_list(request: web.Request) -> web.Response:
    svc = _ops(request)
    flt = _query(request, AlertFilter, ALERT_QUERY)
    limit, skip = _paging(request)
    return _json({"total": await svc.alerts.count(flt), "items": await svc.alerts.list(flt, limit=limit, skip=skip)})


async def alerts_export(request: web.Request) -> web.StreamResponse:
    svc = _ops(request)
    fmt = request.query.get("format", "csv")
    if fmt not in CONTENT_TYPES:
        raise ValidationFailed("format must be csv or xlsx", [{"field": "format", "message": f"unknown {fmt!r}"}])
    flt = _query(request, AlertFilter, ALERT_QUERY)
    batches = svc.alert_batches(flt, MAX_EXPORT)
    chunks = csv_chunks(batches, ALERT_COLUMNS) if fmt == "csv" else xlsx_chunks(batches, ALERT_COLUMNS, "alerts")
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[fmt],
                                       "Content-Disposition": f'attachment; filename="alerts.{fmt}"'})
    await resp.prepare(request)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def alerts_show(request: web.Request) -> web.Response:
    alert = await _ops(request).alerts.get(request.match_info["id"])
    if alert is None:
        raise NotFound(f"no alert {request.match_info['id']}")
    return _json(alert)


def _act(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        body = await _body(request, AlertAction)
        return _json(await _ops(request).act(request.match_info["id"], action, _who(request), note=body.note,
                                             assignee=body.assignee))

    return handler


async def _stream(request: web.Request, fmt: str, chunks: Any, name: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[fmt],
                                       "Content-Disposition": f'attachment; filename="{name}.{fmt}"'})
    await resp.prepare(request)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", *CONTENT_TYPES):
        raise ValidationFailed("format must be json, csv or xlsx", [{"field": "format", "message": f"unknown {fmt!r}"}])
    return fmt


async def reports_orders(request: web.Request) -> web.StreamResponse:
    """The order list with the C.4 (7) fields; ``format=csv|xlsx`` streams the whole selection."""
    svc = _ops(request)
    admin, _ = _admin_services(request)
    flt = _query(request, OrderFilter, ORDER_QUERY)
    fmt = _format(request)
    if fmt == "json":
        limit, skip = _paging(request)
        rows = await admin.orders(flt, limit=limit, skip=skip)
        return _json(await with_fields(svc.db, rows))
    batches = order_batches(svc.db, admin, flt, MAX_EXPORT)
    chunks = csv_chunks(batches, ORDER_COLUMNS) if fmt == "csv" else xlsx_chunks(batches, ORDER_COLUMNS, "orders")
    return await _stream(request, fmt, chunks, "orders")


async def reports_stages(request: web.Request) -> web.StreamResponse:
    svc = _ops(request)
    fmt = _format(request)
    rows = await stage_durations(svc.db, product=request.query.get("product"),
                                 since=parse_when(request.query.get("since")),
                                 until=parse_when(request.query.get("until")))
    if fmt == "json":
        return _json(rows)

    async def one() -> AsyncIterator[list[dict[str, Any]]]:
        yield rows

    chunks = csv_chunks(one(), STAGE_COLUMNS) if fmt == "csv" else xlsx_chunks(one(), STAGE_COLUMNS, "stages")
    return await _stream(request, fmt, chunks, "stage-durations")


class PolicyBody(BaseModel):
    """A partner's replay policy (the partner is the path's)."""

    model_config = ConfigDict(extra="forbid")

    paused: bool = False
    rate: float = Field(default=5.0, gt=0, le=1000)
    hours: str = "00:00-24:00"
    max_per_run: int = Field(default=500, ge=1, le=100_000)
    probe_url: str | None = Field(default=None, max_length=2000)


async def policies_list(request: web.Request) -> web.Response:
    return _json(await PolicyStore(_ops(request).db).list())


async def policies_put(request: web.Request) -> web.Response:
    svc = _ops(request)
    body = await _body(request, PolicyBody)
    partner = request.match_info["partner"]
    policy = parse_policy({"partner": partner, **body.model_dump()})
    out = await PolicyStore(svc.db).put(policy, _who(request))
    await svc.audit(_who(request), "policy.set", f"{partner}: {body.model_dump_json()}")
    return _json(out)


def _policy_pause(paused: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        svc = _ops(request)
        partner = request.match_info["partner"]
        out = await PolicyStore(svc.db).set_paused(partner, paused, _who(request))
        await svc.audit(_who(request), "policy.pause" if paused else "policy.resume", partner)
        return _json(out)

    return handler


async def policies_delete(request: web.Request) -> web.Response:
    svc = _ops(request)
    partner = request.match_info["partner"]
    if not await PolicyStore(svc.db).delete(partner):
        raise NotFound(f"no replay policy for {partner}")
    await svc.audit(_who(request), "policy.delete", partner)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    def r(role: Role, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Handler:
        return requires(role, _tokens)(_errors(handler))

    app.router.add_get(f"{PREFIX}/overview", r("viewer", get_overview))
    app.router.add_get(f"{PREFIX}/overview/orders", r("viewer", get_overview_orders))
    app.router.add_get(f"{PREFIX}/rules", r("viewer", rules_list))
    app.router.add_post(f"{PREFIX}/rules", r("operator", rules_add))
    app.router.add_get(f"{PREFIX}/rules/{{id}}", r("viewer", rules_show))
    app.router.add_patch(f"{PREFIX}/rules/{{id}}", r("operator", rules_edit))
    app.router.add_delete(f"{PREFIX}/rules/{{id}}", r("operator", rules_delete))
    app.router.add_post(f"{PREFIX}/rules/{{id}}/enable", r("operator", _enable(True)))
    app.router.add_post(f"{PREFIX}/rules/{{id}}/disable", r("operator", _enable(False)))
    app.router.add_get(f"{PREFIX}/exports/orders", r("viewer", reports_orders))
    app.router.add_get(f"{PREFIX}/exports/stages", r("viewer", reports_stages))
    app.router.add_get(f"{PREFIX}/replay-policies", r("viewer", policies_list))
    app.router.add_put(f"{PREFIX}/replay-policies/{{partner}}", r("operator", policies_put))
    app.router.add_delete(f"{PREFIX}/replay-policies/{{partner}}", r("operator", policies_delete))
    app.router.add_post(f"{PREFIX}/replay-policies/{{partner}}/pause", r("operator", _policy_pause(True)))
    app.router.add_post(f"{PREFIX}/replay-policies/{{partner}}/resume", r("operator", _policy_pause(False)))
    app.router.add_get(f"{PREFIX}/alerts", r("viewer", alerts_list))
    app.router.add_get(f"{PREFIX}/alerts/export", r("viewer", alerts_export))
    app.router.add_get(f"{PREFIX}/alerts/{{id}}", r("viewer", alerts_show))
    for action in TRANSITIONS:
        app.router.add_post(f"{PREFIX}/alerts/{{id}}/{action}", r("operator", _act(action)))
