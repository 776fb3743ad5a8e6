"""A partner's per-field encryption contract (``crypto:`` in ``config/partners/<name>.yaml``).

Why a model of its own: the documents (CATALOGUE D.2.1–D.2.4) require sensitive fields encrypted
with AES (SM4 for some interfaces), one data key per request reused for its response, wrapped with
the partner's RSA public key — but fix no mode, padding, key length, RSA padding, encoding or
position of the key. Every one of those is therefore a setting here, validated at load with the
partner file's ``file:line`` errors, and the code in ``transforms/crypto`` only reads this model.

The model lives in the core so ``hub/partners.py`` can declare it; keys are named by reference
(file or environment variable) and loaded by ``transforms.crypto.keys``, never written here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Carrier", "CryptoContract", "FieldSet", "KeyRef", "KeyWrap"]

Hash = Literal["sha1", "sha256", "sha384", "sha512"]
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")  # an XML element name without a prefix (ASCII)


class KeyRef(BaseModel):
    """One RSA key by id: a PEM file or an environment variable holding the PEM text."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", examples=["esop-2026-01"])
    file: str | None = Field(default=None, description="PEM file (relative paths: to the working directory)")
    env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="variable holding the PEM")

    @model_validator(mode="after")
    def _one_source(self) -> KeyRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self


class KeyWrap(BaseModel):
    """How the data key is wrapped with RSA. Java's ``RSA/ECB/OAEPWithSHA-256AndMGF1Padding`` uses
    SHA-256 for the label hash but SHA-1 for MGF1 — hence two settings, MGF1 defaulting to SHA-1."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["rsa-oaep", "rsa-pkcs1v15"] = Field(
        default="rsa-oaep", description="rsa-pkcs1v15 only for legacy peers (padding-oracle prone)")
    hash: Hash = "sha256"
    mgf1_hash: Hash = "sha1"


class Carrier(BaseModel):
    """Where the wrapped key, its key id and (``iv: message``) the IV travel: the transport's headers
    (HTTP headers; AMQP properties headers), top-level fields of the body (dotted paths, removed from
    the body on the way in), or — for SOAP — elements of the SOAP ``Header``.

    Why ``soap_header`` of its own: a SOAP partner's stack (JAX-WS, CXF, .NET) reads and writes SOAP
    header blocks as part of the message its WSDL describes, while custom HTTP headers need transport
    hooks; and body fields would have to be declared in the request's XSD. The header block is where
    WS-Security puts its own ``EncryptedKey`` for the same reason. Its elements are the direct
    children of ``soap:Header`` with the local names ``key`` / ``iv`` / ``key_id`` (in ``namespace``
    when it is set, any namespace otherwise). Over a transport without a SOAP envelope (REST, AMQP)
    ``soap_header`` reads as ``header``."""

    model_config = ConfigDict(extra="forbid")

    via: Literal["header", "field", "soap_header"] = "header"
    key: str = Field(default="X-Encrypted-Key", min_length=1, max_length=64)
    iv: str = Field(default="X-Encryption-IV", min_length=1, max_length=64)
    key_id: str | None = Field(default="X-Key-Id", max_length=64,
                               description="names the RSA key used (rotation); none = try every key")
    namespace: str | None = Field(
        default=None, max_length=255, examples=["http://esop.example.com/ws/crypto"],
        description="via: soap_header — namespace of the header elements (outbound: they are written in it; "
                    "inbound: only elements in it are read); none = unqualified out, any namespace in")

    @model_validator(mode="after")
    def _xml_names(self) -> Carrier:
        if self.via == "soap_header":
            for name in (self.key, self.iv, self.key_id):
                if name is not None and not _NCNAME.match(name):
                    raise ValueError(f"via: soap_header: {name!r} is not an XML element name")
        elif self.namespace is not None:
            raise ValueError("namespace is only read with via: soap_header")
        return self


class FieldSet(BaseModel):
    """The encrypted fields of one operation's request and response (dotted paths, lists fanned out)."""

    model_config = ConfigDict(extra="forbid")

    request: list[str] = Field(default_factory=list)
    response: list[str] = Field(default_factory=list)


class CryptoContract(BaseModel):
    """Per-field encryption with one partner."""

    model_config = ConfigDict(extra="forbid")

    cipher: Literal["aes", "sm4"] = "aes"
    mode: Literal["gcm", "cbc"] = "gcm"
    key_bits: Literal[128, 192, 256] = Field(default=256, description="AES only; SM4 keys are 128 bits")
    iv: Literal["field", "message"] = Field(
        default="field",
        description="field: a fresh IV/nonce per value, sent as base64(iv || ciphertext [|| tag]); message: one "
                    "IV per request (also used for its response) carried beside the key — CBC only")
    key_wrap: KeyWrap = Field(default_factory=KeyWrap)
    carry: Carrier = Field(default_factory=Carrier)
    partner_keys: list[KeyRef] = Field(
        default_factory=list, description="the partner's RSA public keys; the first wraps outbound data keys")
    our_keys: list[KeyRef] = Field(
        default_factory=list, description="our RSA private keys by id; all of them unwrap (rotation), newest first")
    fields: dict[str, FieldSet] = Field(default_factory=dict, description="operation → encrypted field paths")
    inbound_fields: list[str] = Field(
        default_factory=list,
        description="fields of inbound orders (REST and SOAP intake, AMQP messages) decrypted before validation")

    @model_validator(mode="after")
    def _consistent(self) -> CryptoContract:
        if self.cipher == "sm4" and self.key_bits != 128:
            if "key_bits" in self.model_fields_set:
                raise ValueError("SM4 keys are 128 bits")
            self.key_bits = 128
        if self.mode == "gcm" and self.iv == "message":
            raise ValueError("iv: message with mode gcm would reuse one nonce for several values under one key "
                             "(GCM then leaks the plaintexts' XOR and its authentication key): use iv: field")
        if any(f.request or f.response for f in self.fields.values()) and not self.partner_keys:
            raise ValueError("fields are encrypted for the partner but partner_keys is empty")
        if self.inbound_fields and not self.our_keys:
            raise ValueError("inbound_fields are decrypted but our_keys is empty")
        for keys, what in ((self.partner_keys, "partner_keys"), (self.our_keys, "our_keys")):
            ids = [k.id for k in keys]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{what}: key ids must be unique")
        return self
