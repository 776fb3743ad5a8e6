"""Uploads as outside clients really make them, against the OpenSSH server of ``hub infra``: slow,
stalling, empty, still writing after the hub took the file; and a hub stopped in the middle of a file.

The writer is an asyncssh client holding the file open and writing small chunks with pauses (what
a client at 8–16 KB/s, or one stalled mid-file, looks like on the server). Windows are short
(about a second) so the tests take seconds, not the minutes of a real quiet window.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from app.infra.servers import SftpServer
from app.runtime import Runtime
from connectors.sftp.source import EMPTY_SHA256, SftpSource, claim_name
from hub.settings import Settings
from tests.integration.test_sftp import drop, server, sftp_batch, sftp_route, start_hub  # noqa: F401
from tests.support import eventually, read_topic, topic_envelopes

HEADER = "客户名称,城市,带宽\n".encode("gbk")


def rows(n: int, start: int = 0) -> bytes:
    return b"".join(f"客户{i},杭州,{i}\n".encode("gbk") for i in range(start, start + n))


@asynccontextmanager
async def writer(server: SftpServer, path: str) -> AsyncIterator[asyncssh.SFTPClientFile]:  # noqa: F811
    """A partner's client with ``path`` open for writing (created empty, as every client does)."""
    async with asyncssh.connect("127.0.0.1", port=server.port, username=server.username,
                                client_keys=[str(server.client_key)], known_hosts=str(server.known_hosts)) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(path, "wb") as fh:
                yield fh


async def trickle(fh: asyncssh.SFTPClientFile, data: bytes, chunk: int, pause: float) -> None:
    """Write ``data`` in ``chunk``-byte writes (splitting GBK characters too), ``pause`` s apart."""
    for i in range(0, len(data), chunk):
        await fh.write(data[i:i + chunk])
        await asyncio.sleep(pause)


def source_of(rt: Runtime) -> SftpSource:
    source = next(iter(rt.routes.runners.values())).source
    assert isinstance(source, SftpSource)
    return source


def quiet_route(remote: str, quiet_s: float, **source: Any) -> dict[str, Any]:
    return sftp_route(remote, source={"completion": {"rule": "quiescence", "quiet_s": quiet_s}, **source})


async def exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def test_slow_client_that_stalls_mid_file_is_read_only_once_complete(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    """A client at 8–16 KB/s sends 32 KB write requests: the file sits at 0 B until the first one
    has crossed the line, then grows a block at a time; this one also stalls mid-file."""
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 2.0)})
    try:
        body = HEADER + rows(40)
        async with writer(server, f"{drop['server_path']}/slow.csv") as fh:
            await asyncio.sleep(2.6)                              # 0 B on the server, longer than quiet_s
            await trickle(fh, body[:300], chunk=61, pause=0.5)    # GBK characters split across writes
            await asyncio.sleep(1.2)                              # stalled mid-file, shorter than quiet_s
            await trickle(fh, body[300:], chunk=61, pause=0.5)
            assert await exists(drop["local"] / "slow.csv"), "taken while the client was still writing"
        await eventually(lambda: exists(drop["local"] / "processed" / "slow.csv"), timeout=20)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=40)
        assert sorted(int(e.payload["带宽"]) for e in envs) == list(range(40))
        assert source_of(rt).stats["processed"] == 1
    finally:
        await rt.stop()


async def test_upload_stalled_mid_record_is_not_taken_cut_short(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    """Stalled longer than quiet_s in the middle of a line: taking the file would send that record
    cut short ("客户1,杭州,1" of "…,123"), which no re-read can take back. A file that does not end
    with a newline gets 4 quiet windows before it is believed finished."""
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 0.5)})
    try:
        source = source_of(rt)
        async with writer(server, f"{drop['server_path']}/cut.csv") as fh:
            await fh.write(HEADER + "客户0,杭州,100\n客户1,杭州,1".encode("gbk"))
            # the source saw the file quiet and ending mid-line, and held it (a barrier, not a sleep)
            await eventually(lambda: asyncio.sleep(0, source.stats["held_unterminated"] >= 2), timeout=10)
            assert await exists(drop["local"] / "cut.csv"), "taken while cut in the middle of a record"
            await fh.write("23\n".encode("gbk"))
        await eventually(lambda: exists(drop["local"] / "processed" / "cut.csv"), timeout=15)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=2)
        assert [e.payload["带宽"] for e in envs] == ["100", "123"]
        # a partner that never writes a final newline still gets its file read, just later
        (drop["local"] / "nonl.csv").write_bytes(HEADER + "客户2,杭州,7".encode("gbk"))
        await eventually(lambda: exists(drop["local"] / "processed" / "nonl.csv"), timeout=15)
        assert source.stats["processed"] == 2
    finally:
        await rt.stop()


async def test_stalled_empty_upload_is_left_and_never_recorded_as_processed(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 0.5)})
    try:
        source = source_of(rt)
        async with writer(server, f"{drop['server_path']}/stall.csv") as fh:
            # 0 bytes on the server for 4 quiet windows: "finished" by the rule, but empty
            await eventually(lambda: asyncio.sleep(0, source.stats["empty"] == 1), timeout=10)
            assert await exists(drop["local"] / "stall.csv")
            await fh.write(HEADER + rows(5))
        await eventually(lambda: exists(drop["local"] / "processed" / "stall.csv"), timeout=15)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=5)
        assert len(envs) == 5
        # an empty file dropped later is no "duplicate" of anything, and no checksum of nothing is kept
        empty = drop["tmp"] / "empty.csv"
        empty.write_bytes(b"")
        sftp_batch(server, f"put {empty} {drop['server_path']}/next.csv\n")
        await eventually(lambda: asyncio.sleep(0, source.stats["empty"] == 2), timeout=10)
        assert await exists(drop["local"] / "next.csv") and source.stats["duplicates"] == 0
        assert rt.db is not None
        assert await rt.db["sftp_files"].count_documents({"sha256": EMPTY_SHA256}) == 0
    finally:
        await rt.stop()


async def test_empty_file_can_be_moved_aside_with_a_reason(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 0.3,
                                                                          empty_files="failed")})
    try:
        empty = drop["tmp"] / "empty.csv"
        empty.write_bytes(b"")
        sftp_batch(server, f"put {empty} {drop['server_path']}/nothing.csv\n")
        await eventually(lambda: exists(drop["local"] / "failed" / "nothing.csv.reason.txt"), timeout=10)
        assert "empty file (0 bytes)" in (drop["local"] / "failed" / "nothing.csv.reason.txt").read_text()
        assert rt.db is not None and await rt.db["sftp_files"].count_documents({}) == 0
    finally:
        await rt.stop()


async def test_file_still_written_after_the_claim_is_put_back_and_read_again(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    """A writer that stalled longer than the window and then resumed while the hub was reading:
    the hub notices (size/mtime moved), gives the file back, reads it again once quiet; whatever it
    had already sent comes again with the same idempotency keys."""
    n, extra = 3000, 10
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 0.3, batch_size=50)})
    try:
        source = source_of(rt)
        claimed = drop["local"] / claim_name(settings.worker_id, "late.csv")
        async with writer(server, f"{drop['server_path']}/late.csv") as fh:
            await fh.write(HEADER + rows(n))
            await eventually(lambda: exists(claimed), timeout=10, interval=0.005)  # the hub took it
            await fh.write(rows(extra, start=n))                                  # … and we carry on
        await eventually(lambda: exists(drop["local"] / "processed" / "late.csv"), timeout=30)
        assert (drop["local"] / "processed" / "late.csv").stat().st_size == len(HEADER + rows(n + extra))
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", wait=6.0)
        by_key: dict[str, set[str]] = {}
        for e in envs:
            by_key.setdefault(e.idempotency_key, set()).add(e.payload["带宽"])
        assert sorted(int(v) for vals in by_key.values() for v in vals) == list(range(n + extra))
        assert all(len(vals) == 1 for vals in by_key.values())  # a record sent twice has one key
        assert source.stats["changed"] >= 1
    finally:
        await rt.stop()


async def test_writer_that_resumes_after_the_file_was_processed_gets_it_read_again(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:  # noqa: F811
    """The issue's case: a stall longer than the window, the hub takes and processes the first half,
    then the upload completes — into processed/. The hub notices and reads the whole file again."""
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 0.3)})
    try:
        source = source_of(rt)
        async with writer(server, f"{drop['server_path']}/stall.csv") as fh:
            await fh.write(HEADER + rows(5))
            await eventually(lambda: exists(drop["local"] / "processed" / "stall.csv"), timeout=10)
            await fh.write(rows(5, start=5))                     # the stalled client carries on
        await eventually(lambda: asyncio.sleep(0, source.stats["processed"] == 2), timeout=15)
        envs = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=15)
        by_key: dict[str, set[str]] = {}
        for e in envs:
            by_key.setdefault(e.idempotency_key, set()).add(e.payload["带宽"])
        assert sorted(int(v) for vals in by_key.values() for v in vals) == list(range(10))
        assert len(envs) == 15  # the first 5 again, with their first keys: consumers drop them
        assert source.stats["changed"] == 1
    finally:
        await rt.stop()


def spool_files_open(spool: Path) -> list[str]:
    """Files under ``spool`` this process still has open (deleted ones included)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(spool)):
            out.append(target)
    return out


@pytest.mark.allow_blocking(reason="the test writes a 150,000-order file on its own task before the ingest")
@pytest.mark.parametrize("phase", ["validating", "emitting"])
async def test_stop_during_a_big_ingest_is_prompt_and_gives_the_file_back(
        settings: Settings, drop: dict[str, Any], phase: str) -> None:  # noqa: F811
    """Validating: a work-order route checks every record on a thread first (~10 s for this file);
    emitting: a raw route spends its time sending batches. Either way the stop lands mid-file."""
    route = quiet_route(drop["remote"], 0, encoding="utf-8", pattern="ORD_*.csv")
    if phase == "validating":
        route.update(transform={"field_map": {"ORDER_NO": "external_order_id", "PRODUCT": "product",
                                              "SCENE": "scenario", "CUST_NAME": "customer.name", "CITY": "city",
                                              "ADDR": "address", "BW": "bandwidth_mbps"},
                                "value_map": {"scenario": {"01": "open"}}, "python": "boss_flat_order"},
                     canonical="work_order", target={"topic": "inbound"})
    big = drop["local"] / "ORD_big.csv"
    with big.open("w") as fh:
        fh.write("ORDER_NO,PRODUCT,SCENE,CUST_NAME,CITY,ADDR,BW\n")
        for i in range(150_000):
            fh.write(f"B-{i},internet_line,01,甲公司{i},杭州,文三路{i}号,100\n")
    size = big.stat().st_size
    rt = await start_hub(settings, drop["tmp"], {"boss-orders": route})
    stopped = False
    try:
        source = source_of(rt)
        await eventually(lambda: asyncio.sleep(0, source.phase == phase), timeout=30, interval=0.02)
        t0 = time.monotonic()
        await rt.stop()
        stopped = True
        elapsed = time.monotonic() - t0
        assert elapsed < 3.0, f"stop took {elapsed:.1f}s"
        assert spool_files_open(source.spool) == []          # no reader thread left holding the spool
        assert list(source.spool.iterdir()) == []
        assert big.exists() and big.stat().st_size == size  # given back under its name: read on the next start
        assert not (drop["local"] / "processed").exists()
    finally:
        if not stopped:
            await rt.stop()


async def test_a_claim_left_by_a_killed_run_is_taken_back_at_start(
        settings: Settings, drop: dict[str, Any]) -> None:  # noqa: F811
    left = drop["local"] / claim_name(settings.worker_id, "left.csv")  # what kill -9 mid-file leaves
    left.write_bytes(HEADER + rows(3))
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": quiet_route(drop["remote"], 0.3)})
    try:  # long before claim_stale_after_s (900 s)
        await eventually(lambda: exists(drop["local"] / "processed" / "left.csv"), timeout=15)
        assert len(await read_topic(settings, f"{settings.topic_prefix}.reports.boss", expect=3)) == 3
        assert source_of(rt).stats["released"] == 1
    finally:
        await rt.stop()
