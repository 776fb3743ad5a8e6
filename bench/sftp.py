"""SFTP ingest: records/s from one large CSV (default 100 MB) and the worker's peak memory.

    python -m bench.sftp [--mb 100]            # the connector alone, in a worker process
    python -m bench.sftp --flows [--mb 200]    # a whole ``hub run`` with the flows running

``--flows`` starts the real ``hub run`` (router, flow engine with the shipped blueprints, delivery
agents, HTTP) as a subprocess, drops the file on the shipped ``boss-sftp-orders`` route (every row
a valid internet-line *open* order, so the flows really run) and samples the hub's RSS from
``/proc``: before the drop, peak during the ingest (a line every ``--sample`` seconds: the curve
tells a bound from a leak), and after it settles. Then it sends SIGTERM and reports how long ``hub
run`` took to exit. The per-MB growth is what item 5 of issue 8 is about. The partner simulators
(``hub simulate``) run beside it unless ``--no-simulators``: without them every call of every flow
fails, is retried and dead-lettered, which doubled the database's load (2026-12-02: 90–190
records/s, 360 k records of the 200 MB file in 65 min on the embedded SecantusDB).

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
# --flows: the columns of the shipped boss-sftp-orders route, so every row is a valid order
ORDER_ROW = "B{i:011d},internet_line,01,杭州某某科技有限公司{m},1380000{m:04d},浙江,杭州,西湖区文三路{m}号,{bw}\n"
ORDER_HEADER = "ORDER_NO,PRODUCT,SCENE,CUST_NAME,CONTACT_PHONE,PROVINCE,CITY,ADDR,BW\n"


def write_csv(path: Path, megabytes: int, *, header: str = HEADER, row: str = ROW) -> int:
    target = megabytes * 1024 * 1024
    rows = 0
    with path.open("w", encoding="gbk", newline="") as fh:
        fh.write(header)
        size = len(header.encode("gbk"))
        chunk: list[str] = []
        while size < target:
            line = row.format(i=rows, m=rows % 9999, bw=100 + rows % 900)
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
    from app.runtime import Runtime
    from connectors.context import ConnectorContext
    from connectors.sftp.source import SftpSource
    from hub.deadletter import DeadLetters
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


def proc_rss_mb(pid: int) -> float:
    """Current resident set of ``pid`` (VmRSS), in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def hub_run_flows(megabytes: int, settle_s: float, timeout_s: float, stop_after_s: float | None = None, *,
                  simulators: bool = True, sample_s: float = 60.0) -> None:
    """The whole hub with the flows running: RSS before / peak / settled, records/s, exit time.
    ``stop_after_s``: SIGTERM that long after the file was claimed instead (shutdown during an ingest)."""
    import signal
    import urllib.request

    from app.infra.servers import SftpServer
    from bench._common import free_port, wait_http
    from hub.settings import load_settings

    settings = load_settings()
    drop = SftpServer(settings).root / "drop" / "boss" / "orders"
    drop.mkdir(parents=True, exist_ok=True)
    part = drop / "ORD_bench.csv.part"
    t0 = time.perf_counter()
    rows = write_csv(part, megabytes, header=ORDER_HEADER, row=ORDER_ROW)
    size = part.stat().st_size
    print(f"wrote {size / 1048576:.1f} MB, {rows} orders (GBK CSV, internet_line/open) in "
          f"{time.perf_counter() - t0:.1f} s")
    port, sim_port = free_port(), free_port()
    env = {**os.environ, "HUB_HTTP_PORT": str(port), "HUB_LOG_LEVEL": "WARNING"}
    sim = None
    if simulators:
        env["HUB_SIM_URL"] = f"http://127.0.0.1:{sim_port}"
        with (Path(settings.home) / "bench-sim.log").open("wb") as slog:
            sim = subprocess.Popen([sys.executable, "-m", "hub", "simulate", "--port", str(sim_port)], env=env,
                                   stdout=slog, stderr=subprocess.STDOUT)
    log_path = Path(settings.home) / "bench-hub-run.log"
    with log_path.open("wb") as log:
        hub = subprocess.Popen([sys.executable, "-m", "hub", "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
        time.sleep(5)  # let the startup recovery scan and the first polls pass
        baseline = proc_rss_mb(hub.pid)
        peak = baseline
        part.rename(drop / "ORD_bench.csv")
        dropped = time.perf_counter()
        done = drop / "processed" / "ORD_bench.csv"
        if stop_after_s is not None:
            claim = drop / ".claimed~hub-worker~ORD_bench.csv"
            while not claim.exists():
                time.sleep(0.1)
            time.sleep(stop_after_s)
            print(f"SIGTERM {stop_after_s:.0f} s after the claim, during the ingest (hub RSS "
                  f"{proc_rss_mb(hub.pid):.0f} MB)")
            return
        next_sample = time.perf_counter() + sample_s
        while not done.exists():
            if time.perf_counter() >= next_sample:
                next_sample += sample_s
                print(f"  {time.perf_counter() - dropped:7.0f} s: hub RSS {proc_rss_mb(hub.pid):.0f} MB "
                      f"(peak so far {peak:.0f} MB)", flush=True)
            if hub.poll() is not None:
                raise SystemExit(f"hub run exited ({hub.returncode}); log: {log_path}")
            if time.perf_counter() - dropped > timeout_s:
                raise SystemExit(f"file not processed within {timeout_s:.0f} s; log: {log_path}")
            peak = max(peak, proc_rss_mb(hub.pid))
            time.sleep(0.5)
        ingest_s = time.perf_counter() - dropped
        settle_until = time.perf_counter() + settle_s
        while time.perf_counter() < settle_until:
            peak = max(peak, proc_rss_mb(hub.pid))
            time.sleep(0.5)
        settled = proc_rss_mb(hub.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        transitions = sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines()
                          if ln.startswith("hub_stage_transitions_total{"))
        print(f"SFTP ingest with the flows running: {rows} records in {ingest_s:.1f} s = {rows / ingest_s:.0f} "
              f"records/s ({size / 1048576 / ingest_s:.2f} MB/s, drop to processed/, incl. poll delay)")
        print(f"hub RSS before {baseline:.0f} MB, peak {peak:.0f} MB (+{peak - baseline:.0f} MB, "
              f"{(peak - baseline) / (size / 1048576):.2f} MB per file MB), after {settle_s:.0f} s settle "
              f"{settled:.0f} MB (+{settled - baseline:.0f} MB); flow stage transitions so far: {transitions:.0f}")
    finally:
        t_stop = time.perf_counter()
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=60)
            print(f"hub run exited {hub.returncode} {time.perf_counter() - t_stop:.1f} s after SIGTERM; drop folder: "
                  f"{sorted(p.name for p in drop.iterdir() if p.is_file())}")
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
            print("hub run did not exit within 60 s of SIGTERM (killed)")
        if sim is not None:
            sim.terminate()
            sim.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "worker"])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--dir", default="/bench/in")
    parser.add_argument("--flows", action="store_true", help="a whole `hub run` with the flows running")
    parser.add_argument("--settle", type=float, default=30.0, help="--flows: seconds to watch RSS after the ingest")
    parser.add_argument("--timeout", type=float, default=3600.0, help="--flows: give up after this many seconds")
    parser.add_argument("--no-simulators", action="store_true", help="--flows: no partner simulators")
    parser.add_argument("--sample", type=float, default=60.0, help="--flows: print RSS every this many seconds")
    parser.add_argument("--stop-after", type=float, default=None,
                        help="--flows: SIGTERM this many seconds after the file is claimed, report the exit time")
    args = parser.parse_args()
    if args.mode == "worker":
        print(json.dumps(asyncio.run(worker(args.dir))), flush=True)
        return
    if args.flows:
        with private_infra(sftp=True):
            hub_run_flows(args.mb, args.settle, args.timeout, args.stop_after, simulators=not args.no_simulators,
                          sample_s=args.sample)
        return
    with private_infra(sftp=True):
        from app.infra.servers import SftpServer
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
