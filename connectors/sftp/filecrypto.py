"""The SFTP connector's side of whole-file encryption (D.2.2): the keys a route's ``encryption:``
block resolves to, and the two things the source and the sink do with them.

Why here and not in the source or sink: both read the same block the same way (route keys first,
else the partner's ``crypto:`` contract), and the source must authenticate a whole file in one
streamed pass before it validates or emits anything — a step of its own, run on a thread. The
format itself is ``transforms/crypto/filestream.py``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from connectors.sftp.config import FileEncryption
from connectors.sftp.records import ReadStopped
from hub.cryptocontract import CryptoContract
from transforms.crypto.filestream import NotAuthentic, encrypt_chunks, open_decrypted
from transforms.crypto.keys import ContractKeys

__all__ = ["FileDecryption", "FileSealer"]

READ = 256 * 1024


def _sha256(path: Path, stop: threading.Event) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(READ), b""):
            if stop.is_set():
                raise ReadStopped("source stopping")
            h.update(block)
    return h.hexdigest()


class FileDecryption:
    """Inbound: our private keys (rotation: every one unwraps), the route's cipher."""

    def __init__(self, block: FileEncryption, partner: CryptoContract | None, where: str) -> None:
        self.block = block
        self.contract = block.contract(partner, "our_keys", where)  # kept: the provider is cached per object
        self.keys = ContractKeys(self.contract)

    def warm(self) -> None:
        """Load and check every key now (~50 ms CPU per private key): on a thread, at the route's start."""
        self.keys.warm()

    def open(self, path: Path) -> IO[bytes]:
        """The file's plaintext, each chunk authenticated before it is read."""
        return open_decrypted(path, self.keys, self.contract.key_wrap, self.block.cipher)

    def authenticate(self, path: Path, stop: threading.Event) -> tuple[str, str | None]:
        """One streamed pass over the whole file (on a thread): ``(sha256 of the plaintext, None)``
        when every chunk authenticates, else ``(sha256 of the file as received, reason)``. The
        plaintext digest is the file's identity (duplicates, record keys): a partner that sends
        the same content again encrypts it under a new key, so the encrypted bytes never repeat."""
        h = hashlib.sha256()
        try:
            with self.open(path) as fh:
                for block in iter(lambda: fh.read(READ), b""):
                    if stop.is_set():
                        raise ReadStopped("source stopping")
                    h.update(block)
        except NotAuthentic as exc:
            return _sha256(path, stop), f"not authentic: {exc}"
        return h.hexdigest(), None


class FileSealer:
    """Outbound: the partner's current public key (the first of ``partner_keys``) wraps a fresh
    data key per file."""

    def __init__(self, block: FileEncryption, partner: CryptoContract | None, where: str) -> None:
        self.block = block
        self.contract = block.contract(partner, "partner_keys", where)
        self.keys = ContractKeys(self.contract)

    def warm(self) -> None:
        self.keys.warm()

    def seal(self, body: bytes) -> Iterator[bytes]:
        """The encrypted file, piece by piece (header, then one piece per chunk)."""
        key_id, public = self.keys.public_key()
        pieces = (body[i:i + self.block.chunk_bytes] for i in range(0, len(body), self.block.chunk_bytes))
        return encrypt_chunks(pieces, cipher=self.block.cipher, key_bits=self.block.key_bits,
                              spec=self.contract.key_wrap, key_id=key_id, public=public,
                              chunk=self.block.chunk_bytes)
