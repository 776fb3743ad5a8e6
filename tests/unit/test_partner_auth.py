"""HMAC request signatures: the canonical string, verification, replay and the nonce cache bound."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.partner_auth import HmacAuth, HmacVerifier, NonceCache, canonical_string, sign
from hub.partners import RestInbound
from hub.profiles import dev_secret_problems

SECRET = "s" * 40
PATH = "/api/v1/partners/esop/orders"


def headers(ts: int, nonce: str, sig: str) -> dict[str, str]:
    return {"X-Hub-Timestamp": str(ts), "X-Hub-Nonce": nonce, "X-Hub-Signature": sig}


def verifier(now: float = 1_000_000.0, **kw: int) -> HmacVerifier:
    return HmacVerifier(HmacAuth(kind="hmac", secret=SECRET, **kw), wall_clock=lambda: now,
                        clock=lambda: now)


def test_canonical_string_is_method_path_timestamp_nonce_and_body_digest() -> None:
    body = b'{"a":1}'
    assert canonical_string("post", PATH, "1700000000", "n" * 16, body) == (
        f"POST\n{PATH}\n1700000000\n{'n' * 16}\n{hashlib.sha256(body).hexdigest()}")
    expected = hmac.new(SECRET.encode(), canonical_string("POST", PATH, "1", "n" * 16, body).encode(),
                        hashlib.sha256).hexdigest()
    assert sign(SECRET, "POST", PATH, "1", "n" * 16, body) == expected


def test_signed_request_passes_once_then_is_a_replay() -> None:
    v = verifier()
    ts, nonce, body = 1_000_000, "abcdefghijklmnop", b"{}"
    sig = sign(SECRET, "POST", PATH, str(ts), nonce, body)
    assert v.verify("POST", PATH, headers(ts, nonce, sig), body) is None
    again = v.verify("POST", PATH, headers(ts, nonce, "sha256=" + sig), body)
    assert again is not None and again.status == 401 and "replay" in again.detail


@pytest.mark.parametrize("change", ["body", "path", "method", "secret", "missing"])
def test_anything_changed_is_refused(change: str) -> None:
    ts, nonce, body = 1_000_000, "abcdefghijklmnop", b"{}"
    sig = sign("x" * 40 if change == "secret" else SECRET, "POST", PATH, str(ts), nonce, body)
    h = headers(ts, nonce, sig)
    if change == "missing":
        del h["X-Hub-Nonce"]
    refused = verifier().verify("GET" if change == "method" else "POST", PATH + "x" if change == "path" else PATH,
                                h, b"{ }" if change == "body" else body)
    assert refused is not None and refused.status == 401


def test_timestamp_outside_the_skew_is_refused() -> None:
    v = verifier(max_skew_s=300)
    for ts in (1_000_000 - 301, 1_000_000 + 301):
        sig = sign(SECRET, "POST", PATH, str(ts), "abcdefghijklmnop", b"")
        refused = v.verify("POST", PATH, headers(ts, "abcdefghijklmnop", sig), b"")
        assert refused is not None and "300 s" in refused.detail
    ts = 1_000_000 - 299
    assert v.verify("POST", PATH, headers(ts, "abcdefghijklmnop", sign(SECRET, "POST", PATH, str(ts),
                                                                       "abcdefghijklmnop", b"")), b"") is None


def test_nonce_cache_forgets_after_its_ttl_and_is_bounded() -> None:
    now = [0.0]
    cache = NonceCache(ttl=600, size=2, clock=lambda: now[0])
    assert cache.add("a") == "new" and cache.add("a") == "replay"
    assert cache.add("b") == "new" and cache.add("c") == "full"  # never forgets an unexpired nonce early
    now[0] = 601
    assert cache.add("c") == "new" and len(cache) == 1  # a and b expired and were dropped


def test_short_secret_and_unknown_kind_are_config_errors() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        RestInbound.model_validate({"auth": {"kind": "hmac", "secret": "short"}})
    with pytest.raises(ValidationError):
        RestInbound.model_validate({"auth": {"kind": "cert"}})
    assert RestInbound.model_validate({"auth": {"keys": ["12345678"]}}).auth.kind == "api_key"


def test_production_refuses_a_dev_hmac_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_ESOP_HMAC_SECRET", raising=False)
    partner = tmp_path / "esop.yaml"
    partner.write_text("inbound:\n  rest:\n    auth:\n      kind: hmac\n"
                       "      secret: \"${HUB_ESOP_HMAC_SECRET:-dev-esop-hmac-secret-0000000000000000}\"\n")
    (problem,) = dev_secret_problems(partner)
    assert "HUB_ESOP_HMAC_SECRET is not set" in problem
    partner.write_text("inbound:\n  rest:\n    auth:\n      kind: hmac\n"
                       "      secret: dev-esop-hmac-secret-0000000000000000\n")
    (literal,) = dev_secret_problems(partner)
    assert "dev- secret written in the file" in literal
