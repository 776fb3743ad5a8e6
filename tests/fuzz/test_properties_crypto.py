"""Properties of the crypto round trips (transforms/crypto): for every cipher, mode, key size, IV
placement and key wrap a contract can name, encrypt → decrypt is the identity on any value; any
tampering with what travels (a field's bytes, the wrapped key, the IV) is our ValidationFailed —
never a library exception, which the intake would answer with a 500 — and with GCM always
(authenticated), while CBC, which authenticates nothing, may only ever yield our error or other text."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import ValidationFailed
from tests.fuzz.budget import budget
from tests.unit.crypto_support import contract, mirror
from transforms.crypto import ciphers, decrypt_inbound, decrypt_value, encrypt_request, encrypt_value

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

CIPHERS = [("aes", "gcm", 128), ("aes", "gcm", 192), ("aes", "gcm", 256), ("aes", "cbc", 128), ("aes", "cbc", 192),
           ("aes", "cbc", 256), ("sm4", "gcm", 128), ("sm4", "cbc", 128)]
WRAPS = [{"scheme": "rsa-oaep", "hash": "sha256", "mgf1_hash": "sha1"},
         {"scheme": "rsa-oaep", "hash": "sha256", "mgf1_hash": "sha256"},
         {"scheme": "rsa-oaep", "hash": "sha1", "mgf1_hash": "sha1"},
         {"scheme": "rsa-pkcs1v15"}]
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
VALUES = TEXT | st.integers() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)


@functools.cache
def _contracts(cipher: str, mode: str, bits: int, iv: str = "field", wrap: int = 0) -> tuple[Any, Any]:
    """(ours, the partner's mirror), built once per combination: a contract's keys are loaded and
    checked once per contract object (transforms.crypto.keys_for), ~50 ms of RSA checks each."""
    ours = contract(cipher=cipher, mode=mode, key_bits=bits, iv=iv, key_wrap=WRAPS[wrap])
    return ours, mirror(ours)


def _flip(data: bytes, at: int, bit: int) -> bytes:
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]


@pytest.mark.parametrize(("cipher", "mode", "bits"), CIPHERS, ids=[f"{c}-{m}-{b}" for c, m, b in CIPHERS])
@budget(60)
@given(plaintext=st.binary(max_size=512), aad=st.none() | st.binary(min_size=1, max_size=32), data=st.data())
def test_cipher_round_trip_and_tamper(cipher: str, mode: str, bits: int, plaintext: bytes, aad: bytes | None,
                                      data: Any) -> None:
    key = data.draw(st.binary(min_size=bits // 8, max_size=bits // 8))
    iv = data.draw(st.binary(min_size=ciphers.iv_size(mode), max_size=ciphers.iv_size(mode)))
    sealed = ciphers.encrypt(cipher, mode, key, iv, plaintext, aad if mode == "gcm" else None)
    assert ciphers.decrypt(cipher, mode, key, iv, sealed, aad if mode == "gcm" else None) == plaintext
    at, bit = data.draw(st.integers(0, 10_000)), data.draw(st.integers(0, 7))
    tampered = _flip(sealed, at, bit)
    try:
        opened = ciphers.decrypt(cipher, mode, key, iv, tampered, aad if mode == "gcm" else None)
    except ciphers.CipherError:
        return
    assert mode == "cbc" and opened != plaintext, "GCM accepted a tampered ciphertext"
    cut = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(ciphers.CipherError):  # truncated: never a whole message
        ciphers.decrypt(cipher, mode, key, iv, sealed[:cut] if mode == "gcm" else sealed[:cut - cut % 16 or 0] + b"x")


@pytest.mark.parametrize(("cipher", "mode", "bits"), CIPHERS, ids=[f"{c}-{m}-{b}" for c, m, b in CIPHERS])
@budget(40)
@given(value=VALUES, garbage=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(
    lambda b: base64.b64encode(b).decode())), data=st.data())
def test_field_values_round_trip_and_anything_else_is_our_error(cipher: str, mode: str, bits: int, value: Any,
                                                                 garbage: str, data: Any) -> None:
    ours, _ = _contracts(cipher, mode, bits)
    key = data.draw(st.binary(min_size=bits // 8, max_size=bits // 8))
    text = encrypt_value(ours, key, None, value)
    expected = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert decrypt_value(ours, key, None, text) == expected
    for wrong in (garbage, base64.b64encode(_flip(base64.b64decode(text), data.draw(st.integers(0, 999)),
                                                  data.draw(st.integers(0, 7)))).decode()):
        try:
            out = decrypt_value(ours, key, None, wrong, "customer.name")
        except ValidationFailed as exc:
            assert exc.errors[0]["field"] == "customer.name"
            continue
        assert mode == "cbc" and out != expected, (wrong, out)


#: every cipher and IV placement with the default wrap, and every wrap with one GCM and one CBC contract
MESSAGE_CASES = [(c, m, b, i, 0) for c, m, b in CIPHERS if b in (128, 256)
                 for i in (["field", "message"] if m == "cbc" else ["field"])]
MESSAGE_CASES += [(c, m, b, i, w) for c, m, b, i in (("aes", "gcm", 256, "field"), ("sm4", "cbc", 128, "message"))
                  for w in range(1, len(WRAPS))]


@pytest.mark.parametrize(("cipher", "mode", "bits", "iv", "wrap"), MESSAGE_CASES,
                         ids=[f"{c}-{m}-{b}-{i}-wrap{w}" for c, m, b, i, w in MESSAGE_CASES])
@budget(15)
@given(name=TEXT, phone=TEXT, details=st.lists(TEXT, max_size=3), target=st.sampled_from(["key", "field", "iv"]),
       at=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_message_round_trips_and_a_tampered_one_is_our_error(cipher: str, mode: str, bits: int, iv: str, wrap: int,
                                                               name: str, phone: str, details: list[str], target: str,
                                                               at: int, bit: int) -> None:
    """The whole message, as a partner sends it and the intake reads it: RSA-wrapped key in a header."""
    ours, partner = _contracts(cipher, mode, bits, iv, wrap)
    payload = {"customer": {"name": name, "contact_phone": phone}, "addresses": [{"detail": d} for d in details]}
    sent, headers, _ = encrypt_request(ours, "createOrder", payload)
    clear, session = decrypt_inbound(partner, sent, headers)
    assert clear == payload and session is not None
    if target == "iv" and iv != "message":
        target = "field"
    if target == "key":
        headers = {**headers, "X-Encrypted-Key": base64.b64encode(
            _flip(base64.b64decode(headers["X-Encrypted-Key"]), at, bit)).decode()}
    elif target == "iv":
        headers = {**headers, "X-Encryption-IV": base64.b64encode(
            _flip(base64.b64decode(headers["X-Encryption-IV"]), at, bit)).decode()}
    else:
        sent = {**sent, "customer": {**sent["customer"], "name": base64.b64encode(
            _flip(base64.b64decode(sent["customer"]["name"]), at, bit)).decode()}}
    try:
        opened, _ = decrypt_inbound(partner, sent, headers)
    except ValidationFailed:
        return
    # only CBC can open a tampered field or IV (to other text); a tampered wrapped key never unwraps
    # to the same key (OAEP refuses; PKCS#1 v1.5's implicit rejection yields a random key the fields fail)
    assert mode == "cbc" and target in ("field", "iv") and opened != payload, (target, opened)
