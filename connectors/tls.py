"""TLS contexts, built in one place (issue 17 §4): the hub's HTTPS listener and every outbound
client (the REST sink; the SOAP sink can pass :func:`client_context` to httpx as ``verify=``).

Why one module: the rules are the same everywhere and easy to get subtly wrong one call site at a
time — TLS 1.2 at least, no compression, no renegotiation, and *only* the configured CA bundle is
trusted where one is given (``ssl.create_default_context(cafile=…)`` would add the system store too,
so any public CA could then vouch for a partner, or for a client of ours). Verification is never
off unless a partner's file says ``insecure_skip_verify: true`` in so many words, which production
refuses (``hub/profiles.py``) and every start logs as a WARNING.

Building a context reads files and parses keys: callers run it in a thread at start
(``asyncio.to_thread``), so a missing or bad file fails the start (``ConfigError``), never a request.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.errors import ConfigError

log = logging.getLogger(__name__)

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class OutboundTls(BaseModel):
    """``tls:`` of a partner's outbound config: how the hub checks the partner's server and, for
    mutual TLS, which certificate it presents."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = Field(
        default=None, description="PEM bundle the partner's server certificate must chain to; only it is trusted "
                                  "(not the system store). Unset: the system store")
    client_cert: Path | None = Field(default=None, description="PEM certificate (chain) the hub presents (mutual TLS)")
    client_key: Path | None = Field(default=None, description="PEM private key of client_cert (unencrypted)")
    server_hostname: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.*-]+$",
        description="the name the server certificate must carry, when base_url uses another (an IP address)")
    insecure_skip_verify: bool = Field(
        default=False, description="accept ANY server certificate: tests and labs only; refused in production, "
                                   "logged as a WARNING at every start")

    @model_validator(mode="after")
    def _pairs(self) -> OutboundTls:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        if self.insecure_skip_verify and (self.ca_file is not None or self.server_hostname is not None):
            raise ValueError("insecure_skip_verify checks nothing: ca_file and server_hostname would be ignored")
        return self


def _hardened(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The HTTPS listener's context. With ``client_ca`` clients are *asked* for a certificate
    (``CERT_OPTIONAL``): one that does not chain to ``client_ca`` fails the handshake; a client
    without one gets through TLS and is then judged by its partner's auth (``kind: client_cert``
    answers 401; API key and HMAC partners need no certificate)."""
    context = _hardened(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("TLS listener: cannot load the certificate and key",
                          [f"HUB_HTTP_TLS_CERT={cert}, HUB_HTTP_TLS_KEY={key}: {exc}"]) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("TLS listener: cannot load the client CA bundle",
                              [f"HUB_HTTP_TLS_CLIENT_CA={client_ca}: {exc}"]) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(tls: OutboundTls | None, partner: str = "") -> ssl.SSLContext:
    """An outbound client's context: the partner's CA bundle only (else the system store),
    hostname checked, its client certificate for mutual TLS."""
    if tls is None or tls.ca_file is None:
        context = _hardened(ssl.create_default_context(ssl.Purpose.SERVER_AUTH))
    else:
        context = _hardened(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # verifies and checks the hostname
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS to {partner or 'partner'}: cannot load the CA bundle",
                              [f"tls.ca_file={tls.ca_file}: {exc}"]) from None
    if tls is not None and tls.client_cert is not None and tls.client_key is not None:
        try:
            context.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS to {partner or 'partner'}: cannot load the client certificate",
                              [f"tls.client_cert={tls.client_cert}, tls.client_key={tls.client_key}: {exc}"]) from None
    if tls is not None and tls.insecure_skip_verify:
        log.warning("TLS to %s: insecure_skip_verify is set: ANY server certificate is accepted "
                    "(no authentication of the partner; refused in production)", partner or "partner")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def is_tls_refusal(exc: BaseException) -> bool:
    """Did a call fail because TLS refused it (a certificate not trusted, a hostname mismatch, our
    client certificate refused, no common protocol) rather than the network? Such a failure is
    configuration, and answers the same next time: the sinks do not retry it."""
    seen: BaseException | None = exc
    for _ in range(5):  # aiohttp wraps the ssl error (ClientConnectorCertificateError, ClientOSError)
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
            return False  # the connection ended mid-handshake: a network fault (or an overloaded peer)
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        certificate_error = getattr(seen, "certificate_error", None)
        if isinstance(certificate_error, BaseException):
            return True
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return False
