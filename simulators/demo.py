"""``hub demo`` — the newcomer's first run: start whatever is not running (embedded servers, partner
simulators, the worker with its HTTP server), post sample orders of the shipped products through
the real intake endpoints, play the field app for manual stages, show live progress, print a
summary, and exit 0 only when every order completed. ``--all`` posts one order of every blueprint
(product × scenario), its fields sampled from config/products/<product>.yaml, so a new blueprint
needs no demo code; the summary gives per-product stage timings and the wall time."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import typer

from hub.partner_auth import HmacAuth, signed_headers
from hub.partners import ApiKeyAuth
from hub.settings import Settings, load_settings

SAMPLE_CITIES = ["杭州", "宁波", "温州"]


def _sim_url() -> str:
    return os.environ.get("HUB_SIM_URL", "http://127.0.0.1:18800")


async def _answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as s, s.get(url) as r:
            return r.status < 500
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def _wait_for(url: str, seconds: float, proc: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await _answers(url):
            return
        if proc is not None and proc.poll() is not None:
            raise typer.Exit(_fail(f"{what} exited ({proc.returncode}); see {log}"))
        await asyncio.sleep(0.3)
    raise typer.Exit(_fail(f"{what} did not answer on {url} within {seconds:.0f}s; see {log}"))


def _fail(message: str) -> int:
    typer.secho(f"demo: {message}", fg="red", err=True)
    return 1


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([_hub(), *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _hub() -> str:
    candidate = Path(sys.executable).with_name("hub")
    return str(candidate) if candidate.exists() else "hub"


def _sample(i: int, tag: str) -> tuple[str, dict[str, Any]]:
    """Every fourth order is a 5G LAN order from 一编, the rest internet lines from ESOP."""
    five_g = i % 4 == 3
    body: dict[str, Any] = {
        "external_order_id": f"DEMO-{tag}-{i:04d}", "product": "5g_lan" if five_g else "internet_line",
        "scenario": "open", "customer": {"name": f"示例客户{i}", "contact_phone": "13800000000"},
        "addresses": [{"city": SAMPLE_CITIES[i % len(SAMPLE_CITIES)], "detail": f"示例路{i}号"}],
        "bandwidth_mbps": 100 * (1 + i % 5), "access_type": "PON",
    }
    return ("group" if five_g else "esop"), body


#: scenarios ``--all`` does not post as new orders: a withdraw (撤单) is the cancel of a running order
#: the intake turns into ``order.cancel`` (routes/pipeline.py), not an order a blueprint starts
NOT_AN_ORDER = frozenset({"withdraw"})


def all_samples(library: Any, products: dict[str, Any], tag: str,
                only: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """One order per blueprint (product × scenario) with the product file's sample fields
    (config/products/<product>.yaml): a new blueprint needs no demo code. (partner, canonical order)."""
    from hub.products import sample_order

    out = []
    keys = sorted({(bp.product, bp.scenario) for bp in library if bp.product and bp.scenario})
    for i, (product, scenario) in enumerate(keys):
        if scenario in NOT_AN_ORDER or (only and product not in only):
            continue
        spec = products.get(product)
        base = {"customer": {"name": f"示例客户{i}", "contact_phone": "13800000000"},
                "addresses": [{"city": SAMPLE_CITIES[i % len(SAMPLE_CITIES)], "detail": f"示例路{i}号"}]}
        body = sample_order(spec, product, scenario, f"DEMO-{tag}-{i:04d}", base)
        out.append(((spec.origin if spec is not None and spec.origin else "esop"), body))
    return out


class Demo:
    def __init__(self, settings: Settings, orders: int, timeout: float, *, every: bool = False,
                 only: list[str] | None = None) -> None:
        from flows.graph.check import partner_operations
        from flows.graph.library import load_library
        from hub.partners import load_partners
        from hub.products import load_products

        self.settings = settings
        self.timeout = timeout
        self.partners = load_partners(settings.config_dir)
        self.library = load_library(settings.config_dir, partner_operations(self.partners))  # v2 flows
        tag = uuid.uuid4().hex[:6]
        if every:
            self.samples = all_samples(self.library, load_products(settings.config_dir), tag, only)
        else:
            self.samples = [_sample(i, tag) for i in range(orders)]
        self.n = len(self.samples)
        self.base = f"http://{settings.http_host}:{settings.http_port}"
        token = next((t for t in getattr(settings, "admin_tokens", []) if t.role == "operator"), None)
        self.operator = {"Authorization": f"Bearer {token.token.get_secret_value()}"} if token else {}
        self.ids: list[str] = []
        self.posted: dict[str, str] = {}  # order id → product/scenario
        self.submitted: set[tuple[str, str, int]] = set()

    def _auth_headers(self, partner: str, path: str, body: bytes) -> dict[str, str]:
        """What the partner's intake auth asks for: its API key, or an HMAC signature of this request."""
        p = self.partners[partner]
        auth = p.inbound.rest.auth if p.inbound and p.inbound.rest else None
        if isinstance(auth, HmacAuth):
            return signed_headers(auth.secret.get_secret_value(), "POST", path, body)
        return {auth.header: auth.keys[0].get_secret_value()} if isinstance(auth, ApiKeyAuth) else {}

    async def post_orders(self, http: aiohttp.ClientSession) -> None:
        for partner, body in self.samples:
            path = f"/api/v1/partners/{partner}/orders"
            data = json.dumps(body, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json", **self._auth_headers(partner, path, data)}
            async with http.post(f"{self.base}{path}", data=data, headers=headers) as r:
                if r.status != 202:
                    raise typer.Exit(_fail(f"intake answered {r.status} for {body['product']}/{body['scenario']}: "
                                           f"{await r.text()}"))
                self.ids.append((await r.json())["order_id"])
                self.posted[self.ids[-1]] = f"{body['product']}/{body['scenario']}"

    async def field_app(self, http: aiohttp.ClientSession, docs: list[dict[str, Any]]) -> None:
        """Submit manual stages the way the field app would (sample values for the required fields)."""
        for d in docs:
            if d.get("engine") == 2:
                await self._field_app_v2(http, d)

    async def _field_app_v2(self, http: aiohttp.ClientSession, d: dict[str, Any]) -> None:
        """A v2 order waiting in a manual stage (a ``user`` node): submit sample values derived from
        the stage's field rules (simulators/fieldapp.py)."""
        from simulators.fieldapp import sample_fields

        bp = self.library.by_name(str(d.get("blueprint")))
        # a call's failure path (G3 failed_call) waits for a person who fixes the cause first: the field
        # app does not click it, or a partner that refuses would be sent the same call again in a loop
        failure_paths = {getattr(n, "on_failure", None) for n in bp.nodes.values()} if bp is not None else set()
        for node in d.get("current_nodes") or []:
            spec = bp.nodes.get(node) if bp is not None else None
            visit = sum(1 for s in d.get("stages") or [] if s.get("stage") == node)
            if (spec is None or spec.kind != "user" or f"{node} (user)" not in (d.get("waiting_for") or "")
                    or node in failure_paths or (d["_id"], node, visit) in self.submitted):
                continue
            rules = list(getattr(spec, "fields", []))
            also: set[str] = set()
            for _ in range(2):  # a second try with the fields the stage said it still requires
                async with http.post(f"{self.base}/api/v1/orders/{d['_id']}/stages/{node}/submit",
                                     json={"data": sample_fields(rules, also), "submitted_by": "field-app:demo"},
                                     headers=self.operator) as r:
                    if r.status in (202, 409):
                        self.submitted.add((d["_id"], node, visit))
                        break
                    errors = (await r.json()).get("errors") or [] if r.status == 400 else []
                    missing = {str(e.get("field", "")).removeprefix("data.") for e in errors
                               if e.get("message") == "required"}
                    if not missing or missing <= also:
                        break
                    also |= missing

    async def run(self) -> int:
        from motor.motor_asyncio import AsyncIOMotorClient

        mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(self.settings.mongo_uri, tz_aware=True)
        db = mongo[self.settings.mongo_db]
        started = time.monotonic()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                await self.post_orders(http)
                typer.echo(f"posted {self.n} order(s) through the intake endpoints; following them…")
                docs: list[dict[str, Any]] = []
                last = ""
                while time.monotonic() - started < self.timeout:
                    docs = [d async for d in db.orders.find({"_id": {"$in": self.ids}},
                                                            {"order": 0, "calls.envelope": 0, "calls.request": 0})]
                    await self.field_app(http, docs)
                    status = Counter(d["status"] for d in docs)
                    at = Counter(d.get("current_stage") for d in docs if d["status"] != "completed")
                    line = (f"  {time.monotonic() - started:5.1f}s  completed {status['completed']}/{self.n}  "
                            f"in flight {status['in_flight']}  waiting {status['waiting']}  failed {status['failed']}"
                            + (f"  at: {', '.join(f'{k} {v}' for k, v in at.most_common(4))}" if at else ""))
                    if line.split("s ", 1)[1] != last:
                        typer.echo(line)
                        last = line.split("s ", 1)[1]
                    if status["completed"] + status["failed"] == self.n and len(docs) == self.n:
                        break
                    await asyncio.sleep(0.5)
            dead = await db.dead_letters.count_documents({"order_id": {"$in": self.ids}})
            return self.summary(docs, dead, time.monotonic() - started)
        finally:
            mongo.close()

    def summary(self, docs: list[dict[str, Any]], dead: int, elapsed: float) -> int:
        status = Counter(d["status"] for d in docs)
        typer.echo(f"\nsummary after {elapsed:.1f}s: completed {status['completed']}, failed {status['failed']}, "
                   f"not finished {self.n - status['completed'] - status['failed']}, dead letters {dead}")
        per: dict[tuple[str, str], list[float]] = {}
        for d in sorted(docs, key=lambda d: (d["product"], d.get("scenario") or "")):
            for s in d.get("stages", []):
                if s.get("duration_ms") is not None:
                    per.setdefault((d["product"], s["stage"]), []).append(s["duration_ms"])
        typer.echo(f"  {'product':<14} {'stage':<18} {'n':>4} {'avg ms':>8} {'max ms':>8}")
        for (product, stage), values in per.items():
            typer.echo(f"  {product:<14} {stage:<18} {len(values):>4} {statistics.fmean(values):>8.0f} "
                       f"{max(values):>8.0f}")
        products = Counter(d["product"] for d in docs)
        done = Counter(d["product"] for d in docs if d["status"] == "completed")
        if len(products) > 2:
            typer.echo(f"  products: {len(products)}, completed " + ", ".join(
                f"{p} {done[p]}/{n}" for p, n in sorted(products.items())))
        typer.echo(f"wall time {elapsed:.1f}s for {self.n} order(s)")
        for d in docs:
            if d["status"] != "completed":
                typer.echo(f"  ✗ {d['_id']} {d['product']} at {d.get('current_stage')}: "
                           f"{d.get('blocked_reason') or d.get('waiting_for') or d.get('outcome')}")
        for oid in sorted(set(self.posted) - {d["_id"] for d in docs}):  # accepted, never became an order
            typer.echo(f"  ✗ {oid} {self.posted[oid]}: no order document (its event was dead-lettered? hub dlq list)")
        ok = status["completed"] == self.n
        typer.secho("every order completed" if ok else "NOT every order completed", fg="green" if ok else "red")
        return 0 if ok else 1


def demo(
    orders: int = typer.Option(8, "--orders", "-n", min=1, max=10000, help="how many sample orders to post"),
    timeout: float | None = typer.Option(None, "--timeout",
                                         help="seconds to wait for every order (default 120; 900 with --all)"),
    keep_running: bool = typer.Option(False, "--keep-running", help="leave what the demo started running"),
    every: bool = typer.Option(False, "--all", help="one order of every blueprint (product x scenario), samples "
                               "from config/products; --orders is then ignored"),
    only: list[str] = typer.Option([], "--product", help="with --all: only this product (repeatable)"),
) -> None:
    """Start what is not running, post N sample orders (or, with --all, one of every blueprint), follow
    them, play the manual stages, print per-product stage timings and the wall time, exit 0 when all completed."""
    from app.infra import Infra

    settings = load_settings()
    infra = Infra(settings)
    already = {s.name for s in infra.status() if s.answers}
    infra.up(log=lambda m: typer.echo(f"infra: {m}"))
    started_servers = [s for s in infra.servers if not s.external and s.name not in already]
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    logs = settings.log_dir
    code = 1
    try:
        wait = timeout if timeout is not None else 900.0 if every else 120.0
        code = asyncio.run(_run(settings, orders, wait, procs, logs, every, only))
    finally:
        if not keep_running:
            for name, proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                typer.echo(f"demo: stopped {name}")
            for server in reversed(started_servers):
                server.process.stop()
                typer.echo(f"infra: {server.name} stopped")
    raise typer.Exit(code)


async def _run(settings: Settings, orders: int, timeout: float, procs: list[tuple[str, subprocess.Popen[bytes]]],
               logs: Path, every: bool = False, only: list[str] | None = None) -> int:
    sim = _sim_url()
    if not await _answers(f"{sim}/_calls"):
        port = sim.rsplit(":", 1)[-1].split("/")[0]
        proc = _spawn(["simulate", "--port", port], logs / "demo-simulators.log")
        procs.append(("simulators", proc))
        await _wait_for(f"{sim}/_calls", 20, proc, "simulators", logs / "demo-simulators.log")
        typer.echo(f"demo: simulators started on {sim} (log {logs / 'demo-simulators.log'})")
    else:
        typer.echo(f"demo: using the simulators already on {sim}")
    base = f"http://{settings.http_host}:{settings.http_port}"
    if not await _answers(f"{base}/healthz"):
        proc = _spawn(["run", "--keep-infra"], logs / "demo-worker.log")
        procs.append(("worker", proc))
        await _wait_for(f"{base}/readyz", 60, proc, "worker", logs / "demo-worker.log")
        typer.echo(f"demo: worker started, HTTP on {base} (log {logs / 'demo-worker.log'})")
    else:
        typer.echo(f"demo: using the hub already on {base}")
    demo = await asyncio.to_thread(Demo, settings, orders, timeout, every=every, only=only)  # loads every blueprint
    return await demo.run()


def register_cli(root: typer.Typer) -> None:
    root.command("demo")(demo)
