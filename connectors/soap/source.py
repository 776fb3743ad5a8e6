"""Inbound SOAP 1.1: the hub as a webservice a partner calls (ESOP-style).

``GET /soap/{partner}?wsdl`` publishes the route's WSDL (``?xsd`` its schema), rendered once at
start with the configured service address (the route's ``public_url``, default
``{HUB_PUBLIC_URL}/soap/{partner}``) — never the Host a caller sent; ``POST /soap/{partner}``
handles one call:

1. ``text/xml`` content type and size limit (``max_body_bytes``, default ``HUB_INTAKE_MAX_BODY_BYTES``:
   over it HTTP 413 with a fault);
2. safe parse (no DTD, no entities, no network — ``xmlsafe.py``);
3. authentication: WS-Security UsernameToken (PasswordText or PasswordDigest) or the API key header,
   then the partner's ``rate_limit`` (over it HTTP 429, ``Retry-After`` and a ``soap:Server`` fault);
4. the partner's crypto contract: the request element's ``inbound_fields`` decrypted in place
   (``connectors/soap/crypto.py``), then the element is validated against the XSD with lxml (zeep
   alone is lenient);
5. the operation runs: ``order`` emits a work order, ``withdraw`` (撤单) the ``order.cancel`` of the
   partner's running order (hub/cancel.py; the route pipeline finds that order by its external id,
   the answer names it, no running order is a Fault naming the external id) — both answered only
   after Kafka has them; ``status`` reads MongoDB ``orders``.

Every failure is a SOAP 1.1 Fault (HTTP 500; 413 too large, 429 over the rate) whose faultstring says
what to fix; ``soap:Client`` for the caller's mistakes, ``soap:Server`` for "try again later"
(Kafka/MongoDB down, over the rate limit: SOAP 1.1 §4.4.1, not the message's contents).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree

from connectors.base import Emit
from connectors.context import ConnectorContext
from connectors.registry import registry
from connectors.soap import xmlsafe
from connectors.soap.config import SoapSourceConfig
from connectors.soap.crypto import decrypt_request, redact_errors
from hub.cancel import CANCEL, withdraw_request
from hub.envelope import Envelope
from hub.errors import PermanentError, RetryableError, ValidationFailed
from hub.metrics import INTAKE_LATENCY, INTAKE_REQUESTS
from hub.partner_auth import shared_limiter
from hub.services import SERVICES
from hub.tracing import partner_trace
from transforms.crypto import keys_for

log = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST = "#PasswordDigest"
SOAP_PATH = "/soap/{partner}"
REPLAY_WINDOW_S = 300.0
TABLE = "soap"


class SoapFault(Exception):
    """A refusal as a SOAP 1.1 Fault; ``status``/``headers`` for the few that HTTP names (413, 429)."""

    def __init__(self, code: str, message: str, errors: list[dict[str, Any]] | None = None,
                 outcome: str = "rejected_invalid", status: int = 500, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.errors, self.outcome = code, message, errors or [], outcome
        self.status, self.headers = status, headers or {}


def fault_response(fault: SoapFault) -> web.Response:
    detail = ""
    if fault.errors:
        items = "".join(
            f"<error><field>{escape(str(e.get('field', '')))}</field><message>{escape(str(e.get('message', '')))}"
            f"</message></error>" for e in fault.errors
        )
        detail = f"<detail><errors>{items}</errors></detail>"
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
        f"<faultcode>soap:{fault.code}</faultcode><faultstring>{escape(fault.message)}</faultstring>{detail}"
        f"</soap:Fault></soap:Body></soap:Envelope>"
    )
    return web.Response(status=fault.status, body=body.encode(), content_type="text/xml", charset="utf-8",
                        headers=fault.headers or None)


def response_xml(ns: str, name: str, fields: dict[str, Any]) -> bytes:
    """``<tns:{name}>`` with child elements in the given order (None values omitted)."""
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "tns": ns})
    body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    el = etree.SubElement(body, f"{{{ns}}}{name}")
    for key, value in fields.items():
        if value is None:
            continue
        child = etree.SubElement(el, f"{{{ns}}}{key}")
        child.text = ("true" if value else "false") if isinstance(value, bool) else (
            value.isoformat() if isinstance(value, datetime) else str(value))
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


@dataclass(frozen=True)
class ServiceFiles:
    """What one endpoint serves from its files, read once (``SoapSource._load``)."""

    xsd: bytes
    schema: etree.XMLSchema
    namespace: str
    wsdl: bytes


@registry.source("soap", SoapSourceConfig, "SOAP 1.1 webservice the partner calls: /soap/{partner} (WSDL, XSD)")
class SoapSource:
    name: ClassVar[str] = "soap"

    def __init__(self, config: SoapSourceConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self._table = context.shared(TABLE)
        base = context.settings.config_dir
        self.wsdl_path = config.wsdl if config.wsdl.is_absolute() else base / config.wsdl
        self.xsd_path = config.xsd if config.xsd.is_absolute() else base / config.xsd
        #: the service address the WSDL publishes: from configuration, never from a request's Host
        self.address = config.public_url or f"{context.settings.public_base_url}/soap/{config.partner}"
        self._files: ServiceFiles | None = None  # read at start, in a thread (see _load)
        self.wsdl_renderings = 0
        self._emit: Emit | None = None
        self._lists = frozenset(config.list_elements)
        self._nonces: dict[bytes, float] = {}
        self.max_body_bytes = config.max_body_bytes or context.settings.intake_max_body_bytes
        # one bucket per partner across its REST and SOAP intakes (hub/partner_auth.py shared_limiter)
        self._limiter = (shared_limiter(context.shared("partner-rate"), config.partner, config.rate_limit)
                         if config.rate_limit else None)

    async def start(self, emit: Emit) -> None:
        if self._files is None:  # XSD and WSDL parsing is blocking XML work: off the loop
            self._files = await asyncio.to_thread(self._load)
        if self.config.crypto is not None:  # our private keys' checks take ~50 ms CPU: a thread; missing = not started
            await asyncio.to_thread(keys_for(self.config.crypto).warm)
        self._emit = emit
        self._table[self.config.partner] = self

    async def stop(self) -> None:
        if self._table.get(self.config.partner) is self:
            del self._table[self.config.partner]
        self._emit = None

    # --- WSDL and XSD ----------------------------------------------------------------------
    def _load(self) -> ServiceFiles:
        """Read the XSD (parsed once: validator and namespace) and render the WSDL once, with the
        configured address. Runs in a thread from ``start``; ``sample`` (a CLI dry run) calls it
        directly. Why not per request: the address is configuration, and a WSDL rendered per Host
        header let any caller grow an unbounded cache and publish a forged service address."""
        xsd = self.xsd_path.read_bytes()
        doc = etree.parse(str(self.xsd_path))  # trusted file from config (includes resolve beside it)
        tree = etree.parse(str(self.wsdl_path))
        for imp in tree.iter("{http://www.w3.org/2001/XMLSchema}import"):
            if imp.get("schemaLocation"):
                imp.set("schemaLocation", f"{self.address}?xsd")
        for addr in tree.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
            addr.set("location", self.address)
        self.wsdl_renderings += 1
        return ServiceFiles(xsd=xsd, schema=etree.XMLSchema(doc), namespace=doc.getroot().get("targetNamespace", ""),
                            wsdl=etree.tostring(tree, xml_declaration=True, encoding="utf-8"))

    def _loaded(self) -> ServiceFiles:
        if self._files is None:
            self._files = self._load()
        return self._files

    @property
    def schema(self) -> etree.XMLSchema:
        return self._loaded().schema

    @property
    def namespace(self) -> str:
        return self._loaded().namespace

    @property
    def xsd_bytes(self) -> bytes:
        return self._loaded().xsd

    def wsdl(self) -> bytes:
        """The WSDL as published: rendered once per endpoint, whoever asks and whatever Host they send."""
        return self._loaded().wsdl

    # --- auth ------------------------------------------------------------------------------
    def _authenticate(self, request: web.Request, envelope: etree._Element) -> None:
        auth = self.config.auth
        if auth.api_key is not None and auth.api_key.check(request.headers.get(auth.api_key.header)):
            return
        token = envelope.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None or not auth.wsse_users:
            raise SoapFault("Client", "authentication required: WS-Security UsernameToken"
                            + (f" or {auth.api_key.header} header" if auth.api_key else ""), outcome="rejected_auth")
        user = (token.findtext(f"{{{WSSE}}}Username") or "").strip()
        pw_el = token.find(f"{{{WSSE}}}Password")
        presented = (pw_el.text or "") if pw_el is not None else ""
        digest = pw_el is not None and (pw_el.get("Type") or "").endswith(DIGEST)
        ok = False
        nonce = _strict_nonce(token) if digest else b""
        for cand in auth.wsse_users:
            secret = cand.password.get_secret_value()
            if digest:
                created = token.findtext(f"{{{WSU}}}Created") or ""
                expect = base64.b64encode(hashlib.sha1(nonce + created.encode() + secret.encode()).digest()).decode()
            else:
                expect = secret
            ok |= hmac.compare_digest(cand.username.encode(), user.encode()) & hmac.compare_digest(
                expect.encode(), presented.encode())
        if not ok:
            raise SoapFault("Client", "authentication failed: unknown user or wrong password", outcome="rejected_auth")
        if digest:
            self._check_fresh(token, nonce)

    def _check_fresh(self, token: etree._Element, nonce: bytes) -> None:
        """PasswordDigest replay protection (WSS UsernameToken profile §4): ``Created`` within the
        window, and a nonce seen once per window (remembered per process) — by its decoded bytes,
        so another spelling of the same nonce is the same nonce."""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        try:
            at = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise SoapFault("Client", "WS-Security Created is not a timestamp", outcome="rejected_auth") from None
        now = time.time()
        if abs(now - at) > REPLAY_WINDOW_S:
            raise SoapFault("Client", f"WS-Security token expired (Created {created})", outcome="rejected_auth")
        for old_nonce, seen in list(self._nonces.items()):
            if now - seen > 2 * REPLAY_WINDOW_S:
                del self._nonces[old_nonce]
        if nonce in self._nonces:
            raise SoapFault("Client", "WS-Security nonce already used (replayed request)", outcome="rejected_auth")
        self._nonces[nonce] = now

    # --- one call --------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            response = await self._handle(request)
        except SoapFault as fault:
            INTAKE_REQUESTS.labels(self.config.partner, "soap", fault.outcome).inc()
            log.info("SOAP fault to %s: %s", self.config.partner, fault.message)
            return fault_response(fault)
        INTAKE_LATENCY.labels(self.config.partner, "soap").observe(time.perf_counter() - started)
        return response

    async def _read(self, request: web.Request) -> bytes:
        """The body, at most ``max_body_bytes`` (never buffered whole beyond it): over it 413 + fault."""
        limit = self.max_body_bytes
        too_large = SoapFault("Client", f"request exceeds the limit of {limit} bytes",
                              [{"field": "(body)", "message": f"larger than {limit} bytes"}],
                              outcome="rejected_too_large", status=413)
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _admit(self) -> None:
        """The partner's ``rate_limit`` (``hub.partner_auth.PartnerRateLimiter``, as the REST intake):
        checked once the caller is authenticated, so a stranger cannot spend a partner's budget."""
        if self._limiter is None or await self._limiter.admit():
            return
        limit, retry = self._limiter.limit, self._limiter.retry_after
        raise SoapFault("Server", f"over {limit.per_second:g} requests/s (burst {limit.burst}) for "
                        f"{self.config.partner}; retry after {retry} s", outcome="rejected_rate", status=429,
                        headers={"Retry-After": str(retry)})

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_type not in ("text/xml", "application/soap+xml"):
            raise SoapFault("Client", f"Content-Type must be text/xml (SOAP 1.1), got {request.content_type or 'none'}",
                            outcome="rejected_media_type")
        body = await self._read(request)
        try:
            root = xmlsafe.parse(body, self.ctx.settings.intake_max_depth)
        except xmlsafe.UnsafeXml as exc:
            raise SoapFault("Client", f"unsafe XML refused: {exc}", outcome="rejected_unsafe") from exc
        except ValidationFailed as exc:
            raise SoapFault("Client", str(exc)) from exc
        if root.tag != f"{{{SOAP_ENV}}}Envelope":
            raise SoapFault("VersionMismatch" if xmlsafe.local(root.tag) == "Envelope" else "Client",
                            "not a SOAP 1.1 Envelope (namespace http://schemas.xmlsoap.org/soap/envelope/)")
        self._authenticate(request, root)
        await self._admit()
        op, kind, req, data = self._request(_body_element(root), root, request.headers)
        ns = etree.QName(req.tag).namespace or self.namespace
        if kind == "status":
            return await self._status(ns, op, data)
        if kind == "withdraw":
            envelope = self._withdraw_envelope(data)
        else:
            envelope = self._order_envelope(op, data)
        if (trace := partner_trace(request.headers)) is not None:  # the partner's own trace continues
            envelope.trace = trace
        return await self._emit_and_answer(ns, op, envelope)

    def _request(self, req: etree._Element | None, root: etree._Element | None = None,
                 http_headers: Mapping[str, str] | None = None) -> tuple[str, str, etree._Element, dict[str, Any]]:
        """The Body's request element → (operation, kind, element, the partner's dict): the declared
        encrypted fields decrypted (the partner's crypto contract), then checked against the XSD —
        the one path live calls and ``sample`` share. SoapFault (``Client``) names what is wrong:
        for an encrypted field its name, never its value."""
        if req is None:
            raise SoapFault("Client", "empty SOAP Body")
        op = xmlsafe.local(req.tag)
        kind = self.config.operations.get(op)
        if kind is None:
            raise SoapFault("Client", f"unknown operation {op!r} (known: {', '.join(self.config.operations)})")
        fragment = etree.fromstring(etree.tostring(req))
        xpaths: dict[str, str] = {}
        if self.config.crypto is not None:
            try:
                decrypted = decrypt_request(self.config.crypto, fragment, root, http_headers or {}, self._lists)
            except ValidationFailed as exc:
                raise SoapFault("Client", f"{op}: {exc}", exc.errors) from exc
            data, xpaths = decrypted.data, decrypted.xpaths
        else:
            data = xmlsafe.to_dict(fragment, self._lists)
        if not self.schema.validate(fragment):
            errors = redact_errors([{"field": f"line {e.line}", "message": e.message} for e in self.schema.error_log],
                                   self.schema.error_log, xpaths)
            first = errors[0]["message"] if errors else "invalid"
            raise SoapFault("Client", f"{op}: request does not match the schema: {first}", errors)
        return op, kind, req, data

    def _order_envelope(self, op: str, data: dict[str, Any]) -> Envelope:
        return Envelope(
            type="order.received", source=self.config.partner, protocol="soap",
            correlation_id=f"soap-{self.config.partner}-{data.get('orderNo', '')}"[:128],
            idempotency_key=f"soap:{self.config.partner}:{op}:{data.get('orderNo', '')}",
            payload=data, headers={"soap-operation": op},
        )

    async def _emit_and_answer(self, ns: str, op: str, envelope: Envelope) -> web.Response:
        if self._emit is None:
            raise SoapFault("Server", "intake is stopping; retry later", outcome="unavailable")
        try:
            accepted = await self._emit(envelope)
        except ValidationFailed as exc:
            named = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors[:3])
            raise SoapFault("Client", f"{op}: {exc}" + (f" — {named}" if named else ""), exc.errors) from exc
        except PermanentError as exc:
            raise SoapFault("Client", f"{op}: {exc}") from exc
        except RetryableError as exc:
            log.warning("SOAP intake %s unavailable: %s", self.config.partner, exc)
            raise SoapFault("Server", "the request could not be stored durably; nothing was accepted — retry later",
                            outcome="unavailable") from exc
        INTAKE_REQUESTS.labels(self.config.partner, "soap", "duplicate" if accepted.duplicate else "accepted").inc()
        desc = "duplicate, already accepted" if accepted.duplicate else "accepted"
        if envelope.type == CANCEL:  # say which running order the withdraw interrupts
            desc = f"withdrawal of order {accepted.order_id} {desc}"
        xml = response_xml(ns, f"{op}Response", {
            "resultCode": "0", "resultDesc": desc,
            "orderId": accepted.order_id, "envelopeId": accepted.envelope_id, "duplicate": accepted.duplicate,
        })
        return web.Response(body=xml, content_type="text/xml", charset="utf-8")

    async def _find_order(self, external_id: str) -> dict[str, Any] | None:
        if self.ctx.db is None:
            raise SoapFault("Server", "order store unavailable; retry later", outcome="unavailable")
        try:
            return await self.ctx.db["orders"].find_one(
                {"partner": self.config.partner, "external_order_id": external_id}, sort=[("created_at", -1)])
        except Exception as exc:
            raise SoapFault("Server", "order store unavailable; retry later", outcome="unavailable") from exc

    def _withdraw_envelope(self, data: dict[str, Any]) -> Envelope:
        """撤单: the cancel of the running order ``orderNo`` names (issue 10 §5), not a new order. Which
        hub order that is, the route pipeline resolves (``hub.cancel.resolve_withdraw``), as for a
        withdraw arriving over REST, AMQP or SFTP."""
        return withdraw_request(source=self.config.partner, protocol="soap", external_order_id=str(data["orderNo"]),
                                reason=str(data.get("reason") or ""), by=self.config.partner,
                                headers={"soap-operation": "withdrawOrder"})

    def sample(self, raw: bytes) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): a SOAP request (or just its Body element) → the
        raw envelope, through ``_request`` and ``_order_envelope`` as a live call (safe parse, XSD);
        a fault is a ValidationFailed with the same message. ``status`` and ``withdraw`` read the
        order store, so they emit nothing here."""
        root = xmlsafe.parse(raw, self.ctx.settings.intake_max_depth)
        try:
            envelope = root.tag == f"{{{SOAP_ENV}}}Envelope"
            op, kind, _req, data = self._request(_body_element(root) if envelope else root, root if envelope else None)
        except SoapFault as fault:
            raise ValidationFailed(fault.message, fault.errors) from fault
        if kind != "order":
            return []
        return [self._order_envelope(op, data)]

    async def _status(self, ns: str, op: str, data: dict[str, Any]) -> web.Response:
        doc = await self._find_order(data["orderNo"])
        INTAKE_REQUESTS.labels(self.config.partner, "soap", "query").inc()
        if doc is None:
            fields: dict[str, Any] = {"resultCode": "1", "resultDesc": f"order {data['orderNo']!r} not found"}
        else:
            fields = {"resultCode": "0", "resultDesc": "ok", "orderId": doc.get("order_id", doc.get("_id")),
                      "status": doc.get("status"), "currentStage": doc.get("current_stage"),
                      "updatedAt": doc.get("updated_at")}
        return web.Response(body=response_xml(ns, f"{op}Response", fields), content_type="text/xml", charset="utf-8")


def _strict_nonce(token: etree._Element) -> bytes:
    """The UsernameToken's Nonce, base64-decoded strictly (RFC 4648 alphabet and padding, no
    whitespace). Why strict: the digest covers the decoded bytes, and a lenient decoder skips stray
    characters — ``abc!``, ``abc\\n`` and `` abc `` decode alike, so a replay re-spelled that way
    would pass a replay check on the text. A malformed or missing nonce is the caller's fault."""
    text = token.findtext(f"{{{WSSE}}}Nonce")
    if not text:
        raise SoapFault("Client", "WS-Security PasswordDigest requires a Nonce", outcome="rejected_auth")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SoapFault("Client", "WS-Security Nonce is not valid base64 (RFC 4648, no whitespace)",
                        outcome="rejected_auth") from None


def _body_element(root: etree._Element) -> etree._Element | None:
    """The first element in a SOAP Envelope's Body (the request), or None."""
    body_el = root.find(f"{{{SOAP_ENV}}}Body")
    return next((c for c in body_el if isinstance(c.tag, str)), None) if body_el is not None else None


async def dispatch(request: web.Request) -> web.Response:
    partner = request.match_info["partner"]
    source: SoapSource | None = request.app[ENDPOINTS].get(partner)
    if source is None:
        INTAKE_REQUESTS.labels("unknown", "soap", "rejected_unknown_partner").inc()
        return fault_response(SoapFault("Client", f"no SOAP service for partner {partner!r}"))
    if request.method in ("GET", "HEAD"):  # HEAD: GET's answer without its body (aiohttp drops it)
        if "wsdl" in request.query:
            return web.Response(body=source.wsdl(), content_type="text/xml", charset="utf-8")
        if "xsd" in request.query:
            return web.Response(body=source.xsd_bytes, content_type="text/xml", charset="utf-8")
        return web.Response(status=400, text="GET ?wsdl or ?xsd; POST SOAP 1.1 requests\n")
    return await source.handle(request)


ENDPOINTS: web.AppKey[dict[str, Any]] = web.AppKey("soap_endpoints", dict)


def add_routes(app: web.Application) -> None:
    """Mount ``/soap/{partner}``; the endpoint table is the runtime's (sources come and go at run time)."""
    runtime = app[SERVICES]
    app[ENDPOINTS] = runtime.connector_tables.setdefault(TABLE, {})
    app.router.add_get(SOAP_PATH, dispatch)
    app.router.add_post(SOAP_PATH, dispatch)
