"""The console's actions: replay, edit and replay, discard, retry, cancel, re-call, submit a manual stage.

Each one calls the service the CLI and the admin API call — ``ReplayService`` (replay, discard,
the letter behind an order's failed call or a call's re-call), ``flows.cancel.cancel_order`` and
the manual-stage check of ``flows/http.py`` — so refusals, audit records (``dlq_actions``, who =
``console:<token name>``) and metrics are theirs. The session, role and CSRF token are checked
before any of this (app/console/session.py ``guarded``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from app.admin.api import DLQ_QUERY, _services
from app.admin.patch import PatchOp, parse_patch
from app.admin.queries import DeadLetterFilter
from app.admin.replay import ActionResult, NotFound, Refused, Summary
from app.console import pages
from app.console.render import page
from flows.cancel import CancelRefused, UnknownOrder, cancel_order
from flows.documents import ORDERS
from flows.http import SubmitBody, _submit
from flows.runtime.agents import pinned_blueprint
from hub.auth import PRINCIPAL
from hub.errors import ConfigError, RetryableError, ValidationFailed
from hub.problem import problem
from hub.services import SERVICES

log = logging.getLogger(__name__)
BULK_LIMIT = 10_000


def _who(request: web.Request) -> str:
    return f"console:{request[PRINCIPAL].name}"


async def _form(request: web.Request) -> dict[str, Any]:
    form = await request.post()
    return {k: form.getall(k) if len(form.getall(k)) > 1 else form.get(k) for k in set(form.keys())}


def _patch(text: Any) -> list[PatchOp] | None:
    """The form's JSON patch (the CLI's ``--patch`` text), parsed by the same function as the API's."""
    if not text or not str(text).strip():
        return None
    try:
        raw = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"the patch is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(raw, list):
        raise ValidationFailed("the patch is a JSON list of operations")
    try:
        return parse_patch(raw)
    except ValidationError as exc:
        raise ValidationFailed(f"invalid patch: {exc.errors(include_url=False)[0]['msg']}") from exc


async def _result(request: web.Request, title: str, *, results: list[ActionResult] | None = None,
                  summary: Summary | None = None, back: str, message: str | None = None,
                  status: int | None = None, confirm: dict[str, Any] | None = None) -> web.Response:
    results = results if results is not None else (summary.results if summary else [])
    if status is None:
        refused = any(r.result in ("refused", "failed") for r in results)
        status = 409 if refused and len(results) == 1 and summary is None else 200
    return await page(request, "result.html", status=status, title=title, results=results, summary=summary,
                      back=back, message=message, confirm=confirm)


async def _refusal(request: web.Request, exc: Exception, back: str) -> web.Response:
    status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, ValidationFailed) else 409
    log.info("console action refused for %s: %s", _who(request), exc)
    return await _result(request, "refused", back=back, message=str(exc), status=status)


# --- dead letters -------------------------------------------------------------------------------
async def dlq_replay_one(request: web.Request) -> web.Response:
    _, replays = _services(request)
    letter_id = request.match_info["id"]
    form = await _form(request)
    back = f"/console/dlq/{letter_id}"
    try:
        result = await replays.replay_one(letter_id, who=_who(request), patch=_patch(form.get("patch")),
                                          dry_run=bool(form.get("dry_run")), reason=form.get("reason") or None,
                                          force=bool(form.get("force")))
    except (NotFound, Refused, ValidationFailed) as exc:
        return await _refusal(request, exc, back)
    if result.over_limit is not None:
        return await _result(request, "refused", results=[result], back=back, status=413)
    confirm = None
    if result.result == "dry_run":
        confirm = {"action": f"/console/dlq/{letter_id}/replay",
                   "fields": {"patch": form.get("patch") or "", "reason": form.get("reason") or ""}}
    return await _result(request, "replay", results=[result], back=back, confirm=confirm)


async def dlq_replay_bulk(request: web.Request) -> web.Response:
    """Replay by filter: the first post is always a dry run (a preview of what matches); the
    confirmation posts the same filter with ``confirm=1`` and at most as many letters as were shown."""
    _, replays = _services(request)
    form = await _form(request)
    args = {k: v for k, v in form.items() if k in DLQ_QUERY and isinstance(v, str) and v}
    back = "/console/dlq?" + "&".join(f"{k}={v}" for k, v in args.items())
    try:
        flt = DeadLetterFilter.model_validate({DLQ_QUERY[k]: v for k, v in args.items() if k != "status"})
        if not args and not form.get("all"):
            raise ValidationFailed("give a filter (or tick all)")
        confirmed = form.get("confirm") == "1"
        limit = min(int(form.get("count") or BULK_LIMIT), BULK_LIMIT) if confirmed else BULK_LIMIT
        ids = await replays.select(flt, limit=limit)
        patch = _patch(form.get("patch"))
        summary = await replays.replay(ids, who=_who(request), patch=patch, dry_run=not confirmed,
                                       reason=form.get("reason") or "console replay by filter")
    except (NotFound, Refused, ValidationFailed, ValidationError, ValueError) as exc:
        return await _refusal(request, ValidationFailed(str(exc).splitlines()[0]) if isinstance(
            exc, ValidationError | ValueError) and not isinstance(exc, ValidationFailed) else exc, back)
    confirm = None
    if not confirmed and summary.dry_run:
        confirm = {"action": "/console/dlq/replay",
                   "fields": {**args, "patch": form.get("patch") or "", "reason": form.get("reason") or "",
                              "confirm": "1", "count": str(summary.matched), **({"all": "1"} if form.get("all")
                                                                                   else {})}}
    return await _result(request, "replay_filter", summary=summary, back=back, confirm=confirm)


async def dlq_discard(request: web.Request) -> web.Response:
    _, replays = _services(request)
    letter_id = request.match_info["id"]
    form = await _form(request)
    back = f"/console/dlq/{letter_id}"
    try:
        result = await replays.discard(letter_id, who=_who(request), reason=str(form.get("reason") or ""))
    except (NotFound, Refused) as exc:
        return await _refusal(request, exc, back)
    return await _result(request, "discard", results=[result], back=back)


# --- orders -------------------------------------------------------------------------------------
async def order_retry(request: web.Request) -> web.Response:
    """``hub orders retry``: replay the dead letter of the current stage's failed call."""
    _, replays = _services(request)
    order_id = request.match_info["id"]
    form = await _form(request)
    back = f"/console/orders/{order_id}"
    try:
        letter = await replays.letter_for_order(order_id)
        result = await replays.replay_one(letter, who=_who(request), patch=_patch(form.get("patch")),
                                          dry_run=bool(form.get("dry_run")),
                                          reason=form.get("reason") or f"orders retry {order_id}")
    except (NotFound, Refused, ValidationFailed) as exc:
        return await _refusal(request, exc, back)
    return await _result(request, "retry_call", results=[result], back=back)


async def order_cancel(request: web.Request) -> web.Response:
    order_id = request.match_info["id"]
    form = await _form(request)
    back = f"/console/orders/{order_id}"
    reason = str(form.get("reason") or "").strip()
    if not reason:
        return await _refusal(request, ValidationFailed("a reason is required to cancel an order"), back)
    try:
        await cancel_order(request.app[SERVICES], order_id, reason=reason[:500], who=_who(request))
    except UnknownOrder as exc:
        return await _refusal(request, NotFound(str(exc)), back)
    except CancelRefused as exc:
        return await _refusal(request, Refused(str(exc)), back)
    except RetryableError as exc:
        return await _result(request, "refused", back=back, message=str(exc), status=503)
    raise web.HTTPSeeOther(f"{back}?done=cancel")


async def order_submit(request: web.Request) -> web.StreamResponse:
    """A manual stage from the form built from the blueprint's field rules, checked by the same
    function as ``POST /api/v1/orders/{id}/stages/{stage}/submit`` (flows/http.py ``_submit``: the
    stage must be waiting, then flows/graph/rules.py ``check_submission``); its 400 errors are shown
    on the order page next to the fields, its 202 moves the order on."""
    runtime = request.app[SERVICES]
    order_id, stage = request.match_info["id"], request.match_info["stage"]
    form = await _form(request)
    raw = {k[2:]: v for k, v in form.items() if k.startswith("f.")}
    if runtime.db is None:
        return problem(503, "Service Unavailable", "order store not available")
    doc = await runtime.db[ORDERS].find_one({"_id": order_id}, {"stages": 0, "order": 0})
    if doc is None:
        return await pages.order(request)
    try:  # the declared types, from the blueprint the order pinned (never from the form)
        bp = await pinned_blueprint(runtime, doc)
    except ConfigError:
        bp = None
    spec = bp.nodes.get(stage) if bp is not None else None
    types = {f.name: f.type for f in getattr(spec, "fields", [])}
    submission = {k: typed(v, types.get(k, "str")) for k, v in raw.items() if v not in ("", None)}
    answer = await _submit(request, runtime, doc, stage, SubmitBody(data=submission))
    body = json.loads(answer.body) if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else {}
    if answer.status == 202:
        raise web.HTTPSeeOther(f"/console/orders/{order_id}?done=submitted")
    errors = body.get("errors") or [{"field": "", "message": body.get("detail") or body.get("title")}]
    errors = [{**e, "field": str(e.get("field") or "").removeprefix("data.")} for e in errors]
    return await pages.order(request, errors=errors, submitted={k: v for k, v in raw.items()},
                             status=answer.status)


def typed(value: Any, kind: str) -> Any:
    """A form value as the field's declared type; a value that is not one is sent as typed, so the
    API's own rule answers ("must be int"), not a console-only message."""
    text = str(value).strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return {"true": True, "false": False}.get(text.lower(), text)
        if kind == "list":
            parsed = json.loads(text) if text.startswith("[") else [x.strip() for x in text.split(",") if x.strip()]
            return parsed
    except ValueError:
        return text
    return text


# --- calls --------------------------------------------------------------------------------------
async def calls_recall(request: web.Request) -> web.Response:
    """接口重调 / 批量重调: the dead letters behind the ticked failed calls, replayed."""
    _, replays = _services(request)
    form = await _form(request)
    ids = form.get("call_id")
    call_ids = [ids] if isinstance(ids, str) else list(ids or [])
    back = "/console/calls"
    try:
        if not call_ids:
            raise ValidationFailed("tick at least one failed call")
        letters = await replays.letters_for_calls(call_ids)
        summary = await replays.replay(letters, who=_who(request), dry_run=bool(form.get("dry_run")),
                                       reason="calls recall")
    except (NotFound, Refused, ValidationFailed) as exc:
        return await _refusal(request, exc, back)
    return await _result(request, "recall", summary=summary, back=back)


# --- operations center: alert handling, rules on / off ------------------------------------------
async def alert_act(request: web.Request) -> web.Response:
    """One handling step of an alert (ack, assign, note, resolve, close, reopen): the operations
    center's ``OpsService.act``, recorded there as ``console:<name>``."""
    from app.ops.api import _ops

    alert_id, action = request.match_info["id"], request.match_info["action"]
    form = await _form(request)
    back = "/console/alerts"
    try:
        await _ops(request).act(alert_id, action, _who(request), note=str(form.get("note") or "")[:2000],
                                assignee=str(form.get("assignee") or "")[:200] or None)
    except (NotFound, Refused, ValidationFailed, LookupError, ValueError) as exc:
        return await _refusal(request, exc if isinstance(exc, NotFound | Refused | ValidationFailed)
                              else Refused(str(exc)), back)
    raise web.HTTPSeeOther(f"{back}?done={action}")


async def rule_enable(request: web.Request) -> web.Response:
    from app.ops.api import _ops

    form = await _form(request)
    try:
        await _ops(request).enable_rule(request.match_info["id"], form.get("enabled") == "1", _who(request))
    except (NotFound, Refused, ValidationFailed, LookupError, ValueError) as exc:
        return await _refusal(request, exc if isinstance(exc, NotFound | Refused | ValidationFailed)
                              else Refused(str(exc)), "/console/alerts")
    raise web.HTTPSeeOther("/console/alerts?done=rule")
