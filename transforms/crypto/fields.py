"""Per-field encryption of messages by a partner's crypto contract: the pure API.

* :func:`encrypt_request` — before a call: a fresh data key (and, ``iv: message``, one IV) per
  request, the declared request fields encrypted, the key wrapped with the partner's current RSA
  public key and put where the contract says (headers or body fields). The returned
  :class:`Session` keeps the key for the call's answer.
* :func:`decrypt_response` — the answer's declared fields, with the request's key (D.2.1: "the same
  AES key for a request and its response").
* :func:`decrypt_inbound` — a message a partner sent us: its key unwrapped with our private key
  (named by key id, else each one tried: rotation), the declared fields decrypted before validation.

A value is text: a string's UTF-8 bytes (other JSON scalars as their JSON text) are encrypted and
sent as standard base64; with ``iv: field`` as ``base64(iv || ciphertext [|| GCM tag])``. Nothing
here does I/O; bad partner input raises ValidationFailed naming the field, never its value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub import paths
from hub.cryptocontract import CryptoContract
from hub.errors import ValidationFailed
from transforms.crypto import ciphers
from transforms.crypto.keys import KeyProvider, keys_for
from transforms.crypto.wrap import WrapError, unwrap, wrap

__all__ = ["Session", "decrypt_inbound", "decrypt_response", "decrypt_value", "encrypt_request",
           "encrypt_response", "encrypt_value"]


@dataclass(frozen=True, slots=True)
class Session:
    """One request's data key, kept for its response. ``repr`` never shows the key."""

    operation: str
    key: bytes
    iv: bytes | None
    key_id: str

    def __repr__(self) -> str:
        return f"Session(operation={self.operation!r}, key_id={self.key_id!r}, key=<{len(self.key)} bytes>)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValidationFailed(f"{what} must be base64 text", [{"field": what, "message": "must be base64 text",
                                                                 "type": "crypto_encoding"}])
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValidationFailed(f"{what} is not valid base64", [{"field": what, "message": "not valid base64",
                                                                "type": "crypto_encoding"}]) from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encrypt_value(contract: CryptoContract, key: bytes, iv: bytes | None, value: Any) -> str:
    """One value → base64 text (a fresh IV in front unless the message carries one)."""
    plaintext = _text(value).encode("utf-8")
    if iv is not None:
        return _b64(ciphers.encrypt(contract.cipher, contract.mode, key, iv, plaintext))
    nonce = os.urandom(ciphers.iv_size(contract.mode))
    return _b64(nonce + ciphers.encrypt(contract.cipher, contract.mode, key, nonce, plaintext))


def decrypt_value(contract: CryptoContract, key: bytes, iv: bytes | None, text: Any, field: str = "value") -> str:
    """base64 text → the value's text; ValidationFailed naming ``field`` when it does not decrypt."""
    data = _unb64(text, field)
    if iv is None:
        size = ciphers.iv_size(contract.mode)
        iv, data = data[:size], data[size:]
        if len(iv) < size:
            data = b""
    try:
        return ciphers.decrypt(contract.cipher, contract.mode, key, iv, data).decode("utf-8")
    except ciphers.CipherError as exc:
        raise ValidationFailed(f"{field} does not decrypt", [{"field": field, "message": str(exc),
                                                              "type": "crypto_decrypt"}]) from None
    except UnicodeDecodeError:
        raise ValidationFailed(f"{field} is not UTF-8 text once decrypted",
                               [{"field": field, "message": "not UTF-8 text", "type": "crypto_decrypt"}]) from None


def _apply(contract: CryptoContract, payload: Any, fields: list[str], key: bytes, iv: bytes | None,
           seal: bool) -> Any:
    out = paths.copy_json(payload)
    for path in fields:
        for holder, k in list(paths.targets(out, path)):
            container: Any = holder  # a dict with a str key or a list with an int index: both index alike
            value = container[k]
            if value is None:
                continue
            container[k] = (encrypt_value(contract, key, iv, value) if seal
                            else decrypt_value(contract, key, iv, value, path))
    return out


def encrypt_request(contract: CryptoContract, operation: str, payload: Any, keys: KeyProvider | None = None
                    ) -> tuple[Any, dict[str, str], Session | None]:
    """``(payload with the request fields encrypted, headers to send, session)``; an operation the
    contract lists no fields for is sent as it is (``session`` None). With ``via: soap_header`` the
    carried values come back as the headers too: the SOAP sink writes them as SOAP header elements."""
    spec = contract.fields.get(operation)
    if spec is None or not (spec.request or spec.response):
        return payload, {}, None
    keys = keys or keys_for(contract)
    key_id, public = keys.public_key()
    key = os.urandom(contract.key_bits // 8)
    iv = os.urandom(ciphers.iv_size(contract.mode)) if contract.iv == "message" else None
    out = _apply(contract, payload, spec.request, key, iv, seal=True)
    carried = {contract.carry.key: _b64(wrap(contract.key_wrap, public, key))}
    if iv is not None:
        carried[contract.carry.iv] = _b64(iv)
    if contract.carry.key_id:
        carried[contract.carry.key_id] = key_id
    headers: dict[str, str] = {}
    if contract.carry.via != "field":  # header / soap_header: the connector puts them where its transport says
        headers = carried
    else:
        if not isinstance(out, dict):
            raise ValidationFailed("the key travels in a field but the request body is not an object")
        for name, value in carried.items():
            paths.set(out, name, value)
    return out, headers, Session(operation, key, iv, key_id)


def decrypt_response(contract: CryptoContract, session: Session, payload: Any) -> Any:
    """The answer with its declared response fields decrypted by the request's key."""
    spec = contract.fields.get(session.operation)
    if spec is None or not spec.response:
        return payload
    return _apply(contract, payload, spec.response, session.key, session.iv, seal=False)


def encrypt_response(contract: CryptoContract, session: Session, payload: Any, fields: list[str]) -> Any:
    """Our answer to an inbound message, encrypted with the key the partner sent."""
    return _apply(contract, payload, fields, session.key, session.iv, seal=True)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # a plain dict: look the name up case-insensitively
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value


def decrypt_inbound(contract: CryptoContract, payload: Any, headers: Mapping[str, str],
                    keys: KeyProvider | None = None, operation: str = "inbound") -> tuple[Any, Session | None]:
    """``(payload with contract.inbound_fields decrypted, session)``. A declared field present without a
    wrapped key is refused: the contract says it travels encrypted, a clear one is a sender's bug.
    ``headers`` is what the transport carried beside the body: HTTP or AMQP headers, or (SOAP,
    ``via: soap_header``) the SOAP header elements by local name."""
    fields = contract.inbound_fields
    if not fields:
        return payload, None
    out = paths.copy_json(payload)
    carry = contract.carry

    def take(name: str | None) -> Any:
        if name is None:
            return None
        if carry.via != "field":  # header / soap_header: the connector hands over what its transport carried
            return _header(headers, name)
        if not isinstance(out, dict):
            return None
        value = paths.pop(out, name, None)
        parent = name.rpartition(".")[0]
        if parent and paths.get(out, parent) == {}:  # the carrier's own object, now empty
            paths.pop(out, parent)
        return value

    wrapped_text, iv_text, key_id = take(carry.key), take(carry.iv) if contract.iv == "message" else None, \
        take(carry.key_id)
    present = any(True for p in fields for _ in paths.targets(out, p))
    if wrapped_text is None:
        if present:
            where = f"{carry.via} {carry.key}"
            raise ValidationFailed(f"encrypted fields sent without the wrapped key ({where})",
                                   [{"field": carry.key, "message": "missing", "type": "crypto_key_missing"}])
        return out, None
    wrapped = _unb64(wrapped_text, carry.key)
    keys = keys or keys_for(contract)
    if key_id is not None and not isinstance(key_id, str):
        key_id = None
    try:
        candidates = [(key_id, keys.private_key(key_id))] if key_id else keys.private_keys()
    except KeyError:
        raise ValidationFailed(f"unknown key id {key_id!r}", [{"field": carry.key_id, "message": "unknown key id",
                                                               "type": "crypto_key_unknown"}]) from None
    iv = None
    if contract.iv == "message":
        if iv_text is None:
            raise ValidationFailed(f"missing IV ({carry.via} {carry.iv})",
                                   [{"field": carry.iv, "message": "missing", "type": "crypto_iv_missing"}])
        iv = _unb64(iv_text, carry.iv)
        if len(iv) != ciphers.iv_size(contract.mode):
            raise ValidationFailed("IV of the wrong size", [{"field": carry.iv, "message": "wrong size",
                                                            "type": "crypto_iv_size"}])
    failure: ValidationFailed | None = None
    for kid, private in candidates:
        # PKCS#1 v1.5 under OpenSSL's implicit rejection "unwraps" with a wrong key to random bytes:
        # a key is ours only when its length fits and the fields then decrypt (GCM: authenticate)
        try:
            key = unwrap(contract.key_wrap, private, wrapped)
        except WrapError:
            continue
        if len(key) * 8 != contract.key_bits:
            continue
        try:
            return _apply(contract, out, fields, key, iv, seal=False), Session(operation, key, iv, kid or "")
        except ValidationFailed as exc:
            failure = exc
    raise failure or ValidationFailed(
        "the wrapped key does not unwrap with our keys",
        [{"field": carry.key, "message": "does not unwrap", "type": "crypto_unwrap"}])
