"""The replay history (``dlq_actions.patch``) masks patch values by classification, array indexes
included (issue 17 probe: ``/order/addresses/0/detail`` and a phone outside ``customer.*`` were
stored in clear, because the pointer became ``order.addresses.0.detail``, which matched no path)."""

from __future__ import annotations

import pytest

from app.admin.patch import parse_patch
from app.admin.queries import Queries
from app.runtime import Runtime
from tests.integration.test_dlq import seed, service

pytestmark = pytest.mark.integration

DETAIL = "漏检路 4417 号"
SECOND = "漏检街 2208 号"
MANAGER_PHONE = "13977106542"


async def test_replay_history_masks_patch_values_on_array_paths_and_by_field_name(runtime: Runtime) -> None:
    letter = await seed(runtime, "ord-mask-patch")
    patch = parse_patch(
        '[{"op": "add", "path": "/order/addresses", "value": [{"city": "杭州", "detail": "old"}]},'
        f' {{"op": "replace", "path": "/order/addresses/0/detail", "value": "{DETAIL}"}},'
        f' {{"op": "add", "path": "/order/addresses/-", "value": {{"city": "宁波", "detail": "{SECOND}"}}}},'
        f' {{"op": "add", "path": "/order/construction", "value": {{"manager_phone": "{MANAGER_PHONE}"}}}}]')
    result = await service(runtime).replay_one(letter.id, who="test:carol", patch=patch, reason="address fixed")
    assert result.result == "ok", result

    (entry,) = await Queries(runtime.db, runtime.partners).history(dead_letter_id=letter.id)  # type: ignore[arg-type]
    recorded = repr(entry["patch"])
    for value in (DETAIL, SECOND, MANAGER_PHONE):
        assert value not in recorded, f"{value!r} in clear in the replay history: {recorded}"
    ops = entry["patch"]
    assert ops[1]["value"] == "漏********号" and ops[2]["value"]["city"] == "宁波"  # hinted, siblings kept
    assert [op["path"] for op in ops] == ["/order/addresses", "/order/addresses/0/detail", "/order/addresses/-",
                                          "/order/construction"]
