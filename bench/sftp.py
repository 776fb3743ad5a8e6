"""SFTP ingest: records/s from one large CSV (default 100 MB) and the worker's peak memory.

    python -m bench.sftp [--mb 100]

A private tansu + SecantusDB + OpenSSH; the CSV is written into the SFTP drop folder, then a
separate worker process (so its peak RSS is the connector's alone) runs the real route pipeline —
claim, streamed download, checksum dedupe lookup, whole-file validation pass, batched emit to
Kafka (acks=all), record checksum, move to processed/ — and reports what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench._common import private_infra

ROW = "{i},B{i:09d},internet_line,01,杭州某某科技有限公司{m},1380000{m:04d},浙江,杭州,西湖区文三路{m}号,{bw}\n"
HEADER = "SEQ,ORDER_NO,PRODUCT,SCENE,CUST_NAME,CONTACT_PHONE,PROVINCE,CITY,ADDR,BW\n"


def write_csv(path: Path, megabytes: int) -> int:
    target = megabytes * 1024 * 1024
    rows = 0
    with path.open("w", encoding="gbk", newline="") as fh:
        fh.write(HEADER)
        size = len(HEADER.encode("gbk"))
        chunk: list[str] = []
        while size < target:
            line = ROW.format(i=rows, m=rows % 9999, bw=100 + rows % 900)
            chunk.append(line)
            size += len(line.encode("gbk"))
            rows += 1
            if len(chunk) >= 10000:
                fh.write("".join(chunk))
                chunk.clear()
        fh.write("".join(chunk))
    return rows


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def worker(remote_dir: str) -> dict[str, float]:
    from connectors.context import ConnectorContext
    from connectors.sftp.source import SftpSource
    from hub.deadletter import DeadLetters
    from hub.runtime import Runtime
    from hub.settings import load_settings
    from routes.models import route_model
    from routes.pipeline import RouteEmit

    settings = load_settings()
    rt = Runtime(settings, partners={})
    await rt.start()
    route = route_model().model_validate({
        "name": "bench-sftp", "target": {"topic": "bench.sftp"},
        "source": {"connector": "sftp", "partner": "boss", "connection": {"embedded": True}, "dir": remote_dir,
                   "pattern": "*.csv", "encoding": "gbk", "min_age_s": 0, "batch_size": 2000}})
    assert rt.db is not None
    emit = RouteEmit(route, prefix=settings.topic_prefix, intake=rt.intake, producer=rt.producer,
                     dead_letters=DeadLetters(rt.db, rt.producer))
    assert emit.topic is not None
    await rt.ensure_topic(emit.topic)
    source = SftpSource(route.source, ConnectorContext(settings, "bench-sftp", rt.db, rt.producer))  # type: ignore[attr-defined]
    source._emit = emit  # drive polls by hand (no background task) so timing is exact
    await source.poll_once()  # first sight of the file: size noted
    before = rss_mb()
    t0 = time.perf_counter()
    handled = await source.poll_once()  # size unchanged → claim, stream, validate, emit, move
    seconds = time.perf_counter() - t0
    await source.session.close()
    await rt.stop()
    return {"files": len(handled), "records": source.stats["records"], "seconds": seconds,
            "records_per_s": source.stats["records"] / seconds, "rss_before_mb": before, "peak_rss_mb": rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "worker"])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--dir", default="/bench/in")
    args = parser.parse_args()
    if args.mode == "worker":
        print(json.dumps(asyncio.run(worker(args.dir))), flush=True)
        return
    with private_infra(sftp=True):
        from hub.infra.servers import SftpServer
        from hub.settings import load_settings

        server = SftpServer(load_settings())
        local = server.root / args.dir.lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        part = local / "orders.csv.part"
        rows = write_csv(part, args.mb)
        part.rename(local / "orders.csv")
        size = (local / "orders.csv").stat().st_size
        print(f"wrote {size / 1048576:.1f} MB, {rows} records (GBK CSV) in {time.perf_counter() - t0:.1f} s")
        out = subprocess.run([sys.executable, "-m", "bench.sftp", "worker", "--dir", args.dir],
                             env=os.environ.copy(), capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(1)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"SFTP ingest: {res['records']} records in {res['seconds']:.1f} s = {res['records_per_s']:.0f} "
              f"records/s ({size / 1048576 / res['seconds']:.1f} MB/s); worker RSS before {res['rss_before_mb']:.0f}"
              f" MB, peak {res['peak_rss_mb']:.0f} MB")
        assert (local / "processed" / "orders.csv").exists(), "file was not moved to processed/"


if __name__ == "__main__":
    main()
