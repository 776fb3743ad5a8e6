"""Operator cancel, suspend and resume: ``POST /api/v1/orders/{order_id}/cancel|suspend|resume`` — and
the one function the admin API (``POST /admin/v1/orders/{id}/cancel``) and ``hub orders cancel`` share.

Issue 10 §5 / D.1.8: a cancel is executed immediately — it interrupts the running order (pending calls
cancelled where the partner can, compensations in reverse, the origin answered, status ``cancelled``).
All that is the engine's (flows/graph/machine.py); asking for it is producing one ``order.cancel``
envelope (hub/cancel.py: the same shape a partner's withdraw becomes) on ``{p}.orders`` after it is
journaled (``flows.http._emit``: MongoDB first, then Kafka with acks=all). Checked first, so the
operator hears it now rather than from a silent no-op in the engine: an unknown order is 404, an
order already completed / failed / cancelled is 409. A second cancel of a running order is accepted as
a duplicate (same idempotency key ``cancel:<order id>``). Every operator cancel is recorded in the
admin action log (``dlq_actions``, ``hub dlq history``) with who asked and why.

    POST /api/v1/orders/{order_id}/cancel   {"reason": "customer withdrew", "by": "…"}   (role operator)
    → 202 {"order_id", "envelope_id", "accepted": true, "duplicate": false}

Suspend / resume (D.1.8, executed at once; what they do is the engine's, docs/flows-v2.md): the same
checks and path with ``order.suspend {reason, by}`` / ``order.resume {reason, by}``, for v2 orders
(the engine state says whether the order is held: suspending a held order or resuming one that is
not is 409). Their key counts the order's holds so far (``suspend:<id>:<n>``): a retried request is
one effect, the next hold a new one.

    POST /api/v1/orders/{order_id}/suspend  {"reason": "customer asked to wait"}   → 202
    POST /api/v1/orders/{order_id}/resume   {"reason": "…"?}                       → 202
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from aiohttp import web
from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import PyMongoError

from flows.documents import ORDERS
from flows.http import _emit
from hub import jsonlimits
from hub.auth import PRINCIPAL, requires
from hub.cancel import RUNNING, cancel_envelope
from hub.deadletter import ACTIONS
from hub.envelope import Envelope, new_id
from hub.errors import HubError, RetryableError
from hub.kafka import EnvelopeProducer
from hub.metrics import DLQ_ACTIONS
from hub.problem import problem
from hub.services import SERVICES, Services, ServiceSlots
from hub.settings import AdminToken, Settings

__all__ = ["CANCEL_PATH", "HOLD_PATH", "CancelBody", "CancelRefused", "OrderFinished", "Requested", "ResumeBody",
           "UnknownOrder", "add_routes", "cancel_order", "direct_services", "hold_order"]

CANCEL_PATH = "/api/v1/orders/{order_id}/cancel"
HOLD_PATH = "/api/v1/orders/{order_id}/{action:suspend|resume}"
Hold = Literal["suspend", "resume"]


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="why (recorded, sent to the origin)")
    by: str | None = Field(default=None, max_length=100, description="defaults to the caller's name")


class ResumeBody(CancelBody):
    reason: str = Field(default="", max_length=500)


class CancelRefused(HubError):
    """The order cannot be cancelled; ``status`` is the HTTP answer (404 / 409)."""

    status = 409


class UnknownOrder(CancelRefused):
    status = 404


class OrderFinished(CancelRefused):
    status = 409


@dataclass(frozen=True)
class Requested:
    order_id: str
    envelope_id: str
    duplicate: bool

    def answer(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "envelope_id": self.envelope_id, "accepted": True,
                "duplicate": self.duplicate}


@dataclass
class _Direct(ServiceSlots):
    """What ``flows.http._emit`` reads of the process services (settings, db, producer and the typed
    slots its batchers live in), for ``hub orders cancel``: the CLI has no runtime, and goes to
    MongoDB and Kafka directly."""

    settings: Settings
    db: AsyncIOMotorDatabase[Any] | None
    producer: EnvelopeProducer

    def __post_init__(self) -> None:
        ServiceSlots.__init__(self)


def direct_services(settings: Settings, db: AsyncIOMotorDatabase[Any], producer: EnvelopeProducer) -> Services:
    return cast(Services, _Direct(settings, db, producer))


async def _order(db: AsyncIOMotorDatabase[Any], order_id: str) -> dict[str, Any]:
    try:
        doc = await db[ORDERS].find_one({"_id": order_id}, {
            "order_id": 1, "status": 1, "product": 1, "scenario": 1, "engine": 1, "state.suspended": 1,
            "state.suspensions": 1})
    except PyMongoError as exc:
        raise RetryableError(f"order store unavailable: {exc}") from exc
    if doc is None:
        raise UnknownOrder(f"no order {order_id!r}")
    if doc.get("status") not in RUNNING:
        raise OrderFinished(f"order {order_id} is already {doc.get('status')}")
    return doc


async def _record(db: AsyncIOMotorDatabase[Any], *, who: str, order_id: str, reason: str, result: str,
                  detail: str | None, action: str = "cancel") -> None:
    """The admin action log entry (the same collection and shape as replays and discards)."""
    DLQ_ACTIONS.labels(action, result).inc()
    await db[ACTIONS].insert_one({"_id": new_id(), "at": datetime.now(UTC), "who": who, "action": action,
                                  "result": result, "dead_letter_id": None, "topic": None, "order_id": order_id,
                                  "detail": detail, "replay_count": None, "patch": None, "reason": reason,
                                  "batch": None})


async def cancel_order(services: Services, order_id: str, *, reason: str, who: str, by: str | None = None,
                       protocol: str = "rest") -> Requested:
    """Check the order can be cancelled, journal and produce its ``order.cancel``, record the action.

    Raises :class:`CancelRefused` (404 / 409: recorded as ``refused``) or RetryableError (MongoDB or
    Kafka not there: nothing was accepted, try again)."""
    db = services.db
    if db is None:
        raise RetryableError("order store not available")
    try:
        doc = await _order(db, order_id)
    except CancelRefused as exc:
        await _record(db, who=who, order_id=order_id, reason=reason, result="refused", detail=str(exc))
        raise
    envelope: Envelope = cancel_envelope(doc, reason=reason, by=by or who, source="hub", protocol=protocol)
    outcome = await _emit(services, envelope)
    if isinstance(outcome, web.Response):
        raise RetryableError(f"the cancel could not be stored durably (HTTP {outcome.status}); retry later")
    await _record(db, who=who, order_id=order_id, reason=reason, result="ok",
                  detail="duplicate: already asked" if outcome else None)
    return Requested(order_id, envelope.id, outcome)


def _hold_refusal(doc: dict[str, Any], action: Hold) -> str | None:
    state = doc.get("state") or {}
    if doc.get("engine") != 2:
        return f"order {doc['_id']} runs on the v1 engine, which cannot {action}"
    if action == "suspend" and state.get("suspended"):
        return f"order {doc['_id']} is already suspended"
    if action == "resume" and not state.get("suspended"):
        return f"order {doc['_id']} is not suspended"
    return None


async def hold_order(services: Services, order_id: str, action: Hold, *, reason: str, who: str,
                     by: str | None = None, protocol: str = "rest") -> Requested:
    """Suspend or resume a running v2 order: checked, journaled and produced like a cancel."""
    db = services.db
    if db is None:
        raise RetryableError("order store not available")
    try:
        doc = await _order(db, order_id)
        refusal = _hold_refusal(doc, action)
        if refusal:
            raise OrderFinished(refusal)
    except CancelRefused as exc:
        await _record(db, who=who, order_id=order_id, reason=reason, result="refused", detail=str(exc), action=action)
        raise
    holds = len((doc.get("state") or {}).get("suspensions") or ())
    envelope = Envelope(type=f"order.{action}", source="hub", protocol=protocol, correlation_id=order_id,
                        idempotency_key=f"{action}:{order_id}:{holds}", product=doc.get("product"),
                        scenario=doc.get("scenario"), payload={"reason": reason, "by": by or who})
    outcome = await _emit(services, envelope)
    if isinstance(outcome, web.Response):
        raise RetryableError(f"the {action} could not be stored durably (HTTP {outcome.status}); retry later")
    await _record(db, who=who, order_id=order_id, reason=reason, result="ok", action=action,
                  detail="duplicate: already asked" if outcome else None)
    return Requested(order_id, envelope.id, outcome)


def _tokens(request: web.Request) -> list[AdminToken]:
    return list(getattr(request.app[SERVICES].settings, "admin_tokens", []))


async def _body(request: web.Request, model: type[CancelBody]) -> CancelBody | web.Response:
    try:
        raw = jsonlimits.loads((await request.read()).decode("utf-8") or "{}",
                               request.app[SERVICES].settings.intake_max_depth)
        return model.model_validate(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, jsonlimits.TooDeep):
        return problem(400, "Bad Request", "body must be a JSON object {reason, by?}")
    except ValidationError as exc:
        return problem(400, "Bad Request", "invalid request", errors=[
            {"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)])


@requires("operator", _tokens)
async def cancel(request: web.Request) -> web.Response:
    body = await _body(request, CancelBody)
    if isinstance(body, web.Response):
        return body
    try:
        done = await cancel_order(request.app[SERVICES], request.match_info["order_id"], reason=body.reason,
                                  by=body.by, who=f"operator:{request[PRINCIPAL].name}")
    except CancelRefused as exc:
        return problem(exc.status, "Not Found" if exc.status == 404 else "Conflict", str(exc))
    except RetryableError as exc:
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
    return web.json_response(done.answer(), status=202)


@requires("operator", _tokens)
async def hold(request: web.Request) -> web.Response:
    action: Hold = "suspend" if request.match_info["action"] == "suspend" else "resume"
    body = await _body(request, CancelBody if action == "suspend" else ResumeBody)
    if isinstance(body, web.Response):
        return body
    try:
        done = await hold_order(request.app[SERVICES], request.match_info["order_id"], action, reason=body.reason,
                                by=body.by, who=f"operator:{request[PRINCIPAL].name}")
    except CancelRefused as exc:
        return problem(exc.status, "Not Found" if exc.status == 404 else "Conflict", str(exc))
    except RetryableError as exc:
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
    return web.json_response(done.answer(), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post(CANCEL_PATH, cancel)
    app.router.add_post(HOLD_PATH, hold)
