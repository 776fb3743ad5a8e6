"""Partner declarations (``config/partners/*.yaml``): who a partner is, how it authenticates to
the hub, what its orders look like, and (for outbound) how the hub reaches it.

Adding a partner is writing one YAML file; nothing here special-cases a partner by name.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag, field_validator

from hub.configfile import load_dir
from hub.cryptocontract import CryptoContract
from hub.errors import ConfigError
from hub.order import Scenario
from hub.partner_auth import ClientCertAuth, HmacAuth, RateLimit
from hub.retry import Outbound


class ApiKeyAuth(BaseModel):
    """Shared-secret API key sent in a header. Keys come from the environment (``${VAR:-dev}``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["api_key"] = "api_key"
    header: str = Field(default="X-Api-Key", min_length=1, max_length=64)
    keys: list[SecretStr] = Field(min_length=1, description="accepted keys; several allow rotation")

    @field_validator("keys")
    @classmethod
    def _non_empty(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(len(k.get_secret_value()) < 8 for k in keys):
            raise ValueError("API keys must be at least 8 characters")
        return keys

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        ok = False
        for key in self.keys:  # constant time, and no early exit that would leak which key matched
            ok |= hmac.compare_digest(_raw(presented), _raw(key.get_secret_value()))
        return ok


def _raw(text: str) -> bytes:
    """The bytes a header carried: aiohttp decodes header bytes that are not UTF-8 as surrogate
    escapes, which a plain ``encode()`` refuses (a non-ASCII key was a 500, not a 401)."""
    return text.encode("utf-8", "surrogateescape")


Outbound.model_rebuild(_types_namespace={"ApiKeyAuth": ApiKeyAuth})


def _auth_kind(value: Any) -> str:
    """``kind`` of an auth block; absent = ``api_key`` (every partner file before HMAC existed)."""
    if isinstance(value, dict):
        return str(value.get("kind", "api_key"))
    return str(getattr(value, "kind", "api_key"))


#: a partner's REST auth: ``kind: api_key`` (default), ``kind: hmac`` or ``kind: client_cert`` (hub/partner_auth.py)
PartnerAuth = Annotated[
    Annotated[ApiKeyAuth, Tag("api_key")] | Annotated[HmacAuth, Tag("hmac")]
    | Annotated[ClientCertAuth, Tag("client_cert")],
    Discriminator(_auth_kind),
]


class OrderSchema(BaseModel):
    """What a partner may send over REST: allowed products and scenarios (admission, not mapping —
    a partner's field names and codes are mapped by a route ``transform``, see ``Inbound.transform``)."""

    model_config = ConfigDict(extra="forbid")

    products: list[str] = Field(default_factory=list, description="allowed products; empty = any")
    scenarios: list[Scenario] = Field(default_factory=lambda: list(Scenario))


class RestInbound(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    auth: PartnerAuth
    rate_limit: RateLimit | None = Field(default=None, description="per-partner limit; over it ⇒ 429 + Retry-After")
    max_body_bytes: int | None = Field(default=None, ge=1024, description="defaults to HUB_INTAKE_MAX_BODY_BYTES")


class Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rest: RestInbound | None = None
    order_schema: OrderSchema = Field(default_factory=OrderSchema)
    transform: dict[str, Any] | None = Field(
        default=None,
        description="the partner's field names and codes → canonical ones, for the REST route this file "
                    "implies: a route ``transform`` block (field_map, value_map, strict_values, defaults, "
                    "python, drop), validated by the route model when that route is built",
        examples=[{"field_map": {"orderId": "external_order_id", "custName": "customer.name"},
                   "value_map": {"scenario": {"1": "open", "2": "change"}}}],
    )


class Partner(BaseModel):
    """One partner system."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    display_name: str = ""
    inbound: Inbound | None = None
    outbound: Outbound | None = Field(
        default=None, description="how the hub calls this partner (protocol, policy, operations, callbacks)"
    )
    sensitive_fields: list[str] = Field(
        default_factory=lambda: [
            "customer.name",
            "customer.contact_name",
            "customer.contact_phone",
            "customer.id_number",
            "addresses.detail",
        ],
        description="canonical paths masked in logs and listings (SPEC §7)",
    )
    crypto: CryptoContract | None = Field(
        default=None, description="per-field encryption with this partner (docs/security.md, Per-field encryption)"
    )


def load_partners(config_dir: Path) -> dict[str, Partner]:
    """Load ``config_dir/partners/*.yaml``; file names must match partner names."""
    loaded = load_dir(config_dir / "partners", Partner)
    partners: dict[str, Partner] = {}
    problems = []
    for path, partner in loaded.items():
        if path.stem != partner.name:
            problems.append(f"{path}: name: {partner.name!r} does not match the file name {path.stem!r}")
        partners[partner.name] = partner
    if problems:
        raise ConfigError("invalid partner configuration", problems)
    return partners
