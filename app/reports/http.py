"""The group's side of reporting over HTTP (``app.plugins.ROUTE_MODULES``):

    POST /api/v1/partners/{partner}/reports/recollect       {"from", "to", "products"?, "reason"?} → 202 {id}
    GET  /api/v1/partners/{partner}/reports/recollect/{id}   the request's status and what was redone
    POST /api/v1/partners/{partner}/reports/reconciliation   {"day", "products": {product: [crmOrderId…]}} → 200

Authenticated like the partner's order intake: its ``inbound.rest.auth`` API key (a partner with
another kind of credential, or none, is refused with the same 401 as a wrong key — an unknown
partner learns nothing). Bad input is a 400 problem document naming the fields, logged and counted
(``hub_report_http_refused_total``). The re-collection runs in the background (it regenerates
files and re-sends reports: minutes, not a request's seconds); the 202 names the request to poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.jobs.config import load_jobs
from app.jobs.registry import kinds
from app.jobs.scheduler import Scheduler
from app.reports.definitions import Reports, load_reports
from app.reports.realtime import RealtimeReporter
from app.reports.recollect import RECOLLECTIONS, RecollectRequest, record_request, run
from app.reports.reconciliation import reconcile
from hub.errors import ValidationFailed
from hub.partners import ApiKeyAuth
from hub.problem import problem
from hub.services import SERVICES, ServiceKey, Services

log = logging.getLogger(__name__)
REFUSED = Counter("hub_report_http_refused_total", "Refused group reporting requests by endpoint and reason",
                  ["endpoint", "reason"])
STATE: ServiceKey[dict[str, Any]] = ServiceKey("reports_http")
BASE = "/api/v1/partners/{partner}/reports"


class ReconciliationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-04-10"])
    products: dict[str, list[str]] = Field(description="product → the CRM order numbers the group counted",
                                           examples=[{"internet_line": ["CRM-1", "CRM-2"]}])


def _state(runtime: Services) -> dict[str, Any]:
    st = runtime.get(STATE)
    if st is None or st["db"] is not runtime.db:
        assert runtime.db is not None
        reports = load_reports(runtime.settings.config_dir, runtime.partners)
        registered = kinds()
        jobs = load_jobs(runtime.settings.config_dir, set(registered))
        st = runtime.put(STATE, {
            "db": runtime.db, "reports": reports, "tasks": set(),
            "scheduler": Scheduler(runtime.settings, runtime.partners, runtime.db, jobs, registered,
                                   worker=f"{runtime.settings.worker_id}:recollect"),
            "reporter": RealtimeReporter(runtime.db, runtime.settings, runtime.partners, reports)})
    return st


def _authorised(request: web.Request, endpoint: str) -> tuple[str, Services] | web.Response:
    runtime = request.app[SERVICES]
    name = request.match_info["partner"]
    partner = runtime.partners.get(name)
    auth = partner.inbound.rest.auth if partner and partner.inbound and partner.inbound.rest else None
    if not isinstance(auth, ApiKeyAuth) or not auth.check(request.headers.get(auth.header)):
        REFUSED.labels(endpoint, "auth").inc()
        log.warning("reports %s: refused %s (credentials)", endpoint, name)
        return problem(401, "Unauthorized", "missing or invalid X-Api-Key header",
                       headers={"WWW-Authenticate": 'ApiKey header="X-Api-Key"'})
    if runtime.db is None:
        return problem(503, "Service Unavailable", "MongoDB not connected", headers={"Retry-After": "5"})
    return name, runtime


async def _body(request: web.Request, model: type[BaseModel], endpoint: str) -> Any:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        REFUSED.labels(endpoint, "invalid").inc()
        errors = [{"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
                  for e in exc.errors(include_url=False, include_input=False)]
        log.warning("reports %s: refused a body (%s)", endpoint,
                    "; ".join(f"{e['field']}: {e['message']}" for e in errors))
        raise ValidationFailed("invalid request body", errors) from exc


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data, ensure_ascii=False, default=str).encode(),
                        content_type="application/json", charset="utf-8")


async def recollect(request: web.Request) -> web.StreamResponse:
    who = _authorised(request, "recollect")
    if isinstance(who, web.Response):
        return who
    partner, runtime = who
    try:
        req = await _body(request, RecollectRequest, "recollect")
    except ValidationFailed as exc:
        return problem(400, "Bad Request", str(exc), errors=exc.errors)
    st = _state(runtime)
    rid = await record_request(st["db"], partner, req, f"partner:{partner}")
    log.info("re-collection %s requested by %s: %s..%s %s", rid, partner, req.date_from, req.date_to,
             req.products or "all products")
    task = asyncio.get_running_loop().create_task(_run(st, partner, rid, req), name=f"recollect-{rid}")
    st["tasks"].add(task)
    task.add_done_callback(st["tasks"].discard)
    return _json({"id": rid, "status": "accepted"}, 202)


async def _run(st: dict[str, Any], partner: str, rid: str, req: RecollectRequest) -> None:
    reports: Reports = st["reports"]
    try:
        await run(st["db"], st["scheduler"], st["reporter"], reports, partner, rid, req)
    except Exception as exc:
        log.warning("re-collection %s failed: %s: %s", rid, type(exc).__name__, exc)
        await st["db"][RECOLLECTIONS].update_one({"_id": rid}, {"$set": {"status": "failed",
                                                                         "errors": [f"{type(exc).__name__}: {exc}"]}})


async def recollect_status(request: web.Request) -> web.StreamResponse:
    who = _authorised(request, "recollect_status")
    if isinstance(who, web.Response):
        return who
    partner, runtime = who
    assert runtime.db is not None
    doc = await runtime.db[RECOLLECTIONS].find_one({"_id": request.match_info["id"], "partner": partner})
    if doc is None:
        return problem(404, "Not Found", f"no re-collection request {request.match_info['id']}")
    doc["id"] = doc.pop("_id")
    return _json(doc)


async def reconciliation(request: web.Request) -> web.StreamResponse:
    who = _authorised(request, "reconciliation")
    if isinstance(who, web.Response):
        return who
    partner, runtime = who
    try:
        body = await _body(request, ReconciliationBody, "reconciliation")
        st = _state(runtime)
        doc = await reconcile(st["db"], st["reports"], partner, body.day, body.products, source="rest")
    except ValidationFailed as exc:
        return problem(400, "Bad Request", str(exc), errors=exc.errors)
    doc["id"] = doc.pop("_id")
    return _json(doc)


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{BASE}/recollect", recollect)
    app.router.add_get(f"{BASE}/recollect/{{id}}", recollect_status)
    app.router.add_post(f"{BASE}/reconciliation", reconciliation)
