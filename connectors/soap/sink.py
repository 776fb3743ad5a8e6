"""Outbound SOAP 1.1 (zeep ``AsyncClient`` over ``AsyncTransport``/httpx). Registered as sink ``soap``.

The WSDL ships as a file under ``config/`` and is loaded once, in a thread (zeep parses WSDLs
synchronously; a WSDL URL served by the same event loop would hang). The service address comes
from config so one WSDL serves test, staging and production. The idempotency key travels as the
``Idempotency-Key`` HTTP header (set per call through a context variable read by an httpx hook).

With the partner's crypto contract the declared request fields are encrypted *after* the
operation's template (paths are the WSDL's parameter names), the wrapped key / IV / key id go as
HTTP headers (``via: header``), SOAP header elements (``via: soap_header``) or parameters
(``via: field``), and the declared answer fields are decrypted with the request's key before the
success rule reads them — as the REST sink does; an answer that does not decrypt is a rejected call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field
from zeep import AsyncClient, Settings
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError
from zeep.helpers import serialize_object
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport

from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.registry import registry
from connectors.soap.crypto import header_elements
from connectors.tls import OutboundTls, client_context, is_tls_refusal
from hub.cryptocontract import CryptoContract
from hub.envelope import Envelope
from hub.errors import ConfigError, ValidationFailed
from hub.retry import SuccessRule
from hub.templates import render
from transforms.crypto import decrypt_response, encrypt_request, keys_for

# zeep's transport logs every SOAP body at DEBUG — customer fields included (SPEC §7) and, measured,
# 13 % of the worker's CPU under load even when nothing is printed. Keep it at INFO.
logging.getLogger("zeep.transports").setLevel(logging.INFO)

_CALL_HEADERS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "soap_call_headers", default=None
)


class SoapOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: str = Field(min_length=1, examples=["notifyOrderResult"], description="WSDL operation name")
    template: dict[str, Any] | None = Field(default=None, description="operation parameters from the canonical request")
    success: SuccessRule = Field(default_factory=SuccessRule)


class SoapSinkConfig(BaseModel):
    """``outbound.config`` of a SOAP partner."""

    model_config = ConfigDict(extra="forbid")

    wsdl: str = Field(min_length=1, examples=["wsdl/esop.wsdl"], description="file, relative to the config folder")
    address: str | None = Field(default=None, pattern=r"^https?://", description="overrides the WSDL's address")
    binding: str | None = Field(default=None, examples=["{http://esop.example.com/ws}EsopBinding"])
    operations: dict[str, SoapOperation] = Field(min_length=1)
    crypto: CryptoContract | None = Field(
        default=None, description="set from the partner's crypto: block (app/delivery.py), not written here")
    tls: OutboundTls | None = Field(
        default=None, description="the partner's CA bundle and the hub's client certificate (connectors/tls.py)")


async def _add_headers(request: httpx.Request) -> None:
    request.headers.update(_CALL_HEADERS.get() or {})


@registry.sink("soap", SoapSinkConfig, "SOAP 1.1 call (zeep) to an operation of a shipped WSDL")
class SoapSink:
    name: ClassVar[str] = "soap"

    def __init__(self, config: SoapSinkConfig, context: ConnectorContext) -> None:
        self.config = config
        self.timeout_s = context.timeout_s
        self.concurrency = context.concurrency
        wsdl = Path(config.wsdl)
        self.wsdl_path = wsdl if wsdl.is_absolute() else context.settings.config_dir / wsdl
        self._client: AsyncClient | None = None
        self._service: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._client is not None:
                return
            if self.config.crypto is not None:  # the keys' checks take ~50 ms CPU: a thread, and fail at start
                await asyncio.to_thread(keys_for(self.config.crypto).warm)
            self._client, self._service = await asyncio.to_thread(self._build)

    def _build(self) -> tuple[AsyncClient, Any]:
        """The zeep client and its service proxy, built in a worker thread.

        Why all of it off the loop: zeep parses the WSDL synchronously, and the httpx client loads
        the system CA bundle into an SSL context (~90 ms CPU) — both would stall every other
        partner's deliveries and the intake while a SOAP sink starts (tests/loopcheck.py)."""
        http = httpx.AsyncClient(
            timeout=self.timeout_s, event_hooks={"request": [_add_headers]},
            limits=httpx.Limits(max_connections=self.concurrency),
            verify=client_context(self.config.tls, self.config.address or "") if self.config.tls else True,
        )
        if self.config.tls is not None and self.config.tls.server_hostname:  # never ignored silently
            raise ConfigError("SOAP sink: tls.server_hostname is not supported; address the partner by that name")
        client = AsyncClient(str(self.wsdl_path), transport=AsyncTransport(client=http), settings=Settings(strict=True))
        if self.config.address:
            binding = client.wsdl.bindings[self.config.binding or next(iter(client.wsdl.bindings))]
            return client, AsyncServiceProxy(client, binding, address=self.config.address)
        return client, client.service

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.transport.aclose()
            self._client = None

    async def deliver(self, envelope: Envelope) -> Outcome:
        operation = envelope.payload.get("operation", "")
        op = self.config.operations.get(operation)
        if op is None:
            return Outcome(ok=False, status="rejected", error=f"operation {operation!r} not configured")
        await self.start()
        request = envelope.payload.get("request", {})
        params = render(op.template, request) if op.template is not None else request
        http_headers = {"Idempotency-Key": envelope.idempotency_key, "X-Hub-Order-Id": envelope.correlation_id,
                        "traceparent": envelope.trace.traceparent}
        extra: dict[str, Any] = {}
        session = None
        crypto = self.config.crypto
        if crypto is not None:  # after mapping: the declared fields of the operation's parameters
            try:
                params, sealed, session = encrypt_request(crypto, operation, params)
            except (ConfigError, ValidationFailed) as exc:
                return Outcome(ok=False, status="rejected", error=f"cannot encrypt the request: {exc}")
            if crypto.carry.via == "soap_header" and sealed:
                extra["_soapheaders"] = header_elements(crypto, sealed)
            else:
                http_headers.update(sealed)
        token = _CALL_HEADERS.set(http_headers)
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(self._service[op.operation](**params, **extra), self.timeout_s)
        except TimeoutError:
            return Outcome(ok=False, retryable=True, status="timeout", error=f"no answer within {self.timeout_s}s",
                           duration_ms=_ms(started))
        except Fault as exc:
            server_side = str(exc.code or "").endswith("Server")
            return Outcome(ok=False, retryable=server_side, status="fault", error=f"SOAP Fault {exc.code}: {exc}",
                           duration_ms=_ms(started))
        except TransportError as exc:
            return Outcome(ok=False, retryable=exc.status_code >= 500 or exc.status_code == 429, status="error",
                           error=f"HTTP {exc.status_code}", duration_ms=_ms(started))
        except (httpx.HTTPError, OSError) as exc:
            if is_tls_refusal(exc):  # configuration (CA, name, our certificate), not the network (connectors/tls.py)
                return Outcome(ok=False, status="tls", error=f"TLS refused: {exc}", duration_ms=_ms(started))
            return Outcome(ok=False, retryable=True, status="error", error=f"{type(exc).__name__}: {exc}",
                           duration_ms=_ms(started))
        except (ZeepError, TypeError, ValueError) as exc:  # bad parameters / unparsable answer: will not improve
            return Outcome(ok=False, retryable=False, status="rejected", error=f"{type(exc).__name__}: {exc}",
                           duration_ms=_ms(started))
        finally:
            _CALL_HEADERS.reset(token)
        answer = _plain(serialize_object(result, dict))
        if session is not None and crypto is not None and answer is not None:
            try:
                answer = decrypt_response(crypto, session, answer)
            except ValidationFailed as exc:  # the partner's answer, not ours: it will not decrypt next time either
                return Outcome(ok=False, status="rejected", error=f"answer does not decrypt: {exc}",
                               duration_ms=_ms(started), details={"request": params})
        ok, error = op.success.judge(None, answer)
        return Outcome(ok=ok, retryable=not ok and op.success.reject_retryable, status="ok" if ok else "rejected",
                       error=error, response=answer, duration_ms=_ms(started), details={"request": params})


def _plain(value: Any) -> Any:
    """zeep answers contain OrderedDicts / Decimals; keep JSON-friendly types for MongoDB and Kafka."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
