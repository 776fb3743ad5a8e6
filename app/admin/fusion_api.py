"""``/admin/v1/fusion…`` — fusion "one visit" groups (issue 13 §2, §6), the API of ``hub fusion``.

    GET  /admin/v1/fusion                 ?state=waiting|incomplete|dispatched|cancelled|failed&limit
    GET  /admin/v1/fusion/{key}           the group, its members (D.1.6 combined view) and takers (D.1.7)
    POST /admin/v1/fusion/{key}/release   {"reason": "..."}   dispatch what arrived (partial release)
    POST /admin/v1/fusion/{key}/wait      {"reason": "..."}   keep waiting: a new deadline
    POST /admin/v1/fusion/{key}/cancel    {"reason": "..."}   cancel the waiting members

viewer may read, operator may act; listings are masked like every admin listing; every action is
recorded as ``api:<token>`` in the action log (flows/fusion/views.py)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from app.admin.api import PREFIX, _body, _errors, _json, _tokens, _who
from app.admin.queries import masker
from app.admin.replay import NotFound, Refused
from flows.fusion import views
from hub.auth import Handler, requires
from hub.errors import RetryableError, ValidationFailed
from hub.problem import problem
from hub.services import SERVICES


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


async def fusion_list(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in views.STATES:
        raise ValidationFailed(f"state is one of {', '.join(views.STATES)}", [{"field": "state", "message": state}])
    try:
        limit = min(max(int(request.query.get("limit", 100)), 1), 1000)
    except ValueError as exc:
        raise ValidationFailed("limit must be an integer") from exc
    try:
        return _json(await views.groups(request.app[SERVICES], state=state, limit=limit))
    except RetryableError as exc:
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})


async def fusion_show(request: web.Request) -> web.Response:
    runtime = request.app[SERVICES]
    try:
        group = await views.show(runtime, request.match_info["key"])
    except views.NoGroup as exc:
        raise NotFound(str(exc)) from exc
    except RetryableError as exc:
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
    return _json(views.mask_group(group, masker(runtime.partners)))


def _decision(decision: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = await _body(request, DecisionBody)
        try:
            done = await views.decide(request.app[SERVICES], request.match_info["key"], decision,
                                      who=_who(request), reason=body.reason)
        except views.NoGroup as exc:
            raise NotFound(str(exc)) from exc
        except views.NothingWaiting as exc:
            raise Refused(str(exc)) from exc
        except RetryableError as exc:
            return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
        return _json(done, status=202)

    return handler


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/fusion", requires("viewer", _tokens)(_errors(fusion_list)))
    app.router.add_get(f"{PREFIX}/fusion/{{key}}", requires("viewer", _tokens)(_errors(fusion_show)))
    for decision in ("release", "wait", "cancel"):
        app.router.add_post(f"{PREFIX}/fusion/{{key}}/{decision}",
                            requires("operator", _tokens)(_errors(_decision(decision))))
