"""Seed 003's jobs (app/jobs/seed003.py) against a real MongoDB, the embedded OpenSSH and HTTP doubles
of the partners: the 24 h release, the daily audit batch with manual intervention, the refund retry
that creates no transaction record."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from motor.motor_asyncio import AsyncIOMotorDatabase

from app.jobs.config import load_jobs
from app.jobs.registry import kinds
from app.jobs.scheduler import Scheduler
from hub.embedded import EmbeddedSftp
from hub.partners import Partner, load_partners
from hub.settings import Settings
from tests.integration.test_jobs import db  # noqa: F401  # a fixture

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)


class Partners:
    """HTTP doubles: the number pool's release, the payment center's identity check and transfer."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.refuse: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.got.append((request.path, body))
        bad = any(str(v) in self.refuse for v in body.values())
        return web.json_response({"code": "1" if bad else "0", "msg": "refused" if bad else "ok"})


@pytest.fixture
async def doubles() -> AsyncIterator[tuple[Partners, str]]:
    p = Partners()
    app = web.Application()
    app.router.add_post("/{tail:.*}", p.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield p, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def scheduler(settings: Settings, db: AsyncIOMotorDatabase[Any], url: str) -> Scheduler:  # noqa: F811
    partners = load_partners(ROOT / "config")
    pool = partners["iot_number_pool"].outbound
    assert pool is not None
    pool.config = {**pool.config, "base_url": f"{url}/pool"}
    partners["payment_center"] = Partner.model_validate({"name": "payment_center", "outbound": {
        "protocol": "rest", "config": {"base_url": f"{url}/pay", "operations": {
            "refund_transfer": {"path": "/api/refund/transfer", "success": {"field": "code", "equals": "0"}},
            "alipay_identity_check": {"path": "/api/alipay/identity-check",
                                      "success": {"field": "code", "equals": "0"}}}}}})
    registered = kinds()
    jobs = load_jobs(ROOT / "config", set(registered))
    jobs["daily-audit"] = jobs["daily-audit"].model_copy(update={"params": {
        **jobs["daily-audit"].params, "dir": f"/drop/boss/audit-{uuid.uuid4().hex[:6]}"}})
    return Scheduler(settings, partners, db, jobs, registered, worker="test")


async def test_reservations_older_than_24_h_of_open_orders_are_released_once(
        settings: Settings, db: AsyncIOMotorDatabase[Any], doubles: tuple[Partners, str]) -> None:  # noqa: F811
    p, url = doubles

    def call(cid: str, order: str, op: str, hours: float, **response: Any) -> dict[str, Any]:
        return {"_id": cid, "call_id": cid, "order_id": order, "partner": "iot_number_pool", "operation": op,
                "outcome": "ok", "request": {"iccid": response.pop("iccid", None)} if op == "bind_sim" else {},
                "response": {"http_status": 200, "body": {"code": "0", **response}},
                "started_at": NOW - timedelta(hours=hours)}

    await db["calls"].insert_many([
        call("A:1", "A", "allocate_number", 25, msisdn="14800001"),
        call("A:2", "A", "bind_sim", 25, iccid="8986001"),
        call("B:1", "B", "allocate_number", 30, msisdn="14800002"),  # B completed: it used its number
        call("C:1", "C", "allocate_number", 2, msisdn="14800003"),  # pre-occupied 2 h ago: not yet
        call("D:1", "D", "allocate_number", 26, msisdn="14800004"),
    ])
    await db["orders"].insert_many([{"_id": "A", "status": "waiting"}, {"_id": "B", "status": "completed"},
                                    {"_id": "C", "status": "in_flight"}, {"_id": "D", "status": "failed"}])
    p.refuse = {"D"}  # the pool refuses D's release this time
    s = scheduler(settings, db, url)
    run = await s.run_now("release-reservations", who="test")
    assert run["status"] == "failed" and run["counts"] == {"found": 3, "released": 2, "failed": 1}
    assert sorted((b["orderId"], tuple(b["numbers"]), tuple(b["sims"])) for _, b in p.got) == [
        ("A", (), ("8986001",)), ("A", ("14800001",), ()), ("D", ("14800004",), ())]
    assert {path for path, _ in p.got} == {"/pool/api/release"}
    p.refuse, p.got = set(), []
    again = await s.run_now("release-reservations", who="test")
    assert again["status"] == "succeeded" and again["counts"] == {"found": 1, "released": 1, "failed": 0}
    assert [b["orderId"] for _, b in p.got] == ["D"]  # the released ones are never released twice
    released = await db["reservation_releases"].find_one({"_id": "D:1"})
    assert released is not None and released["status"] == "released" and released["attempts"] == 2


async def test_the_daily_audit_uploads_the_accepted_orders_and_takes_manual_intervention(
        settings: Settings, db: AsyncIOMotorDatabase[Any], doubles: tuple[Partners, str]) -> None:  # noqa: F811
    day = datetime(2026, 4, 10, tzinfo=UTC) - timedelta(hours=8)

    def order(oid: str, code: str | None, name: str, filing: str, minute: int) -> dict[str, Any]:
        return {"_id": oid, "product": "internet_line", "external_order_id": f"CRM-{oid}",
                "created_at": day + timedelta(minutes=minute),
                "order": {"extensions": {"product_code": code, "product_name": name, "filing_no": filing}}}

    await db["orders"].insert_many([
        order("G1", "P10001", "互联网专线", "ZJ2024-0001", 1),
        order("G2", "P99999", "未备案套餐", "", 2),  # tariff not filed: not reported
        order("G3", "P10002", "传输专线X", "ZJ2024-0002", 3),  # name differs from the filing
        order("G4", "P10001", "互联网专线", "ZJ2024-0009", 4),  # filing number differs
        {**order("G5", "P10001", "互联网专线", "ZJ2024-0001", 5), "created_at": day - timedelta(minutes=1)},
    ])
    s = scheduler(settings, db, doubles[1])
    run = await s.run_now("daily-audit", {"day": "2026-04-10"}, who="test")
    assert run["status"] == "succeeded"
    assert run["counts"] == {"day": "2026-04-10", "checked": 4, "accepted": 1, "rejected": 3}
    folder = EmbeddedSftp(settings).local_path(s.jobs["daily-audit"].params["dir"])

    def rows() -> list[list[str]]:
        return list(csv.reader(io.StringIO((folder / "AUDIT_20260410.csv").read_text("utf-8"), newline="")))[1:]

    assert [r[0] for r in rows()] == ["G1"]
    batch = await db["audit_batches"].find_one({"_id": "2026-04-10"})
    assert batch is not None and batch["status"] == "uploaded" and batch["accepted"] == 1
    assert {r["order_id"]: r["reason"][:12] for r in batch["rejections"]} == {
        "G2": "tariff P9999", "G3": "product name", "G4": "filing numbe"}

    # an operator looked at G3 (a renamed package, filed under the same number): accept it; exclude G1
    again = await s.run_now("daily-audit", {"day": "2026-04-10", "accept": ["G3"], "exclude": ["G1"]}, who="ops")
    assert again["counts"]["accepted"] == 1 and [r[0] for r in rows()] == ["G3"]
    batch = await db["audit_batches"].find_one({"_id": "2026-04-10"})
    assert batch is not None and len(batch["history"]) == 2
    assert batch["history"][1]["interventions"] == {"accept": ["G3"], "exclude": ["G1"]}
    assert sorted(p.name for p in folder.iterdir()) == ["AUDIT_20260410.csv", "AUDIT_20260410.manifest.json"]


async def test_a_refund_retry_by_order_or_by_user_creates_no_transaction_record(
        settings: Settings, db: AsyncIOMotorDatabase[Any], doubles: tuple[Partners, str]) -> None:  # noqa: F811
    p, url = doubles
    await db["refunds"].insert_many([
        {"_id": "T1", "order_id": "O1", "user_id": "U9", "status": "failed", "identity_check": "passed",
         "channel": "alipay", "amount": 30, "alipay_account": "a@x"},
        {"_id": "T2", "order_id": "O2", "user_id": "U1", "status": "failed", "identity_check": "abnormal",
         "channel": "app", "amount": 10, "alipay_account": "b@x"},
        {"_id": "T3", "order_id": "O3", "user_id": "U1", "status": "failed", "identity_check": "passed",
         "channel": "wechat_h5", "amount": 20, "alipay_account": "c@x"},
    ])
    s = scheduler(settings, db, url)
    by_order = await s.run_now("refund-retry", {"order_id": "O1"}, who="test")
    assert by_order["status"] == "succeeded" and by_order["counts"]["refunded"] == 1
    assert [path for path, _ in p.got] == ["/pay/api/refund/transfer"]  # passed: retried directly
    p.got = []
    by_user = await s.run_now("refund-retry", {"user_id": "U1"}, who="test")
    assert by_user["counts"] == {"found": 2, "refunded": 2, "failed": 0, "rechecked": 1}
    assert [(path, b["transactionId"]) for path, b in p.got] == [
        ("/pay/api/alipay/identity-check", "T2"), ("/pay/api/refund/transfer", "T2"),
        ("/pay/api/refund/transfer", "T3")]
    assert {b["transactionId"]: b["channel"] for path, b in p.got if path.endswith("transfer")} == {
        "T2": "app", "T3": "wechat_h5"}  # the original transaction and its channel
    assert await db["refunds"].count_documents({}) == 3  # no new transaction record
    t2 = await db["refunds"].find_one({"_id": "T2"})
    assert t2 is not None and t2["status"] == "refunded" and [r["attempt"] for r in t2["retries"]] == [1]
    neither = await s.run_now("refund-retry", {}, who="test")
    assert neither["status"] == "failed" and "order_id" in neither["errors"][-1]["error"]
