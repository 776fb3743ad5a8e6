"""Flow throughput: complete internet-line orders per second through the whole flow, with 1, 2, 3 …
worker processes in one invocation, and in the same run a raw Faust agent passthrough on the same broker.

    python -m bench.flow [--duration 30] [--window 400] [--workers 1,2,3] [--kill-one] [--drain 180]
                         [--no-exact-offsets] [--passthrough 60000]

Everything runs on loopback in separate processes against one private tansu + SecantusDB: for each
count N of ``--workers``, fresh partner simulators (``hub simulate``) and N hub workers (``hub run``:
router, flow engine, delivery agents, HTTP) in one consumer group, on their own topic prefix and
database; and this load generator, which keeps ``--window`` orders in flight by posting ESOP orders
to the real intake endpoints (round robin over the workers, as a load balancer would), submitting
the one manual stage of the shipped blueprint (业务验证 ``verification``, an empty submission) the way
the field app would, and counting ESOP close-reports at the simulator. ``--kill-one`` adds a run with
the largest N in which the last worker is SIGKILLed half-way through the window.

After each window no new order is posted and the posted ones are drained (``--drain`` s) for the
exactly-once check: one order document per posted order, completed; ESOP accepted one close-report
for each; no partner was sent a call again under a key it had already accepted (the simulators'
idempotency-key counts). Exit status 1 when a run fails that check.

Printed per run: complete orders/s and the ratio against the passthrough's records/s; p50/p99 from
intake to completion (``completed_at - created_at``, including the manual stage's wait for this
driver's poll, ≤ 0.25 s); Kafka records per order (end offsets of every topic of the run,
before/after); MongoDB operations per order (``serverStatus`` opcounters, minus this driver's own
polling queries); the CPU share of the workers, the broker, the database and the simulators
(``/proc``); then one table: orders/s per N and the scaling against N=1.
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
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


@dataclass
class Workers:
    """The ``hub run`` processes of one run as the driver sees them: their base URLs (intake posts and
    stage submissions go round robin over the live ones, as a load balancer in front of them would),
    their processes, and which one ``--kill-one`` kills (``victim``, an index, or None)."""

    bases: list[str]
    procs: list[subprocess.Popen[bytes]]
    victim: int | None = None
    killed_at: float | None = None  # seconds into the measurement window
    _next: int = 0

    def live(self) -> list[str]:
        return [b for i, b in enumerate(self.bases) if i != self.victim or self.killed_at is None]

    def base(self) -> str:
        live = self.live()
        self._next += 1
        return live[self._next % len(live)]

    def kill(self, at: float) -> None:
        assert self.victim is not None
        self.procs[self.victim].kill()  # SIGKILL: nothing flushed, no offsets committed, no leave-group
        self.procs[self.victim].wait(10)
        self.killed_at = at


class CpuMeter:
    """CPU seconds per role from /proc; a process that died keeps the last figure read (its CPU up
    to the kill), so a SIGKILLed worker does not make the run's CPU go backwards."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.last: dict[int, float] = {}

    def read(self) -> dict[str, float]:
        for ps in self.pids.values():
            for pid in ps:
                if Path(f"/proc/{pid}").exists():
                    self.last[pid] = max(self.last.get(pid, 0.0), cpu_seconds(pid))
        return {name: sum(self.last.get(p, 0.0) for p in ps) for name, ps in self.pids.items()}


async def drive(workers: Workers, sim: str, mongo_uri: str, db_name: str, bootstrap: str, prefix: str,
                pids: dict[str, list[int]], duration: float, window: int, warmup: float,
                max_warmup: float = 120.0, drain: float = 180.0) -> dict[str, Any]:
    """Keep ``window`` orders in flight over ``workers``; completions = ESOP close-reports counted by
    the simulator; the manual verification stage submitted as the field app would. After the window,
    posting stops and the posted orders are drained (at most ``drain`` s) for the exactly-once check;
    with a ``victim`` it is SIGKILLed half-way through the window."""
    from motor.motor_asyncio import AsyncIOMotorClient

    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongo_uri, tz_aware=True)
    admin, db = client.admin, client[db_name]
    posted = 0
    completed = 0
    own_queries = 0
    submitted: set[str] = set()
    start = time.monotonic()
    headers = {"X-Api-Key": "dev-esop-key-0001"}
    operator = {"Authorization": "Bearer dev-operator-token-0001"}
    meter = CpuMeter(pids)
    cpu0: dict[str, float] = {}
    kafka0 = 0
    mongo0: dict[str, dict[tuple[str, str], list[float]]] = {}
    refused = 0  # posts a dying worker reset (sent again to another)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:

        async def call(path: str, body: dict[str, Any], hdrs: dict[str, str], ok: tuple[int, ...]) -> None:
            nonlocal refused
            for _ in range(20):
                try:
                    async with http.post(f"{workers.base()}{path}", json=body, headers=hdrs) as r:
                        if r.status in ok:
                            return
                        if r.status < 500:
                            raise RuntimeError(f"{path} answered {r.status}: {await r.text()}")
                except (aiohttp.ClientError, TimeoutError):
                    pass
                refused += 1
                await asyncio.sleep(0.2)
            raise RuntimeError(f"{path}: no worker accepted it")

        async def post(i: int) -> None:
            await call("/api/v1/partners/esop/orders", dict(ORDER, external_order_id=f"BF{RUN}-{prefix}-{i}"),
                       headers, (202,))

        async def submit(order_id: str) -> None:
            await call(f"/api/v1/orders/{order_id}/stages/verification/submit",
                       {"data": {}, "submitted_by": "field-app:bench"}, operator, (202, 409))

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

        async def metrics(base: str) -> str:
            async with http.get(f"{base}/metrics") as r:
                return await r.text()

        async def ops() -> dict[str, int]:
            return dict((await admin.command("serverStatus")).get("opcounters", {}))

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
                cpu0, kafka0 = meter.read(), await kafka_records(bootstrap, prefix)
                mongo0 = {b: mongo_commands(await metrics(b)) for b in workers.bases}
            if (first is not None and workers.victim is not None and workers.killed_at is None
                    and t >= first[0] + duration / 2):
                meter.read()
                workers.kill(t - first[0])
            meter.read()
            await asyncio.sleep(0.25 if room <= 0 else 0)
        end = (time.monotonic() - start, await closed(), await ops(), own_queries)
        texts = {b: await metrics(b) for b in workers.live()}
        cpu1, kafka1 = meter.read(), await kafka_records(bootstrap, prefix)
        # drain: no new orders; what was posted must complete, once each
        drain_until = time.monotonic() + drain
        mine = {"external_order_id": {"$regex": f"^BF{RUN}-"}, "status": "completed"}
        while time.monotonic() < drain_until and (completed < posted or await db.orders.count_documents(mine) < posted):
            await field_app()
            completed = await closed()
            await asyncio.sleep(0.5)
        drained_s = drain - max(0.0, drain_until - time.monotonic())
        async with http.get(f"{sim}/_calls") as r:
            summary = await r.json()
        async with http.get(f"{sim}/_calls", params={"partner": "esop"}) as r:
            esop_calls = await r.json()
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
    check = await exactly_once(db, esop_calls, summary, posted)
    client.close()
    worker_mongo: dict[tuple[str, str], list[float]] = {}
    worker_mongo0: dict[tuple[str, str], list[float]] = {}
    for base, text in texts.items():  # the survivors' own counters (a killed worker's are gone with it)
        for key, row in mongo_commands(text).items():
            worker_mongo[key] = [a + b for a, b in zip(worker_mongo.get(key, [0.0] * 3), row, strict=True)]
        for key, row in mongo0.get(base, {}).items():
            worker_mongo0[key] = [a + b for a, b in zip(worker_mongo0.get(key, [0.0] * 3), row, strict=True)]

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))] if latencies else float("nan")

    return {"engine_event_ms": engine_phases("\n".join(texts.values())),
            "orders_per_s": (c1 - c0) / wall, "completed": c1, "posted": posted, "window_s": wall,
            "warmup_s": round(t0, 1), "order_bytes": sizes[len(sizes) // 2] if sizes else 0,
            "mongo_ops_per_order": per_order,
            "worker_mongo_per_order": per_order_commands(worker_mongo0, worker_mongo, done),
            "kafka_records_per_order": round((kafka1 - kafka0) / done, 1),
            "p50_ms": pct(50), "p99_ms": pct(99),
            "cpu_share": {k: round(v / total, 3) for k, v in spent.items()},
            "cores_used": {k: round(v / wall, 2) for k, v in spent.items()},
            "killed_at_s": workers.killed_at, "posts_resent": refused, "drained_s": round(drained_s, 1), **check}


async def exactly_once(db: Any, esop_calls: list[dict[str, Any]], summary: dict[str, Any],
                       posted: int) -> dict[str, Any]:
    """The run's exactly-once check, from the partner's side and the database's: every posted order
    has one order document, completed, and ESOP accepted exactly one close-report for it; and no
    partner was sent a call again under a key it had already accepted (the simulators' idempotency-key
    counts, ``/_calls`` ``duplicates``: the partner's dedupe hid those, a partner without one would
    have acted twice)."""
    closes = Counter(c["body"].get("orderId") for c in esop_calls
                     if c["operation"] == "notifyOrderResult" and c["answered"] == "ok")
    mine = {"$match": {"external_order_id": {"$regex": f"^BF{RUN}-"}}}
    completed = {"$cond": [{"$eq": ["$status", "completed"]}, 1, 0]}
    group = {"$group": {"_id": "$external_order_id", "n": {"$sum": 1}, "done": {"$sum": completed}}}
    docs = [d async for d in db.orders.aggregate([mine, group])]
    resent = {p: len(keys) for p, keys in (summary.get("duplicates") or {}).items() if keys}
    return {"orders_in_db": len(docs), "orders_completed_in_db": sum(1 for d in docs if d["done"] == 1),
            "order_docs_twice": sum(1 for d in docs if d["n"] > 1),
            "closed_once": sum(1 for n in closes.values() if n == 1),
            "closed_twice": sum(1 for n in closes.values() if n > 1),
            "not_closed": posted - len(closes), "keys_sent_again": resent,
            "callbacks_failed": summary.get("callbacks_failed", 0)}


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


def worker_counts(text: str) -> list[int]:
    """``--workers 1,2,3`` → [1, 2, 3]."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers wants counts like 1,2,3, not {text!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 8:
        raise argparse.ArgumentTypeError("--workers: 1 to 8 worker processes per run")
    return counts


def one_run(env: dict[str, str], home: Path, n: int, args: argparse.Namespace, *, kill: bool) -> dict[str, Any]:
    """One measurement with ``n`` ``hub run`` workers in one consumer group on the shared private broker
    and database, with their own topic prefix and database (so runs do not see each other's orders)
    and fresh simulators (fresh call counts).

    Each worker serves HTTP on its own port: in production every worker is an intake behind the load
    balancer, so the driver is the balancer here (round robin over the live ones). Partners call
    back the address a worker publishes (``HUB_PUBLIC_URL``): its own port, except the victim's,
    which publishes worker 1's, as a balancer address would survive the victim — else the calls
    it made before dying would call back a dead port."""
    tag = f"n{n}{'k' if kill else ''}"
    sim_port, ports = free_port(), [free_port() for _ in range(n)]
    prefix = f"bf{RUN}{tag}"
    env = {**env, "HUB_HTTP_PORT": str(ports[0]), "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}",
           "HUB_TOPIC_PREFIX": prefix, "HUB_MONGO_DB": f"bf_{RUN}_{tag}",
           "HUB_KAFKA_EXACT_OFFSETS": "false" if args.no_exact_offsets else "true"}
    victim = n - 1 if kill else None
    extra = [{"HUB_HTTP_PORT": str(port), "HUB_WORKER_ID": f"bench-w{i + 1}",
              **({"HUB_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}"} if i == victim else {})}
             for i, port in enumerate(ports)]
    with hub_with_simulators(env, home, ready_s=60 + 15 * n, tag=tag, workers=extra) as procs:
        from hub.settings import load_settings

        s = load_settings()
        workers = Workers([f"http://127.0.0.1:{p}" for p in ports], procs[1:], victim=victim)
        pids = {"worker": [p.pid for p in procs[1:]], "simulators": [procs[0].pid], **infra_pids(home)}
        flow = asyncio.run(drive(workers, env["HUB_SIM_URL"], s.mongo_uri, env["HUB_MONGO_DB"], s.kafka_bootstrap,
                                 prefix, pids, args.duration, args.window, args.warmup, args.max_warmup, args.drain))
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
        for log in home.glob(f"*-{tag}*.log"):
            shutil.copy(log, Path(args.keep_logs) / log.name)
    flow["workers"] = n
    print(f"flow ({tag}): {flow}", flush=True)
    return flow


def report(flow: dict[str, Any], args: argparse.Namespace) -> None:
    n = flow["workers"]
    kill = f"; worker {n} SIGKILLed {flow['killed_at_s']:.1f} s into the window" if flow["killed_at_s"] else ""
    print(f"--- {n} worker(s){kill}")
    print(f"flow        : {flow['orders_per_s']:8.1f} complete internet-line orders/s over {flow['window_s']:.1f} s "
          f"(completed {flow['completed']}, posted {flow['posted']}; measured after {flow['warmup_s']} s of warm-up)")
    print(f"engine per event (mean ms, the live workers): {flow['engine_event_ms']}")
    print(f"intake → completed: p50 {flow['p50_ms']:.0f} ms, p99 {flow['p99_ms']:.0f} ms")
    print(f"completed order document: {flow['order_bytes']} bytes (BSON, median of 50)")
    print(f"kafka records per completed order: {flow['kafka_records_per_order']}")
    print(f"mongo ops per completed order: {flow['mongo_ops_per_order']}")
    print("workers' MongoDB commands per completed order (commands, documents written, round-trip ms):")
    for name, row in flow["worker_mongo_per_order"].items():
        print(f"    {name:<40} {row}")
    print(f"cpu share: {flow['cpu_share']}  (cores used: {flow['cores_used']})")
    print(f"exactly once (after a {flow['drained_s']} s drain): {flow['posted']} posted, {flow['orders_in_db']} "
          f"order documents ({flow['order_docs_twice']} twice), {flow['orders_completed_in_db']} completed; "
          f"ESOP accepted one close-report for {flow['closed_once']}, two or more for {flow['closed_twice']}, "
          f"none for {flow['not_closed']}; keys sent again to a partner that had accepted them: "
          f"{flow['keys_sent_again'] or 'none'}; callbacks the simulators gave up on: {flow['callbacks_failed']}; "
          f"posts resent after a refused connection: {flow['posts_resent']}")


def clean(flow: dict[str, Any]) -> bool:
    return (flow["closed_once"] == flow["posted"] == flow["orders_completed_in_db"] and not flow["closed_twice"]
            and not flow["order_docs_twice"] and not flow["keys_sent_again"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0,
                    help="at least this long, and until half the window completed (at most --max-warmup)")
    ap.add_argument("--max-warmup", type=float, default=120.0)
    ap.add_argument("--window", type=int, default=400, help="orders kept in flight")
    ap.add_argument("--workers", type=worker_counts, default=[1], metavar="N[,N…]",
                    help="a run per count, each with that many hub run workers (e.g. 1,2,3)")
    ap.add_argument("--kill-one", action="store_true",
                    help="one more run with the largest count (at least 2): the last worker SIGKILLed half-way")
    ap.add_argument("--drain", type=float, default=180.0, help="after each window, seconds to let posted orders finish")
    ap.add_argument("--passthrough", type=int, default=60000, help="records for the raw Faust passthrough")
    ap.add_argument("--no-exact-offsets", action="store_true", help="HUB_KAFKA_EXACT_OFFSETS=false (batching on)")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy the workers' and simulators' logs there")
    args = ap.parse_args()
    if args.kill_one and max(args.workers) < 2:
        ap.error("--kill-one needs a run with at least 2 workers (--workers 1,2)")

    with private_infra() as env:
        home = Path(env["HUB_HOME"])
        env = {**env, "HUB_KAFKA_EXACT_OFFSETS": "false" if args.no_exact_offsets else "true"}
        flows = [one_run(env, home, n, args, kill=False) for n in args.workers]
        killed = one_run(env, home, max(args.workers), args, kill=True) if args.kill_one else None
        raw = passthrough(env, args.passthrough, home / "passthrough.log")

    print(f"exact offsets (producer batch 1): {not args.no_exact_offsets}; window {args.window} orders in flight")
    for flow in [*flows, *([killed] if killed else [])]:
        report(flow, args)
    print(f"passthrough : {raw:8.1f} records/s (raw Faust agent, read → send → ack, same broker & settings)")
    base = next((f["orders_per_s"] for f in flows if f["workers"] == 1), None)
    print("workers  orders/s  scaling vs 1  ratio to passthrough  p50 ms  exactly once")
    for flow in [*flows, *([killed] if killed else [])]:
        scaling = f"{flow['orders_per_s'] / base:12.2f}" if base else f"{'n/a':>12}"
        label = f"{flow['workers']}{' (kill)' if flow['killed_at_s'] else ''}"
        print(f"{label:<8} {flow['orders_per_s']:9.1f} {scaling}  {flow['orders_per_s'] / raw:20.4f} "
              f"{flow['p50_ms']:7.0f}  {'yes' if clean(flow) else 'NO'}")
    sys.exit(0 if all(clean(f) for f in [*flows, *([killed] if killed else [])]) else 1)


if __name__ == "__main__":
    main()
