"""The crypto contract (hub/cryptocontract.py, partner YAML ``crypto:``) and the pure API of
transforms/crypto: fresh keys per request, where the key travels, rotation, refusals, round trips."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.errors import ConfigError, ValidationFailed
from hub.partners import load_partners
from transforms.crypto import decrypt_inbound, decrypt_response, encrypt_request, encrypt_response

from .crypto_support import ORDER_FIELDS, contract, key, mirror, order


def _write_partner(tmp_path: Path, body: str) -> Path:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "acme.yaml").write_text(body, encoding="utf-8")
    return tmp_path


def test_partner_yaml_crypto_block_loads(tmp_path: Path) -> None:
    cfg = _write_partner(tmp_path, f"""name: acme
crypto:
  cipher: sm4
  mode: cbc
  key_wrap: {{scheme: rsa-oaep, hash: sha256, mgf1_hash: sha1}}
  carry: {{via: field, key: encryptKey, iv: iv, key_id: keyId}}
  partner_keys: [{{id: p1, file: {key("test-partner-2026a.pub.pem")}}}]
  fields:
    createOrder: {{request: [customer.name], response: [customer.id_number]}}
""")
    crypto = load_partners(cfg)["acme"].crypto
    assert crypto is not None and crypto.key_bits == 128 and crypto.carry.via == "field"
    assert crypto.fields["createOrder"].response == ["customer.id_number"]


@pytest.mark.parametrize(("block", "line", "message"), [
    ("  mode: gcm\n  iv: message\n", 2, "reuse one nonce"),
    ("  key_wrap:\n    mgf1_hash: md5\n", 4, "crypto.key_wrap.mgf1_hash"),
    ("  cipher: sm4\n  key_bits: 256\n", 2, "SM4 keys are 128 bits"),
    ("  fields: {op: {request: [a]}}\n", 2, "partner_keys is empty"),
    ("  our_keys: [{id: k1}]\n", 3, "exactly one of file or env"),
])
def test_bad_crypto_block_is_a_config_error_with_file_and_line(tmp_path: Path, block: str, line: int,
                                                              message: str) -> None:
    cfg = _write_partner(tmp_path, "name: acme\ncrypto:\n" + block)
    with pytest.raises(ConfigError) as err:
        load_partners(cfg)
    assert any(p.startswith(f"{cfg}/partners/acme.yaml:{line}: ") and message in p for p in err.value.problems), \
        err.value.problems


def test_each_request_gets_a_fresh_key_and_clear_values_are_gone() -> None:
    c = contract()
    first, h1, s1 = encrypt_request(c, "createOrder", order())
    second, h2, s2 = encrypt_request(c, "createOrder", order())
    assert s1 is not None and s2 is not None and s1.key != s2.key
    assert h1["X-Encrypted-Key"] != h2["X-Encrypted-Key"]
    assert first["customer"]["name"] != second["customer"]["name"]
    text = repr(first) + repr(h1) + repr(s1)
    for secret in ("张三", "13800138000", "110101199003077777", "Wensan"):
        assert secret not in text
    assert first["addresses"][0]["city"] == "Hangzhou"  # undeclared fields stay clear
    assert "key=<32 bytes>" in repr(s1)


def test_an_operation_without_fields_is_sent_unchanged() -> None:
    payload = order()
    assert encrypt_request(contract(), "notifyResult", payload) == (payload, {}, None)


def test_key_and_iv_in_body_fields_and_response_with_the_request_iv() -> None:
    c = contract(mode="cbc", iv="message", carry={"via": "field", "key": "encryptKey", "iv": "sec.iv",
                                                  "key_id": "keyId"})
    sent, headers, session = encrypt_request(c, "createOrder", order())
    assert headers == {} and session is not None and session.iv is not None
    assert {"encryptKey", "sec", "keyId"} <= set(sent) and len(base64.b64decode(sent["sec"]["iv"])) == 16
    # the partner's side reads the same body (its key, popped fields) ...
    theirs = mirror(c)
    clear, their_session = decrypt_inbound(theirs, sent, {})
    assert clear == order() and their_session is not None and their_session.key == session.key
    # ... and answers with the same key and IV, which we read back
    answer = encrypt_response(theirs, their_session, {"customer": {"id_number": "110101199003077777"}},
                              ["customer.id_number"])
    assert answer["customer"]["id_number"] != "110101199003077777"
    assert decrypt_response(c, session, answer) == {"customer": {"id_number": "110101199003077777"}}


def test_rotation_previous_key_still_decrypts_and_unknown_or_dropped_keys_do_not() -> None:
    ours = contract()
    # the partner still wraps with our previous public key (hub-2026a) and says so
    old_view = type(ours).model_validate({**mirror(ours).model_dump(),
                                          "partner_keys": [{"id": "hub-2026a", "file": key("test-hub-2026a.pub.pem")}]})
    sent, headers, _ = encrypt_request(old_view, "createOrder", order())
    assert headers["X-Key-Id"] == "hub-2026a"
    out, session = decrypt_inbound(ours, sent, headers)
    assert out == order() and session is not None and session.key_id == "hub-2026a"
    with pytest.raises(ValidationFailed, match="unknown key id"):
        decrypt_inbound(ours, sent, {**headers, "X-Key-Id": "hub-1999"})
    retired = contract(our_keys=[{"id": "hub-2026b", "file": key("test-hub-2026b.key.pem")}])
    with pytest.raises(ValidationFailed):
        decrypt_inbound(retired, sent, {k: v for k, v in headers.items() if k != "X-Key-Id"})


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PARTNER_PUB", Path(key("test-partner-2026a.pub.pem")).read_text())
    monkeypatch.setenv("TEST_PARTNER_KEY", Path(key("test-partner-2026a.key.pem")).read_text().replace("\n", "\\n"))
    ours = contract(partner_keys=[{"id": "p", "env": "TEST_PARTNER_PUB"}])
    sent, headers, _ = encrypt_request(ours, "createOrder", order())
    theirs = contract(our_keys=[{"id": "p", "env": "TEST_PARTNER_KEY"}])
    assert decrypt_inbound(theirs, sent, headers)[0] == order()
    monkeypatch.delenv("TEST_PARTNER_PUB")
    with pytest.raises(ConfigError, match="TEST_PARTNER_PUB is not set"):
        encrypt_request(contract(partner_keys=[{"id": "p", "env": "TEST_PARTNER_PUB"}]), "createOrder", order())


def test_inbound_refusals_name_the_field_never_the_value() -> None:
    ours = contract()
    with pytest.raises(ValidationFailed, match="without the wrapped key"):
        decrypt_inbound(ours, order(), {})  # declared fields sent in clear
    sent, headers, _ = encrypt_request(mirror(ours), "createOrder", order())
    tampered = {**sent, "customer": {**sent["customer"], "contact_phone": base64.b64encode(b"x" * 40).decode()}}
    with pytest.raises(ValidationFailed) as err:
        decrypt_inbound(ours, tampered, headers)
    assert err.value.errors[0]["field"] == "customer.contact_phone" and "does not decrypt" in str(err.value)
    with pytest.raises(ValidationFailed, match="not valid base64"):
        decrypt_inbound(ours, {**sent, "customer": {**sent["customer"], "name": "张三!"}}, headers)
    with pytest.raises(ValidationFailed, match="does not unwrap"):
        decrypt_inbound(ours, sent, {**headers, "X-Encrypted-Key": base64.b64encode(b"\0" * 256).decode()})
    # a message without any declared field needs no key
    assert decrypt_inbound(ours, {"product": "x"}, {}) == ({"product": "x"}, None)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@pytest.mark.parametrize(("cipher", "mode", "iv"), [("aes", "gcm", "field"), ("aes", "cbc", "field"),
                                                     ("aes", "cbc", "message"), ("sm4", "gcm", "field"),
                                                     ("sm4", "cbc", "message")])
@settings(max_examples=25, deadline=None, database=None,  # no .hypothesis/ left in the checkout
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=TEXT, phone=TEXT, details=st.lists(TEXT, max_size=4), extra=st.integers())
def test_round_trip_property(cipher: str, mode: str, iv: str, name: str, phone: str, details: list[str],
                             extra: int) -> None:
    ours = contract(cipher=cipher, mode=mode, iv=iv)
    payload: dict[str, Any] = {"customer": {"name": name, "contact_phone": phone, "id_number": extra},
                               "addresses": [{"detail": d} for d in details]}
    assert set(ORDER_FIELDS) >= {"customer.name", "customer.contact_phone", "customer.id_number", "addresses.detail"}
    sent, headers, session = encrypt_request(ours, "createOrder", payload)
    assert session is not None
    clear, _ = decrypt_inbound(mirror(ours), sent, headers)
    # values are text on the wire: a number arrives as its JSON text
    assert clear == {**payload, "customer": {**payload["customer"], "id_number": str(extra)}}
