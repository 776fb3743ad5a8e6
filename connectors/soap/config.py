"""Configuration of the inbound SOAP connector (the hub as a webservice a partner calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.cryptocontract import CryptoContract
from hub.partner_auth import RateLimit
from hub.partners import ApiKeyAuth


class WsseUser(BaseModel):
    """One WS-Security UsernameToken login (PasswordText or PasswordDigest)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=8)


class SoapAuth(BaseModel):
    """How the partner proves who it is: WS-Security UsernameToken, an API key header, or either."""

    model_config = ConfigDict(extra="forbid")

    wsse_users: list[WsseUser] = Field(default_factory=list)
    api_key: ApiKeyAuth | None = None

    @model_validator(mode="after")
    def _some(self) -> SoapAuth:
        if not self.wsse_users and self.api_key is None:
            raise ValueError("declare wsse_users and/or api_key: an unauthenticated webservice is not allowed")
        return self


OperationKind = Literal["order", "withdraw", "status"]


def _default_operations() -> dict[str, OperationKind]:
    """The shipped ESOP inbound WSDL's operations (a function, not a lambda: mypy infers a lambda's dict
    as ``dict[str, str]``)."""
    return {"receiveWorkOrder": "order", "withdrawOrder": "withdraw", "queryOrderStatus": "status"}


class SoapSourceConfig(BaseModel):
    """Inbound SOAP 1.1: ``GET /soap/{partner}?wsdl`` publishes the WSDL, ``POST /soap/{partner}`` serves it.

    ``operations`` maps each WSDL operation (the request element's local name) to what the hub
    does with it: ``order`` (emit a work order), ``withdraw`` (撤单: emit a withdraw of a known
    order), ``status`` (answer from MongoDB ``orders``).
    """

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$", examples=["esop"])
    wsdl: Path = Field(description="WSDL file (relative: to the config folder)",
                       examples=["wsdl/hub-esop-inbound.wsdl"])
    xsd: Path = Field(description="XSD the requests are validated against", examples=["wsdl/hub-esop-inbound.xsd"])
    auth: SoapAuth
    operations: dict[str, OperationKind] = Field(
        default_factory=_default_operations,
    )
    list_elements: list[str] = Field(
        default_factory=lambda: ["address"], description="element names that are always lists (maxOccurs > 1)"
    )
    max_body_bytes: int | None = Field(
        default=None, ge=1024, description="largest request accepted (over it: 413 and a fault); "
        "default HUB_INTAKE_MAX_BODY_BYTES")
    rate_limit: RateLimit | None = Field(
        default=None, description="requests/s and burst for this partner's SOAP calls; over it ⇒ 429 with "
        "Retry-After and a soap:Server fault; default the partner's inbound.rest.rate_limit")
    crypto: CryptoContract | None = Field(
        default=None, description="the partner's crypto contract (set from its crypto: block): inbound_fields are "
        "decrypted before the XSD validates the request")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^?#]+$", examples=["https://hub.example.com/soap/esop"],
        description="service address the WSDL publishes (partners POST there); default "
        "{HUB_PUBLIC_URL}/soap/{partner}. Configuration, never the caller's Host header.")
