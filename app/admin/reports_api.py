"""The admin API of report control (C.5; app/reports/control.py), the same layer as ``hub reports``:

    GET    /admin/v1/reports                      the report definitions (product, fields, real-time, files)
    GET    /admin/v1/reports/overview             ?since&until   the five C.5 counts and open alerts
    GET    /admin/v1/reports/overview/{metric}    ?since&until&limit   drill-down: the records behind a count
    GET    /admin/v1/reports/rules                report rules
    POST   /admin/v1/reports/rules                create (operator)
    PATCH  /admin/v1/reports/rules/{id}           edit (operator)
    DELETE /admin/v1/reports/rules/{id}           delete (operator)
    GET    /admin/v1/reports/alerts               ?status&kind&q&limit
    POST   /admin/v1/reports/alerts/{id}/notes    a progress or result record; ``resolve`` ends it (operator)

Listings are masked (the payloads carry customer names). Every change records who made it
(``api:<token name>``) in the rule's history or the alert's notes, and is logged.
"""

from __future__ import annotations

import logging
from datetime import datetime

from aiohttp import web

from app.admin.api import _body, _json, _who
from app.admin.jobs_api import guarded
from app.admin.queries import parse_when
from app.admin.replay import NotFound
from app.reports.control import METRICS, AlertNote, ReportControl, ReportRule, RulePatch
from app.reports.definitions import load_reports
from hub.errors import ValidationFailed
from hub.services import SERVICES, ServiceKey

log = logging.getLogger(__name__)
PREFIX = "/admin/v1/reports"
CONTROL: ServiceKey[ReportControl] = ServiceKey("report_control")


def control(request: web.Request) -> ReportControl:
    runtime = request.app[SERVICES]
    found = runtime.get(CONTROL)
    if found is None or found.db is not runtime.db:
        if runtime.db is None:
            raise web.HTTPServiceUnavailable(reason="MongoDB not connected")
        found = runtime.put(CONTROL, ReportControl(runtime.db, load_reports(runtime.settings.config_dir,
                                                                            runtime.partners)))
    return found


def _window(request: web.Request) -> tuple[datetime | None, datetime | None]:
    try:
        return parse_when(request.query.get("since")), parse_when(request.query.get("until"))
    except ValueError as exc:
        raise ValidationFailed(str(exc), [{"field": "since/until", "message": str(exc)}]) from exc


def _limit(request: web.Request) -> int:
    try:
        return min(max(int(request.query.get("limit", 50)), 1), 1000)
    except ValueError as exc:
        raise ValidationFailed("limit must be an integer", [{"field": "limit", "message": "integer"}]) from exc


async def reports_list(request: web.Request) -> web.Response:
    c = control(request)
    return _json({"items": [{"name": r.name, "title": r.definition.title, "catalogue": r.definition.catalogue,
                             "partner": r.partner, "products": r.definition.products,
                             "cross_province": r.definition.cross_province,
                             "realtime": r.definition.realtime.model_dump() if r.definition.realtime else None,
                             "files": r.definition.files.model_dump() if r.definition.files else None,
                             "fields": [f.model_dump(exclude_none=True) for f in r.fields]}
                            for r in c.reports.by_name.values()]})


async def overview(request: web.Request) -> web.Response:
    since, until = _window(request)
    return _json(await control(request).overview(since, until))


async def drill(request: web.Request) -> web.Response:
    metric = next((m for m in METRICS if m == request.match_info["metric"]), None)
    if metric is None:
        raise NotFound(f"no count {request.match_info['metric']!r} (one of {', '.join(METRICS)})")
    since, until = _window(request)
    return _json({"metric": metric, "items": await control(request).drill(metric, since, until, _limit(request))})


async def rules_list(request: web.Request) -> web.Response:
    return _json({"items": await control(request).rules()})


async def rules_create(request: web.Request) -> web.Response:
    rule = await _body(request, ReportRule)
    log.info("report rule %s created by %s", rule.id, _who(request))
    return _json(await control(request).create_rule(rule, _who(request)), 201)


async def rules_edit(request: web.Request) -> web.Response:
    patch = await _body(request, RulePatch)
    log.info("report rule %s edited by %s", request.match_info["id"], _who(request))
    return _json(await control(request).edit_rule(request.match_info["id"], patch, _who(request)))


async def rules_delete(request: web.Request) -> web.Response:
    log.info("report rule %s deleted by %s", request.match_info["id"], _who(request))
    return _json(await control(request).delete_rule(request.match_info["id"], _who(request)))


async def alerts_list(request: web.Request) -> web.Response:
    q = request.query
    return _json({"items": await control(request).alerts(q.get("status"), q.get("kind"), q.get("q"),
                                                         _limit(request))})


async def alerts_note(request: web.Request) -> web.Response:
    note = await _body(request, AlertNote)
    log.info("report alert %s: %s note by %s", request.match_info["id"], note.kind, _who(request))
    return _json(await control(request).note(request.match_info["id"], note, _who(request)))


def add_routes(app: web.Application) -> None:
    r = guarded
    app.router.add_get(PREFIX, r("viewer", reports_list))
    app.router.add_get(f"{PREFIX}/overview", r("viewer", overview))
    app.router.add_get(f"{PREFIX}/overview/{{metric}}", r("viewer", drill))
    app.router.add_get(f"{PREFIX}/rules", r("viewer", rules_list))
    app.router.add_post(f"{PREFIX}/rules", r("operator", rules_create))
    app.router.add_patch(f"{PREFIX}/rules/{{id}}", r("operator", rules_edit))
    app.router.add_delete(f"{PREFIX}/rules/{{id}}", r("operator", rules_delete))
    app.router.add_get(f"{PREFIX}/alerts", r("viewer", alerts_list))
    app.router.add_post(f"{PREFIX}/alerts/{{id}}/notes", r("operator", alerts_note))
