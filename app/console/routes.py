"""``/console``: the operator web console, served by the hub's own HTTP server (app/plugins.py ROUTE_MODULES).

Why in the hub and not a separate app: one port, one deployment, one set of tokens; the pages call
the service layer directly instead of the admin API over HTTP. No build step and no outside
request: templates (app/console/templates), one stylesheet and one small script
(app/console/static) ship with the package.

    GET  /console/login   POST /console/login (token → session cookie)   POST /console/logout
    GET  /console         overview          GET /console/orders[.csv]   GET /console/orders/{id}
    GET  /console/dlq     GET /console/dlq/{id}   GET /console/calls   GET /console/flows
    GET  /console/routes  GET /console/history
    POST /console/dlq/{id}/replay | /console/dlq/replay | /console/dlq/{id}/discard          (operator)
    POST /console/orders/{id}/retry | /cancel | /stages/{stage}/submit | /console/calls/recall (operator)
    GET  /console/reports   POST /console/reports/rules | /rules/{id}/edit | /rules/{id}/delete
                            POST /console/reports/alerts/{id}/note                             (operator)
    GET  /console/jobs      POST /console/jobs/{name}/run                                      (operator)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter

from app.console import actions, pages, reporting
from app.console.render import page, warm
from app.console.session import COOKIE, PageHandler, clear_cookie, guarded, issue, revoke, safe_next, set_cookie
from app.console.session import sign_in as find_token
from app.console.session import verify as verify_session
from hub.auth import Role
from hub.services import SERVICES
from hub.settings import AdminToken

PREFIX = "/console"
STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)
#: sign-ins and actions by outcome (a refused sign-in is a log line and this metric)
CONSOLE_EVENTS = Counter("hub_console_events_total", "console sign-ins and actions", ["event", "outcome"])


def _tokens(request: web.Request) -> list[AdminToken]:
    return list(request.app[SERVICES].settings.admin_tokens)


async def login_page(request: web.Request) -> web.Response:
    return await page(request, "login.html", next=safe_next(request.query.get("next")), failed=False)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    token = find_token(_tokens(request), str(form.get("token") or ""))
    target = safe_next(form.get("next"))
    if token is None:
        log.warning("console sign-in refused from %s", request.remote)
        CONSOLE_EVENTS.labels("sign_in", "refused").inc()
        return await page(request, "login.html", status=401, next=target, failed=True)
    log.info("console sign-in: %s (%s)", token.name, token.role)
    CONSOLE_EVENTS.labels("sign_in", "ok").inc()
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, issue(token))
    raise response


async def logout(request: web.Request) -> web.Response:
    session = verify_session(_tokens(request), request.cookies.get(COOKIE))
    if session is not None:
        revoke(session)
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    clear_cookie(request, response)
    raise response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ("console.css", "console.js"):
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "max-age=3600"})


async def _warm(app: web.Application) -> None:
    await asyncio.to_thread(warm)


def add_routes(app: web.Application) -> None:
    def r(role: Role, handler: PageHandler) -> PageHandler:
        return guarded(role, _tokens)(handler)

    app.on_startup.append(_warm)
    app.router.add_get(f"{PREFIX}/login", login_page)
    app.router.add_post(f"{PREFIX}/login", login)
    app.router.add_post(f"{PREFIX}/logout", r("viewer", logout))
    app.router.add_get(f"{PREFIX}/static/{{name}}", static)
    app.router.add_get(PREFIX, r("viewer", pages.overview))
    app.router.add_get(f"{PREFIX}/orders", r("viewer", pages.orders))
    app.router.add_get(f"{PREFIX}/orders.csv", r("viewer", pages.orders_export))
    app.router.add_get(f"{PREFIX}/orders/{{id}}", r("viewer", pages.order))
    app.router.add_get(f"{PREFIX}/dlq", r("viewer", pages.dlq))
    app.router.add_get(f"{PREFIX}/dlq/{{id}}", r("viewer", pages.dlq_show))
    app.router.add_get(f"{PREFIX}/calls", r("viewer", pages.calls))
    app.router.add_get(f"{PREFIX}/flows", r("viewer", pages.flows))
    app.router.add_get(f"{PREFIX}/routes", r("viewer", pages.routes))
    app.router.add_get(f"{PREFIX}/history", r("viewer", pages.history))
    app.router.add_get(f"{PREFIX}/alerts", r("viewer", pages.alerts))
    app.router.add_post(f"{PREFIX}/alerts/{{id}}/{{action}}", r("operator", actions.alert_act))
    app.router.add_post(f"{PREFIX}/rules/{{id}}/enable", r("operator", actions.rule_enable))
    app.router.add_get(f"{PREFIX}/reports", r("viewer", reporting.reports))
    app.router.add_post(f"{PREFIX}/reports/rules", r("operator", reporting.rule_create))
    app.router.add_post(f"{PREFIX}/reports/rules/{{id}}/edit", r("operator", reporting.rule_edit))
    app.router.add_post(f"{PREFIX}/reports/rules/{{id}}/delete", r("operator", reporting.rule_delete))
    app.router.add_post(f"{PREFIX}/reports/alerts/{{id}}/note", r("operator", reporting.alert_note))
    app.router.add_get(f"{PREFIX}/jobs", r("viewer", reporting.jobs))
    app.router.add_post(f"{PREFIX}/jobs/{{name}}/run", r("operator", reporting.job_run))
    app.router.add_post(f"{PREFIX}/dlq/replay", r("operator", actions.dlq_replay_bulk))
    app.router.add_post(f"{PREFIX}/dlq/{{id}}/replay", r("operator", actions.dlq_replay_one))
    app.router.add_post(f"{PREFIX}/dlq/{{id}}/discard", r("operator", actions.dlq_discard))
    app.router.add_post(f"{PREFIX}/orders/{{id}}/retry", r("operator", actions.order_retry))
    app.router.add_post(f"{PREFIX}/orders/{{id}}/cancel", r("operator", actions.order_cancel))
    app.router.add_post(f"{PREFIX}/orders/{{id}}/stages/{{stage}}/submit", r("operator", actions.order_submit))
    app.router.add_post(f"{PREFIX}/calls/recall", r("operator", actions.calls_recall))
