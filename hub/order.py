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
    """Order scenarios named by ESOP and 一编 (开通、变更、暂停、恢复、移机、扩容、缩容、停闭、勘查、撤单、过户) and
    every scenario the catalogue rows use (below: the Chinese and the rows). Values are English snake_case;
    a blueprint's ``scenario`` must be one of them (hub/partners.py order_schema, the intake)."""

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
    transfer_owner = "transfer_owner"  # 过户 (P23.4, P24.2)
    # --- product catalogues I and II (CATALOGUE P01–P40, D.3, D.4; issues 11, 12) ---
    remove = "remove"  # 拆除/拆机 (P07.5, P25.4, P26.3, P30.3–P32.3); terminate stays 停闭
    unsubscribe = "unsubscribe"  # 退订 (P01.10, P23.7, P34.2, P35.7)
    change_survey = "change_survey"  # 变更勘察 (P06.3, P08.4, P09.2, P10.2, P11.5)
    password_change = "password_change"  # 密码变更 (P01.2)
    concurrency_up = "concurrency_up"  # 并发数扩容 (P01.8)
    concurrency_down = "concurrency_down"  # 并发数减容 (P01.9)
    credit_suspend = "credit_suspend"  # 信控停机 (P11.1, P12)
    credit_resume = "credit_resume"  # 信控复机 (P11.2, P12)
    credit_cancel = "credit_cancel"  # 信控注销 (P11.3, P12)
    cloud_network_merge = "cloud_network_merge"  # 云网融合 资源预占 + 配置下发, net / cloud / both sides (P16)
    elastic_scale = "elastic_scale"  # 弹性扩缩容 (P17.2, P18.2)
    upgrade = "upgrade"  # 规格升档 (P20.2)
    downgrade = "downgrade"  # 规格减档 (P20.3)
    change_approval = "change_approval"  # 变更工单审批 (P21.2)
    bandwidth_change = "bandwidth_change"  # 带宽变更 (P21.3)
    ip_change = "ip_change"  # IP变更 (P21.4)
    site_delete = "site_delete"  # 站点删减 (P21.5)
    site_add = "site_add"  # 站点新增 (P21.6)
    install = "install"  # 装维 (P22.1 云电脑装维 from 云能)
    duration_change = "duration_change"  # 变更时长 (P23.2)
    ai_open = "ai_open"  # AI服务开通 (P23.9, P35.1)
    ai_unsubscribe = "ai_unsubscribe"  # AI服务退订 (P23.10, P35.2)
    camera_type = "camera_type"  # 摄像头应用类型 (P23.11, P35.4)
    food_chain = "food_chain"  # 浙食链扩展信息 (P23.12, P35.5)
    ne_data = "ne_data"  # 大区 SMF/UDM/PCF 网元数据 → 集团局管 (P25.5, P30.4)
    order_return = "order_return"  # 退单 after network change, with approval and undo (P26.4)
    wireless_params = "wireless_params"  # 无线参数下发 (P36.1)
    anomaly_check = "anomaly_check"  # 无线结果异常识别 (P36.2)
    cutover = "cutover"  # 集客PON割接 (P37)
    network_join = "join"  # 家客驻地网 入网 (P38); not named join: that is str.join
    adjust = "adjust"  # 家客驻地网 调整 (P38)
    leave = "leave"  # 家客驻地网 退网 (P38)
    hang_test = "hang_test"  # 家客驻地网 挂测 / ONU test (P39)
    onu_replace = "onu_replace"  # ONU故障更换 (P40)
    member_sync = "member_sync"  # IoT 配合省 receives the members from 一级BBOSS (D.3.2(2))
    delivery_test = "delivery_test"  # 交付测试: 本地测试 → 本地竣工 → 全程测试 → 全程竣工 (D.4)


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
