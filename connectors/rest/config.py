"""Configuration of the REST connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hub.cryptocontract import CryptoContract
from hub.partner_auth import RateLimit
from hub.partners import OrderSchema, PartnerAuth


class RestSourceConfig(BaseModel):
    """Inbound REST: ``POST /api/v1/partners/{partner}/orders`` for one partner."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$", examples=["esop", "group"])
    auth: PartnerAuth
    rate_limit: RateLimit | None = Field(
        default=None, description="requests/s and burst for this partner; over it ⇒ 429 with Retry-After")
    order_schema: OrderSchema = Field(default_factory=OrderSchema)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    sensitive_fields: list[str] = Field(default_factory=list)
    crypto: CryptoContract | None = Field(
        default=None, description="the partner's crypto contract: its inbound_fields are decrypted before mapping")
