"""Reconciliation, re-collection and report control over HTTP (one hub web app, real MongoDB and
OpenSSH, an HTTP double of 一编's real-time endpoint): the group's figures against ours with the
orders behind each difference; the group's re-collection regenerating the day's files and re-sending
the reports; the five C.5 counts with drill-down; report rules raising and resolving alerts; the
jobs' admin API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from app.reports.control import ReportControl
from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub.embedded import EmbeddedSftp
from hub.settings import AdminToken, Settings
from tests.conftest import _drop_topics
from tests.integration.test_reports_realtime import Group, stage
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
VIEWER = {"Authorization": "Bearer viewer-token-for-tests-0001"}
OPERATOR = {"Authorization": "Bearer operator-token-for-tests-01"}
GROUP = {"X-Api-Key": "dev-group-key-0001"}
DAY = datetime(2026, 4, 10, tzinfo=UTC) - timedelta(hours=8)  # 2026-04-10 00:00 China time


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(infra_settings: Settings) -> AsyncIterator[tuple[TestClient, Group]]:
    """One hub web app (and one double of 一编) for the module: its start is most of a test's time."""
    g = Group()
    app = web.Application()
    app.router.add_post("/group/api/realtimeReport", g.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tag = uuid.uuid4().hex[:10]
    settings = infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}", "admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER["Authorization"][7:])),
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:])),
    ]})
    runtime = Runtime(settings)
    out = runtime.partners["group"].outbound
    assert out is not None
    out.config = {**out.config, "base_url": f"http://127.0.0.1:{server.port}/group"}
    client = TestClient(TestServer(build_web_app(runtime)))
    await client.start_server()
    try:
        yield client, g
    finally:
        db = runtime.db
        if db is not None:
            await db.client.drop_database(settings.mongo_db)
        await client.close()
        await server.close()
        await asyncio.to_thread(_drop_topics, settings)


@pytest.fixture
def client(hub: tuple[TestClient, Group]) -> TestClient:
    return hub[0]


@pytest.fixture
def group(hub: tuple[TestClient, Group]) -> tuple[Group, str]:
    hub[1].got.clear()
    return hub[1], ""


def order(n: int, product: str, minutes: int, day: datetime = DAY) -> dict[str, Any]:
    at = day + timedelta(minutes=minutes)
    return {"_id": f"K{n}", "order_id": f"K{n}", "product": product, "scenario": "open", "status": "in_flight",
            "external_order_id": f"CRM-{n}", "current_stage": "accept", "stages": [stage("accept", at)],
            "order": {"customer": {"name": "某公司"}, "extensions": {}}, "created_at": at, "updated_at": at}


async def seed(client: TestClient, day: datetime = DAY, base: int = 0) -> None:
    db = client.app[RUNTIME].db
    await db["orders"].insert_many([order(base + 1, "internet_line", 1, day), order(base + 2, "internet_line", 2, day),
                                    order(base + 3, "internet_line", 3, day),
                                    order(base + 4, "self_use_transmission", 4, day),
                                    order(base + 5, "self_use_transmission", 5, day)])


async def test_reconciliation_lists_the_orders_behind_each_difference_and_counts_the_day(client: TestClient) -> None:
    await seed(client)
    url = "/api/v1/partners/group/reports/reconciliation"
    assert (await client.post(url, json={"day": "2026-04-10", "products": {}})).status == 401
    bad = await client.post(url, json={"day": "10/04/2026", "products": {}}, headers=GROUP)
    assert bad.status == 400 and (await bad.json())["errors"][0]["field"] == "day"
    figures = {"internet_line": ["CRM-2", "CRM-3", "CRM-9"], "self_use_transmission": ["CRM-4", "CRM-5"]}
    resp = await client.post(url, json={"day": "2026-04-10", "products": figures}, headers=GROUP)
    assert resp.status == 200
    doc = await resp.json()
    assert doc["status"] == "differences" and doc["differences"] == 1
    line = next(p for p in doc["products"] if p["product"] == "internet_line")
    assert (line["ours"], line["theirs"]) == (3, 3)
    assert line["missing_at_group_orders"] == [{"crmOrderId": "CRM-1", "order_id": "K1"}]
    assert line["unknown_here_orders"] == ["CRM-9"]
    assert next(p for p in doc["products"] if p["product"] == "self_use_transmission")["matched"]

    overview = await (await client.get("/admin/v1/reports/overview", headers=VIEWER)).json()
    assert overview["counts"]["reconciliation_diff_days"] == 1
    drill = await (await client.get("/admin/v1/reports/overview/reconciliation_diff_days", headers=VIEWER)).json()
    assert [d["day"] for d in drill["items"]] == ["2026-04-10"]
    alerts = await (await client.get("/admin/v1/reports/alerts?kind=reconciliation_diff", headers=VIEWER)).json()
    assert [a["status"] for a in alerts["items"]] == ["open"]

    figures["internet_line"] = ["CRM-1", "CRM-2", "CRM-3"]  # the group corrected its figures
    again = await (await client.post(url, json={"day": "2026-04-10", "products": figures}, headers=GROUP)).json()
    assert again["status"] == "matched"
    overview = await (await client.get("/admin/v1/reports/overview", headers=VIEWER)).json()
    assert overview["counts"]["reconciliation_diff_days"] == 0
    alerts = await (await client.get("/admin/v1/reports/alerts?kind=reconciliation_diff&status=resolved",
                                     headers=VIEWER)).json()
    assert len(alerts["items"]) == 1


async def test_recollection_regenerates_the_files_and_resends_the_reports(
        client: TestClient, group: tuple[Group, str]) -> None:
    await seed(client, DAY + timedelta(days=2), 10)  # 2026-04-12: not the reconciliation test's day
    g, _ = group
    url = "/api/v1/partners/group/reports/recollect"
    assert (await client.post(url, json={"from": "2026-04-10", "to": "2026-04-09"}, headers=GROUP)).status == 400
    resp = await client.post(url, json={"from": "2026-04-12", "to": "2026-04-12",
                                        "products": ["self_use_transmission"], "reason": "重采"}, headers=GROUP)
    assert resp.status == 202
    rid = (await resp.json())["id"]

    async def done() -> Any:
        doc = await (await client.get(f"{url}/{rid}", headers=GROUP)).json()
        return doc if doc["status"] in ("done", "failed") else None

    doc = await eventually(done, timeout=30)
    assert doc["status"] == "done", doc
    assert [f["counts"]["records"] for f in doc["files"]] == [2]
    assert doc["realtime"] == {"orders": 2, "sent": 2, "failed": 0}
    assert sorted(b["crmOrderId"] for b in g.got) == ["CRM-14", "CRM-15"]
    runtime = client.app[RUNTIME]
    where = EmbeddedSftp(runtime.settings).local_path("/reports/group/daily/202604")
    assert (where / "ZYCSZX_D_20260412.manifest.json").exists()
    history = await (await client.get("/admin/v1/jobs/history?job=group-daily-files", headers=VIEWER)).json()
    assert history["items"][0]["trigger"] == f"manual:recollect:{rid}"
    overview = await (await client.get("/admin/v1/reports/overview", headers=VIEWER)).json()
    assert overview["counts"]["recollections"] == 1
    assert (await client.get(f"{url}/{rid}", headers={"X-Api-Key": "wrong-key-000000"})).status == 401


async def test_report_rules_raise_and_resolve_alerts_and_alerts_take_handling_records(client: TestClient) -> None:
    runtime = client.app[RUNTIME]
    rule = {"id": "RT-FAIL-2", "name": "two real-time failures", "metric": "realtime_failures", "threshold": 2,
            "window_h": 1}
    assert (await client.post("/admin/v1/reports/rules", json=rule, headers=VIEWER)).status == 403
    assert (await client.post("/admin/v1/reports/rules", json=rule, headers=OPERATOR)).status == 201
    assert (await client.post("/admin/v1/reports/rules", json=rule, headers=OPERATOR)).status == 409
    bad = await client.post("/admin/v1/reports/rules", json={**rule, "id": "X", "report": "nope"}, headers=OPERATOR)
    assert bad.status == 409
    now = datetime.now(UTC)
    await runtime.db["report_sends"].insert_many([
        {"_id": f"internet_line:F{i}:0:accept:enter", "report": "internet_line", "outcome": "failed", "sent_at": now,
         "payload": {"customerName": "杭州某某科技有限公司"}} for i in range(2)])
    control = ReportControl(runtime.db, _reports(runtime))
    assert await control.evaluate() == ["rule:RT-FAIL-2"]
    managed = await runtime.db["ops_alerts"].find_one({"kind": "report", "holds": True})  # C.5 (7)
    assert managed is not None and managed["rule_id"] == "report:RT-FAIL-2" and managed["status"] == "open"
    drill = await (await client.get("/admin/v1/reports/overview/realtime_failures", headers=VIEWER)).json()
    assert len(drill["items"]) == 2 and "杭州某某科技有限公司" not in str(drill)  # masked
    edited = await client.patch("/admin/v1/reports/rules/RT-FAIL-2", json={"threshold": 5}, headers=OPERATOR)
    assert edited.status == 200 and (await edited.json())["history"][-1]["who"] == "api:otto"
    assert await control.evaluate() == []
    assert await runtime.db["ops_alerts"].count_documents({"kind": "report", "holds": True}) == 0
    alerts = await (await client.get("/admin/v1/reports/alerts?kind=rule&status=resolved", headers=VIEWER)).json()
    assert [a["id"] for a in alerts["items"]] == ["rule:RT-FAIL-2"]
    noted = await client.post("/admin/v1/reports/alerts/rule:RT-FAIL-2/notes",
                              json={"text": "group endpoint restored", "kind": "result"}, headers=OPERATOR)
    assert noted.status == 200 and (await noted.json())["notes"][0]["who"] == "api:otto"
    assert (await client.post("/admin/v1/reports/alerts/none/notes", json={"text": "x"},
                              headers=OPERATOR)).status == 404
    assert (await client.delete("/admin/v1/reports/rules/RT-FAIL-2", headers=OPERATOR)).status == 200
    assert (await client.delete("/admin/v1/reports/rules/RT-FAIL-2", headers=OPERATOR)).status == 404
    assert (await client.get("/admin/v1/reports/overview/nope", headers=VIEWER)).status == 404


def _reports(runtime: Runtime) -> Any:
    from app.reports.definitions import load_reports

    return load_reports(runtime.settings.config_dir, runtime.partners)


async def test_jobs_admin_api_lists_runs_and_refuses(client: TestClient) -> None:
    jobs = await (await client.get("/admin/v1/jobs", headers=VIEWER)).json()
    assert {"group-daily-files", "group-monthly-files"} <= {j["name"] for j in jobs["items"]}
    assert (await client.post("/admin/v1/jobs/nope/run", json={}, headers=OPERATOR)).status == 404
    assert (await client.post("/admin/v1/jobs/group-daily-files/run", json={}, headers=VIEWER)).status == 403
    run = await client.post("/admin/v1/jobs/group-daily-files/run", json={"params": {"day": "2026-04-09"}},
                            headers=OPERATOR)
    assert run.status == 200
    doc = await run.json()
    assert doc["status"] == "succeeded" and doc["trigger"] == "manual:api:otto" and doc["counts"]["records"] == 0


async def test_an_attachment_is_uploaded_under_the_rule_and_refusals_name_it(client: TestClient) -> None:
    from tests.unit.reports_attachments_test import JPEG, PDF, PNG

    url = "/api/v1/attachments/BJ00"
    assert (await client.post(url, data=PDF, headers=VIEWER)).status == 403
    ok = await client.post(f"{url}?name=202304100001.pdf&order_id=K1", data=PDF, headers=OPERATOR)
    assert ok.status == 201
    path = (await ok.json())["path"]
    assert path == "/GW/BJ00/changeProdStaDerateForm/2023/04/202304100001.pdf"
    runtime = client.app[RUNTIME]
    assert EmbeddedSftp(runtime.settings).local_path(path).read_bytes() == PDF
    assert (await client.post(f"{url}?name=202304100001.pdf", data=PDF, headers=OPERATOR)).status == 200
    taken = await client.post(f"{url}?name=202304100001.pdf", data=PDF + b"x", headers=OPERATOR)
    assert taken.status == 409
    png = await client.post(f"{url}?name=202304100002.jpg", data=PNG, headers=OPERATOR)
    assert png.status == 415 and (await png.json())["errors"][0]["field"] == "content"
    big = await client.post(f"{url}?name=202304100003.jpg&kind=photo", data=JPEG + b"\0" * 300 * 1024,
                            headers=OPERATOR)
    assert big.status == 413
    assert (await client.post(f"{url}?name=20230410003.jpg", data=JPEG, headers=OPERATOR)).status == 400
    auto = await client.post(url, data=JPEG, headers=OPERATOR)  # no name: the next of today
    assert auto.status == 201 and (await auto.json())["path"].endswith("0001.jpg")
