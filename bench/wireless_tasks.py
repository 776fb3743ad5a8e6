"""Wireless parameter tasks end to end (CATALOGUE P36.1/P36.2, issue 11's figure: ≥ 1,000 tasks/s; the
documents' peak is 4,000,000 changes a day): from an ARAN file on the SFTP drop to the simulated NMS.

    python -m bench.wireless_tasks [--tasks 200000] [--watch 0]

On a private tansu + SecantusDB + OpenSSH (bench/_common.py):

1. **baseline, same run**: the raw SFTP ingest of the same file — the SFTP source (claim, streamed spool,
   checksum lookup, whole-file validation pass, processed/) with every record parsed as a task
   (flows/tasks/model.py) but stored and sent nowhere — in a worker process; records/s.
2. **end to end**: a real ``hub run`` (shipped config/, ``anomaly.watch_s`` set to ``--watch``) and the
   partner simulators (``hub simulate``) as subprocesses; the file and its ``.ok`` go into the drop
   (config/tasks/wireless.yaml ``sftp.dir``); measured from the drop until the batch document says every
   task was pushed (``ok + failed == received``) and until it is ``completed`` (every chunk judged by
   P36.2). Tasks/s, the ratio to the baseline, and the hub's peak RSS (VmHWM, /proc) before and after.

Prints ``uptime``'s load average too: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench._common import free_port, private_infra, wait_http

HEADER = "TASK_ID,ORDER_NO,ORDER_TYPE,NE,CELL,PARAM,VALUE\n"
TYPES = ("optimisation", "optimisation", "optimisation", "new_site", "cutover", "emergency")
PARAMS = ("pMax", "qRxLevMin", "cellIndividualOffset", "hysteresis", "timeToTrigger", "a3Offset")


def write_tasks(path: Path, n: int) -> int:
    """``n`` tasks, ~75 bytes each; CELL-000007 gets an alarm from the simulated NMS (P36.2 finds it)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        chunk: list[str] = []
        for i in range(n):
            chunk.append(f"T{i:09d},WO-{i // 1000:06d},{TYPES[i % 6]},gNB-{i // 3:07d},CELL-{i:06d},"
                         f"{PARAMS[i % 6]},{i % 40 - 20}\n")
            if len(chunk) >= 10_000:
                fh.write("".join(chunk))
                chunk.clear()
        fh.write("".join(chunk))
    return path.stat().st_size


def vm(pid: int, key: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of ``pid`` in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# --- 1. baseline: the raw SFTP ingest -------------------------------------------------------------------
class CountingEmit:
    """The task intake's Emit minus the storing: records are parsed as tasks and counted."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.count = 0

    @property
    def can_reject(self) -> bool:
        return True

    def prepare(self, envelope: Any) -> Any:
        from flows.tasks.model import parse_task

        envelope.payload = parse_task(envelope.payload, self.settings)
        return envelope

    async def __call__(self, envelope: Any) -> Any:
        raise NotImplementedError

    async def publish_batch(self, envelopes: Any) -> int:
        n = len(list(envelopes))
        self.count += n
        return n

    async def reject(self, reason: str, envelope: Any = None, **origin: Any) -> None:
        raise SystemExit(f"baseline file rejected: {reason}")


async def baseline(remote_dir: str) -> dict[str, float]:
    from motor.motor_asyncio import AsyncIOMotorClient

    from connectors.context import ConnectorContext
    from connectors.sftp.source import SftpSource
    from flows.tasks.model import load_settings as task_settings
    from hub.settings import load_settings

    settings = load_settings()
    tasks = task_settings(settings.config_dir)
    assert tasks is not None and tasks.sftp is not None
    config = tasks.sftp.model_copy(update={"dir": remote_dir, "completion": tasks.sftp.completion})
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(settings.mongo_uri)
    source = SftpSource(config, ConnectorContext(settings, "bench-wireless-baseline", client[settings.mongo_db]))
    emit = CountingEmit(tasks)
    source._emit = emit  # the counting Emit stands in for TaskEmit; polls driven by hand, timed exactly
    t0 = time.perf_counter()
    while emit.count == 0 and time.perf_counter() - t0 < 60:  # the .ok file is there: the first poll takes it
        await source.poll_once()
    seconds = time.perf_counter() - t0
    await source.session.close()
    client.close()
    return {"records": emit.count, "seconds": seconds, "records_per_s": emit.count / seconds if seconds else 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# --- 2. end to end through hub run -------------------------------------------------------------------------
def config_copy(watch_s: float, chunk: int | None, window: int | None) -> Path:
    from hub.settings import PROJECT_ROOT

    dest = Path(tempfile.mkdtemp(prefix="bench-wireless-")) / "config"
    shutil.copytree(PROJECT_ROOT / "config", dest)
    path = dest / "tasks" / "wireless.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["anomaly"]["watch_s"] = watch_s
    if chunk:
        cfg["chunk_size"] = chunk
    if window:
        cfg["window"] = window
    cfg["anomaly"]["poll_s"] = 0.2
    cfg["sftp"]["poll_interval_s"] = 0.5
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dest


def end_to_end(n: int, watch_s: float, timeout_s: float, chunk: int | None = None, window: int | None = None) -> None:
    from pymongo import MongoClient

    from app.infra.servers import SftpServer
    from flows.tasks.model import load_settings as task_settings
    from hub.settings import load_settings

    settings = load_settings()
    config = config_copy(watch_s, chunk, window)
    tasks = task_settings(config)
    assert tasks is not None and tasks.sftp is not None
    root = SftpServer(settings).root
    drop = root / tasks.sftp.dir.lstrip("/")
    drop.mkdir(parents=True, exist_ok=True)
    base_dir = root / "bench" / "wireless-baseline"
    base_dir.mkdir(parents=True, exist_ok=True)

    part = drop / "WPARAM_bench.csv.part"
    t0 = time.perf_counter()
    size = write_tasks(part, n)
    print(f"wrote {n} tasks, {size / 1048576:.1f} MB (UTF-8 CSV) in {time.perf_counter() - t0:.1f} s")

    # 1. baseline on a copy of the same file
    shutil.copy(part, base_dir / "WPARAM_base.csv")
    (base_dir / "WPARAM_base.csv.ok").write_bytes(b"")
    env = {**os.environ, "HUB_CONFIG_DIR": str(config), "HUB_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "bench.wireless_tasks", "baseline", "--dir",
                          "/bench/wireless-baseline"], env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        print(out.stderr[-3000:])
        raise SystemExit(1)
    base = json.loads(out.stdout.strip().splitlines()[-1])
    assert base["records"] == n, base
    print(f"baseline, raw SFTP ingest (claim, spool, validate, parse as tasks; nothing stored or sent): "
          f"{base['records']} records in {base['seconds']:.1f} s = {base['records_per_s']:.0f} records/s, "
          f"worker peak RSS {base['peak_rss_mb']:.0f} MB")

    # 2. hub run + simulators
    port, sim_port = free_port(), free_port()
    env.update({"HUB_HTTP_PORT": str(port), "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}"})
    home = Path(settings.home)
    with (home / "bench-wireless-sim.log").open("wb") as slog:
        sim = subprocess.Popen([sys.executable, "-m", "hub", "simulate", "--port", str(sim_port)], env=env,
                               stdout=slog, stderr=subprocess.STDOUT)
    log_path = home / "bench-wireless-hub.log"
    with log_path.open("wb") as log:
        hub = subprocess.Popen([sys.executable, "-m", "hub", "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_uri)
    batches = mongo[settings.mongo_db]["task_batches"]
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180)
        wait_http(f"http://127.0.0.1:{sim_port}/_calls", timeout=60)
        time.sleep(3)  # the pipeline starts on the worker's first 2 s tick
        rss_before = vm(hub.pid, "VmRSS")
        part.rename(drop / "WPARAM_bench.csv")
        (drop / "WPARAM_bench.csv.ok").write_bytes(b"")
        dropped = time.perf_counter()
        pushed_s = done_s = None
        doc: dict[str, Any] | None = None
        while done_s is None:
            if hub.poll() is not None:
                raise SystemExit(f"hub run exited ({hub.returncode}); log: {log_path}")
            if time.perf_counter() - dropped > timeout_s:
                raise SystemExit(f"batch not completed within {timeout_s:.0f} s: {doc}; log: {log_path}")
            doc = batches.find_one({"source": "sftp", "file": "WPARAM_bench.csv"})
            now = time.perf_counter() - dropped
            if doc and pushed_s is None and doc["received"] == n and doc["ok"] + doc["failed"] == n:
                pushed_s = now
            if doc and doc.get("status") == "completed":
                done_s = now
            time.sleep(0.2)
        assert doc is not None and pushed_s is not None
        peak = vm(hub.pid, "VmHWM")
        rate = n / pushed_s
        print(f"end to end, file dropped → every task at the NMS: {n} tasks in {pushed_s:.1f} s = {rate:.0f} tasks/s "
              f"({doc['chunks']} NMS calls of ≤ {tasks.chunk_size}, window {tasks.window}, one account "
              f"{tasks.account!r}); ok {doc['ok']}, failed {doc['failed']}")
        print(f"  … and judged by P36.2 (alarm query per due group, watch_s {watch_s:g}): {done_s:.1f} s = "
              f"{n / done_s:.0f} tasks/s; anomalies {doc['anomalies']}")
        print(f"ratio end to end / raw SFTP ingest: {rate / base['records_per_s']:.2f}")
        print(f"4,000,000 changes (the documents' daily peak) at this rate: {4_000_000 / rate / 60:.0f} min")
        print(f"hub run RSS before the drop {rss_before:.0f} MB, peak {peak:.0f} MB (VmHWM, "
              f"+{peak - rss_before:.0f} MB for a {size / 1048576:.0f} MB file)")
    finally:
        mongo.close()
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=60)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
        sim.terminate()
        sim.wait(timeout=30)
        shutil.rmtree(config.parent, ignore_errors=True)
        print("load average (uptime):", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "baseline"])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--watch", type=float, default=0.0, help="anomaly.watch_s for the run (shipped: 60)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--chunk", type=int, default=None, help="chunk_size for the run (shipped: config)")
    parser.add_argument("--window", type=int, default=None, help="window for the run (shipped: config)")
    parser.add_argument("--dir", default="/bench/wireless-baseline")
    args = parser.parse_args()
    if args.mode == "baseline":
        print(json.dumps(asyncio.run(baseline(args.dir))), flush=True)
        return
    with private_infra(sftp=True):
        end_to_end(args.tasks, args.watch, args.timeout, args.chunk, args.window)


if __name__ == "__main__":
    main()
