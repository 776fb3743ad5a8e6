"""REST order intake: ``POST /api/v1/partners/{partner}/orders``.

Checks in the order a partner would want to hear about them: credentials (401; an unknown partner
is answered the same, so partner names cannot be probed), content type (415), size (413), nesting
deeper than ``HUB_INTAKE_MAX_DEPTH`` (400, checked before ``json.loads`` recurses:
``hub/jsonlimits.py``), JSON syntax and every schema violation at once (400), then admission in
the intake (400: an envelope that would not survive the router, or an order no blueprint runs).
Then the envelope is emitted (Kafka acks=all, idempotent) and only then answered 202; broker or
store down ⇒ 503 with Retry-After and nothing written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web
from pydantic import ValidationError

from connectors.base import Emit
from connectors.context import ConnectorContext
from connectors.registry import registry
from connectors.rest.config import RestSourceConfig
from hub import jsonlimits
from hub.envelope import Envelope
from hub.errors import RetryableError, ValidationFailed
from hub.metrics import INTAKE_LATENCY, INTAKE_REQUESTS
from hub.order import WorkOrder, idempotency_key, order_id_for
from hub.partner_auth import ClientCertAuth, ClientCertVerifier, HmacAuth, HmacVerifier, shared_limiter
from hub.partners import ApiKeyAuth
from hub.problem import problem
from hub.tracing import partner_trace
from transforms.crypto import decrypt_inbound, keys_for
from transforms.mapping import apply_transform

log = logging.getLogger(__name__)

ORDERS_PATH = "/api/v1/partners/{partner}/orders"
ENDPOINTS: web.AppKey[dict[str, RestOrderSource]] = web.AppKey("rest_order_endpoints", dict)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Every bad field, named by its canonical path; input values are not echoed (may be sensitive)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append({"field": loc, "message": err["msg"], "type": err["type"]})
    return out


@registry.source("rest", RestSourceConfig, "HTTP JSON order intake: POST /api/v1/partners/{partner}/orders")
class RestOrderSource:
    """One partner's REST intake. ``start`` mounts it on the shared route table; ``stop`` removes it."""

    name: ClassVar[str] = "rest"

    def __init__(self, config: RestSourceConfig, context: ConnectorContext) -> None:
        self.config = config
        # the endpoint table ``dispatch`` looks partners up in (shared with the web app)
        self._endpoints: dict[str, RestOrderSource] = context.shared("rest")
        self._max_depth = context.settings.intake_max_depth
        # the route's transform: the partner's field names and codes → canonical, before validation
        self._transform = context.transform
        self._emit: Emit | None = None
        # runtime state of the partner's auth and limit: the nonces seen, the bucket's level
        self._verifier = HmacVerifier(config.auth) if isinstance(config.auth, HmacAuth) else None
        self._certs = ClientCertVerifier(config.auth) if isinstance(config.auth, ClientCertAuth) else None
        # one bucket per partner across its REST and SOAP intakes (hub/partner_auth.py shared_limiter)
        self._limiter = (shared_limiter(context.shared("partner-rate"), config.partner, config.rate_limit)
                         if config.rate_limit else None)

    async def start(self, emit: Emit) -> None:
        if self.config.crypto is not None:  # our private keys' checks take ~50 ms CPU: a thread; missing = not started
            await asyncio.to_thread(keys_for(self.config.crypto).warm)
        self._emit = emit
        self._endpoints[self.config.partner] = self

    async def stop(self) -> None:
        if self._endpoints.get(self.config.partner) is self:
            del self._endpoints[self.config.partner]
        self._emit = None

    def sample(self, raw: bytes) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): the envelope this request body would become —
        ``parse``, the function ``handle`` runs; ValidationFailed carries the errors a 400 lists."""
        return [self.parse(raw)]

    def parse(self, body: bytes, request_id: str | None = None, headers: Mapping[str, str] | None = None) -> Envelope:
        """A request body → the order's envelope: UTF-8, depth limit, JSON object, the partner's
        field mapping, the canonical order model, the partner's products and scenarios. Raises
        :class:`~hub.jsonlimits.TooDeep` or ValidationFailed (its ``errors`` name every bad field)."""
        cfg = self.config
        try:
            raw = jsonlimits.loads(body.decode("utf-8"), self._max_depth)
        except UnicodeDecodeError:
            raise ValidationFailed("body is not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                f"body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                [{"field": "(body)", "message": exc.msg, "type": "json_invalid"}]) from exc
        if not isinstance(raw, dict):
            raise ValidationFailed("body must be a JSON object",
                                   [{"field": "(body)", "message": "must be a JSON object", "type": "object_type"}])
        if cfg.crypto is not None:  # the partner's encrypted fields, before its mapping and validation
            raw, _session = decrypt_inbound(cfg.crypto, raw, headers or {})
        schema = cfg.order_schema
        try:
            order = WorkOrder.model_validate(apply_transform(raw, self._transform))
        except ValidationError as exc:
            errors = _field_errors(exc)
            raise ValidationFailed(f"{len(errors)} invalid field(s) in the order", errors) from exc
        errors = []
        if schema.products and order.product not in schema.products:
            errors.append({"field": "product", "message": f"product {order.product!r} is not accepted from "
                           f"{cfg.partner}", "type": "product_not_allowed"})
        if order.scenario not in schema.scenarios:
            errors.append({"field": "scenario", "message": f"scenario {order.scenario.value!r} is not accepted from "
                           f"{cfg.partner}", "type": "scenario_not_allowed"})
        if errors:
            raise ValidationFailed("order not accepted", errors)
        return Envelope(
            type="order.received",
            source=cfg.partner,
            protocol="rest",
            correlation_id=order_id_for(cfg.partner, order.external_order_id, order.scenario.value),
            idempotency_key=idempotency_key(cfg.partner, order.external_order_id, order.scenario.value),
            product=order.product,
            scenario=order.scenario.value,
            payload=order.model_dump(mode="json", exclude_none=True),
            # mapped already (the route's transform, above): RouteEmit.prepare maps no more
            headers={"hub-canonical": "true", **({"partner-request-id": request_id} if request_id else {})},
            **({"trace": trace} if (trace := partner_trace(headers)) is not None else {}),
        )

    def _count(self, outcome: str) -> None:
        INTAKE_REQUESTS.labels(self.config.partner, "rest", outcome).inc()

    def _reject(self, outcome: str, status: int, title: str, detail: str, **kw: Any) -> web.Response:
        self._count(outcome)
        log.info("rejected %s order: %s %s (%s)", self.config.partner, status, title, detail)
        return problem(status, title, detail, **kw)

    async def _over_rate(self) -> web.Response | None:
        """429 with Retry-After when the partner is over its ``rate_limit`` (checked once the
        request is authenticated: strangers cannot spend a partner's budget)."""
        if self._limiter is None or await self._limiter.admit():
            return None
        limit = self._limiter.limit
        return self._reject("rejected_rate", 429, "Too Many Requests",
                            f"over {limit.per_second:g} requests/s (burst {limit.burst}) for {self.config.partner}",
                            headers={"Retry-After": str(self._limiter.retry_after)})

    async def _read_body(self, request: web.Request) -> bytes | None:
        """Read at most ``max_body_bytes``; None when the body is larger (never buffered whole)."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        cfg = self.config
        if self._certs is not None:  # the TLS peer certificate, verified by the handshake (app/web.py)
            refused = self._certs.verify(request.transport.get_extra_info("ssl_object") if request.transport else None)
            if refused is not None:
                self._count(refused.outcome)
                log.info("rejected %s order: %s %s (%s)", cfg.partner, refused.status, refused.title, refused.logged)
                return problem(refused.status, refused.title, refused.detail, headers=refused.headers)
        elif isinstance(cfg.auth, ApiKeyAuth) and not cfg.auth.check(request.headers.get(cfg.auth.header)):
            return self._reject(
                "rejected_auth", 401, "Unauthorized", f"missing or invalid {cfg.auth.header} header",
                headers={"WWW-Authenticate": f'ApiKey header="{cfg.auth.header}"'},
            )
        if self._verifier is None and (limited := await self._over_rate()) is not None:
            return limited
        if request.content_type != "application/json":
            return self._reject(
                "rejected_media_type", 415, "Unsupported Media Type",
                f"Content-Type must be application/json, got {request.content_type or 'nothing'}",
            )
        charset = (request.charset or "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            return self._reject("rejected_media_type", 415, "Unsupported Media Type", "charset must be utf-8")
        body = await self._read_body(request)
        if body is None:
            return self._reject(
                "rejected_too_large", 413, "Payload Too Large", f"body exceeds {cfg.max_body_bytes} bytes"
            )
        if self._verifier is not None:  # a signature covers the body: checked once it is read
            refused = self._verifier.verify(request.method, request.rel_url.raw_path, request.headers, body)
            if refused is not None:
                return self._reject(refused.outcome, refused.status, refused.title, refused.detail,
                                    headers=refused.headers)
            if (limited := await self._over_rate()) is not None:
                return limited
        try:
            envelope = self.parse(body, request.headers.get("X-Request-Id"), request.headers)
        except jsonlimits.TooDeep as exc:
            return self._reject("rejected_too_deep", 400, "Bad Request", str(exc), errors=exc.errors,
                                max_depth=exc.limit)
        except ValidationFailed as exc:
            return self._reject("rejected_invalid", 400, "Bad Request", str(exc),
                                **({"errors": exc.errors} if exc.errors else {}))
        if self._emit is None:
            return self._reject("unavailable", 503, "Service Unavailable", "intake is stopping")
        try:
            accepted = await self._emit(envelope)
        except ValidationFailed as exc:  # admission: would not survive the router, or no flow runs it
            extra = {"max_depth": exc.limit} if isinstance(exc, jsonlimits.TooDeep) else {}
            return self._reject("rejected_invalid", 400, "Bad Request", str(exc), errors=exc.errors, **extra)
        except RetryableError as exc:
            log.warning("intake %s unavailable: %s", cfg.partner, exc)
            return self._reject(
                "unavailable", 503, "Service Unavailable",
                "the order could not be stored durably; nothing was accepted — retry later",
                headers={"Retry-After": "5"},
            )
        self._count("duplicate" if accepted.duplicate else "accepted")
        INTAKE_LATENCY.labels(cfg.partner, "rest").observe(time.perf_counter() - started)
        return web.json_response(
            {"order_id": accepted.order_id, "envelope_id": accepted.envelope_id},
            status=202,
            headers={"Hub-Duplicate": "true"} if accepted.duplicate else None,
        )


async def dispatch(request: web.Request) -> web.Response:
    """The single aiohttp route; finds the partner's source (so sources can come and go at run time)."""
    partner = request.match_info["partner"]
    source = request.app[ENDPOINTS].get(partner)
    if source is None:  # answered like a wrong key, before anything names partners (no enumeration)
        INTAKE_REQUESTS.labels("unknown", "rest", "rejected_unknown_partner").inc()
        return problem(401, "Unauthorized", "missing or invalid X-Api-Key header",
                       headers={"WWW-Authenticate": 'ApiKey header="X-Api-Key"'})
    return await source.handle(request)


def add_routes(app: web.Application) -> None:
    app.router.add_post(ORDERS_PATH, dispatch)
