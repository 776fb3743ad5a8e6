"""Console sign-in: an admin token becomes a session cookie; every state-changing form carries a CSRF token.

Why a signed cookie and not a session table: the cookie is ``payload.mac`` where ``mac`` is an
HMAC of the payload (name, expiry, nonce) keyed with **the admin token's own secret**. So a session
survives a restart and works on every hub process behind a load balancer, nothing is stored, and
removing or rotating a token (``HUB_ADMIN_TOKENS``) ends its sessions at once. The role is read from
the token configured *now*, never from the cookie, so a demoted token's sessions lose the role.

The cookie is HttpOnly (scripts cannot read it), SameSite=Strict (no other site's page can make the
browser send it) and Secure when the request came over TLS. The CSRF token is a second HMAC over
the session's nonce (the synchronizer-token pattern, nothing stored either): a form or a ``fetch``
must send it back (field ``_csrf`` or header ``X-CSRF-Token``), so even a same-site page that cannot
read the page's HTML cannot post. Sign-out revokes the nonce in this process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pymongo.errors import PyMongoError

from hub.auth import PRINCIPAL, Principal, Role, authenticate
from hub.settings import AdminToken

COOKIE = "hub_console"
LANG_COOKIE = "hub_console_lang"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_S = 8 * 3600
#: nonces signed out in this process (a signed cookie cannot be recalled otherwise); bounded by expiry
_REVOKED: dict[str, float] = {}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    principal: Principal
    nonce: str
    expires: float
    csrf: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(token: AdminToken, purpose: str, message: str) -> str:
    key = token.token.get_secret_value().encode("utf-8", "surrogateescape")
    return _b64(hmac.new(key, f"console-{purpose}|{message}".encode(), hashlib.sha256).digest())


def issue(token: AdminToken, *, now: float | None = None) -> str:
    """The cookie value of a new session for ``token``."""
    payload = _b64(json.dumps({"n": token.name, "e": int((now or time.time()) + SESSION_S),
                               "s": secrets.token_urlsafe(12)}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(token, 'session', payload)}"


def verify(tokens: list[AdminToken], cookie: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie proves, or None (unsigned, tampered, expired, signed out, token gone)."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, mac = cookie.split(".")
    try:
        claims = json.loads(_unb64(payload))
        name, expires, nonce = str(claims["n"]), float(claims["e"]), str(claims["s"])
    except (ValueError, KeyError, TypeError):
        return None
    now = now or time.time()
    if expires < now or nonce in _REVOKED:
        return None
    found: AdminToken | None = None
    for t in tokens:  # every token of that name is tried: no early exit on the first
        if t.name == name and hmac.compare_digest(_mac(t, "session", payload), mac):
            found = t
    if found is None:
        return None
    return Session(Principal(found.name, found.role), nonce, expires, _mac(found, "csrf", nonce))


def revoke(session: Session) -> None:
    now = time.time()
    for nonce, until in list(_REVOKED.items()):
        if until < now:
            del _REVOKED[nonce]
    _REVOKED[session.nonce] = session.expires


def sign_in(tokens: list[AdminToken], presented: str) -> AdminToken | None:
    """The configured token matching what the operator typed (constant time, hub.auth's rule)."""
    principal = authenticate(tokens, f"Bearer {presented.strip()}")
    if principal is None:
        return None
    return next(t for t in tokens if t.name == principal.name and t.role == principal.role
                and hmac.compare_digest(t.token.get_secret_value(), presented.strip()))


def set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_S, path="/console", httponly=True, samesite="Strict",
                        secure=request.secure)


def clear_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console", secure=request.secure, httponly=True, samesite="Strict")


SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)
PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(role: Role, tokens: Callable[[web.Request], list[AdminToken]]) -> Callable[[PageHandler], PageHandler]:
    """A console page or action: a valid session, the role, and on a POST the CSRF token.

    A page (GET) without a session redirects to the sign-in page; an action (POST) is refused with a
    problem document: 401 no session, 403 CSRF token missing or wrong, 403 role too low. Checked here,
    on the server, for every action — hiding a button is only a courtesy."""

    def wrap(handler: PageHandler) -> PageHandler:
        async def checked(request: web.Request) -> web.StreamResponse:
            from hub.problem import problem

            session = verify(tokens(request), request.cookies.get(COOKIE))
            if session is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/console/login?next={_quote(request.rel_url.path_qs)}")
                return problem(401, "Unauthorized", "sign in to the console first")
            if request.method != "GET":
                sent = request.headers.get(CSRF_HEADER)
                if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                             "multipart/form-data"):
                    sent = str((await request.post()).get(CSRF_FIELD) or "")
                if not sent or not hmac.compare_digest(sent, session.csrf):
                    return problem(403, "Forbidden", "CSRF token missing or wrong; reload the page")
            if not session.principal.may(role):
                return problem(403, "Forbidden",
                               f"role {session.principal.role!r} may not do this; {role!r} required")
            request[SESSION] = session
            request[PRINCIPAL] = session.principal
            started = time.perf_counter()
            try:
                response = await handler(request)
            except PyMongoError as exc:  # a query over its time budget: say so, not a bare 500
                log.warning("console %s %s: database error %r", request.method, request.path, exc)
                return problem(503, "Service Unavailable", "the database did not answer in time; narrow the "
                               "filter (e.g. since) or retry", headers={"Retry-After": "5"})
            if not response.prepared:  # a streamed export has sent its headers already
                response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response

        checked.__name__ = getattr(handler, "__name__", "console")
        checked.__doc__ = handler.__doc__
        return checked

    return wrap


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def safe_next(target: Any) -> str:
    """Where to go after sign-in: only a console path (never another site: an open redirect)."""
    text = str(target or "")
    return text if text.startswith("/console") and not text.startswith("//") and "\\" not in text else "/console"
