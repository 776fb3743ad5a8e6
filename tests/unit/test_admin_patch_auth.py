"""Unit tests: JSON patch before replay, admin token roles, listing masks, time filters, percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from app.admin.patch import PatchError, apply_patch, parse_patch
from app.admin.queries import DeadLetterFilter, OrderFilter, masker, parse_when, percentile
from hub.auth import authenticate
from hub.partners import Partner
from hub.settings import AdminToken, parse_admin_tokens

PAYLOAD = {"order": {"customer": {"name": "Zhang San", "contact_phone": "13800001111"}, "lines": [1, 2]}}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ([{"op": "replace", "path": "/order/customer/contact_phone", "value": "139"}],
         {"order": {"customer": {"name": "Zhang San", "contact_phone": "139"}, "lines": [1, 2]}}),
        ([{"op": "add", "path": "/order/lines/-", "value": 3}, {"op": "remove", "path": "/order/lines/0"}],
         {"order": {"customer": {"name": "Zhang San", "contact_phone": "13800001111"}, "lines": [2, 3]}}),
        ([{"op": "test", "path": "/order/lines/1", "value": 2}, {"op": "move", "from": "/order/lines", "path": "/l"}],
         {"order": {"customer": {"name": "Zhang San", "contact_phone": "13800001111"}}, "l": [1, 2]}),
        ([{"op": "copy", "from": "/order/customer/name", "path": "/who"}],
         {**PAYLOAD, "who": "Zhang San"}),
    ],
)
def test_patch_applies_rfc6902_operations(patch: list[dict], expected: dict) -> None:
    assert apply_patch(PAYLOAD, parse_patch(patch)) == expected
    assert PAYLOAD["order"]["lines"] == [1, 2]  # the original is never modified


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ([{"op": "test", "path": "/order/lines/0", "value": 9}], "value differs"),
        ([{"op": "replace", "path": "/order/missing", "value": 1}], "does not exist"),
        ([{"op": "remove", "path": "/order/lines/7"}], "out of range"),
        ([{"op": "replace", "path": "/order/x"}], "'value' is required"),
        ([{"op": "frobnicate", "path": "/x"}], "not a JSON patch"),
        ('{"op": "add"}', "not a JSON patch"),
    ],
)
def test_patch_that_does_not_apply_is_rejected_whole(patch: object, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        apply_patch(PAYLOAD, parse_patch(patch))  # type: ignore[arg-type]


def test_admin_tokens_from_env_string_and_roles() -> None:
    tokens = [AdminToken.model_validate(t) for t in parse_admin_tokens(
        "alice:operator:aaaaaaaaaaaaaaaaaaaa, bob:viewer:bbbbbbbbbbbbbbbbbbbb")]
    alice = authenticate(tokens, "Bearer aaaaaaaaaaaaaaaaaaaa")
    bob = authenticate(tokens, "Bearer bbbbbbbbbbbbbbbbbbbb")
    assert alice is not None and alice.name == "alice" and alice.may("operator")
    assert bob is not None and bob.may("viewer") and not bob.may("operator")
    assert authenticate(tokens, "Bearer cccccccccccccccccccc") is None
    assert authenticate(tokens, "aaaaaaaaaaaaaaaaaaaa") is None  # not a bearer header
    assert authenticate(tokens, None) is None
    with pytest.raises(ValueError, match="name:role:token"):
        parse_admin_tokens("alice-operator")


def test_short_or_unknown_role_tokens_are_invalid() -> None:
    with pytest.raises(ValueError):
        AdminToken(name="x", role="viewer", token=SecretStr("short"))
    with pytest.raises(ValueError):
        AdminToken.model_validate({"name": "x", "role": "admin", "token": "x" * 20})


def test_listing_mask_covers_every_anchor_and_partner_paths() -> None:
    partner = Partner(name="bank", sensitive_fields=["account.number"])
    m = masker({"bank": partner})
    doc = {
        "envelope": {"payload": {"order": {"customer": {"name": "Zhang San", "id_number": "110101199001011234"}},
                                 "account": {"number": "6222020200112233"}}},
        "order": {"addresses": [{"detail": "1 Chang'an Avenue", "city": "Beijing"}]},
        "request": {"credentials": {"password": "hunter2"}},
    }
    out = m(doc)
    text = repr(out)
    for secret in ("Zhang San", "110101199001011234", "6222020200112233", "Chang'an", "hunter2"):
        assert secret not in text
    assert out["order"]["addresses"][0]["city"] == "Beijing"  # non-sensitive kept
    assert out["envelope"]["payload"]["order"]["customer"]["name"].startswith("Z")  # a hint stays


def test_time_filters_accept_durations_and_iso_times() -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert parse_when("90m", now=now) == now - timedelta(minutes=90)
    assert parse_when("2026-11-22T18:00") == datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
    q = DeadLetterFilter(partner="esop", since="2026-11-22T18:00", until="2026-11-23T06:00").query(now)
    # "pending" (the default status) is dead, or claimed by a replay whose lease lapsed (hub.deadletter)
    assert q["partner"] == "esop" and q["status"] == {"$in": ["dead", "replaying"]}
    assert q["lease_until"] == {"$not": {"$gt": now}}
    assert q["created_at"] == {"$gte": datetime(2026, 11, 22, 18, tzinfo=UTC), "$lt": now}
    assert OrderFilter(overdue=True).query(now)["sla_deadline"] == {"$lt": now}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_listing_mask_reaches_nested_call_requests_and_envelopes() -> None:
    m = masker({})
    order_view = {
        "order": {"customer": {"name": "测试客户"}},
        "calls": [{"request": {"orderId": "E-1", "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}]},
                   "envelope": {"payload": {"request": {"customer": {"contact_phone": "13800001111"}}}}}],
    }
    out = m(order_view)
    assert "测试客户" not in repr(out) and "文一西路" not in repr(out) and "13800001111" not in repr(out)
    request = out["calls"][0]["request"]
    assert request["orderId"] == "E-1" and request["addresses"][0]["city"] == "杭州"
    assert order_view["order"]["customer"]["name"] == "测试客户"  # the input is not modified


async def test_rate_limiter_spaces_acquisitions_evenly() -> None:
    import time

    from app.admin.replay import RateLimiter

    limiter = RateLimiter(50)  # 20 ms apart
    started = time.perf_counter()
    for _ in range(11):
        await limiter.acquire()
    assert time.perf_counter() - started >= 0.2 - 0.005  # 10 intervals after the first, which is immediate
    unlimited = RateLimiter(None)
    started = time.perf_counter()
    for _ in range(1000):
        await unlimited.acquire()
    # 1,000 acquisitions at 50/s would take 20 s; 2 s of wall time leaves room for a loaded CI machine
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ([{"op": "add", "path": "/order/customer/name/x", "value": 1}], r"'x' is below a scalar"),
        ([{"op": "add", "path": "/order/lines/x", "value": 1}], r"'x' is not an array index"),
        ([{"op": "add", "path": "/order/lines/3", "value": 1}], r"index 3 out of range"),
        ([{"op": "copy", "from": "/order/nope", "path": "/x"}], r"path /order/nope: 'nope' does not exist"),
        ([{"op": "test", "path": "/order/nope", "value": 1}], r"'nope' does not exist"),
        ([{"op": "move", "from": "/order", "path": "/order/x"}], r"cannot move a value into itself"),
        ([{"op": "remove", "path": ""}], r"root itself cannot be the target"),
        ([{"op": "replace", "path": "/order/lines/0", "value": 9}, {"op": "remove", "path": "/gone"}],
         r"path /gone: 'gone' does not exist"),  # the second op fails: nothing of the first is kept
    ],
)
def test_patch_errors_name_the_path_and_the_token(patch: list[dict], message: str) -> None:
    with pytest.raises(PatchError, match=message):
        apply_patch(PAYLOAD, parse_patch(patch))
    assert PAYLOAD["order"]["lines"] == [1, 2]


def test_patch_pointer_escapes_and_append_follow_rfc6901() -> None:
    doc = {"a/b": {"m~n": 1}, "l": []}
    out = apply_patch(doc, parse_patch([{"op": "replace", "path": "/a~1b/m~0n", "value": 2},
                                        {"op": "add", "path": "/l/-", "value": "x"}]))
    assert out == {"a/b": {"m~n": 2}, "l": ["x"]}


def test_patch_limits_ops_size_and_depth() -> None:
    from app.admin.patch import MAX_OPS, MAX_PATCH_BYTES, MAX_VALUE_DEPTH

    op = {"op": "test", "path": "/order/lines/0", "value": 1}
    assert len(parse_patch([op] * MAX_OPS)) == MAX_OPS
    with pytest.raises(PatchError, match=f"{MAX_OPS + 1} operations, over the limit of {MAX_OPS}"):
        parse_patch([op] * (MAX_OPS + 1))
    big = [{"op": "add", "path": "/note", "value": "x" * MAX_PATCH_BYTES}]
    with pytest.raises(PatchError, match=f"over the limit of {MAX_PATCH_BYTES}"):
        parse_patch(big)
    import json

    with pytest.raises(PatchError, match="over the limit"):  # the same limit for JSON text
        parse_patch(json.dumps(big))
    deep: object = 1
    for _ in range(MAX_VALUE_DEPTH):
        deep = [deep]
    nested = [{"op": "add", "path": "/deep", "value": deep}]
    with pytest.raises(PatchError, match=f"deeper than the limit of {MAX_VALUE_DEPTH}"):
        parse_patch(nested)
    with pytest.raises(PatchError, match=f"deeper than the limit of {MAX_VALUE_DEPTH}"):
        parse_patch(json.dumps(nested))


async def test_replay_rate_limiter_lets_one_send_through_per_interval_on_an_injected_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiolimiter reads the loop's clock: a frozen clock that the test moves shows, by counting the
    sends that got through, one at once, then one per interval, and no more than RATE_BURST after
    an idle spell (no timing asserts)."""
    import asyncio

    from app.admin.replay import RATE_BURST, RateLimiter

    loop = asyncio.get_running_loop()
    now = [loop.time()]
    monkeypatch.setattr(loop, "time", lambda: now[0])
    limiter = RateLimiter(10)  # one per 0.1 s
    sent: list[int] = []

    async def send(n: int) -> None:
        await limiter.acquire()
        sent.append(n)

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(send(n)) for n in range(RATE_BURST + 6)]
    try:
        await settle()
        assert len(sent) == 1  # the first at once, the others wait: no burst at the start
        now[0] += 0.05
        await settle()
        assert len(sent) == 1  # half an interval: nothing more
        now[0] += 0.0501  # a hair past the interval: the bucket drains by float arithmetic on the clock
        await settle()
        assert len(sent) == 2  # one per interval
        now[0] += 0.15  # a late wake-up (busy loop) ...
        await settle()
        assert len(sent) == 3
        now[0] += 0.05  # ... is made up by the next one: 4 sends in 0.3 s, as asked
        await settle()
        assert len(sent) == 4
        now[0] += 10.0  # idle for a hundred intervals: at most a bucket more, not a hundred
        await settle()
        assert len(sent) == 4 + RATE_BURST
        assert sent == sorted(sent)  # in the order they asked
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
