"""Key provider: the RSA keys of a crypto contract by id, from PEM files or environment variables.

Why an interface with ids: keys rotate. Outbound, the first of the partner's public keys wraps new
data keys; inbound, every one of our private keys is kept by id, so a message wrapped with the key
we announced before a rotation still unwraps after it (the sender names the id in the key-id
header or field; without one each key is tried, newest first). Keys are never in the repository
except ``tests/fixtures/keys/test-*`` (test keys, named so).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from hub.cryptocontract import CryptoContract, KeyRef
from hub.errors import ConfigError

__all__ = ["ContractKeys", "KeyProvider", "keys_for"]


class KeyProvider(Protocol):
    """What the crypto functions ask for; tests and other stores (a KMS) implement the same three."""

    def public_key(self, key_id: str | None = None) -> tuple[str, RSAPublicKey]:
        """The partner's public key by id; ``None`` = the current one. Returns (id, key)."""
        ...

    def private_key(self, key_id: str) -> RSAPrivateKey:
        """One of our private keys by id (:class:`KeyError` when unknown)."""
        ...

    def private_keys(self) -> list[tuple[str, RSAPrivateKey]]:
        """All our private keys, newest first."""
        ...


def _pem(ref: KeyRef) -> bytes:
    if ref.env is not None:
        text = os.environ.get(ref.env)
        if not text:
            raise ConfigError(f"key {ref.id}: environment variable {ref.env} is not set")
        return text.replace("\\n", "\n").encode()
    assert ref.file is not None
    try:
        return Path(ref.file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"key {ref.id}: cannot read {ref.file}: {exc.strerror}") from None


def _load_public(ref: KeyRef) -> RSAPublicKey:
    data = _pem(ref)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a certificate holding the public key is what partners often hand over
            from cryptography import x509

            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ConfigError(f"key {ref.id}: not a PEM RSA public key or certificate") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigError(f"key {ref.id}: not an RSA key")
    return key


def _load_private(ref: KeyRef) -> RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_pem(ref), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"key {ref.id}: not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"key {ref.id}: not an RSA key")
    return key


class ContractKeys:
    """The keys a contract names, loaded on first use and kept (parsing a PEM costs ~0.1 ms)."""

    def __init__(self, contract: CryptoContract) -> None:
        self._public_refs = list(contract.partner_keys)
        self._private_refs = list(contract.our_keys)
        self._public: dict[str, RSAPublicKey] = {}
        self._private: dict[str, RSAPrivateKey] | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load every key now (ConfigError if one is missing or bad). A private key's checks cost
        ~50 ms of CPU: connectors call this in a thread at start, never on the event loop."""
        for ref in self._public_refs:
            self.public_key(ref.id)
        self._privates()

    def public_key(self, key_id: str | None = None) -> tuple[str, RSAPublicKey]:
        if not self._public_refs:
            raise ConfigError("the crypto contract names no partner_keys")
        ref = self._public_refs[0] if key_id is None else next((r for r in self._public_refs if r.id == key_id), None)
        if ref is None:
            raise KeyError(key_id)
        with self._lock:
            if ref.id not in self._public:
                self._public[ref.id] = _load_public(ref)
            return ref.id, self._public[ref.id]

    def _privates(self) -> dict[str, RSAPrivateKey]:
        with self._lock:
            if self._private is None:
                self._private = {r.id: _load_private(r) for r in self._private_refs}
            return self._private

    def private_key(self, key_id: str) -> RSAPrivateKey:
        return self._privates()[key_id]

    def private_keys(self) -> list[tuple[str, RSAPrivateKey]]:
        return list(self._privates().items())


_CACHE: dict[int, tuple[CryptoContract, ContractKeys]] = {}


def keys_for(contract: CryptoContract) -> ContractKeys:
    """The provider of one loaded contract (cached per contract object: a reload builds new ones)."""
    hit = _CACHE.get(id(contract))
    if hit is None or hit[0] is not contract:
        if len(_CACHE) > 256:
            _CACHE.clear()
        hit = _CACHE[id(contract)] = (contract, ContractKeys(contract))
    return hit[1]
