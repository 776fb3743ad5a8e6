"""Dead-letter replay at scale: N dead-lettered ESOP close-reports replayed with the operator CLI,
delivered by the real hub worker to the ESOP SOAP simulator, each exactly once.

    python -m bench.replay [--count 10000] [--rate 0] [--duplicates 1000] [--replay-only]

What runs: private tansu + SecantusDB (bench._common.private_infra); the partner simulators
in this process (``simulators.serve``); the hub worker as ``hub run`` (delivery agents, flow
engine, HTTP) in a subprocess; the replay as ``hub dlq replay --all --topic hub.out.esop --yes
--json`` in another subprocess, exactly as an operator types it.

Dead letters are seeded straight into MongoDB in their real shape (``DeadLetter`` model,
``insert_many``): producing 10,000 real failures through the partner first would only measure
the retry back-off. Each is a ``close_report`` call envelope (``notifyOrderResult``) with its own
idempotency key. Reported:

* replay rate: envelopes/s produced by ``hub dlq replay`` (claim in MongoDB, produce acks=all, audit)
* end-to-end rate: envelopes/s from the start of the replay until the simulator received them all
* exactly once: every idempotency key seen by the simulator exactly once, none missing; then
  ``--duplicates`` of the same envelopes are produced *again* (as a careless second replay would)
  and the simulator must still have seen each key once (the delivery agent's ``deliveries`` check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench._common import free_port, private_infra, wait_http

RUN = uuid.uuid4().hex[:6]


def letter_doc(i: int, topic: str) -> dict[str, object]:
    from hub.deadletter import Attempt, DeadLetter
    from hub.envelope import Envelope

    order_id = f"ord-bench-{RUN}-{i:06d}"
    env = Envelope(
        type="call.request", source="hub", protocol="soap", correlation_id=order_id,
        idempotency_key=f"call:{order_id}:close_out:close_report:1", product="internet_line", scenario="open",
        payload={"operation": "close_report", "call_id": f"c-{RUN}-{i}", "stage": "close_out", "round": 1,
                 "request": {"orderId": f"E-{RUN}-{i}", "hubOrderId": order_id, "resultCode": "1",
                             "resultDesc": "开通完成", "finishTime": datetime.now(UTC).isoformat()}},
    )
    now = datetime.now(UTC)
    letter = DeadLetter.for_envelope(topic, env, "SOAP Fault soap-env:Server: simulated ESOP failure",
                                     partner="esop", error_class="RetriesExhausted",
                                     attempts=[Attempt(at=now, outcome="fault", status="fault", duration_ms=3.0)] * 5)
    letter.dlq_topic = topic + ".dlq"
    doc = letter.model_dump()
    doc["_id"] = doc.pop("id")
    return doc


async def seed(count: int) -> str:
    from hub import db as hubdb
    from hub import topics
    from hub.settings import load_settings

    s = load_settings()
    topic = topics.outbound(s.topic_prefix, "esop")
    client = hubdb.connect(s)
    db = hubdb.database(client, s)
    await hubdb.ensure_indexes(db)
    for start in range(0, count, 1000):
        await db["dead_letters"].insert_many([letter_doc(i, topic) for i in range(start, min(count, start + 1000))])
    client.close()
    return topic


async def reproduce(topic: str, n: int) -> None:
    """Produce the first ``n`` replayed envelopes a second time, straight to the topic."""
    from hub import db as hubdb
    from hub.envelope import Envelope
    from hub.kafka import EnvelopeProducer
    from hub.settings import load_settings

    s = load_settings()
    client = hubdb.connect(s)
    producer = EnvelopeProducer(s)
    await producer.start()
    cursor = hubdb.database(client, s)["dead_letters"].find({"source_topic": topic}).limit(n)
    sends = [producer.send(topic, Envelope.model_validate(d["envelope"])) async for d in cursor]
    await asyncio.gather(*sends)
    await producer.stop()
    client.close()


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    from simulators import serve

    sim_port, http_port = free_port(), free_port()
    config_dir = Path(__file__).resolve().parent.parent / "config"
    runner, state = await serve(config_dir, "127.0.0.1", sim_port)
    hub_env = {**os.environ, **env, "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}", "HUB_HTTP_PORT": str(http_port),
               "HUB_LOG_LEVEL": "ERROR"}
    log = open(Path(env["HUB_HOME"]) / "hub-run.log", "w")
    worker = None if args.replay_only else subprocess.Popen(
        [sys.executable, "-m", "hub", "run"], env=hub_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if worker is not None:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{http_port}/readyz", 90)
        t = time.perf_counter()
        topic = await seed(args.count)
        seeded_s = time.perf_counter() - t
        if worker is not None:
            await asyncio.sleep(5)  # let the worker's consumers finish joining their groups

        cmd = [sys.executable, "-m", "hub", "dlq", "replay", "--all", "--topic", topic, "--yes", "--json",
               "--as", "bench"]
        if args.rate:
            cmd += ["--rate", str(args.rate)]
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*cmd, env=hub_env, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        t_cli = time.perf_counter() - t0
        summary = json.loads(out)
        cli = {"ok": summary["ok"], "refused": summary["refused"], "failed": summary["failed"],
               "replay_s": summary["elapsed_s"], "replay_per_s": summary["per_second"],
               "wall_s_incl_startup": round(t_cli, 2)}
        if worker is None:
            return {"count": args.count, "seed_s": round(seeded_s, 2), "cli": cli, "exactly_once": None}

        esop = state.partner("esop")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if len({c.idempotency_key for c in esop.calls}) >= args.count:
                break
            await asyncio.sleep(0.1)
        t_e2e = time.perf_counter() - t0
        await asyncio.sleep(3)  # a duplicate would arrive now
        first = Counter(c.idempotency_key for c in esop.calls)

        if args.duplicates:
            await reproduce(topic, args.duplicates)
            await asyncio.sleep(args.settle)
        final = Counter(c.idempotency_key for c in esop.calls)
        expected = {f"call:ord-bench-{RUN}-{i:06d}:close_out:close_report:1" for i in range(args.count)}
        return {
            "count": args.count,
            "seed_s": round(seeded_s, 2),
            "cli": cli,
            "end_to_end_s": round(t_e2e, 2),
            "end_to_end_per_s": round(args.count / t_e2e, 1),
            "simulator_unique_keys": len(first),
            "missing": len(expected - set(first)),
            "seen_more_than_once": sum(1 for n in first.values() if n > 1),
            "all_answered_ok": all(c.answered == "ok" for c in esop.calls),
            "after_duplicates": {"reproduced": args.duplicates, "simulator_calls": sum(final.values()),
                                 "seen_more_than_once": sum(1 for n in final.values() if n > 1)},
            "exactly_once": len(first) == args.count and not (expected - set(first))
            and max(final.values(), default=0) == 1,
        }
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        log.close()
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=0, help="hub dlq replay --rate (0 = unlimited)")
    ap.add_argument("--duplicates", type=int, default=1000, help="envelopes produced a second time afterwards")
    ap.add_argument("--settle", type=float, default=10, help="seconds to wait for duplicates to (not) arrive")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--replay-only", action="store_true", help="no worker: measure hub dlq replay alone")
    args = ap.parse_args()
    with private_infra() as env:
        result = asyncio.run(run(args, env))
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["exactly_once"] in (True, None) else 1)


if __name__ == "__main__":
    main()
