"""Shared by the crypto tests: contracts over the test keys in tests/fixtures/keys (test keys only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.cryptocontract import CryptoContract

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
ORDER_FIELDS = ["customer.name", "customer.contact_name", "customer.contact_phone", "customer.id_number",
                "addresses.detail"]


def key(name: str) -> str:
    return str(KEYS / name)


def contract(**overrides: Any) -> CryptoContract:
    """Our side: we call the partner (its public key) and receive from it (our two keys, a rotation)."""
    data: dict[str, Any] = {
        "cipher": "aes", "mode": "gcm",
        "partner_keys": [{"id": "partner-2026a", "file": key("test-partner-2026a.pub.pem")}],
        "our_keys": [{"id": "hub-2026b", "file": key("test-hub-2026b.key.pem")},
                     {"id": "hub-2026a", "file": key("test-hub-2026a.key.pem")}],
        "fields": {"createOrder": {"request": ORDER_FIELDS, "response": ["customer.id_number"]}},
        "inbound_fields": ORDER_FIELDS,
    }
    data.update(overrides)
    return CryptoContract.model_validate(data)


def mirror(ours: CryptoContract) -> CryptoContract:
    """The partner's side of the same contract: our request fields are its inbound fields, its
    private key unwraps, our public key is what it wraps with."""
    data = ours.model_dump()
    data["our_keys"] = [{"id": "partner-2026a", "file": key("test-partner-2026a.key.pem")}]
    data["partner_keys"] = [{"id": "hub-2026b", "file": key("test-hub-2026b.pub.pem")}]
    data["inbound_fields"] = [p for f in ours.fields.values() for p in f.request]
    data["fields"] = {"createOrder": {"request": ours.inbound_fields, "response": []}}
    return CryptoContract.model_validate(data)


def order() -> dict[str, Any]:
    return {"external_order_id": "E-1", "product": "internet_line", "scenario": "open",
            "customer": {"name": "张三 Acme", "contact_name": "李四", "contact_phone": "13800138000",
                         "id_number": "110101199003077777"},
            "addresses": [{"city": "Hangzhou", "detail": "1 Wensan Rd"}, {"city": "Ningbo", "detail": "2 Zhongshan"}]}
