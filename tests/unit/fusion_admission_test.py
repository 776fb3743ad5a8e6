"""Intake checks of the four fusion fields (issue 13 §1): what one order is refused for, and that the
check is registered with the intake (app/plugins.py ADMISSION_MODULES)."""

from __future__ import annotations

from typing import Any

import pytest

from app import plugins
from flows.fusion.admission import admission, problems
from hub.envelope import Envelope
from hub.errors import ValidationFailed


def order(**fusion: Any) -> dict[str, Any]:
    return {"external_order_id": "E-1", "fusion": {"fusion_key": "F-1", **fusion}}


@pytest.mark.parametrize(("fusion", "field", "text"), [
    ({"related_count": 1}, "fusion.related_count", "related_count >= 2"),
    ({"related_count": 2, "related_order_ids": ["E-2", "E-2"]}, "fusion.related_order_ids", "twice"),
    ({"related_count": 2, "related_order_ids": ["E-2", "E-3"]}, "fusion.related_order_ids", "make 3 orders"),
    ({"is_fusion": False, "related_count": 3}, "fusion.is_fusion", "is_fusion is false"),
])
def test_refused_with_the_reason(fusion: dict[str, Any], field: str, text: str) -> None:
    found = problems(order(**fusion))
    assert [p["field"] for p in found] == [field] and text in found[0]["message"]


@pytest.mark.parametrize("fusion", [
    {"related_count": 2, "related_order_ids": ["E-1", "E-2"]},  # the whole group
    {"related_count": 3, "related_order_ids": ["E-2", "E-3"]},  # the other members
    {"related_count": 4},  # ids not sent
    {"is_fusion": False, "related_count": 1},
])
def test_admitted(fusion: dict[str, Any]) -> None:
    assert problems(order(**fusion)) == []
    assert problems({"external_order_id": "E-1"}) == []


def test_the_intake_runs_it() -> None:
    assert "flows.fusion.admission" in plugins.ADMISSION_MODULES
    admit = admission(None)
    env = Envelope(type="order.received", source="esop", protocol="rest", correlation_id="O1",
                   idempotency_key="order:esop:E-1:open", payload=order(related_count=1))
    with pytest.raises(ValidationFailed, match="fusion group F-1: a fusion order needs related_count >= 2"):
        admit(env)
