"""Outbound REST (aiohttp): one partner operation = method + path + optional request template +
the partner's success rule. Registered as sink ``rest``.

The sink makes exactly one attempt and classifies the answer (``Outcome``); retry, backoff,
dead-lettering and dedupe wrap it in ``app/delivery.py``. Over HTTPS it trusts the partner's
``tls.ca_file`` only and may present a client certificate (``connectors/tls.py``); a call TLS
refuses (certificate not trusted, wrong name, our certificate refused) is ``status: tls``, not
retried: it is configuration, and fails the same way until someone changes it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.registry import registry
from connectors.tls import OutboundTls, client_context, is_tls_refusal
from hub.cryptocontract import CryptoContract
from hub.envelope import Envelope
from hub.errors import ConfigError, ValidationFailed
from hub.retry import SuccessRule
from hub.templates import render
from transforms.crypto import decrypt_response, encrypt_request, keys_for

MAX_KEPT_BODY = 4096


class RestOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["POST", "PUT", "PATCH"] = "POST"
    path: str = Field(pattern=r"^/", examples=["/api/stage-report"])
    template: dict[str, Any] | None = Field(
        default=None, description="partner body built from the hub's canonical request ({dotted.path} placeholders)"
    )
    success: SuccessRule = Field(default_factory=SuccessRule)


class OutboundApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header: str = Field(default="X-Api-Key", min_length=1, max_length=64)
    key: SecretStr


class RestSinkConfig(BaseModel):
    """``outbound.config`` of a REST partner."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", examples=["https://resource.example.com/api"])
    auth: OutboundApiKey | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    operations: dict[str, RestOperation] = Field(min_length=1)
    crypto: CryptoContract | None = Field(
        default=None, description="set from the partner's crypto: block (app/delivery.py), not written here")
    tls: OutboundTls | None = Field(
        default=None, description="the partner's CA bundle, the hub's client certificate (mTLS), the server "
                                  "name to check (connectors/tls.py); unset: the system store")

    @model_validator(mode="after")
    def _tls_needs_https(self) -> RestSinkConfig:
        if self.tls is not None and not self.base_url.startswith("https://"):
            raise ValueError("tls is given but base_url is not https://: nothing would use it")
        return self


def _retryable_status(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


@registry.sink("rest", RestSinkConfig, "HTTP JSON call to a partner operation; success by status / answer field")
class RestSink:
    name: ClassVar[str] = "rest"

    def __init__(self, config: RestSinkConfig, context: ConnectorContext) -> None:
        self.config = config
        self.timeout_s = context.timeout_s
        self.concurrency = context.concurrency
        self._production = context.settings.profile == "production"
        self._name = context.route or config.base_url
        self._session: aiohttp.ClientSession | None = None

    async def _tls(self) -> ssl.SSLContext | bool:
        """The connection's TLS context (connectors/tls.py), built in a thread at start: a missing CA
        or key fails the start, not a call. ``True``: aiohttp's default (plain HTTP, or system CAs)."""
        tls = self.config.tls
        if tls is None:
            return True
        if tls.insecure_skip_verify and self._production:  # hub/profiles.py refuses it first; never silently
            raise ConfigError(f"{self._name}: tls.insecure_skip_verify is refused in production")
        return await asyncio.to_thread(client_context, tls, self._name)

    async def start(self) -> None:
        if self._session is None:
            if self.config.crypto is not None:  # the keys' checks take ~50 ms CPU: a thread, and fail at start
                await asyncio.to_thread(keys_for(self.config.crypto).warm)
            tls = await self._tls()
            if self._session is not None:  # another delivery started it meanwhile
                return
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency, ssl=tls),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                json_serialize=lambda o: json.dumps(o, ensure_ascii=False, default=str),
            )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, envelope: Envelope) -> Outcome:
        operation = envelope.payload.get("operation", "")
        op = self.config.operations.get(operation)
        if op is None:
            return Outcome(ok=False, status="rejected", error=f"operation {operation!r} not configured")
        await self.start()
        assert self._session is not None
        request = envelope.payload.get("request", {})
        body = render(op.template, request) if op.template is not None else request
        headers = {**self.config.headers, "Idempotency-Key": envelope.idempotency_key,
                   "X-Hub-Order-Id": envelope.correlation_id, "traceparent": envelope.trace.traceparent}
        if self.config.auth is not None:
            headers[self.config.auth.header] = self.config.auth.key.get_secret_value()
        session = None
        if self.config.crypto is not None:  # after mapping: the declared fields of the partner's body
            try:
                body, sealed, session = encrypt_request(self.config.crypto, operation, body)
            except (ConfigError, ValidationFailed) as exc:
                return Outcome(ok=False, status="rejected", error=f"cannot encrypt the request: {exc}")
            headers.update(sealed)
        url = self.config.base_url.rstrip("/") + op.path
        hostname = self.config.tls.server_hostname if self.config.tls is not None else None
        started = time.perf_counter()
        try:
            async with self._session.request(op.method, url, json=body, headers=headers,
                                             server_hostname=hostname) as resp:
                text = await resp.text()
                status = resp.status
        except TimeoutError:
            return Outcome(ok=False, retryable=True, status="timeout", error=f"no answer within {self.timeout_s}s",
                           duration_ms=_ms(started))
        except aiohttp.ClientError as exc:
            if is_tls_refusal(exc):  # configuration (CA, name, our certificate), not the network: not retried
                return Outcome(ok=False, retryable=False, status="tls", error=f"TLS refused with {url}: {exc}",
                               duration_ms=_ms(started))
            return Outcome(ok=False, retryable=True, status="error", error=f"{type(exc).__name__}: {exc}",
                           duration_ms=_ms(started))
        try:
            answer: Any = json.loads(text) if text else None
        except ValueError:
            answer = text[:MAX_KEPT_BODY]
        if session is not None and self.config.crypto is not None and answer is not None:
            try:
                answer = decrypt_response(self.config.crypto, session, answer)
            except ValidationFailed as exc:  # the partner's answer, not ours: it will not decrypt next time either
                return Outcome(ok=False, status="rejected", error=f"answer does not decrypt: {exc}",
                               response={"http_status": status}, duration_ms=_ms(started), details={"request": body})
        ok, error = op.success.judge(status, answer)
        if ok and op.success.http_status is None and not 200 <= status < 300:
            ok, error = False, f"HTTP {status}"
        retryable = not ok and (_retryable_status(status) or (op.success.reject_retryable and status < 400))
        return Outcome(ok=ok, retryable=retryable, status="ok" if ok else "rejected", error=error,
                       response={"http_status": status, "body": answer}, duration_ms=_ms(started),
                       details={"request": body})


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
