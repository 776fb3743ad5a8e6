"""Whole-file encryption (D.2.2): the streamed chunked-GCM format against an independent
implementation (pycryptodome, tests/filecrypto_partner.py) both ways, every way a file can fail to
authenticate, rotation, SM4, streaming memory, and the SFTP record readers over the plaintext."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.sftp.config import FileEncryption, SftpSourceConfig
from connectors.sftp.filecrypto import FileDecryption, FileSealer
from connectors.sftp.records import FileRejected, read_records
from hub.cryptocontract import CryptoContract
from hub.errors import ConfigError
from tests import filecrypto_partner as partner
from tests.unit.crypto_support import key
from transforms.crypto.filestream import NotAuthentic

OURS = FileEncryption.model_validate({"our_keys": [{"id": "hub-2026b", "file": key("test-hub-2026b.key.pem")},
                                                   {"id": "hub-2026a", "file": key("test-hub-2026a.key.pem")}]})
TO_PARTNER = FileEncryption.model_validate({"partner_keys": [{"id": "partner-2026a",
                                                              "file": key("test-partner-2026a.pub.pem")}],
                                            "chunk_bytes": 1024})
PUB_B = Path(key("test-hub-2026b.pub.pem"))


def sealed(data: bytes, block: FileEncryption | None = None) -> bytes:
    """What our sink writes for ``data``, addressed to our own key (so our decryption can read it)."""
    block = block or FileEncryption.model_validate({"partner_keys": [{"id": "hub-2026b", "file": str(PUB_B)}],
                                                    "chunk_bytes": 1024})
    return b"".join(FileSealer(block, None, "test").seal(data))


_OURS: list[FileDecryption] = []


def ours() -> FileDecryption:
    """One decryption for the module: a private key's checks cost ~50 ms each time one is loaded."""
    if not _OURS:
        _OURS.append(FileDecryption(OURS, None, "test"))
    return _OURS[0]


def read_all(tmp: Path, data: bytes, dec: FileDecryption | None = None) -> bytes:
    path = tmp / "f.enc"
    path.write_bytes(data)
    with (dec or ours()).open(path) as fh:
        return fh.read()


def test_a_partner_file_written_with_pycryptodome_decrypts_streamed(tmp_path: Path) -> None:
    plain = os.urandom(10_000) + b"\nlast line without newline"
    enc = partner.encrypt(plain, PUB_B, "hub-2026b", chunk=1024)
    assert read_all(tmp_path, enc) == plain
    for size in (0, 1, 1024, 2048, 2049):  # empty, one byte, exact chunk multiples, one over
        data = os.urandom(size)
        assert read_all(tmp_path, partner.encrypt(data, PUB_B, "hub-2026b", chunk=1024)) == data, size


def test_a_file_the_hub_writes_decrypts_with_pycryptodome() -> None:
    plain = "客户名称,联系电话\n张三,13800138000\n".encode() * 300
    enc = b"".join(FileSealer(TO_PARTNER, None, "test").seal(plain))
    key_id, out = partner.decrypt(enc, Path(key("test-partner-2026a.key.pem")))
    assert (key_id, out) == ("partner-2026a", plain)
    assert b"13800138000" not in enc and "张三".encode() not in enc


def test_every_fresh_file_has_a_fresh_data_key() -> None:
    one, two = sealed(b"same"), sealed(b"same")
    assert one != two and one[:4] == two[:4] == b"HFE1"


@pytest.mark.parametrize("damage", ["flip_last_chunk", "flip_first_chunk", "flip_header", "drop_last_chunk",
                                    "cut_mid_chunk", "swap_chunks", "clear_file", "header_only"])
def test_anything_that_does_not_authenticate_is_refused_with_a_reason(tmp_path: Path, damage: str) -> None:
    plain = os.urandom(3 * 1024)  # exactly three chunks of 1024
    enc = bytearray(sealed(plain))
    body = len(enc) - 3 * 1040
    if damage == "flip_last_chunk":
        enc[-1] ^= 1
    elif damage == "flip_first_chunk":
        enc[body + 10] ^= 1
    elif damage == "flip_header":
        enc[body - 1] ^= 1  # the nonce prefix: part of every chunk's associated data
    elif damage == "drop_last_chunk":  # cut at a chunk boundary: the now-last chunk was not sealed as last
        del enc[-1040:]
    elif damage == "cut_mid_chunk":
        del enc[-500:]
    elif damage == "swap_chunks":
        enc[body:body + 1040], enc[body + 1040:body + 2080] = enc[body + 1040:body + 2080], enc[body:body + 1040]
    elif damage == "clear_file":
        enc = bytearray(b"name,phone\nA,1\n")
    elif damage == "header_only":
        del enc[body:]
    with pytest.raises(NotAuthentic) as info:
        read_all(tmp_path, bytes(enc))
    assert str(info.value)


def test_a_key_we_do_not_have_or_a_cipher_the_route_does_not_use_is_refused(tmp_path: Path) -> None:
    for_partner = b"".join(FileSealer(TO_PARTNER, None, "test").seal(b"x" * 100))
    with pytest.raises(NotAuthentic, match=r"key id .partner-2026a., which is not one of ours"):
        read_all(tmp_path, for_partner)
    anonymous = partner.encrypt(b"x", Path(key("test-partner-2026a.pub.pem")), "")  # no key id: each key tried
    with pytest.raises(NotAuthentic, match="does not unwrap"):
        read_all(tmp_path, anonymous)
    sm4 = sealed(b"x", FileEncryption.model_validate({"cipher": "sm4", "partner_keys": [
        {"id": "hub-2026b", "file": str(PUB_B)}]}))
    with pytest.raises(NotAuthentic, match="encrypted with sm4-gcm, this route expects aes-gcm"):
        read_all(tmp_path, sm4)


def test_rotation_a_file_for_our_previous_key_and_one_without_key_id_still_decrypt(tmp_path: Path) -> None:
    old = partner.encrypt(b"old key", Path(key("test-hub-2026a.pub.pem")), "hub-2026a")
    assert read_all(tmp_path, old) == b"old key"
    unnamed = partner.encrypt(b"no id", Path(key("test-hub-2026a.pub.pem")), "")
    assert read_all(tmp_path, unnamed) == b"no id"


def test_sm4_gcm_round_trip(tmp_path: Path) -> None:
    block = {"cipher": "sm4", "our_keys": [{"id": "hub-2026b", "file": key("test-hub-2026b.key.pem")}]}
    dec = FileDecryption(FileEncryption.model_validate(block), None, "test")
    data = os.urandom(5000)
    enc = sealed(data, FileEncryption.model_validate({"cipher": "sm4", "chunk_bytes": 1024, "partner_keys": [
        {"id": "hub-2026b", "file": str(PUB_B)}]}))
    assert enc[4] == 2 and read_all(tmp_path, enc, dec) == data


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), chunk=st.integers(min_value=1024, max_value=2048))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk: int) -> None:
    block = FileEncryption.model_validate({"partner_keys": [{"id": "hub-2026b", "file": str(PUB_B)}],
                                           "chunk_bytes": chunk})
    assert read_all(tmp_path_factory.mktemp("p"), sealed(data, block)) == data


def test_keys_default_to_the_partners_crypto_contract_and_a_missing_side_is_a_config_error() -> None:
    contract = CryptoContract.model_validate({
        "key_wrap": {"scheme": "rsa-oaep", "hash": "sha512", "mgf1_hash": "sha256"},
        "our_keys": [{"id": "hub-2026b", "file": key("test-hub-2026b.key.pem")}]})
    dec = FileDecryption(FileEncryption(), contract, "route r")
    assert [k.id for k in dec.contract.our_keys] == ["hub-2026b"] and dec.contract.key_wrap.hash == "sha512"
    with pytest.raises(ConfigError, match="route r: encryption needs our_keys"):
        FileDecryption(FileEncryption(), None, "route r")
    with pytest.raises(ConfigError, match="encryption needs partner_keys"):
        FileSealer(FileEncryption(), contract, "sink")


def csv_route(**over: object) -> SftpSourceConfig:
    return SftpSourceConfig.model_validate({"partner": "boss", "connection": {"embedded": True}, "dir": "/in",
                                            "encoding": "gbk", "encryption": OURS.model_dump(), **over})


def test_record_readers_parse_the_authenticated_plaintext(tmp_path: Path) -> None:
    cfg = csv_route()
    csv = "客户名称,联系电话\n".encode("gbk") + b"".join(f"客户{i},1380013{i:04d}\n".encode("gbk") for i in range(500))
    path = tmp_path / "orders.csv"
    path.write_bytes(partner.encrypt(csv, PUB_B, "hub-2026b", chunk=1024))
    dec = ours()
    recs = list(read_records(path, cfg, b"seed", opener=lambda: dec.open(path)))
    assert len(recs) == 500 and recs[7].data == {"客户名称": "客户7", "联系电话": "13800130007"}
    # the keys of the records are those of the same file in clear: a file's identity is its content
    clear = tmp_path / "clear.csv"
    clear.write_bytes(csv)
    assert [r.digest for r in read_records(clear, cfg, b"seed")] == [r.digest for r in recs]

    xml_cfg = csv_route(format="xml", encoding="utf-8")
    xml = b"<batch>" + b"".join(b"<record><id>%d</id></record>" % i for i in range(300)) + b"</batch>"
    xml_path = tmp_path / "r.xml"
    xml_path.write_bytes(partner.encrypt(xml, PUB_B, "hub-2026b", chunk=1024))
    assert [r.data for r in read_records(xml_path, xml_cfg, opener=lambda: dec.open(xml_path))][299] == {"id": "299"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xml"])
def test_a_chunk_failing_mid_file_rejects_the_file_in_every_reader(tmp_path: Path, fmt: str) -> None:
    body = {"csv": b"a,b\n" + b"1,2\n" * 2000, "jsonl": b'{"a": 1}\n' * 2000,
            "xml": b"<r>" + b"<record><a>1</a></record>" * 2000 + b"</r>"}[fmt]
    enc = bytearray(partner.encrypt(body, PUB_B, "hub-2026b", chunk=1024))
    enc[-1] ^= 0x40  # the last chunk's tag
    path = tmp_path / "bad"
    path.write_bytes(bytes(enc))
    dec = ours()
    with pytest.raises(FileRejected, match="does not authenticate"):
        list(read_records(path, csv_route(format=fmt, encoding="utf-8"), opener=lambda: dec.open(path)))
    digest, reason = dec.authenticate(path, threading.Event())
    assert reason is not None and "not authentic" in reason and digest == hashlib.sha256(enc).hexdigest()


def test_decryption_is_streamed_memory_stays_flat(tmp_path: Path) -> None:
    """A 4 MB file is read through the record reader with a few chunks in memory, not the file."""
    line = b"x" * 99 + b"\n"
    body = b"a\n" + line * 40_000
    path = tmp_path / "big.enc"
    path.write_bytes(partner.encrypt(body, PUB_B, "hub-2026b", chunk=64 * 1024))
    dec = ours()
    dec.warm()  # the key checks' allocations are not the reader's
    cfg = csv_route(encoding="utf-8")
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_records(path, cfg, opener=lambda: dec.open(path)))
        digest, reason = dec.authenticate(path, threading.Event())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 40_000 and reason is None and digest == hashlib.sha256(body).hexdigest()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for an {len(body)}-byte file"


def test_the_header_layout_is_the_documented_one() -> None:
    enc = sealed(b"hello")
    assert enc[:4] == b"HFE1" and enc[4] == 1
    kid_len = enc[5]
    assert enc[6:6 + kid_len] == b"hub-2026b"
    (wrap_len,) = struct.unpack(">H", enc[6 + kid_len:8 + kid_len])
    assert wrap_len == 256  # RSA-2048
    (chunk,) = struct.unpack(">I", enc[8 + kid_len + wrap_len:12 + kid_len + wrap_len])
    assert chunk == 1024
    assert len(enc) == 12 + kid_len + wrap_len + 7 + len(b"hello") + 16
