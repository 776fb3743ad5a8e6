"""Whole-file encryption (D.2.2), file size limits and pinned host keys, against the OpenSSH server
of ``hub infra`` and the session's Kafka. The partner's side is tests/filecrypto_partner.py:
pycryptodome only, written from the documented format — no hub code encrypts what the hub reads
or decrypts what the hub writes."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from app.infra.servers import SftpServer
from app.runtime import Runtime
from connectors.context import ConnectorContext
from connectors.sftp.client import SftpHostKeyMismatch, SftpSession
from connectors.sftp.config import SftpConnection, SftpSinkConfig
from connectors.sftp.sink import SftpSink
from hub.cryptocontract import CryptoContract
from hub.envelope import Envelope
from hub.metrics import INTAKE_REQUESTS
from hub.settings import Settings
from tests import filecrypto_partner as partner
from tests.integration.test_sftp import drop, server, sftp_batch, sftp_route, start_hub  # noqa: F401
from tests.integration.test_sftp_uploads import exists, source_of, writer
from tests.support import eventually, read_topic, records_before_marker, topic_envelopes

KEYS = partner.KEYS
OUR_PUB = KEYS / "test-hub-2026b.pub.pem"
ENCRYPTION = {"our_keys": [{"id": "hub-2026b", "file": str(KEYS / "test-hub-2026b.key.pem")}]}
CSV = "客户名称,联系电话,带宽\n".encode("gbk") + b"".join(
    f"杭州客户{i},1380013{i:04d},{i}\n".encode("gbk") for i in range(300))


def encrypted_route(remote: str, **source: Any) -> dict[str, Any]:
    return sftp_route(remote, source={"encryption": ENCRYPTION, **source})


def rejected(partner_name: str, outcome: str) -> float:
    return INTAKE_REQUESTS.labels(partner_name, "sftp", outcome)._value.get()  # type: ignore[attr-defined,no-any-return]  # prometheus_client has no public read


async def test_a_partner_encrypted_file_dropped_with_sftp_reaches_kafka_in_clear(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    rt = await start_hub(settings, drop["tmp"], {"boss-enc": encrypted_route(drop["remote"])})
    try:
        src = drop["tmp"] / "orders.csv"
        src.write_bytes(partner.encrypt(CSV, OUR_PUB, "hub-2026b", chunk=1024))  # ~12 chunks
        sftp_batch(server, f"put {src} {drop['server_path']}/orders.csv\n")
        await eventually(lambda: exists(drop["local"] / "processed" / "orders.csv"), timeout=15)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=300)
        assert len(envs) == 300
        assert envs[0].payload == {"客户名称": "杭州客户0", "联系电话": "13800130000", "带宽": "0"}
        source = source_of(rt)
        assert source.stats["held_unterminated"] == 0  # its last byte is a tag, not a cut line
        # the same content encrypted again (a new data key, other bytes): a duplicate all the same
        again = drop["tmp"] / "again.csv"
        again.write_bytes(partner.encrypt(CSV, OUR_PUB, "hub-2026b", chunk=2048))
        sftp_batch(server, f"put {again} {drop['server_path']}/again.csv\n")
        await eventually(lambda: asyncio.sleep(0, source.stats["duplicates"] == 1), timeout=15)
        assert len(await read_topic(settings, f"{settings.topic_prefix}.reports.boss", wait=1.0)) == 300
    finally:
        await rt.stop()


async def test_a_tampered_or_clear_file_is_rejected_and_no_record_reaches_kafka(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    rt = await start_hub(settings, drop["tmp"], {"boss-enc": encrypted_route(drop["remote"])})
    try:
        before = rejected("boss", "rejected_invalid")
        enc = bytearray(partner.encrypt(CSV, OUR_PUB, "hub-2026b", chunk=1024))
        enc[-3] ^= 0x01  # the last chunk's tag: every record before it would parse
        (drop["local"] / "tampered.csv").write_bytes(bytes(enc))
        (drop["local"] / "clear.csv").write_bytes(CSV)
        await eventually(lambda: exists(drop["local"] / "failed" / "clear.csv.reason.txt"), timeout=15)
        await eventually(lambda: exists(drop["local"] / "failed" / "tampered.csv.reason.txt"), timeout=15)
        tampered = (drop["local"] / "failed" / "tampered.csv.reason.txt").read_text()
        assert "not authentic" in tampered and "does not authenticate" in tampered, tampered
        clear = (drop["local"] / "failed" / "clear.csv.reason.txt").read_text()
        assert "not an encrypted file" in clear, clear
        assert await records_before_marker(settings, f"{settings.topic_prefix}.reports.boss") == []
        assert rejected("boss", "rejected_invalid") - before == 2
        assert rt.db is not None
        letter = await eventually(lambda: rt.db["dead_letters"].find_one(  # type: ignore[index]  # checked above
            {"origin.file": "tampered.csv"}))
        assert "not authentic" in letter["error"]
    finally:
        await rt.stop()


async def test_an_encrypted_upload_taken_too_early_fails_then_is_read_once_complete(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    """Quiescence with an encrypted file: a stalled upload is taken cut short, fails authentication
    (truncated: no final chunk), and when the writer resumes the file is put back and read whole."""
    rt = await start_hub(settings, drop["tmp"], {"boss-enc": encrypted_route(drop["remote"])})
    try:
        enc = partner.encrypt(CSV, OUR_PUB, "hub-2026b", chunk=1024)
        async with writer(server, f"{drop['server_path']}/slow.csv") as fh:
            await fh.write(enc[:len(enc) // 2])
            await eventually(lambda: exists(drop["local"] / "failed" / "slow.csv.reason.txt"), timeout=10)
            reason = (drop["local"] / "failed" / "slow.csv.reason.txt").read_text()
            assert "not authentic" in reason, reason
            await fh.write(enc[len(enc) // 2:])
        await eventually(lambda: exists(drop["local"] / "processed" / "slow.csv"), timeout=15)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=300)
        assert len(envs) == 300 and source_of(rt).stats["processed"] == 1
    finally:
        await rt.stop()


async def test_done_file_rule_with_an_encrypted_file(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    route = encrypted_route(drop["remote"], completion={"rule": "done_file", "done_suffix": ".ok"})
    rt = await start_hub(settings, drop["tmp"], {"boss-enc": route})
    try:
        source = source_of(rt)
        (drop["local"] / "d.csv").write_bytes(partner.encrypt(CSV, OUR_PUB, "hub-2026b"))
        polls = source.stats["polls"]
        await eventually(lambda: asyncio.sleep(0, source.stats["polls"] >= polls + 3), timeout=10)
        assert (drop["local"] / "d.csv").exists()  # no done file yet
        (drop["local"] / "d.csv.ok").write_text("")
        await eventually(lambda: exists(drop["local"] / "processed" / "d.csv"), timeout=15)
        assert len(await read_topic(settings, f"{settings.topic_prefix}.reports.boss", expect=300)) == 300
    finally:
        await rt.stop()


async def test_a_file_over_the_size_limit_is_rejected_unread_with_size_and_limit(
        settings: Settings, drop: dict[str, Any], server: SftpServer,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    rt = await start_hub(settings, drop["tmp"], {"boss-limit": sftp_route(drop["remote"],
                                                                          source={"max_file_bytes": 1000})})
    try:
        before = rejected("boss", "rejected_too_large")
        (drop["local"] / "small.csv").write_bytes(CSV[:900].rsplit(b"\n", 1)[0] + b"\n")
        (drop["local"] / "big.csv").write_bytes(CSV)
        with caplog.at_level(logging.ERROR, logger="connectors.sftp.source"):
            await eventually(lambda: exists(drop["local"] / "failed" / "big.csv.reason.txt"), timeout=15)
            await eventually(lambda: exists(drop["local"] / "processed" / "small.csv"), timeout=15)
        reason = (drop["local"] / "failed" / "big.csv.reason.txt").read_text()
        assert f"file too large: {len(CSV)} bytes, limit 1000 bytes" in reason and "not read" in reason, reason
        assert rejected("boss", "rejected_too_large") - before == 1
        assert any("big.csv rejected" in r.getMessage() and "too large" in r.getMessage() for r in caplog.records)
        assert rt.db is not None
        assert await rt.db["sftp_files"].count_documents({"name": "big.csv"}) == 0  # never read, never recorded
        letter = await eventually(lambda: rt.db["dead_letters"].find_one(  # type: ignore[index]  # checked above
            {"origin.file": "big.csv"}))
        assert "limit 1000" in letter["error"]
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", wait=1.0)
        assert {e.headers["file"] for e in envs} == {"small.csv"}
    finally:
        await rt.stop()


async def test_the_sink_writes_encrypted_files_the_partner_decrypts_with_pycryptodome(
        settings: Settings, runtime: Runtime, server: SftpServer) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:6].upper()
    contract = CryptoContract.model_validate(  # keys from the partner's crypto: block, as app/delivery hands it
        {"partner_keys": [{"id": "partner-2026a", "file": str(KEYS / "test-partner-2026a.pub.pem")}]})
    cfg = SftpSinkConfig.model_validate({
        "partner": "gw", "connection": {"embedded": True}, "content": "jsonl_payload", "default_ext": "jsonl",
        "path_template": "/GW/{province}/audit/{yyyymmdd}{seq:04d}.{ext}", "encryption": {}, "crypto": contract})
    sink = SftpSink(cfg, ConnectorContext(settings, "gw-upload", runtime.db, runtime.producer))  # type: ignore[attr-defined]  # Runtime's db/producer
    await sink.start()
    try:
        payload = {"province": f"BJ{tag}", "customer_name": "张三", "id_number": "110101199003077777"}
        out = await sink.deliver(Envelope(type="call.request", source="hub", protocol="sftp", correlation_id="o-1",
                                          idempotency_key=f"k{tag}", payload=payload))
        assert out.ok and out.response["encrypted"] is True, out
        written = server.local_path(server.remote_path(server.root) + out.response["path"]).read_bytes()
        assert b"110101199003077777" not in written and len(written) == out.response["bytes"]
        key_id, plain = partner.decrypt(written, KEYS / "test-partner-2026a.key.pem")
        assert key_id == "partner-2026a" and json.loads(plain) == payload
    finally:
        await sink.stop()


async def test_a_host_key_that_is_not_the_pinned_one_refuses_the_connection(
        settings: Settings, server: SftpServer, tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    """The real sshd presents its own key; the route pins another one (a changed server, or someone
    in between): no session, an error log line naming the known_hosts file."""
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{server.port} {other}\n")

    def session(known_hosts: Path) -> SftpSession:
        conn = SftpConnection(host="127.0.0.1", port=server.port, username=server.username,
                              client_key=server.client_key, known_hosts=known_hosts, connect_timeout_s=5)
        return SftpSession(conn, settings)

    bad = session(wrong)
    with caplog.at_level(logging.ERROR, logger="connectors.sftp.client"), pytest.raises(SftpHostKeyMismatch):
        await bad.client()
    await bad.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "connectors.sftp.client"]
    assert "host key verification failed" in line and str(wrong) in line and "connection refused" in line, line

    good = session(server.known_hosts)  # the pinned key that is the server's: connects
    try:
        sftp = await good.client()
        assert await sftp.exists(".") is True
    finally:
        await good.close()
