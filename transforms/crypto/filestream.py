"""Whole-file encryption (CATALOGUE D.2.2), streamed: chunked AES-GCM or SM4-GCM, key in the header.

Why this format: D.2.2 says only "encrypt the whole file that contains sensitive data"; it fixes
no cipher, mode or framing. A file must be *authenticated* before any of its records is published,
yet read without ever holding it in memory — so one GCM over the whole file is out (its tag comes
at the end, and a streaming decryptor would hand out unauthenticated plaintext first), and so is
CBC alone (no integrity). Chunked GCM (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
Vizár, as Google Tink's streaming AEAD uses it) authenticates every chunk on its own, and its nonce
carries the chunk's number and a "last chunk" flag, so chunks cannot be reordered, dropped or the
file cut at a chunk boundary without a tag failing. The source reads the whole file once through
this reader before it emits anything (the validation pass), so a file that fails anywhere is a
rejected file with no record on Kafka.

The data key is fresh per file and travels RSA-wrapped in the file's header (one file, so every
SFTP completion rule — rename, done file, quiescence — keeps working unchanged, and the key can
never be separated from its file in ``processed/`` or ``failed/``).

Layout (all integers big-endian)::

    magic      4   b"HFE1"
    cipher     1   1 = AES-GCM, 2 = SM4-GCM (key length from the unwrapped key: AES 16/24/32, SM4 16)
    id_len     1   0..64
    key_id     id_len   ASCII id of the recipient's RSA key that unwraps (rotation); may be empty
    wrap_len   2
    wrapped    wrap_len RSA-OAEP (hash / MGF1 hash per contract) or PKCS#1 v1.5 of the data key
    chunk      4   plaintext bytes per chunk, 1 KiB .. 8 MiB
    prefix     7   random nonce prefix
    -- the header ends here; it is the additional authenticated data of every chunk --
    chunk i    GCM(key, nonce = prefix || uint32(i) || uint8(last), aad = header, plaintext_i)
               = ciphertext || 16-byte tag; every chunk but the last holds exactly ``chunk`` plaintext
               bytes, the last 0..chunk (an empty file is one empty last chunk)
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.cryptocontract import KeyWrap
from hub.errors import ValidationFailed
from transforms.crypto.keys import KeyProvider
from transforms.crypto.wrap import WrapError, unwrap, wrap

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["MAGIC", "FileCipher", "FileHeader", "NotAuthentic", "decrypted_chunks", "encrypt_chunks",
           "open_decrypted", "read_header"]

MAGIC = b"HFE1"
TAG = 16
PREFIX = 7
MIN_CHUNK, MAX_CHUNK = 1024, 8 * 1024 * 1024
DEFAULT_CHUNK = 64 * 1024
FileCipher = Literal["aes", "sm4"]
_CIPHER_NAMES: dict[int, FileCipher] = {1: "aes", 2: "sm4"}
_CIPHER_IDS = {v: k for k, v in _CIPHER_NAMES.items()}


class NotAuthentic(ValidationFailed):
    """The file is not one we can decrypt and authenticate: no header, a key that does not unwrap,
    a chunk whose tag fails, a file cut short. The text is the rejected file's reason."""


@dataclass(frozen=True)
class FileHeader:
    cipher: FileCipher
    key_id: str
    wrapped: bytes
    chunk: int
    prefix: bytes
    raw: bytes  # the header's bytes as read: every chunk's associated data


def _header_bytes(cipher: FileCipher, key_id: str, wrapped: bytes, chunk: int, prefix: bytes) -> bytes:
    kid = key_id.encode("ascii")
    return (MAGIC + bytes([_CIPHER_IDS[cipher], len(kid)]) + kid + struct.pack(">H", len(wrapped)) + wrapped
            + struct.pack(">I", chunk) + prefix)


def _exactly(fh: IO[bytes], n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise NotAuthentic(f"not an encrypted file: it ends inside the header ({what})")
    return data


def read_header(fh: IO[bytes]) -> FileHeader:
    """Parse the header; the stream is left at the first chunk."""
    magic = fh.read(len(MAGIC))
    if magic != MAGIC:
        raise NotAuthentic("not an encrypted file (no HFE1 header): this route accepts encrypted files only")
    cipher_id, id_len = _exactly(fh, 2, "cipher")
    if cipher_id not in _CIPHER_NAMES:
        raise NotAuthentic(f"unknown cipher id {cipher_id} in the header")
    if id_len > 64:
        raise NotAuthentic(f"key id of {id_len} bytes in the header (at most 64)")
    kid = _exactly(fh, id_len, "key id")
    (wrap_len,) = struct.unpack(">H", _exactly(fh, 2, "wrapped key length"))
    wrapped = _exactly(fh, wrap_len, "wrapped key")
    (chunk,) = struct.unpack(">I", _exactly(fh, 4, "chunk size"))
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        raise NotAuthentic(f"chunk size {chunk} in the header is outside {MIN_CHUNK}..{MAX_CHUNK}")
    prefix = _exactly(fh, PREFIX, "nonce prefix")
    try:
        key_id = kid.decode("ascii")
    except UnicodeDecodeError:
        raise NotAuthentic("the key id in the header is not ASCII") from None
    cipher = _CIPHER_NAMES[cipher_id]
    return FileHeader(cipher, key_id, wrapped, chunk, prefix, _header_bytes(cipher, key_id, wrapped, chunk, prefix))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class _Gcm:
    """One data key's GCM, AES through AESGCM (one call per chunk), SM4 through the Cipher API."""

    def __init__(self, cipher: FileCipher, key: bytes) -> None:
        if len(key) not in ((16,) if cipher == "sm4" else (16, 24, 32)):
            raise NotAuthentic(f"the unwrapped data key has {len(key)} bytes, not a {cipher} key")
        self.cipher = cipher
        self.key = key
        self._aes = AESGCM(key) if cipher == "aes" else None

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if self._aes is not None:
            return self._aes.encrypt(nonce, data, aad)
        enc = Cipher(algorithms.SM4(self.key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        return enc.update(data) + enc.finalize() + enc.tag

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        """Plaintext or :class:`InvalidTag`."""
        if self._aes is not None:
            return self._aes.decrypt(nonce, data, aad)
        dec = Cipher(algorithms.SM4(self.key), modes.GCM(nonce, data[-TAG:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(data[:-TAG]) + dec.finalize()


def encrypt_chunks(plaintext: Iterable[bytes], *, cipher: FileCipher, key_bits: int, spec: KeyWrap,
                   key_id: str, public: RSAPublicKey, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """The encrypted file as successive byte strings (header first), from plaintext pieces of any
    sizes (a stream: ``iter(lambda: fh.read(n), b"")``); memory stays about one chunk."""
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        raise ValueError(f"chunk must be within {MIN_CHUNK}..{MAX_CHUNK}")
    key = os.urandom(16 if cipher == "sm4" else key_bits // 8)
    prefix = os.urandom(PREFIX)
    header = _header_bytes(cipher, key_id, wrap(spec, public, key), chunk, prefix)
    gcm = _Gcm(cipher, key)
    yield header
    buf = bytearray()
    index = 0
    pending: bytes | None = None  # a full chunk held back until we know whether it is the last
    for piece in plaintext:
        buf += piece
        while len(buf) >= chunk:
            if pending is not None:
                yield gcm.seal(_nonce(prefix, index, False), pending, header)
                index += 1
            pending = bytes(buf[:chunk])
            del buf[:chunk]
    if pending is not None:
        if buf:
            yield gcm.seal(_nonce(prefix, index, False), pending, header)
            index += 1
            pending = bytes(buf)
        yield gcm.seal(_nonce(prefix, index, True), pending, header)
    else:
        yield gcm.seal(_nonce(prefix, index, True), bytes(buf), header)


def _data_key(header: FileHeader, keys: KeyProvider, spec: KeyWrap) -> bytes:
    """Unwrap with the key the header names, else with each of ours, newest first (rotation)."""
    candidates: list[tuple[str, RSAPrivateKey]]
    if header.key_id:
        try:
            candidates = [(header.key_id, keys.private_key(header.key_id))]
        except KeyError:
            raise NotAuthentic(f"the file's data key is wrapped for key id {header.key_id!r}, "
                               "which is not one of ours") from None
    else:
        candidates = keys.private_keys()
    for _kid, private in candidates:
        try:
            key = unwrap(spec, private, header.wrapped)
        except WrapError:
            continue
        if len(key) in ((16,) if header.cipher == "sm4" else (16, 24, 32)):
            return key
    raise NotAuthentic("the file's data key does not unwrap with our private key and the route's key_wrap "
                       f"({spec.scheme}, hash {spec.hash}, MGF1 {spec.mgf1_hash})")


def decrypted_chunks(fh: IO[bytes], keys: KeyProvider, spec: KeyWrap,
                     expect: FileCipher | None = None) -> Iterator[bytes]:
    """Plaintext chunk by chunk, each authenticated before it is yielded; :class:`NotAuthentic`
    for the first thing that fails. The last chunk is known by reading one chunk ahead."""
    header = read_header(fh)
    if expect is not None and header.cipher != expect:
        raise NotAuthentic(f"the file is encrypted with {header.cipher}-gcm, this route expects {expect}-gcm")
    gcm = _Gcm(header.cipher, _data_key(header, keys, spec))
    size = header.chunk + TAG
    index = 0
    current = fh.read(size)
    while True:
        following = fh.read(size) if len(current) == size else b""
        last = not following
        if len(current) < TAG:
            raise NotAuthentic(f"truncated: chunk {index} is {len(current)} bytes, shorter than its tag"
                               if current else f"truncated: the file ends before chunk {index}")
        try:
            plain = gcm.open(_nonce(header.prefix, index, last), current, header.raw)
        except InvalidTag:
            raise NotAuthentic(f"chunk {index} (at byte {len(header.raw) + index * size}) does not "
                               "authenticate: wrong key, tampered, reordered or truncated") from None
        yield plain
        if last:
            return
        index += 1
        current = following


class _DecryptingRaw(io.RawIOBase):
    """A read-only raw stream of authenticated plaintext over an encrypted file."""

    def __init__(self, fh: IO[bytes], chunks: Iterator[bytes]) -> None:
        self._fh = fh
        self._chunks = chunks
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        while self._pos >= len(self._buf):
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf, self._pos = nxt, 0
        out = memoryview(buffer).cast("B")
        n = min(len(out), len(self._buf) - self._pos)
        out[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def open_decrypted(path: Path, keys: KeyProvider, spec: KeyWrap, expect: FileCipher | None = None) -> IO[bytes]:
    """A buffered binary stream of the plaintext (``readline`` works); reading raises
    :class:`NotAuthentic` as soon as something does not decrypt."""
    fh = path.open("rb")
    try:
        raw = _DecryptingRaw(fh, decrypted_chunks(fh, keys, spec, expect))
    except BaseException:
        fh.close()
        raise
    return io.BufferedReader(raw, buffer_size=DEFAULT_CHUNK)
