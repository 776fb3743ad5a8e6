"""Flow throughput: complete internet-line orders per second through the whole flow, and in the
same run a raw Faust agent passthrough on the same broker.

    python -m bench.flow [--duration 30] [--window 400] [--no-exact-offsets] [--passthrough 60000]

Everything runs on loopback in separate processes against one private tansu + SecantusDB:
the partner simulators (``hub simulate``), the hub worker (``hub run``: router, flow engine,
delivery agents, HTTP), and this load generator, which keeps ``--window`` orders in flight by
posting ESOP orders to the real intake endpoint, submitting the one manual stage of the shipped
blueprint (业务验证 ``verification``, an empty submission) the way the field app would, and counting
ESOP close-reports at the simulator.

Printed: complete orders/s and the ratio against the passthrough's records/s; p50/p99 from intake
to completion (``completed_at - created_at``, including the manual stage's wait for this driver's
poll, ≤ 0.25 s); Kafka records per order (end offsets of every topic of the run, before/after);
MongoDB operations per order (``serverStatus`` opcounters, minus this driver's own polling queries);
and the CPU share of the worker, the broker, the database and the simulators (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench._common import free_port, hub_with_simulators, private_infra

ROOT = Path(__file__).resolve().parent.parent
RUN = uuid.uuid4().hex[:6]
ORDER = {
    "product": "internet_line", "scenario": "open",
    "customer": {"name": "杭州某某科技有限公司", "contact_phone": "13800000000"},
    "addresses": [{"city": "杭州", "district": "西湖区", "detail": "文三路 100 号"}],
    "bandwidth_mbps": 200, "access_type": "PON",
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_phases(text: str) -> dict[str, float]:
    """Mean milliseconds per order event of each engine phase (``hub_flow_event_seconds``)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for kind, store in (("_sum", sums), ("_count", counts)):
            if line.startswith(f"hub_flow_event_seconds{kind}{{"):
                phase = line.split('phase="', 1)[1].split('"', 1)[0]
                store[phase] = float(line.rsplit(" ", 1)[1])
    return {p: round(1000 * sums[p] / counts[p], 1) for p in sums if counts.get(p)}


def mongo_commands(text: str) -> dict[tuple[str, str], list[float]]:
    """The worker's MongoDB commands by (collection, command): [commands, documents, seconds]
    (``hub_mongo_*`` counters, hub/mongostats.py: opcounters count commands, not documents)."""
    out: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        for i, name in enumerate(("hub_mongo_commands_total{", "hub_mongo_command_documents_total{",
                                  "hub_mongo_command_seconds_total{")):
            if line.startswith(name):
                labels = dict(part.split("=", 1) for part in line[len(name):line.index("}")].split(","))
                key = (labels["collection"].strip('"'), labels["command"].strip('"'))
                out.setdefault(key, [0.0, 0.0, 0.0])[i] = float(line.rsplit(" ", 1)[1])
    return out


def per_order_commands(before: dict[tuple[str, str], list[float]], after: dict[tuple[str, str], list[float]],
                       done: int) -> dict[str, str]:
    """``collection.command`` → "commands / documents / ms round trip" per completed order."""
    rows = {}
    for key in sorted(after):
        n, docs, secs = (a - b for a, b in zip(after[key], before.get(key, [0.0, 0.0, 0.0]), strict=True))
        if n or docs:
            rows[".".join(key)] = f"{n / done:.2f} cmd, {docs / done:.2f} docs, {1000 * secs / done:.0f} ms"
    return rows


async def kafka_records(bootstrap: str, prefix: str) -> int:
    """Records ever written to the run's topics (sum of end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix + ".")]
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(parts) if parts else {}
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


async def drive(base: str, sim: str, mongo_uri: str, db_name: str, bootstrap: str, prefix: str,
                pids: dict[str, list[int]], duration: float, window: int, warmup: float,
                max_warmup: float = 120.0) -> dict:
    """Keep ``window`` orders in flight; completions = ESOP close-reports counted by the simulator;
    the manual verification stage submitted as the field app would."""
    from motor.motor_asyncio import AsyncIOMotorClient

    client = AsyncIOMotorClient(mongo_uri, tz_aware=True)
    admin, db = client.admin, client[db_name]
    posted = 0
    completed = 0
    own_queries = 0
    submitted: set[str] = set()
    start = time.monotonic()
    headers = {"X-Api-Key": "dev-esop-key-0001"}
    operator = {"Authorization": "Bearer dev-operator-token-0001"}
    cpu0: dict[str, float] = {}
    kafka0 = 0
    mongo0: dict[tuple[str, str], list[float]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:

        async def post(i: int) -> None:
            body = dict(ORDER, external_order_id=f"BF{RUN}-{i}")
            async with http.post(f"{base}/api/v1/partners/esop/orders", json=body, headers=headers) as r:
                if r.status != 202:
                    raise RuntimeError(f"intake answered {r.status}: {await r.text()}")

        async def submit(order_id: str) -> None:
            async with http.post(f"{base}/api/v1/orders/{order_id}/stages/verification/submit",
                                 json={"data": {}, "submitted_by": "field-app:bench"}, headers=operator) as r:
                if r.status not in (202, 409):
                    raise RuntimeError(f"submit answered {r.status}: {await r.text()}")

        async def field_app() -> None:
            nonlocal own_queries
            own_queries += 1
            waiting = [d["_id"] async for d in db.orders.find(
                {"current_stage": "verification", "status": "waiting"}, {"_id": 1}) if d["_id"] not in submitted]
            submitted.update(waiting)
            await asyncio.gather(*(submit(o) for o in waiting))

        async def closed() -> int:
            async with http.get(f"{sim}/_calls") as r:
                return int((await r.json())["counts"].get("esop", {}).get("notifyOrderResult", 0))

        async def worker_metrics() -> str:
            async with http.get(f"{base}/metrics") as r:
                return await r.text()

        async def ops() -> dict[str, int]:
            return dict((await admin.command("serverStatus")).get("opcounters", {}))

        def cpu() -> dict[str, float]:
            return {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}

        first: tuple[float, int, dict[str, int], int] | None = None  # where the measurement starts
        measured_since = datetime.now(UTC)
        while first is None or time.monotonic() - start < first[0] + duration:
            room = window - (posted - completed)
            if room > 0:
                batch = min(room, 64)
                await asyncio.gather(*(post(posted + k) for k in range(batch)))
                posted += batch
            await field_app()
            completed = await closed()
            t = time.monotonic() - start
            # steady state: past --warmup *and* the first half window completed (the window starts as
            # one burst of orders moving in lockstep; with a latency above the warm-up a fixed warm-up
            # measured the start-up, not the flow: 0 completions for --window 400), bounded by max_warmup
            if first is None and t >= warmup and (completed >= window // 2 or t >= max_warmup):
                first = (t, completed, await ops(), own_queries)
                measured_since = datetime.now(UTC)
                cpu0, kafka0 = cpu(), await kafka_records(bootstrap, prefix)
                mongo0 = mongo_commands(await worker_metrics())
            await asyncio.sleep(0.25 if room <= 0 else 0)
        end = (time.monotonic() - start, await closed(), await ops(), own_queries)
        metrics_text = await worker_metrics()
        cpu1, kafka1 = cpu(), await kafka_records(bootstrap, prefix)
    t0, c0, o0, q0 = first
    t1, c1, o1, q1 = end
    done = max(c1 - c0, 1)
    per_order = {k: round((o1.get(k, 0) - o0.get(k, 0)) / done, 1) for k in ("insert", "query", "update", "command")}
    per_order["query"] = round(per_order["query"] - (q1 - q0) / done, 1)  # not the driver's own polling
    spent = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in pids}
    total = sum(spent.values()) or 1.0
    wall = t1 - t0
    latencies = sorted([(d["completed_at"] - d["created_at"]).total_seconds() * 1000 async for d in db.orders.find(
        {"status": "completed", "completed_at": {"$gte": measured_since}}, {"created_at": 1, "completed_at": 1})])
    import bson

    sizes = sorted([len(bson.encode(d)) async for d in db.orders.find({"status": "completed"}).limit(50)])
    client.close()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))] if latencies else float("nan")

    return {"engine_event_ms": engine_phases(metrics_text),
            "orders_per_s": (c1 - c0) / wall, "completed": c1, "posted": posted, "window_s": wall,
            "warmup_s": round(t0, 1), "order_bytes": sizes[len(sizes) // 2] if sizes else 0,
            "mongo_ops_per_order": per_order,
            "worker_mongo_per_order": per_order_commands(mongo0, mongo_commands(metrics_text), done),
            "kafka_records_per_order": round((kafka1 - kafka0) / done, 1),
            "p50_ms": pct(50), "p99_ms": pct(99),
            "cpu_share": {k: round(v / total, 3) for k, v in spent.items()},
            "cores_used": {k: round(v / wall, 2) for k, v in spent.items()}}


PASSTHROUGH_WORKER = r'''
import asyncio, os, sys, time, faust
from hub.kafka import faust_config, shorten_faust_fetch_wait
from hub.settings import load_settings
shorten_faust_fetch_wait()
s = load_settings()
n = int(os.environ["BENCH_PT_N"])
app = faust.App("bench-passthrough", **faust_config(s))
src = app.topic("bench.pt.in", key_serializer="raw", value_serializer="raw")
dst = app.topic("bench.pt.out", key_serializer="raw", value_serializer="raw")
state = {"n": 0, "t0": None}
@app.agent(src)
async def passthrough(stream):
    async for event in stream.events():
        if state["t0"] is None:
            state["t0"] = time.monotonic()
        fut = await dst.send(key=event.message.key, value=event.message.value)
        await fut
        state["n"] += 1
        if state["n"] == n:
            print(f"PASSTHROUGH {n} {time.monotonic() - state['t0']:.3f}", flush=True)
            os._exit(0)
app.main()
'''


async def preload(bootstrap: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 4, 1) for t in ("bench.pt.in", "bench.pt.out")])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    value = json.dumps({"payload": "x" * 1000}).encode()
    try:
        for i in range(0, n, 1000):
            await asyncio.gather(*[await producer.send(t, value, key=str(k).encode())
                                   for k in range(i, min(n, i + 1000)) for t in ("bench.pt.in",)])
    finally:
        await producer.stop()


def passthrough(env: dict[str, str], n: int, log: Path) -> float:
    bootstrap = f"127.0.0.1:{env['HUB_KAFKA_PORT']}"
    asyncio.run(preload(bootstrap, n))
    with log.open("wb") as out:
        proc = subprocess.run([sys.executable, "-c", PASSTHROUGH_WORKER, "worker", "-l", "warn"],
                              env={**os.environ, **env, "BENCH_PT_N": str(n)}, stdout=subprocess.PIPE,
                              stderr=out, timeout=600, check=False)
    text = proc.stdout.decode() + log.read_text(errors="replace")  # faust may log the print
    line = next((x[x.index("PASSTHROUGH"):] for x in text.splitlines() if "PASSTHROUGH" in x), None)
    if line is None:
        raise RuntimeError(f"passthrough worker failed; see {log}")
    _, count, seconds = line.split()[:3]
    return int(count) / float(seconds)


def infra_pids(home: Path) -> dict[str, list[int]]:
    """The embedded broker's and database's pids, from their pid files under HUB_HOME."""
    out: dict[str, list[int]] = {"broker": [], "database": []}
    for pid_file in home.rglob("*.pid"):
        role = "broker" if "kafka" in pid_file.name else "database" if "mongo" in pid_file.name else None
        if role:
            try:
                out[role].append(int(pid_file.read_text().strip()))
            except ValueError:
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0,
                    help="at least this long, and until half the window completed (at most --max-warmup)")
    ap.add_argument("--max-warmup", type=float, default=120.0)
    ap.add_argument("--window", type=int, default=400, help="orders kept in flight")
    ap.add_argument("--passthrough", type=int, default=60000, help="records for the raw Faust passthrough")
    ap.add_argument("--no-exact-offsets", action="store_true", help="HUB_KAFKA_EXACT_OFFSETS=false (batching on)")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy the worker's and simulators' logs there")
    args = ap.parse_args()

    with private_infra() as env:
        home = Path(env["HUB_HOME"])
        sim_port, http_port = free_port(), free_port()
        env = {**env, "HUB_HTTP_PORT": str(http_port), "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}",
               "HUB_TOPIC_PREFIX": f"bf{RUN}", "HUB_MONGO_DB": f"bf_{RUN}",
               "HUB_KAFKA_EXACT_OFFSETS": "false" if args.no_exact_offsets else "true"}
        with hub_with_simulators(env, home, ready_s=60) as procs:
            from hub.settings import load_settings

            s = load_settings()
            pids = {"worker": [procs[1].pid], "simulators": [procs[0].pid], **infra_pids(home)}
            flow = asyncio.run(drive(f"http://127.0.0.1:{http_port}", env["HUB_SIM_URL"], s.mongo_uri,
                                     env["HUB_MONGO_DB"], s.kafka_bootstrap, env["HUB_TOPIC_PREFIX"], pids,
                                     args.duration, args.window, args.warmup, args.max_warmup))
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for name in ("worker.log", "sim.log"):
                shutil.copy(home / name, Path(args.keep_logs) / name)
        print(f"flow: {flow}", flush=True)
        raw = passthrough(env, args.passthrough, home / "passthrough.log")

    print(f"exact offsets (producer batch 1): {not args.no_exact_offsets}; window {args.window} orders in flight")
    print(f"flow        : {flow['orders_per_s']:8.1f} complete internet-line orders/s over {flow['window_s']:.1f} s "
          f"(completed {flow['completed']}, posted {flow['posted']}; measured after {flow['warmup_s']} s of warm-up)")
    print(f"engine per event (mean ms): {flow['engine_event_ms']}")
    print(f"intake → completed: p50 {flow['p50_ms']:.0f} ms, p99 {flow['p99_ms']:.0f} ms")
    print(f"completed order document: {flow['order_bytes']} bytes (BSON, median of 50)")
    print(f"kafka records per completed order: {flow['kafka_records_per_order']}")
    print(f"mongo ops per completed order: {flow['mongo_ops_per_order']}")
    print("worker's MongoDB commands per completed order (commands, documents written, round-trip ms):")
    for name, row in flow["worker_mongo_per_order"].items():
        print(f"    {name:<40} {row}")
    print(f"cpu share: {flow['cpu_share']}  (cores used: {flow['cores_used']})")
    print(f"passthrough : {raw:8.1f} records/s (raw Faust agent, read → send → ack, same broker & settings)")
    print(f"ratio       : {flow['orders_per_s'] / raw:8.4f} orders per passthrough record "
          f"(≈ {raw / max(flow['orders_per_s'], 1e-9):.0f} passthrough records per order)")


if __name__ == "__main__":
    main()
