"""A partner's own implementation of the whole-file format (docs/security.md, "Whole-file
encryption (D.2.2)"), written from the documented layout with pycryptodome only — no hub code — so
the tests check the hub against an independent reading of the format, in both directions."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from Crypto.Cipher import AES

from tests.partner_crypto import KEYS, oaep

__all__ = ["KEYS", "decrypt", "encrypt"]


def encrypt(plaintext: bytes, recipient_pub: Path, key_id: str, chunk: int = 4096) -> bytes:
    key = os.urandom(32)
    prefix = os.urandom(7)
    wrapped = oaep(recipient_pub).encrypt(key)
    kid = key_id.encode()
    header = (b"HFE1" + bytes([1, len(kid)]) + kid + struct.pack(">H", len(wrapped)) + wrapped
              + struct.pack(">I", chunk) + prefix)
    pieces = [plaintext[i:i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    out = [header]
    for i, piece in enumerate(pieces):
        gcm = AES.new(key, AES.MODE_GCM, nonce=prefix + struct.pack(">IB", i, int(i == len(pieces) - 1)))
        gcm.update(header)
        ct, tag = gcm.encrypt_and_digest(piece)
        out.append(ct + tag)
    return b"".join(out)


def decrypt(data: bytes, our_private: Path) -> tuple[str, bytes]:
    """(key id named in the header, plaintext); raises ValueError if anything fails to verify."""
    assert data[:4] == b"HFE1" and data[4] == 1, "not an AES-GCM HFE1 file"
    pos = 5
    kid_len = data[pos]
    key_id = data[pos + 1:pos + 1 + kid_len].decode()
    pos += 1 + kid_len
    (wrap_len,) = struct.unpack(">H", data[pos:pos + 2])
    wrapped = data[pos + 2:pos + 2 + wrap_len]
    pos += 2 + wrap_len
    (chunk,) = struct.unpack(">I", data[pos:pos + 4])
    prefix = data[pos + 4:pos + 11]
    pos += 11
    header = data[:pos]
    key = oaep(our_private).decrypt(wrapped)
    body = data[pos:]
    size = chunk + 16
    sealed = [body[i:i + size] for i in range(0, len(body), size)]
    out = []
    for i, piece in enumerate(sealed):
        gcm = AES.new(key, AES.MODE_GCM, nonce=prefix + struct.pack(">IB", i, int(i == len(sealed) - 1)))
        gcm.update(header)
        out.append(gcm.decrypt_and_verify(piece[:-16], piece[-16:]))
    return key_id, b"".join(out)
