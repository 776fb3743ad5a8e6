"""Admin API authentication: a bearer token identifies an operator and carries one role.

Roles are ordered — ``viewer`` may list and show; ``operator`` may also replay, discard and retry.
Tokens come from settings (``admin_tokens``: ``config/hub.yaml`` dev defaults, overridden by
``HUB_ADMIN_TOKENS``); comparison is constant time over every configured token. The token's
``name`` is the "who" of the audit trail (``dlq_actions``).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Literal

from aiohttp import web

from hub.problem import problem
from hub.settings import AdminToken

Role = Literal["viewer", "operator"]
RANK: dict[str, int] = {"viewer": 1, "operator": 2}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("admin_principal", Principal)


def authenticate(tokens: list[AdminToken], authorization: str | None) -> Principal | None:
    """The principal for an ``Authorization: Bearer …`` header, or None."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    # surrogateescape: header bytes that are not UTF-8 arrive as surrogates (a plain encode() was a 500)
    presented = authorization[len("Bearer "):].strip().encode("utf-8", "surrogateescape")
    found: AdminToken | None = None
    for t in tokens:  # no early exit: timing does not reveal which token matched
        if hmac.compare_digest(presented, t.token.get_secret_value().encode("utf-8", "surrogateescape")):
            found = t
    return Principal(found.name, found.role) if found else None


def requires(role: Role, tokens: Callable[[web.Request], list[AdminToken]]) -> Callable[[Handler], Handler]:
    """Decorator: 401 without a valid token, 403 when the token's role is below ``role``."""

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = authenticate(tokens(request), request.headers.get("Authorization"))
            if principal is None:
                return problem(401, "Unauthorized", "a valid admin bearer token is required",
                               headers={"WWW-Authenticate": 'Bearer realm="hub-admin"'})
            if not principal.may(role):
                return problem(403, "Forbidden", f"role {principal.role!r} may not do this; {role!r} required")
            request[PRINCIPAL] = principal
            return await handler(request)

        return guarded

    return wrap
