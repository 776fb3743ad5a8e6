"""SFTP connector against the OpenSSH server of ``hub infra``; the stock ``sftp`` client is the
third-party peer dropping files (half-written, duplicate, malformed, GBK)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.infra.servers import SftpServer
from app.runtime import Runtime
from connectors.context import ConnectorContext
from connectors.sftp.config import SftpSinkConfig
from connectors.sftp.sink import SftpSink, UnsafePath, render_path
from hub.envelope import Envelope
from hub.intake import unconsumed
from hub.settings import Settings
from tests.support import envelopes, eventually, read_topic, records_before_marker, topic_envelopes


@pytest.fixture
def server(settings: Settings) -> SftpServer:
    return SftpServer(settings)


def sftp_batch(server: SftpServer, commands: str) -> None:
    """Run the stock OpenSSH ``sftp`` client in batch mode (a partner's tool, not ours)."""
    subprocess.run(
        ["sftp", "-b", "-", "-i", str(server.client_key), "-P", str(server.port),
         "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", f"{server.username}@127.0.0.1"],
        input=commands.encode(), check=True, capture_output=True, timeout=30,
    )


@pytest.fixture
def drop(server: SftpServer, tmp_path: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    remote = f"/t{tag}/in"  # route-relative path (inside the embedded server's root)
    local = server.root / f"t{tag}" / "in"
    local.mkdir(parents=True)
    return {"remote": remote, "local": local, "server_path": server.remote_path(local), "tmp": tmp_path}


async def start_hub(settings: Settings, tmp_path: Path, routes: dict[str, dict[str, Any]]) -> Runtime:
    cfg = tmp_path / "config"
    (cfg / "routes").mkdir(parents=True, exist_ok=True)
    for name, route in routes.items():
        (cfg / "routes" / f"{name}.yaml").write_text(yaml.safe_dump(route, allow_unicode=True))
    rt = Runtime(settings.model_copy(update={"config_dir": cfg}), partners={})
    await rt.start()
    await rt.start_routes(watch=False)
    return rt


def sftp_route(remote: str, **over: Any) -> dict[str, Any]:
    source = {"connector": "sftp", "partner": "boss", "connection": {"embedded": True}, "dir": remote,
              "pattern": "*.csv", "poll_interval_s": 0.2, "completion": {"quiet_s": 0.3}, "encoding": "gbk"}
    source.update(over.pop("source", {}))
    return {"source": source, "target": {"topic": "reports.boss"}, **over}


@pytest.fixture
async def hub(settings: Settings, drop: dict[str, Any]) -> AsyncIterator[Runtime]:
    rt = await start_hub(settings, drop["tmp"], {"boss-drop": sftp_route(drop["remote"])})
    try:
        yield rt
    finally:
        await rt.stop()


GBK_CSV = "客户名称,城市,带宽\n杭州某某科技有限公司,杭州,100\n宁波某某贸易公司,宁波,200\n".encode("gbk")


async def processed(drop: dict[str, Any], name: str, folder: str = "processed") -> bool:
    return (drop["local"] / folder / name).exists()


async def test_gbk_file_dropped_with_the_sftp_client_becomes_one_envelope_per_record(
        hub: Runtime, settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:
    src = drop["tmp"] / "day1.csv"
    src.write_bytes(GBK_CSV)
    sftp_batch(server, f"put {src} {drop['server_path']}/day1.csv\n")
    await eventually(lambda: processed(drop, "day1.csv"), timeout=15)
    records = await read_topic(settings, f"{settings.topic_prefix}.reports.boss", expect=2)
    envs = envelopes(records)
    assert [e.payload for e in envs] == [
        {"客户名称": "杭州某某科技有限公司", "城市": "杭州", "带宽": "100"},
        {"客户名称": "宁波某某贸易公司", "城市": "宁波", "带宽": "200"},
    ]
    assert {e.protocol for e in envs} == {"sftp"} and envs[0].headers["file"] == "day1.csv"
    assert not (drop["local"] / "day1.csv").exists()

    # the same bytes again under another name: not processed twice
    sftp_batch(server, f"put {src} {drop['server_path']}/day1-resent.csv\n")
    await eventually(lambda: asyncio.to_thread(
        lambda: any(p.name.startswith("day1-resent.csv.duplicate") for p in (drop["local"] / "processed").iterdir())),
        timeout=15)
    assert len(await read_topic(settings, f"{settings.topic_prefix}.reports.boss", wait=1.0)) == 2


async def test_half_written_file_is_left_alone_until_renamed(hub: Runtime, settings: Settings,
                                                             drop: dict[str, Any], server: SftpServer) -> None:
    src = drop["tmp"] / "big.csv"
    src.write_bytes(GBK_CSV)
    sftp_batch(server, f"put {src} {drop['server_path']}/big.csv.part\n")
    source = next(iter(hub.routes.runners.values())).source
    polls = source.stats["polls"]
    await eventually(lambda: asyncio.sleep(0, source.stats["polls"] >= polls + 4), timeout=10)
    assert (drop["local"] / "big.csv.part").exists()
    assert await records_before_marker(settings, f"{settings.topic_prefix}.reports.boss") == []
    sftp_batch(server, f"rename {drop['server_path']}/big.csv.part {drop['server_path']}/big.csv\n")
    await eventually(lambda: processed(drop, "big.csv"), timeout=15)


async def test_growing_file_is_taken_only_once_its_size_is_stable(hub: Runtime, settings: Settings,
                                                                  drop: dict[str, Any]) -> None:
    path = drop["local"] / "grow.csv"
    with path.open("wb") as fh:
        fh.write("客户名称,城市,带宽\n".encode("gbk"))
        for i in range(8):  # a writer still appending, 0.15 s apart (poll every 0.2 s)
            fh.write(f"客户{i},杭州,{i + 1}\n".encode("gbk"))
            fh.flush()
            await asyncio.sleep(0.15)
    await eventually(lambda: processed(drop, "grow.csv"), timeout=15)
    assert len(await read_topic(settings, f"{settings.topic_prefix}.reports.boss", expect=8)) == 8


async def test_malformed_file_goes_to_failed_with_a_reason_and_an_error_envelope(
        hub: Runtime, settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:
    src = drop["tmp"] / "bad.csv"
    src.write_bytes("客户名称,城市,带宽\n杭州公司,杭州\n".encode("gbk"))
    sftp_batch(server, f"put {src} {drop['server_path']}/bad.csv\n")
    await eventually(lambda: processed(drop, "bad.csv", "failed"), timeout=15)
    reason = (drop["local"] / "failed" / "bad.csv.reason.txt").read_text()
    assert "line 2: 2 fields, header has 3" in reason
    assert await records_before_marker(settings, f"{settings.topic_prefix}.reports.boss") == []
    assert hub.db is not None
    letter = await eventually(lambda: hub.db["dead_letters"].find_one({"partner": "boss"}))  # type: ignore[index]
    assert "bad.csv" in letter["error"] and letter["origin"]["file"] == "bad.csv"


async def test_truncated_gbk_file_is_rejected_with_the_line_and_byte_offset(
        hub: Runtime, drop: dict[str, Any], server: SftpServer) -> None:
    src = drop["tmp"] / "cut.csv"
    src.write_bytes(GBK_CSV[:GBK_CSV.rindex("宁".encode("gbk")) + 1])  # only the lead byte of "宁" arrived
    offset = GBK_CSV.rindex("宁".encode("gbk"))
    sftp_batch(server, f"put {src} {drop['server_path']}/cut.csv\n")
    await eventually(lambda: processed(drop, "cut.csv.reason.txt", "failed"), timeout=15)
    reason = (drop["local"] / "failed" / "cut.csv.reason.txt").read_text()
    assert f"line 3, byte {offset}: not valid gbk: incomplete multibyte sequence" in reason, reason


async def test_work_order_route_validates_every_record_before_emitting_any(
        settings: Settings, drop: dict[str, Any], server: SftpServer) -> None:
    route = sftp_route(drop["remote"], source={"encoding": "utf-8", "pattern": "ORD_*.csv"}, transform={
        "field_map": {"ORDER_NO": "external_order_id", "PRODUCT": "product", "SCENE": "scenario",
                      "CUST_NAME": "customer.name", "CITY": "city", "ADDR": "address", "BW": "bandwidth_mbps"},
        "value_map": {"scenario": {"01": "open", "02": "change"}}, "strict_values": ["scenario"],
        "python": "boss_flat_order"}, canonical="work_order", target={"topic": "inbound"})
    rt = await start_hub(settings, drop["tmp"], {"boss-orders": route})
    try:
        good = "ORDER_NO,PRODUCT,SCENE,CUST_NAME,CITY,ADDR,BW\nB-1,internet_line,01,甲公司,杭州,文三路1号,100\n"
        (drop["tmp"] / "ORD_1.csv").write_text(good + "B-2,internet_line,99,乙公司,杭州,文三路2号,x\n")
        (drop["tmp"] / "ORD_2.csv").write_text(good)
        sftp_batch(server, f"put {drop['tmp']}/ORD_1.csv {drop['server_path']}/ORD_1.csv\n"
                           f"put {drop['tmp']}/ORD_2.csv {drop['server_path']}/ORD_2.csv\n")
        await eventually(lambda: processed(drop, "ORD_1.csv", "failed"), timeout=15)
        await eventually(lambda: processed(drop, "ORD_2.csv"), timeout=15)
        reason = (drop["local"] / "failed" / "ORD_1.csv.reason.txt").read_text()
        assert "line 3" in reason and "unknown code '99'" in reason
        (env,) = await topic_envelopes(settings, f"{settings.topic_prefix}.in.boss", expect=1)
        assert env.idempotency_key == "order:boss:B-1:open" and env.type == "order.received"
        assert env.payload["addresses"][0]["city"] == "杭州" and env.payload["bandwidth_mbps"] == 100
        # journaled for recovery: a broker wiped before the engine consumed it would not lose the order
        assert rt.db is not None
        lost = await unconsumed(rt.db, within=timedelta(hours=1))
        assert [(t, e.id) for t, e in lost] == [(f"{settings.topic_prefix}.in.boss", env.id)]
    finally:
        await rt.stop()


async def test_two_workers_never_take_the_same_file(settings: Settings, drop: dict[str, Any]) -> None:
    route = sftp_route(drop["remote"], source={"encoding": "utf-8", "completion": {"quiet_s": 0},
                                               "poll_interval_s": 0.05})
    rts = [await start_hub(settings.model_copy(update={"worker_id": f"w{i}"}), drop["tmp"] / f"w{i}",
                           {"boss-drop": route}) for i in range(2)]
    try:
        for i in range(12):
            (drop["local"] / f"f{i:02d}.csv").write_text(f"a,b\n{i},x\n{i},y\n")
        await eventually(lambda: asyncio.to_thread(
            lambda: len(list((drop["local"] / "processed").glob("f*.csv"))) == 12), timeout=20)
        records = await read_topic(settings, f"{settings.topic_prefix}.reports.boss", expect=24)
        assert len(records) == 24  # each file's two records exactly once
    finally:
        for rt in rts:
            await rt.stop()


async def test_sink_uploads_via_part_and_rename_into_the_12_2_path(settings: Settings, runtime: Runtime,
                                                                   server: SftpServer) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    cfg = SftpSinkConfig(partner="gw", connection={"embedded": True}, content="base64_field",  # type: ignore[arg-type]
                         path_template="/GW/{province}/changeProdStaDerateForm/{yyyy}/{mm}/{yyyymmdd}{seq:04d}.{ext}",
                         max_bytes=1000)
    sink = SftpSink(cfg, ConnectorContext(settings, "gw-upload", runtime.db, runtime.producer))
    await sink.start()
    try:
        def env(province: str, data: bytes, key: str) -> Envelope:
            return Envelope(type="call.request", source="hub", protocol="sftp", correlation_id="ord-1",
                            idempotency_key=key, payload={"province": province, "ext": "pdf",
                                                          "content_b64": base64.b64encode(data).decode()})

        first = await sink.deliver(env(f"BJ{tag}", b"%PDF-1.4 one", f"k1{tag}"))
        second = await sink.deliver(env(f"BJ{tag}", b"%PDF-1.4 two", f"k2{tag}"))
        assert first.ok and second.ok, (first, second)
        p1, p2 = first.response["path"], second.response["path"]
        assert p1.startswith(f"/GW/BJ{tag}/changeProdStaDerateForm/") and p1.endswith("0001.pdf")
        assert p2.endswith("0002.pdf")
        assert server.local_path(server.remote_path(server.root) + p1).read_bytes() == b"%PDF-1.4 one"
        assert not list(server.local_path(server.remote_path(server.root) + p1).parent.glob("*.part"))

        again = await sink.deliver(env(f"BJ{tag}", b"%PDF-1.4 one", f"k1{tag}"))
        assert again.ok and again.response["path"] == p1  # redelivery: no second file

        big = await sink.deliver(env(f"BJ{tag}", b"x" * 1001, f"k3{tag}"))
        assert not big.ok and not big.retryable and "limit 1000" in (big.error or "")
        evil = await sink.deliver(env("../../etc", b"x", f"k4{tag}"))
        assert not evil.ok and not evil.retryable and "cannot be used in a file path" in (evil.error or "")
    finally:
        await sink.stop()


async def test_done_file_mode_waits_for_the_done_file(
        settings: Settings, drop: dict[str, Any]) -> None:
    route = sftp_route(drop["remote"], source={"encoding": "gb18030", "pattern": "REPORT_*.csv",
                                               "completion": {"rule": "done_file", "done_suffix": ".ok"}})
    rt = await start_hub(settings, drop["tmp"], {"daily-report": route})
    try:
        source = next(iter(rt.routes.runners.values())).source
        (drop["local"] / "REPORT_1.csv").write_bytes("机房,利用率\n杭州,0.7\n".encode("gb18030"))
        polls = source.stats["polls"]
        await eventually(lambda: asyncio.sleep(0, source.stats["polls"] >= polls + 4), timeout=10)
        assert (drop["local"] / "REPORT_1.csv").exists()  # no done-file yet: untouched
        (drop["local"] / "REPORT_1.csv.ok").write_text("")
        await eventually(lambda: processed(drop, "REPORT_1.csv"), timeout=15)
        assert not (drop["local"] / "REPORT_1.csv.ok").exists()
        (env,) = await topic_envelopes(settings, f"{settings.topic_prefix}.reports.boss", expect=1)
        assert env.payload == {"机房": "杭州", "利用率": "0.7"}
        assert source.stats["processed"] == 1 and source.stats["failed"] == 0
    finally:
        await rt.stop()


@pytest.mark.parametrize("value", ["../x", "/abs", "a/b", "..", "a\x00b", ""])
def test_path_values_are_sanitised(value: str) -> None:
    with pytest.raises(UnsafePath):
        render_path("/GW/{province}/{name}", {"province": "BJ00", "name": value})
