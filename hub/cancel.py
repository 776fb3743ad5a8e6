"""The ``order.cancel`` envelope: one shape for every way an order is withdrawn or terminated.

Issue 10 §5: a withdraw (撤单) or terminate from ESOP / 一编 interrupts the *running* order — it is no
longer a separate order with scenario ``withdraw`` and no blueprint. Whoever asks (the SOAP
``withdrawOrder``, a REST / AMQP / SFTP work order with scenario ``withdraw``, an operator over the
HTTP API, the admin API or ``hub orders cancel``) produces the same envelope on ``{p}.orders``:
type ``order.cancel``, correlation id = the running order's hub id, payload ``{reason, by}``,
idempotency key ``cancel:<order id>`` — so a second cancel of the same order, from anywhere, is one
effect (the intake answers "duplicate"; the engine ignores a cancel after the end anyway).

Why here, in the core: the SOAP connector, the route pipeline and the flow HTTP endpoints all build
it, and only the core is below all three (import-linter layers).

A partner's withdraw names its *external* order id; which hub order that is can only be known from
MongoDB ``orders`` (index ``by_external``), asynchronously. Sources build a :func:`withdraw_request`
(the external id in a header); the route pipeline resolves it with :func:`resolve_withdraw` right
before publishing — the one place, whatever the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import DESCENDING
from pymongo.errors import PyMongoError

from hub.envelope import Envelope
from hub.errors import RetryableError, ValidationFailed

__all__ = ["CANCEL", "RUNNING", "WITHDRAW_OF", "NoRunningOrder", "cancel_envelope", "idempotency_key",
           "resolve_withdraw", "running_order", "withdraw_request"]

CANCEL = "order.cancel"
#: header of a withdraw still to be resolved: the partner's external order id
WITHDRAW_OF = "hub-withdraw-of"
#: order statuses a cancel can still interrupt (the order document, docs/flows-v2.md)
RUNNING = ("in_flight", "waiting")
ORDERS = "orders"


class NoRunningOrder(ValidationFailed):
    """A withdraw names an external order id with no running order: nothing to withdraw (a SOAP
    Fault / 400 / rejected record naming the id — never a silent separate order)."""


def idempotency_key(order_id: str) -> str:
    return f"cancel:{order_id}"


def cancel_envelope(order: Mapping[str, Any], *, reason: str, by: str, source: str = "hub",
                    protocol: str = "rest", headers: Mapping[str, str] | None = None) -> Envelope:
    """The cancel of one stored order document (``_id`` / ``order_id`` = the hub order id)."""
    order_id = str(order.get("order_id") or order["_id"])
    return Envelope(type=CANCEL, source=source, protocol=protocol, correlation_id=order_id,
                    idempotency_key=idempotency_key(order_id), product=order.get("product"),
                    scenario=order.get("scenario"), payload={"reason": reason, "by": by},
                    headers={k: v for k, v in (headers or {}).items() if k != WITHDRAW_OF})


def withdraw_request(*, source: str, protocol: str, external_order_id: str, reason: str, by: str = "",
                     headers: Mapping[str, str] | None = None) -> Envelope:
    """A partner's withdraw of its order ``external_order_id``, not yet resolved to a hub order id
    (the placeholder correlation id and key are replaced by :func:`resolve_withdraw`)."""
    return Envelope(type=CANCEL, source=source, protocol=protocol,
                    correlation_id=f"withdraw:{source}:{external_order_id}"[:128],
                    idempotency_key=f"withdraw:{source}:{external_order_id}"[:256],
                    payload={"reason": reason, "by": by or source},
                    headers={**(headers or {}), WITHDRAW_OF: external_order_id})


async def running_order(db: AsyncIOMotorDatabase[Any], partner: str, external_order_id: str,
                        ) -> dict[str, Any] | None:
    """The partner's running order with this external id (the newest, if several), or None."""
    try:
        return await db[ORDERS].find_one(
            {"partner": partner, "external_order_id": external_order_id, "status": {"$in": list(RUNNING)}},
            {"order": 0, "state": 0, "outbox": 0, "calls": 0}, sort=[("created_at", DESCENDING)])
    except PyMongoError as exc:
        raise RetryableError(f"order store unavailable: {exc}") from exc


async def resolve_withdraw(db: AsyncIOMotorDatabase[Any] | None, envelope: Envelope) -> Envelope:
    """A :func:`withdraw_request` → the ``order.cancel`` of the running order it names.

    Raises :class:`NoRunningOrder` (permanent: the caller's mistake or too late) or RetryableError
    (MongoDB not there: try again)."""
    external = envelope.headers[WITHDRAW_OF]
    if db is None:
        raise RetryableError("order store not available")
    found = await running_order(db, envelope.source, external)
    if found is None:
        message = f"no running order with external id {external!r} of {envelope.source} to withdraw"
        raise NoRunningOrder(message, [{"field": "external_order_id", "message": message, "type": "no_running_order",
                                        "external_order_id": external}])
    return cancel_envelope(found, reason=str(envelope.payload.get("reason", "")),
                           by=str(envelope.payload.get("by") or envelope.source), source=envelope.source,
                           protocol=envelope.protocol, headers=envelope.headers)
