"""Soak: half the measured maximum for a long time, with partner failures injected every few minutes
(issue 18 §3). Watches throughput, p99 and the RSS of every process over time, the worker's asyncio
tasks and open connections, and at the end replays every dead letter and checks that every order
completed exactly once.

    python -m bench.soak [--minutes 30] [--rate R | --max-first] [--fault-every-s 180] [--fault-for-s 60]
                         [--faults down,slow,errors,rejects,duplicate_callback] [--sample-s 10]
                         [--warmup-s S] [--png PATH]

What runs: one private tansu + SecantusDB (bench._common.private_infra). Without ``--rate`` the maximum
is measured first, by bench/flow.py's closed loop (one worker, ``--max-window`` orders in flight, its
own topics and database). Then fresh simulators and one worker (``hub run`` plus a task gauge,
bench/_soak_worker.py) on their own topics and database, and this driver: an *open* loop posting
ESOP internet-line orders at half that rate (whatever the hub's latency), the field app submitting
the manual verification stage, and an operator pressing "send again" (G3 ``failed_call``) on orders a
partner refused, once no fault is on.

Faults (``POST /_control/{partner}`` of the simulators, simulators/state.py), one at a time, every
``--fault-every-s`` for ``--fault-for-s``, rotating kinds and partners (resource center, IP
workbench, ESOP): ``down`` (connection cut), ``slow`` (3 s answers, under the 10 s call timeout, so
nothing is sent twice), ``errors`` (HTTP 500 / SOAP Server fault: retried, then dead-lettered),
``rejects`` (the partner's business "no": the blueprint's failed_call, sent again by the operator)
and ``duplicate_callback`` (every callback twice).

Every ``--sample-s``: orders completed in the interval per second, their p99 intake → completion,
VmRSS of every process (worker, broker, database, simulators), the worker's event-loop tasks
(``bench_asyncio_tasks``), its established TCP connections and open fds (/proc). At the end posting
stops, the faults are cleared, the orders drain, ``hub dlq replay --all`` replays every dead letter
(as an operator types it), the orders drain again, and bench/flow.py's exactly-once check runs.

Verdicts (exit 1 if one fails): RSS after the warm-up within 10 % (first → last sample, per process;
``--flat`` names the processes held to it, the others are shown), tasks and connections not growing
(mean of the last third against the first third of the samples outside fault windows; tasks also
idle before against idle after), lost 0, doubled 0, none unfinished after the drains. A PNG
(throughput, p99, RSS; fault windows shaded) goes to ``--png`` (default under .hub/bench/,
git-ignored) with the samples as JSON beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import flow
from bench._common import ROOT, free_port, hub_with_simulators, private_infra

__all__ = ["Fault", "Sample", "Verdict", "control_for", "fault_at", "fault_schedule", "growing", "lost_doubled",
           "verdicts"]

KINDS = ("down", "slow", "errors", "rejects", "duplicate_callback")
PARTNERS = ("resource", "ip_workbench", "esop")  # the internet-line flow's partners (config/flows/internet_line)
CALLBACK_PARTNERS = ("resource", "ip_workbench")  # those answering by callback (design, activation)
SLOW_S = 3.0  # under the partners' 10 s timeout: slow, not timed out (a timeout re-sends a call the partner did)


# --- pure: the schedule, the samples, the verdicts ---------------------------------------------
@dataclass(frozen=True)
class Fault:
    start_s: float
    end_s: float
    kind: str
    partner: str

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.partner}"


def control_for(kind: str) -> dict[str, Any]:
    """The simulator's ``/_control`` body for a fault kind."""
    modes: dict[str, dict[str, Any]] = {
        "down": {"mode": "down"}, "slow": {"mode": "slow", "delay_s": SLOW_S}, "errors": {"mode": "http_error"},
        "rejects": {"mode": "error"}, "duplicate_callback": {"mode": "duplicate_callback"}}
    if kind not in modes:
        raise ValueError(f"unknown fault {kind!r}; one of {', '.join(modes)}")
    return modes[kind]


def fault_schedule(duration_s: float, every_s: float, for_s: float, kinds: tuple[str, ...] = KINDS,
                   partners: tuple[str, ...] = PARTNERS,
                   callback_partners: tuple[str, ...] = CALLBACK_PARTNERS) -> list[Fault]:
    """One fault every ``every_s`` (the first at ``every_s``, after a normal start), each ``for_s``
    long and over before ``duration_s``; kinds in turn, partners in turn (a duplicate callback only
    on a partner that calls back)."""
    if every_s <= 0 or for_s <= 0 or for_s >= every_s:
        raise ValueError("faults need 0 < --fault-for-s < --fault-every-s")
    out: list[Fault] = []
    i = 0
    while (i + 1) * every_s + for_s <= duration_s:
        kind = kinds[i % len(kinds)]
        pool = callback_partners if kind == "duplicate_callback" else partners
        start = (i + 1) * every_s
        out.append(Fault(start, start + for_s, kind, pool[i % len(pool)]))
        i += 1
    return out


def fault_at(schedule: list[Fault], t: float) -> Fault | None:
    return next((f for f in schedule if f.start_s <= t < f.end_s), None)


@dataclass
class Sample:
    t_s: float  # seconds since the open loop started
    posted: int
    completed: int  # in the interval
    rate: float  # completed orders/s in the interval
    p99_ms: float | None  # intake → completed, of the orders completed in the interval
    rss_mb: dict[str, float]  # process → VmRSS
    tasks: int | None
    connections: int | None  # the worker's established TCP connections, both ways
    fds: int | None
    dead_letters: int  # pending
    fault: str | None = None
    phase: str = "load"  # start (idle, before the first post), load, drain, end (idle, after the last drain)
    open_orders: int = 0  # posted and not completed yet (in flight, waiting, blocked on a dead letter)
    inbound: int | None = None  # of ``connections``, those to the worker's HTTP port (clients, callbacks)
    peers: dict[str, int] = field(default_factory=dict)  # outbound ones by peer: database, broker, simulators


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str
    counted: bool = True  # False: shown, not failing the run


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]


def growing(values: list[float], *, tolerance: float = 0.10, slack: float = 0.0) -> tuple[bool, float, float]:
    """Mean of the last third against the first third: growing when the last is above the first by
    more than ``tolerance`` (a share) plus ``slack`` (an absolute allowance: a gauge that moves by a
    few tasks with the load). Fewer than 3 values: not growing (nothing to compare)."""
    if len(values) < 3:
        return False, float("nan"), float("nan")
    third = len(values) // 3
    first, last = statistics.mean(values[:third]), statistics.mean(values[-third:])
    return last > first * (1 + tolerance) + slack, first, last


def verdicts(samples: list[Sample], *, warmup_s: float, flat: tuple[str, ...], tolerance: float = 0.10,
             lost: int = 0, doubled: int = 0, unfinished: int = 0, task_slack: float = 20,
             conn_slack: float = 5) -> list[Verdict]:
    """The soak's verdicts from its samples and the final check: RSS first → last of the load after
    ``warmup_s`` (processes not in ``flat`` shown, not held, with their growth per 1,000 orders posted);
    tasks and connections by thirds of the load samples outside fault windows, and idle before the
    first post against idle after the last drain; lost and doubled."""
    after = [s for s in samples if s.phase == "load" and s.t_s >= warmup_s]
    out: list[Verdict] = []
    if not after:
        return [Verdict("samples after the warm-up", False, "none: run longer or shorten --warmup-s")]
    end = next((s for s in reversed(samples) if s.phase == "end"), None)
    posted = after[-1].posted - after[0].posted
    for proc in sorted({p for s in after for p in s.rss_mb}):
        series = [s.rss_mb[proc] for s in after if proc in s.rss_mb]
        first, last = series[0], series[-1]
        change = last / first - 1 if first else float("inf")
        detail = f"{first:.0f} → {last:.0f} MB ({change:+.1%}; peak {max(series):.0f}"
        if end is not None and proc in end.rss_mb:
            detail += f", {end.rss_mb[proc]:.0f} after the drains"
        if proc not in flat and posted > 0:
            detail += f"; {1000 * (last - first) / posted:+.1f} MB per 1,000 orders"
        out.append(Verdict(f"RSS {proc}", change <= tolerance, detail + ")", proc in flat))
    normal = [s for s in after if s.fault is None]
    start = next((s for s in samples if s.phase == "start"), None)
    for name, values, slack, idle in (
            ("tasks", [float(s.tasks) for s in normal if s.tasks is not None and s.tasks >= 0], task_slack,
             (start.tasks if start else None, end.tasks if end else None)),
            ("connections", [float(s.connections) for s in normal if s.connections is not None], conn_slack,
             (start.connections if start else None, end.connections if end else None))):
        grows, first, last = growing(values, tolerance=tolerance, slack=slack)
        out.append(Verdict(f"{name} not growing", not grows and len(values) >= 3,
                           f"first third {first:.1f}, last third {last:.1f} (mean of {len(values)} load samples "
                           f"outside fault windows)"))
        before, later = idle
        if before is not None and later is not None and before >= 0 and later >= 0:
            # connections: shown, not held; the pools (database, partners) keep what the load opened
            held = ", ".join(f"{k} {v}" for k, v in sorted(end.peers.items())) if end else ""
            pools = f" ({held})" if held and name != "tasks" else ""
            out.append(Verdict(f"{name} idle before/after", later <= before * (1 + tolerance) + slack,
                               f"{before} before the first order, {later} after the last drain{pools}",
                               counted=name == "tasks"))
    out.append(Verdict("lost", lost == 0, str(lost)))
    out.append(Verdict("unfinished after the drains", unfinished == 0, str(unfinished)))
    out.append(Verdict("doubled", doubled == 0, str(doubled)))
    return out


def table(samples: list[Sample]) -> str:
    procs = sorted({p for s in samples for p in s.rss_mb})
    head = (f"{'t min':>6} {'posted':>7} {'done/s':>7} {'p99 s':>7} " + " ".join(f"{p[:10]:>10}" for p in procs)
            + f" {'tasks':>6} {'conns':>6} {'in':>4} {'db':>4} {'kafka':>5} {'sim':>4} {'fds':>5} {'open':>5}"
            f" {'DLQ':>5}  phase/fault")
    rows = [head, "-" * len(head)]
    for s in samples:
        p99 = f"{s.p99_ms / 1000:7.1f}" if s.p99_ms is not None else f"{'-':>7}"
        rows.append(f"{s.t_s / 60:6.1f} {s.posted:7d} {s.rate:7.2f} {p99} "
                    + " ".join(f"{s.rss_mb.get(p, 0):10.0f}" for p in procs)
                    + f" {_or_dash(s.tasks):>6} {_or_dash(s.connections):>6} {_or_dash(s.inbound):>4}"
                    f" {s.peers.get('database', 0):4d} {s.peers.get('broker', 0):5d} {s.peers.get('simulators', 0):4d}"
                    f" {_or_dash(s.fds):>5} {s.open_orders:5d} {s.dead_letters:5d}  "
                    f"{s.fault or ('' if s.phase == 'load' else s.phase)}")
    return "\n".join(rows)


def _or_dash(v: int | None) -> str:
    return "-" if v is None else str(v)


# --- /proc --------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sockets(pid: int, port: int = 0, peers: dict[int, str] | None = None
            ) -> tuple[int | None, int | None, int | None, dict[str, int]]:
    """(established TCP connections, of them to local ``port``, open fds, the others by the peer
    their remote port names in ``peers``) of one process: its socket inodes in /proc/PID/fd matched
    against /proc/net/tcp{,6} rows in state 01 (ESTABLISHED)."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None, None, None, {}
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    established = inbound = 0
    by_peer: dict[str, int] = {}
    for table_file in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table_file).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "01" and cols[9] in inodes:
                established += 1
                if int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inbound += 1
                else:
                    peer = (peers or {}).get(int(cols[2].rsplit(":", 1)[1], 16), "other")
                    by_peer[peer] = by_peer.get(peer, 0) + 1
    return established, inbound, len(links), by_peer


# --- the run ------------------------------------------------------------------------------------
@dataclass
class Soak:
    """The driver's state: what it posted, submitted, and sampled."""

    rate: float
    schedule: list[Fault]
    duration_s: float
    posted: int = 0
    completed: int = 0  # as sampled
    counted: set[str] = field(default_factory=set)  # the completed orders sampled
    post_errors: int = 0
    samples: list[Sample] = field(default_factory=list)
    submitted: set[str] = field(default_factory=set)
    resent: dict[str, int] = field(default_factory=dict)  # order → failed_call submissions
    started: float = 0.0


async def run_soak(args: argparse.Namespace, port: int, sim: str, db: Any, pids: dict[str, int],
                   state: Soak) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    peer_ports = {int(os.environ["HUB_MONGO_PORT"]): "database", int(os.environ["HUB_KAFKA_PORT"]): "broker",
                  int(sim.rsplit(":", 1)[1]): "simulators"}
    headers = {"X-Api-Key": "dev-esop-key-0001"}
    operator = {"Authorization": "Bearer dev-operator-token-0001"}
    # the soak's database holds only its orders: the polling queries need no filter on them (a regex on
    # external_order_id scanned every order twice a second, and SecantusDB slowed as the run went on);
    # the final checks keep it, as bench/flow.py's exactly-once check does
    mine = {"external_order_id": {"$regex": f"^BF{flow.RUN}-"}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def call(path: str, body: dict[str, Any], hdrs: dict[str, str], ok: tuple[int, ...]) -> bool:
            for _ in range(20):
                try:
                    async with http.post(f"{base}{path}", json=body, headers=hdrs) as r:
                        if r.status in ok:
                            return True
                        if r.status < 500:
                            print(f"soak: {path} answered {r.status}: {(await r.text())[:200]}", flush=True)
                            return False
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.5)
            return False

        async def post(i: int) -> None:
            if not await call("/api/v1/partners/esop/orders",
                              dict(flow.ORDER, external_order_id=f"BF{flow.RUN}-soak-{i}"), headers, (202,)):
                state.post_errors += 1

        async def control(partner: str, body: dict[str, Any]) -> None:
            async with http.post(f"{sim}/_control/{partner}", json=body) as r:
                r.raise_for_status()

        async def field_app(t: float) -> None:
            """Submit the manual verification; press "send again" on a refused call once no fault is on."""
            waiting = [d["_id"] async for d in db.orders.find(
                {"current_stage": "verification", "status": "waiting"}, {"_id": 1})
                if d["_id"] not in state.submitted]
            state.submitted.update(waiting)
            todo = [call(f"/api/v1/orders/{o}/stages/verification/submit",
                         {"data": {}, "submitted_by": "field-app:soak"}, operator, (202, 409)) for o in waiting]
            if fault_at(state.schedule, t) is None:
                refused = [(d["_id"], d.get("updated_at")) async for d in db.orders.find(
                    {"current_stage": "failed_call", "status": "waiting"}, {"_id": 1, "updated_at": 1})]
                for oid, at in refused:
                    mark = f"{oid}@{at}"
                    if mark not in state.submitted:
                        state.submitted.add(mark)
                        state.resent[oid] = state.resent.get(oid, 0) + 1
                        todo.append(call(f"/api/v1/orders/{oid}/stages/failed_call/submit",
                                         {"data": {}, "submitted_by": "operator:soak"}, operator, (202, 409)))
            await asyncio.gather(*todo)

        async def tasks_gauge() -> int | None:
            try:
                async with http.get(f"{base}/metrics") as r:
                    text = await r.text()
            except aiohttp.ClientError:
                return None
            line = next((x for x in text.splitlines() if x.startswith("bench_asyncio_tasks ")), None)
            return int(float(line.split()[1])) if line else None

        phase = "start"
        last_at = datetime.now(UTC)

        async def sample() -> None:
            nonlocal last_at
            t = time.monotonic() - state.started
            now = datetime.now(UTC)
            # led by updated_at (the orders index by_updated); completing is an update, stamped with the
            # engine's event time, which can precede the write by seconds: hence the margin and the ids seen
            docs = [d async for d in db.orders.find(
                {"updated_at": {"$gt": last_at - timedelta(seconds=60)}, "status": "completed"},
                {"created_at": 1, "completed_at": 1}) if d["_id"] not in state.counted]
            state.counted.update(d["_id"] for d in docs)
            state.completed += len(docs)
            lat = [(d["completed_at"] - d["created_at"]).total_seconds() * 1000 for d in docs]
            conns, inbound, fds, by_peer = sockets(pids["worker"], port, peer_ports)
            rss = {name: v for name, pid in pids.items() if (v := rss_mb(pid)) is not None}
            f = fault_at(state.schedule, t) if phase == "load" else None
            interval = max((now - last_at).total_seconds(), 1e-6)
            last_at = now
            s = Sample(round(t, 1), state.posted, len(docs), round(len(docs) / interval, 2), pct(lat, 99),
                       {k: round(v, 1) for k, v in rss.items()}, await tasks_gauge(), conns, fds,
                       await db.dead_letters.count_documents({"status": "dead"}), f.label if f else None, phase,
                       state.posted - state.completed, inbound,
                       by_peer)
            state.samples.append(s)
            print(f"soak: {json.dumps(asdict(s), ensure_ascii=False)}", flush=True)

        async def sampler() -> None:
            while True:
                await asyncio.sleep(args.sample_s)
                await sample()

        # the open loop, the field app, the faults and the sampler, in one loop of 0.5 s turns
        posting: set[asyncio.Task[None]] = set()
        state.started = start = time.monotonic()
        await sample()  # idle: before the first order
        phase = "load"
        sampling = asyncio.create_task(sampler())
        active: Fault | None = None
        while (t := time.monotonic() - start) < state.duration_s:
            due = int(t * state.rate)
            while state.posted < due:
                task = asyncio.create_task(post(state.posted))
                posting.add(task)
                task.add_done_callback(posting.discard)
                state.posted += 1
            now_fault = fault_at(state.schedule, t)
            if now_fault is not active:
                if active is not None:
                    await control(active.partner, {"mode": "ok"})
                if now_fault is not None:
                    await control(now_fault.partner, control_for(now_fault.kind))
                print(f"soak: {t / 60:5.1f} min fault {now_fault.label if now_fault else 'cleared'}", flush=True)
                active = now_fault
            await field_app(t)
            await asyncio.sleep(0.5)
        if posting:
            await asyncio.gather(*posting)
        for p in PARTNERS:
            await control(p, {"mode": "ok"})
        phase = "drain"

        async def drain(limit_s: float, what: str) -> float:
            """Until every posted order is completed or blocked on a dead letter (none in flight, none
            at a manual stage), twice in a row; at most ``limit_s``."""
            t0 = time.monotonic()
            quiet = 0
            while time.monotonic() - t0 < limit_s and quiet < 2:
                await field_app(float("inf"))
                total = await db.orders.count_documents({})
                busy = await db.orders.count_documents({"$or": [
                    {"status": "in_flight"},
                    {"status": "waiting", "current_stage": {"$in": ["verification", "failed_call"]}}]})
                quiet = quiet + 1 if total >= state.posted and busy == 0 else 0
                await asyncio.sleep(2)
            took = time.monotonic() - t0
            print(f"soak: {what} drained in {took:.0f} s", flush=True)
            return took

        drained1 = await drain(args.drain_s, "posted orders")
        pending = await db.dead_letters.count_documents({"status": "dead"})
        replay: dict[str, Any] = {}
        if pending:
            proc = await asyncio.create_subprocess_exec(
                shutil.which("hub") or str(ROOT / ".venv" / "bin" / "hub"), "dlq", "replay", "--all", "--yes",
                "--json", "--as", "bench:soak", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            try:
                replay = json.loads(out.decode())
            except json.JSONDecodeError:
                replay = {"error": (out + err).decode()[-2000:]}
            replay["exit"] = proc.returncode
            print(f"soak: hub dlq replay --all: exit {proc.returncode}, "
                  f"{ {k: replay.get(k) for k in ('matched', 'ok', 'refused', 'failed', 'elapsed_s')} }", flush=True)
        drained2 = await drain(args.drain_s, "replayed orders")
        sampling.cancel()
        await asyncio.sleep(args.sample_s)  # idle: what the worker holds with nothing to do
        phase = "end"
        await sample()
        async with http.get(f"{sim}/_calls") as r:
            summary = await r.json()
        async with http.get(f"{sim}/_calls", params={"partner": "esop"}) as r:
            esop_calls = await r.json()
    check = await flow.exactly_once(db, esop_calls, summary, state.posted)
    left = await db.dead_letters.count_documents({"status": "dead"})
    completed = await db.orders.count_documents({**mine, "status": "completed"})
    all_lat = [(d["completed_at"] - d["created_at"]).total_seconds() * 1000 async for d in db.orders.find(
        {**mine, "status": "completed"}, {"created_at": 1, "completed_at": 1})]
    return {**check, "posted": state.posted, "post_errors": state.post_errors, "completed": completed,
            "dead_letters_replayed": pending, "dead_letters_left": left, "replay": {
                k: replay.get(k) for k in ("matched", "ok", "refused", "failed", "elapsed_s", "exit", "error")
                if k in replay},
            "resent_after_refusal": sum(state.resent.values()), "drain_s": round(drained1), "drain2_s": round(drained2),
            "p50_all_ms": pct(all_lat, 50), "p99_all_ms": pct(all_lat, 99),
            "callbacks_sent": summary.get("callbacks_sent")}


def lost_doubled(check: dict[str, Any]) -> tuple[int, int, int]:
    """Lost: posted orders (answered 202) without an order document, and completed ones without an
    accepted ESOP close-report. Unfinished: order documents not completed when the last drain ended
    (still in flight: not lost, not done either). Doubled: a second order document or close-report,
    or a call a partner accepted and was sent again (its key)."""
    closed = check["closed_once"] + check["closed_twice"]
    lost = max(check["posted"] - check["orders_in_db"], 0) + max(check["orders_completed_in_db"] - closed, 0)
    unfinished = check["orders_in_db"] - check["orders_completed_in_db"]
    doubled = check["closed_twice"] + check["order_docs_twice"] + sum(check["keys_sent_again"].values())
    return lost, unfinished, doubled


def plot(samples: list[Sample], schedule: list[Fault], path: Path, title: str, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [s.t_s / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(12, 9))
    axes[0].plot(xs, [s.rate for s in samples], color="tab:blue", label="completed")
    axes[0].axhline(rate, color="grey", linestyle="--", linewidth=1, label=f"posted ({rate:.2f}/s)")
    axes[0].set_ylabel("orders/s")
    axes[0].legend(loc="upper right", fontsize="small")
    axes[1].plot(xs, [s.p99_ms / 1000 if s.p99_ms is not None else float("nan") for s in samples], color="tab:red")
    axes[1].set_ylabel("p99 intake → completed (s)")
    for proc in sorted({p for s in samples for p in s.rss_mb}):
        axes[2].plot(xs, [s.rss_mb.get(proc, float("nan")) for s in samples], label=proc)
    axes[2].set_ylabel("RSS (MB)")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper left", fontsize="small")
    drain = [s.t_s / 60 for s in samples if s.phase in ("drain", "end")]
    for ax in axes:
        for f in schedule:
            ax.axvspan(f.start_s / 60, f.end_s / 60, color="orange", alpha=0.2)
        if drain:
            ax.axvspan(min(drain) - 0.01, max(drain), color="grey", alpha=0.12)
        ax.grid(alpha=0.3)
    for f in schedule:
        axes[0].text(f.start_s / 60, axes[0].get_ylim()[1], f.label, fontsize=7, rotation=90, va="top")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def measure_max(env: dict[str, str], home: Path, args: argparse.Namespace) -> float:
    """bench/flow.py's closed loop, one worker, on its own topics and database."""
    ns = argparse.Namespace(duration=args.max_duration, warmup=8.0, max_warmup=120.0, window=args.max_window,
                            drain=120.0, no_exact_offsets=False, keep_logs=None)
    result = flow.one_run(env, home, 1, ns, kill=False)
    if not flow.clean(result):
        print("soak: the max run was not exactly once (see its line above)", flush=True)
    return float(result["orders_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--rate", type=float, help="orders/s to post (default: half of a measured maximum)")
    how.add_argument("--max-first", action="store_true", help="measure the maximum first (the default without --rate)")
    ap.add_argument("--max-duration", type=float, default=60.0, help="seconds of the maximum's closed loop")
    ap.add_argument("--max-window", type=int, default=100, help="orders in flight in the maximum's closed loop")
    ap.add_argument("--fault-every-s", type=float, default=180.0)
    ap.add_argument("--fault-for-s", type=float, default=60.0)
    ap.add_argument("--faults", default=",".join(KINDS), help=f"kinds in turn (of {', '.join(KINDS)})")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, help="RSS is compared from here (default 10 %% of the run, 30-300 s)")
    ap.add_argument("--drain-s", type=float, default=600.0, help="at most this long per drain")
    ap.add_argument("--flat", default="worker",
                    help="processes whose RSS must stay within 10 %% (the others are shown with their MB per "
                         "1,000 orders: the embedded broker keeps every record in memory, SecantusDB grows with "
                         "what it holds, the simulators log every call)")
    ap.add_argument("--png", type=Path, help="default .hub/bench/soak-<time>.png (git-ignored)")
    args = ap.parse_args()
    # a background run (nohup … &) ignores SIGINT: SIGTERM stops it with the servers and simulators
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    for k in kinds:
        control_for(k)
    duration = args.minutes * 60
    warmup = args.warmup_s if args.warmup_s is not None else max(30.0, min(300.0, duration * 0.1))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    png = args.png or ROOT / ".hub" / "bench" / f"soak-{stamp}.png"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    load0 = os.getloadavg()
    print(f"soak: {stamp}, commit {commit}, load {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    schedule = fault_schedule(duration, args.fault_every_s, args.fault_for_s, kinds)

    with private_infra() as env:
        home = Path(env["HUB_HOME"])
        env = {**env, "HUB_KAFKA_EXACT_OFFSETS": "true"}
        maximum = None
        if args.rate is None:
            maximum = measure_max(env, home, args)
            print(f"soak: maximum {maximum:.2f} orders/s (closed loop, window {args.max_window})", flush=True)
        rate = args.rate if args.rate is not None else maximum / 2  # type: ignore[operator]
        sim_port, port = free_port(), free_port()
        env = {**env, "HUB_HTTP_PORT": str(port), "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}",
               "HUB_TOPIC_PREFIX": f"soak{flow.RUN}", "HUB_MONGO_DB": f"soak_{flow.RUN}"}
        os.environ.update(env)  # `hub dlq replay` and load_settings below see the soak's topics and database
        state = Soak(rate, schedule, duration)
        command = [sys.executable, "-m", "bench._soak_worker"]
        with hub_with_simulators(env, home, tag="soak", command=command) as procs:
            from motor.motor_asyncio import AsyncIOMotorClient

            from hub.settings import load_settings

            infra = flow.infra_pids(home)
            pids = {"worker": procs[1].pid, "simulators": procs[0].pid,
                    **{role: ps[0] for role, ps in infra.items() if ps}}
            print(f"soak: {rate:.2f} orders/s for {args.minutes} min, {len(schedule)} faults; pids {pids}", flush=True)

            async def go() -> dict[str, Any]:
                client: Any = AsyncIOMotorClient(load_settings().mongo_uri, tz_aware=True)
                try:
                    return await run_soak(args, port, env["HUB_SIM_URL"],
                                          client[env["HUB_MONGO_DB"]], pids, state)
                finally:
                    client.close()

            result = asyncio.run(go())
    load1 = os.getloadavg()
    lost, unfinished, doubled = lost_doubled(result)
    checks = verdicts(state.samples, warmup_s=warmup, flat=tuple(args.flat.split(",")), lost=lost, doubled=doubled,
                      unfinished=unfinished)
    print(table(state.samples))
    load = [s for s in state.samples if s.phase == "load" and s.t_s >= warmup]
    rates = [s.rate for s in load]
    p99s = [s.p99_ms for s in load if s.p99_ms is not None]
    print(f"soak: {args.minutes} min at {rate:.2f} orders/s posted"
          + (f" (half of the measured {maximum:.2f})" if maximum else "")
          + f"; completed/s after warm-up mean {statistics.mean(rates) if rates else 0:.2f}; p99 per interval median "
          f"{(statistics.median(p99s) / 1000) if p99s else float('nan'):.1f} s, worst "
          f"{(max(p99s) / 1000) if p99s else float('nan'):.1f} s; whole run p50 "
          f"{(result['p50_all_ms'] or 0) / 1000:.1f} s p99 {(result['p99_all_ms'] or 0) / 1000:.1f} s")
    print(f"soak: posted {result['posted']} (post errors {result['post_errors']}), completed {result['completed']}; "
          f"dead letters replayed {result['dead_letters_replayed']} ({result['replay']}), "
          f"left {result['dead_letters_left']}; "
          f"refused calls sent again by the operator {result['resent_after_refusal']}; drains {result['drain_s']} s + "
          f"{result['drain2_s']} s")
    print(f"soak: exactly once: {result['orders_in_db']} order documents ({result['order_docs_twice']} twice), "
          f"{result['orders_completed_in_db']} completed; ESOP close-report once {result['closed_once']}, twice "
          f"{result['closed_twice']}, none {result['not_closed']}; "
          f"keys sent again {result['keys_sent_again'] or 'none'}; "
          f"callbacks the simulators gave up on {result['callbacks_failed']}")
    print(f"soak: load {load0[0]:.2f} → {load1[0]:.2f} (1-min average), commit {commit}")
    for v in checks:
        mark = "ok  " if v.ok else ("FAIL" if v.counted else "grew")
        print(f"  {mark} {v.name:<24} {v.detail}{'' if v.counted else '  (shown, not held)'}")
    title = (f"bench.soak {stamp} {commit}: {rate:.2f} orders/s, {args.minutes:g} min, faults every "
             f"{args.fault_every_s:g} s for {args.fault_for_s:g} s (shaded)")
    plot(state.samples, schedule, png, title + "; drain and replay grey", rate)
    png.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "rate": rate, "maximum": maximum, "commit": commit,
         "load": [load0, load1], "samples": [asdict(s) for s in state.samples],
         "faults": [asdict(f) for f in schedule], "result": result,
         "verdicts": [asdict(v) for v in checks]}, ensure_ascii=False, default=str, indent=1))
    print(f"soak: plot {png} (samples: {png.with_suffix('.json')})")
    sys.exit(0 if all(v.ok for v in checks if v.counted) else 1)


if __name__ == "__main__":
    main()
