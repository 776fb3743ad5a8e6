"""Interoperability with independent implementations, both directions: pycryptodome (AES-GCM,
AES-CBC/PKCS#7, RSA-OAEP SHA-256 with MGF1-SHA1 as Java's default, RSA PKCS#1 v1.5) and gmssl
(SM4-CBC/PKCS#7, a pure-Python SM4). The "partner" side of each test uses only the other library."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from Crypto.Cipher import AES, PKCS1_OAEP, PKCS1_v1_5
from Crypto.Hash import SHA1, SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pss
from Crypto.Util.Padding import pad, unpad
from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4

from hub import paths
from transforms.crypto import decrypt_inbound, decrypt_response, encrypt_request

from .crypto_support import ORDER_FIELDS, contract, key, order

B64 = base64.b64encode


def _rsa(name: str) -> RSA.RsaKey:
    with open(key(name), "rb") as fh:
        return RSA.import_key(fh.read())


def _oaep(k: RSA.RsaKey) -> Any:  # OAEP SHA-256, MGF1 SHA-1: Java's OAEPWithSHA-256AndMGF1Padding
    return PKCS1_OAEP.new(k, hashAlgo=SHA256, mgfunc=lambda x, y: pss.MGF1(x, y, SHA1))


def _partner_seal(cipher: str, mode: str, data_key: bytes, text: str) -> str:
    """What a partner not using our code sends for one field: base64(iv || ciphertext [|| tag])."""
    raw = text.encode()
    if cipher == "sm4":
        iv = os.urandom(16)
        sm4 = CryptSM4(SM4_ENCRYPT)
        sm4.set_key(data_key, SM4_ENCRYPT)
        return B64(iv + sm4.crypt_cbc(iv, raw)).decode()
    if mode == "gcm":
        nonce = os.urandom(12)
        ct, tag = AES.new(data_key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(raw)
        return B64(nonce + ct + tag).decode()
    iv = os.urandom(16)
    return B64(iv + AES.new(data_key, AES.MODE_CBC, iv=iv).encrypt(pad(raw, 16))).decode()


def _partner_open(cipher: str, mode: str, data_key: bytes, text: str) -> str:
    data = base64.b64decode(text)
    if cipher == "sm4":
        sm4 = CryptSM4(SM4_DECRYPT)
        sm4.set_key(data_key, SM4_DECRYPT)
        return sm4.crypt_cbc(data[:16], data[16:]).decode()
    if mode == "gcm":
        return AES.new(data_key, AES.MODE_GCM, nonce=data[:12]).decrypt_and_verify(data[12:-16], data[-16:]).decode()
    return unpad(AES.new(data_key, AES.MODE_CBC, iv=data[:16]).decrypt(data[16:]), 16).decode()


CASES = [("aes", "gcm", "rsa-oaep"), ("aes", "cbc", "rsa-oaep"), ("aes", "cbc", "rsa-pkcs1v15"),
         ("sm4", "cbc", "rsa-oaep")]


@pytest.mark.parametrize(("cipher", "mode", "scheme"), CASES)
def test_partner_library_reads_our_request_and_we_read_its_answer(cipher: str, mode: str, scheme: str) -> None:
    c = contract(cipher=cipher, mode=mode, key_wrap={"scheme": scheme, "hash": "sha256", "mgf1_hash": "sha1"})
    sent, headers, session = encrypt_request(c, "createOrder", order())
    assert session is not None and headers["X-Key-Id"] == "partner-2026a"
    private = _rsa("test-partner-2026a.key.pem")
    wrapped = base64.b64decode(headers["X-Encrypted-Key"])
    data_key = (_oaep(private).decrypt(wrapped) if scheme == "rsa-oaep"
                else PKCS1_v1_5.new(private).decrypt(wrapped, None))
    assert len(data_key) == (16 if cipher == "sm4" else 32)
    for path in ORDER_FIELDS:
        for (container, k), (orig, ok) in zip(paths.targets(sent, path), paths.targets(order(), path), strict=True):
            assert container[k] != orig[ok]  # type: ignore[index]
            assert _partner_open(cipher, mode, data_key, container[k]) == orig[ok]  # type: ignore[index]
    # the partner answers with the same data key (D.2.1), sealed by its own library
    answer = {"code": "0", "customer": {"id_number": _partner_seal(cipher, mode, data_key, "110101199003077777")}}
    assert decrypt_response(c, session, answer) == {"code": "0", "customer": {"id_number": "110101199003077777"}}


@pytest.mark.parametrize(("cipher", "mode", "scheme"), CASES)
def test_we_read_a_message_built_by_the_partner_library(cipher: str, mode: str, scheme: str) -> None:
    c = contract(cipher=cipher, mode=mode, key_wrap={"scheme": scheme})
    data_key = os.urandom(16 if cipher == "sm4" else 32)
    public = _rsa("test-hub-2026a.pub.pem")  # our previous key: the partner has not rotated yet
    wrapped = _oaep(public).encrypt(data_key) if scheme == "rsa-oaep" else PKCS1_v1_5.new(public).encrypt(data_key)
    clear = order()
    body = order()
    for path in ORDER_FIELDS:
        for container, k in paths.targets(body, path):
            container[k] = _partner_seal(cipher, mode, data_key, container[k])  # type: ignore[index]
    headers = {"x-encrypted-key": B64(wrapped).decode(), "X-Key-Id": "hub-2026a"}
    out, session = decrypt_inbound(c, body, headers)
    assert out == clear and session is not None and session.key_id == "hub-2026a"
    headers.pop("X-Key-Id")  # without a key id each of our keys is tried
    assert decrypt_inbound(c, body, headers)[0] == clear


def test_java_default_mgf1_matters() -> None:
    """A key wrapped with MGF1-SHA256 (both hashes SHA-256) does not unwrap under the Java default."""
    c = contract(key_wrap={"scheme": "rsa-oaep", "hash": "sha256", "mgf1_hash": "sha1"})
    data_key = os.urandom(32)
    wrapped = PKCS1_OAEP.new(_rsa("test-hub-2026b.pub.pem"), hashAlgo=SHA256).encrypt(data_key)  # MGF1-SHA256
    body = {"customer": {"name": _partner_seal("aes", "gcm", data_key, "Acme")}}
    from hub.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="does not unwrap"):
        decrypt_inbound(c, body, {"X-Encrypted-Key": B64(wrapped).decode()})
    c256 = contract(key_wrap={"scheme": "rsa-oaep", "hash": "sha256", "mgf1_hash": "sha256"})
    assert decrypt_inbound(c256, body, {"X-Encrypted-Key": B64(wrapped).decode()})[0] == {"customer": {"name": "Acme"}}
