"""Wrapping a data key with RSA: OAEP (label hash and MGF1 hash set apart) or PKCS#1 v1.5.

Why two hashes: Java's ``OAEPWithSHA-256AndMGF1Padding`` hashes the label with SHA-256 but runs
MGF1 with SHA-1 unless an ``OAEPParameterSpec`` says otherwise; a hub that assumed SHA-256 for
both would fail to unwrap every key such a peer sends. PKCS#1 v1.5 is there for legacy peers.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from hub.cryptocontract import KeyWrap

__all__ = ["WrapError", "unwrap", "wrap"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


class WrapError(ValueError):
    """A wrapped key that our private key does not unwrap."""


def _padding(spec: KeyWrap) -> padding.AsymmetricPadding:
    if spec.scheme == "rsa-pkcs1v15":
        return padding.PKCS1v15()
    return padding.OAEP(mgf=padding.MGF1(_HASHES[spec.mgf1_hash]()), algorithm=_HASHES[spec.hash](), label=None)


def wrap(spec: KeyWrap, public: RSAPublicKey, key: bytes) -> bytes:
    return public.encrypt(key, _padding(spec))


def unwrap(spec: KeyWrap, private: RSAPrivateKey, wrapped: bytes) -> bytes:
    try:
        return private.decrypt(wrapped, _padding(spec))
    except ValueError:
        raise WrapError("the wrapped key does not decrypt with this private key and padding") from None
