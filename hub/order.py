"""The canonical work order: what every partner's order becomes inside the hub.

Partner payloads are mapped onto this model (``transforms/``); flows only ever see this shape.
Fields follow the documents (SPEC §3, §5): product + scenario select the blueprint; fusion fields
drive the "one visit" aggregation; ``extensions`` keeps a partner's free fields untouched.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Scenario(StrEnum):
    """Order scenarios named by ESOP and 一编 (开通、变更、暂停、恢复、移机、扩容、缩容、拆除、勘查、撤单、过户)."""

    open = "open"
    change = "change"
    suspend = "suspend"
    resume = "resume"
    move = "move"
    scale_up = "scale_up"
    scale_down = "scale_down"
    terminate = "terminate"
    survey = "survey"
    withdraw = "withdraw"
    transfer_owner = "transfer_owner"


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, max_length=64)
    name: str = Field(min_length=1, max_length=200, description="sensitive: masked in logs and listings")
    contact_name: str | None = Field(default=None, max_length=100, description="sensitive")
    contact_phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$", description="sensitive")
    id_number: str | None = Field(default=None, max_length=32, description="sensitive")


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(default="install", pattern=r"^(install|a_end|z_end|billing|other)$")
    province: str | None = Field(default=None, max_length=32)
    city: str = Field(min_length=1, max_length=64)
    district: str | None = Field(default=None, max_length=64)
    detail: str = Field(min_length=1, max_length=300, description="sensitive")


class Fusion(BaseModel):
    """"One visit" grouping (seeds/001): wait for ``related_count`` orders sharing ``fusion_key``."""

    model_config = ConfigDict(extra="forbid")

    fusion_key: str = Field(min_length=1, max_length=64)
    is_fusion: bool = True
    related_count: int = Field(ge=1, le=100)
    related_order_ids: list[str] = Field(default_factory=list, max_length=100)


class WorkOrder(BaseModel):
    """A work order as the hub understands it, whatever protocol or partner it came from."""

    model_config = ConfigDict(extra="forbid")

    external_order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    product: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$", examples=["internet_line", "5g_lan"])
    scenario: Scenario
    customer: Customer
    addresses: list[Address] = Field(default_factory=list, max_length=20)
    bandwidth_mbps: int | None = Field(default=None, ge=1, le=400_000)
    access_type: str | None = Field(default=None, pattern=r"^(PON|PTN|SPN|OTN|fiber|other)$")
    fusion: Fusion | None = None
    requested_at: datetime | None = None
    extensions: dict[str, Any] = Field(default_factory=dict, description="partner fields kept as they came")

    @model_validator(mode="after")
    def _fusion_ids(self) -> WorkOrder:
        if self.fusion and len(self.fusion.related_order_ids) > self.fusion.related_count:
            raise ValueError("fusion.related_order_ids has more entries than fusion.related_count")
        return self


def idempotency_key(partner: str, external_order_id: str, scenario: str) -> str:
    """Same partner + external id + scenario = the same order (delivered twice ⇒ processed once)."""
    return f"order:{partner}:{external_order_id}:{scenario}"


def order_id_for(partner: str, external_order_id: str, scenario: str) -> str:
    """Deterministic hub order id, so a redelivery or a replay can never create a second order."""
    digest = hashlib.sha256(idempotency_key(partner, external_order_id, scenario).encode()).hexdigest()
    return f"ord-{digest[:20]}"
