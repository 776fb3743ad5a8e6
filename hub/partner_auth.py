"""Partner request signatures (HMAC-SHA256) and per-partner rate limits (issue 17 §5).

Why a signature on top of an API key: a key travels in every request, so anyone who sees one
request can send any other; a signature binds the secret to *this* method, path, body and
moment, and the nonce makes each signature usable once.

Canonical string (UTF-8, lines joined by ``\\n``, no trailing newline)::

    METHOD            upper case, e.g. POST
    PATH              the request path as sent, without query string, e.g. /api/v1/partners/esop/orders
    TIMESTAMP         X-Hub-Timestamp: Unix seconds, decimal
    NONCE             X-Hub-Nonce: 16-64 characters of [A-Za-z0-9_-], new for every request
    BODY-SHA256       lower-case hex SHA-256 of the raw body (of b"" when there is none)

``X-Hub-Signature`` = lower-case hex HMAC-SHA256(secret, canonical string), optionally prefixed
``sha256=``. A timestamp further than ``max_skew_s`` from our clock, a nonce already seen within
the window, a wrong signature, or a missing header: 401.

``kind: client_cert`` (issue 17 §4-5): the partner is the TLS client certificate it presented on
the hub's HTTPS listener. The handshake has already checked that the certificate chains to
``HUB_HTTP_TLS_CLIENT_CA`` (an unverifiable one never gets that far); here it must also be the
partner's: its SHA-256 fingerprint among ``fingerprints`` and/or a name (subject CN or a SAN: DNS,
URI, e-mail) among ``subjects`` — each list given must match — and, with ``ca_file``, issued by
that CA (the listener's bundle may hold several partners' CAs, each able to issue any name).

Memory bound of the nonce cache: at most ``max_nonces`` entries (nonce ≤ 64 chars + a float,
≈ 200 bytes each: 100,000 entries ≈ 20 MB worst case). A nonce is remembered ``2 × max_skew_s``
from when it was seen (≥ its timestamp + skew, so it cannot be replayed while still fresh); only
requests with a *valid* signature enter the cache, so filling it needs the secret. When full of
unexpired nonces the request is refused (fail closed, 429) rather than forgetting a nonce early.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiolimiter import AsyncLimiter
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.errors import ConfigError

TIMESTAMP_HEADER = "X-Hub-Timestamp"
NONCE_HEADER = "X-Hub-Nonce"
SIGNATURE_HEADER = "X-Hub-Signature"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class HmacAuth(BaseModel):
    """``kind: hmac`` — the partner signs each request with a shared secret (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hmac"]
    secret: SecretStr = Field(description="shared secret, ≥ 32 characters; from the environment "
                                          "(``${HUB_<PARTNER>_HMAC_SECRET}``), dev- values refused in production")
    max_skew_s: int = Field(default=300, ge=5, le=3600, description="accepted clock difference, seconds")
    max_nonces: int = Field(default=100_000, ge=100, le=10_000_000,
                            description="nonce cache bound (entries); full of unexpired nonces ⇒ 429")

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < 32:
            raise ValueError("an HMAC secret must be at least 32 characters")
        return secret

    @property
    def header(self) -> str:
        """The header a 401 names (the same attribute api-key auth has)."""
        return SIGNATURE_HEADER


CLIENT_CERT_CHALLENGE = 'TLS-Client-Certificate realm="hub"'
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class ClientCertAuth(BaseModel):
    """``kind: client_cert`` — the partner is the TLS client certificate it presents (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["client_cert"]
    subjects: list[str] = Field(
        default_factory=list, description="accepted names: the certificate's subject CN or one of its SANs "
                                          "(DNS, URI, e-mail), exact, DNS names case-insensitive")
    fingerprints: list[str] = Field(
        default_factory=list, description="accepted SHA-256 fingerprints of the certificate (hex, colons allowed)")
    ca_file: Path | None = Field(
        default=None, description="PEM file of the CA(s) that must have issued the certificate directly "
                                  "(HUB_HTTP_TLS_CLIENT_CA may trust other partners' CAs too)")

    @field_validator("fingerprints")
    @classmethod
    def _hex(cls, fingerprints: list[str]) -> list[str]:
        out = [f.replace(":", "").strip().lower() for f in fingerprints]
        if any(not _FINGERPRINT.match(f) for f in out):
            raise ValueError("a fingerprint is the certificate's SHA-256: 64 hex digits (colons allowed)")
        return out

    @model_validator(mode="after")
    def _something(self) -> ClientCertAuth:
        if not self.subjects and not self.fingerprints:
            raise ValueError("client_cert needs subjects or fingerprints (a CA alone would admit all it signs)")
        return self

    @property
    def header(self) -> str:
        """What a 401 names (the attribute the other kinds have)."""
        return "client certificate"


class ClientCertVerifier:
    """One partner's certificate check: ``verify(ssl_object)`` on each request. The ``ca_file`` is
    read once (a few KB), when the verifier is made. Decisions are remembered per certificate
    (``DECISIONS`` most recent, ≈ 1 KB each): reading a certificate's names costs ~170 µs, and a
    partner sends many requests with the same certificate, often on new connections."""

    DECISIONS = 256

    def __init__(self, auth: ClientCertAuth) -> None:
        self.auth = auth
        self._subjects = {s.lower() for s in auth.subjects}
        self._decided: OrderedDict[bytes, Refusal | None] = OrderedDict()
        self._issuers: list[x509.Certificate] = []
        if auth.ca_file is not None:
            try:
                self._issuers = x509.load_pem_x509_certificates(auth.ca_file.read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigError("client_cert: cannot read the partner's CA",
                                  [f"ca_file={auth.ca_file}: {exc}"]) from None

    def verify(self, ssl_object: Any) -> Refusal | None:
        """None when the connection's verified peer certificate is the partner's; else why not.
        ``ssl_object``: the connection's ``ssl.SSLObject`` (None over plain HTTP)."""
        if ssl_object is None:
            return Refusal(401, "a client certificate is required: connect over HTTPS and present it",
                           challenge=CLIENT_CERT_CHALLENGE)
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        # the listener asks for certificates only with a client CA, and then a presented certificate
        # that does not chain to it fails the handshake: one that got here with verification on is verified
        if der is None or ssl_object.context.verify_mode == ssl.CERT_NONE:
            return Refusal(401, "no verified client certificate presented", challenge=CLIENT_CERT_CHALLENGE)
        if der in self._decided:
            self._decided.move_to_end(der)
            return self._decided[der]
        decision = self._decide(der)
        self._decided[der] = decision
        if len(self._decided) > self.DECISIONS:
            self._decided.popitem(last=False)
        return decision

    def _decide(self, der: bytes) -> Refusal | None:
        cert = x509.load_der_x509_certificate(der)
        fingerprint = hashlib.sha256(der).hexdigest()
        names = certificate_names(cert)
        problem = None
        if self.auth.fingerprints and fingerprint not in self.auth.fingerprints:
            problem = "its fingerprint is not among the partner's"
        elif self.auth.subjects and not self._subjects.intersection(n.lower() for n in names):
            problem = "no subject name of it is among the partner's"
        elif self._issuers and not any(_issued_by(cert, ca) for ca in self._issuers):
            problem = "it was not issued by the partner's CA"
        if problem is None:
            return None
        return Refusal(401, f"client certificate not accepted: {problem}", challenge=CLIENT_CERT_CHALLENGE,
                       log_detail=f"subject {cert.subject.rfc4514_string()!r}, names {sorted(names)}, "
                                  f"sha256 {fingerprint}")


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The names a certificate carries: subject CN(s) and SAN DNS names, URIs and e-mail addresses."""
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    for kind in (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name):
        names.update(san.get_values_for_type(kind))
    return names


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class RateLimit(BaseModel):
    """Requests per second and burst for one partner (a leaky bucket, ``aiolimiter``)."""

    model_config = ConfigDict(extra="forbid")

    per_second: float = Field(gt=0, le=100_000, description="sustained requests per second")
    burst: int = Field(default=1, ge=1, le=100_000, description="requests accepted at once above the rate")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_string(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """What is signed: method, path, timestamp, nonce, SHA-256 of the body (module docstring)."""
    return "\n".join((method.upper(), path, timestamp, nonce, body_digest(body)))


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value a partner sends (also used by tests and partner docs)."""
    message = canonical_string(method, path, timestamp, nonce, body).encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, method: str, path: str, body: bytes, *, timestamp: int | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """The three headers a partner sends with a request (its client side: the demo, the tests, the
    benchmark and the partner docs' example), now and with a fresh nonce unless given."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    return {TIMESTAMP_HEADER: stamp, NONCE_HEADER: nonce,
            SIGNATURE_HEADER: sign(secret, method, path, stamp, nonce, body)}


class NonceCache:
    """Nonces seen, each until ``ttl`` after it was seen; at most ``size`` entries.

    Entries are kept in insertion order with expiry = seen + ttl, so expiries are monotonic and
    the expired ones are always at the front: purging is O(expired)."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str) -> Literal["new", "replay", "full"]:
        now = self._clock()
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return "replay"
        if len(self._seen) >= self._size:
            return "full"
        self._seen[nonce] = now + self._ttl
        return "new"


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP status and a detail safe to send back, and the rest of the
    answer (one place for it: the REST intake and the callbacks answer alike)."""

    status: int
    detail: str
    retry_after: int = 1
    challenge: str = f'HMAC-SHA256 header="{SIGNATURE_HEADER}"'  # WWW-Authenticate of a 401
    log_detail: str = ""  # for the log line only (what the certificate was): not sent back

    @property
    def outcome(self) -> str:
        """The ``hub_intake_requests_total`` outcome."""
        return "rejected_rate" if self.status == 429 else "rejected_auth"

    @property
    def title(self) -> str:
        return "Too Many Requests" if self.status == 429 else "Unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 429:
            return {"Retry-After": str(self.retry_after)}
        return {"WWW-Authenticate": self.challenge}

    @property
    def logged(self) -> str:
        """The log line's text: the detail, and what was presented where that helps an operator."""
        return f"{self.detail} ({self.log_detail})" if self.log_detail else self.detail


class HmacVerifier:
    """One partner's signature check with its nonce cache (runtime state next to the config)."""

    def __init__(self, auth: HmacAuth, wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.auth = auth
        self._wall = wall_clock
        self.nonces = NonceCache(2 * auth.max_skew_s, auth.max_nonces, clock)

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Refusal | None:
        """None when the request is signed, fresh and not replayed; else why not."""
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        presented = headers.get(SIGNATURE_HEADER, "")
        if not (timestamp and nonce and presented):
            return Refusal(401, f"{TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER} headers are required")
        if not timestamp.isdigit() or len(timestamp) > 12:
            return Refusal(401, f"{TIMESTAMP_HEADER} must be Unix seconds")
        if abs(self._wall() - int(timestamp)) > self.auth.max_skew_s:
            return Refusal(401, f"{TIMESTAMP_HEADER} is more than {self.auth.max_skew_s} s from the hub's clock")
        if not _NONCE.match(nonce):
            return Refusal(401, f"{NONCE_HEADER} must be 16-64 characters of A-Z a-z 0-9 _ -")
        presented = presented.removeprefix("sha256=")
        expected = sign(self.auth.secret.get_secret_value(), method, path, timestamp, nonce, body)
        if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode()):
            return Refusal(401, f"invalid {SIGNATURE_HEADER}")
        seen = self.nonces.add(nonce)
        if seen == "replay":
            return Refusal(401, f"{NONCE_HEADER} already used (replay)")
        if seen == "full":
            return Refusal(429, "too many signed requests in the replay window", retry_after=2 * self.auth.max_skew_s)
        return None


class Verifiers:
    """One :class:`HmacVerifier` per partner, kept across requests (its nonce cache is the replay
    memory); a reloaded partner file is a new auth block and gets a fresh verifier. Likewise one
    :class:`ClientCertVerifier` and one :class:`PartnerRateLimiter` (its bucket) per partner.
    Bounded by the number of partners."""

    def __init__(self) -> None:
        self._by_partner: dict[str, HmacVerifier] = {}
        self._certs: dict[str, ClientCertVerifier] = {}
        self._limits: dict[str, PartnerRateLimiter] = {}

    def get(self, partner: str, auth: HmacAuth) -> HmacVerifier:
        verifier = self._by_partner.get(partner)
        if verifier is None or verifier.auth is not auth:
            verifier = self._by_partner[partner] = HmacVerifier(auth)
        return verifier

    def client_cert(self, partner: str, auth: ClientCertAuth) -> ClientCertVerifier:
        verifier = self._certs.get(partner)
        if verifier is None or verifier.auth is not auth:
            verifier = self._certs[partner] = ClientCertVerifier(auth)
        return verifier

    def limiter(self, partner: str, limit: RateLimit) -> PartnerRateLimiter:
        limiter = self._limits.get(partner)
        if limiter is None or limiter.limit is not limit:
            limiter = self._limits[partner] = PartnerRateLimiter(limit)
        return limiter


def shared_limiter(table: dict[str, Any], partner: str, limit: RateLimit) -> PartnerRateLimiter:
    """The partner's one bucket for all its request intakes (REST and SOAP) in this process.

    Why shared: with a bucket per route a partner with a REST and a SOAP intake was allowed its rate
    on each (twice its rate in all). ``table`` is the runtime's shared connector table, so a route
    reloaded with the same limit keeps the bucket's level; a route that sets another limit gets its
    own bucket (what its file says, for its requests only).
    """
    limiter = table.get(partner)
    if not isinstance(limiter, PartnerRateLimiter) or limiter.limit != limit:
        limiter = PartnerRateLimiter(limit)
        if partner not in table:
            table[partner] = limiter
    return limiter


class PartnerRateLimiter:
    """Non-blocking per-partner limit: a request over the rate is refused now (429), never queued."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._bucket = AsyncLimiter(limit.burst, limit.burst / limit.per_second)

    @property
    def retry_after(self) -> int:
        """Whole seconds until one more request fits (Retry-After has second resolution)."""
        return max(1, math.ceil(1 / self.limit.per_second))

    async def admit(self) -> bool:
        if not self._bucket.has_capacity():
            return False
        await self._bucket.acquire()  # has capacity: returns without waiting
        return True

    async def wait(self) -> None:
        """Wait until one more request fits: for an intake that can slow down instead of refusing
        (an AMQP consumer: what does not fit yet stays in the partner's queue)."""
        await self._bucket.acquire()
