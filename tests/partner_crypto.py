"""A partner's field encryption written with pycryptodome only — no hub code — so the crypto tests
check the hub against an independent implementation of the contract (docs/security.md §1): RSA-OAEP
the way Java's ``RSA/ECB/OAEPWithSHA-256AndMGF1Padding`` does it, AES-GCM fields as base64 of
nonce ‖ ciphertext ‖ tag. One copy for the REST, SOAP and AMQP crypto tests."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Cipher.PKCS1_OAEP import PKCS1OAEP_Cipher
from Crypto.Hash import SHA1, SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pss

KEYS = Path(__file__).resolve().parent / "fixtures" / "keys"


def oaep(key: str | Path) -> PKCS1OAEP_Cipher:
    """OAEP with a SHA-256 label hash and MGF1-SHA1 (Java's default MGF1); ``key`` a file in KEYS or a path."""
    pem = key if isinstance(key, Path) else KEYS / key
    return PKCS1_OAEP.new(RSA.import_key(pem.read_bytes()), hashAlgo=SHA256,
                          mgfunc=lambda x, y: pss.MGF1(x, y, SHA1))


def seal(key: bytes, text: str) -> str:
    nonce = os.urandom(12)
    ct, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(text.encode())
    return base64.b64encode(nonce + ct + tag).decode()


def unseal(key: bytes, text: str) -> str:
    data = base64.b64decode(text)
    return AES.new(key, AES.MODE_GCM, nonce=data[:12]).decrypt_and_verify(data[12:-16], data[-16:]).decode()
