"""The symmetric ciphers of the crypto contracts: AES and SM4, GCM or CBC with PKCS#7, on bytes.

Why only these: they are what the documents name (AES; SM4 for the tariff interfaces) in the two
modes partners' Java stacks ship by default. ``cryptography`` (OpenSSL) does the work; GCM appends
its 16-byte tag to the ciphertext, as Java's ``Cipher.doFinal`` and pycryptodome's
``encrypt_and_digest`` concatenated do, so peers interoperate without a separate tag field.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["BLOCK", "CipherError", "decrypt", "encrypt", "iv_size"]

BLOCK = 16
TAG = 16


class CipherError(ValueError):
    """Ciphertext that does not decrypt: wrong key, tampered, truncated, bad padding."""


def iv_size(mode: str) -> int:
    """GCM takes the 96-bit nonce of NIST SP 800-38D §8.2; CBC a full block."""
    return 12 if mode == "gcm" else BLOCK


def _algorithm(cipher: str, key: bytes) -> algorithms.AES | algorithms.SM4:
    return algorithms.SM4(key) if cipher == "sm4" else algorithms.AES(key)


def encrypt(cipher: str, mode: str, key: bytes, iv: bytes, plaintext: bytes, aad: bytes | None = None) -> bytes:
    """Ciphertext (GCM: with the tag appended; CBC: PKCS#7 padded)."""
    if mode == "gcm":
        if cipher == "aes":
            return AESGCM(key).encrypt(iv, plaintext, aad)
        enc = Cipher(_algorithm(cipher, key), modes.GCM(iv)).encryptor()
        if aad:
            enc.authenticate_additional_data(aad)
        return enc.update(plaintext) + enc.finalize() + enc.tag
    padder = padding.PKCS7(BLOCK * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    cbc = Cipher(_algorithm(cipher, key), modes.CBC(iv)).encryptor()
    return cbc.update(padded) + cbc.finalize()


def decrypt(cipher: str, mode: str, key: bytes, iv: bytes, data: bytes, aad: bytes | None = None) -> bytes:
    """Plaintext, or :class:`CipherError` for anything that does not authenticate or unpad."""
    try:
        if mode == "gcm":
            if len(data) < TAG:
                raise CipherError("ciphertext shorter than the GCM tag")
            if cipher == "aes":
                return AESGCM(key).decrypt(iv, data, aad)
            dec = Cipher(_algorithm(cipher, key), modes.GCM(iv, data[-TAG:])).decryptor()
            if aad:
                dec.authenticate_additional_data(aad)
            return dec.update(data[:-TAG]) + dec.finalize()
        if not data or len(data) % BLOCK:
            raise CipherError("CBC ciphertext is not a whole number of blocks")
        cbc = Cipher(_algorithm(cipher, key), modes.CBC(iv)).decryptor()
        padded = cbc.update(data) + cbc.finalize()
        unpadder = padding.PKCS7(BLOCK * 8).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except InvalidTag:
        raise CipherError("GCM tag does not match (wrong key or tampered)") from None
    except ValueError as exc:
        if isinstance(exc, CipherError):
            raise
        raise CipherError(f"cannot decrypt: {exc}") from None
