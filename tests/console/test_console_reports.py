"""The console's report-control and jobs pages in a real browser (issue 16 §4, §5): Playwright and
Debian's Chromium (the browser fixture of test_console_browser.py) against **one** hub web app for
the module (``build_web_app``, real MongoDB and the embedded OpenSSH; no ``hub run``, no simulators:
nothing here needs the engine, so the module costs a second of start instead of a whole hub's).

An operator creates, edits and deletes a report rule; reads the C.5 counts over 24 h and 7 days and
the masked records behind one; adds a handling note to a report alert and resolves it; runs a job
now and finds the run in the history; is refused (the answer shown) while another worker holds the
job's lease. A viewer sees none of the forms and every forged change is refused 403. Partner text
(an alert's error) is shown inert. Without the pages each test fails at its first ``goto`` (404).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Dialog, Page, expect
from pydantic import SecretStr

from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub.settings import AdminToken, Settings
from tests.conftest import _drop_topics
from tests.console.test_console_browser import browser, shot, sign_in  # noqa: F401 (browser: the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
OPERATOR, VIEWER = "operator-token-for-console-01", "viewer-token-for-console-0001"
SECRET_NAME = "杭州某某科技有限公司"


class Hub:
    def __init__(self, server: TestServer, runtime: Runtime) -> None:
        self.server, self.runtime = server, runtime
        self.url = str(server.make_url("")).rstrip("/")

    @property
    def db(self) -> Any:
        return self.runtime.db


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(infra_settings: Settings) -> AsyncIterator[Hub]:
    tag = uuid.uuid4().hex[:10]
    settings = infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}", "admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER)),
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR)),
    ]})
    runtime = Runtime(settings)
    server = TestServer(build_web_app(runtime), host="127.0.0.1")
    await server.start_server()
    try:
        yield Hub(server, server.app[RUNTIME])
    finally:
        db = server.app[RUNTIME].db
        if db is not None:
            await db.client.drop_database(settings.mongo_db)
        await server.close()
        await asyncio.to_thread(_drop_topics, settings)


def accept_dialogs(page: Page) -> None:
    """The console's destructive forms ask ``window.confirm`` first (console.js): say yes."""
    async def accept(dialog: Dialog) -> None:  # a coroutine handler: Playwright schedules it
        await dialog.accept()

    page.on("dialog", accept)


async def test_an_operator_creates_edits_and_deletes_a_report_rule(hub: Hub, browser: BrowserContext) -> None:  # noqa: F811
    page = await browser.new_page()
    accept_dialogs(page)
    await sign_in(page, hub.url, OPERATOR)
    await page.click("nav a[href='/console/reports']")
    await expect(page).to_have_url(f"{hub.url}/console/reports")
    await expect(page.locator("#m-realtime_failures span")).to_have_text("实时上报失败次数")
    await page.click("#rule-create-box summary")
    form = page.locator("#rule-create")
    await form.locator("input[name=id]").fill("RT-FAIL-3")
    await form.locator("input[name=name]").fill("3 次实时上报失败 / 1 h")
    await form.locator("select[name=metric]").select_option("realtime_failures")
    await form.locator("input[name=threshold]").fill("3")
    await form.locator("input[name=window_h]").fill("1")
    await form.locator("select[name=severity]").select_option("critical")
    await page.click("#rule-create-submit")
    await expect(page.locator("#done")).to_contain_text("rule_created")
    row = page.locator("#rule-table tr[data-rule='RT-FAIL-3']")
    await expect(row.locator(".r-threshold")).to_have_text("3")
    await expect(row.locator(".r-window")).to_have_text("1")
    await shot(page, "reports-rule-created")

    await row.locator("details.rule-edit summary").click()
    await row.locator("input[name=threshold]").fill("5")
    await row.locator("input[name=enabled]").uncheck()
    await row.locator("button.rule-save").click()
    await expect(page.locator("#done")).to_contain_text("rule_edited")
    await expect(row.locator(".r-threshold")).to_have_text("5")
    await expect(row.locator(".r-enabled")).to_have_text("否")
    stored = await hub.db.report_rules.find_one({"_id": "RT-FAIL-3"})
    assert stored["threshold"] == 5 and stored["enabled"] is False and stored["window_h"] == 1
    assert [(h["who"], h["action"]) for h in stored["history"]] == [("console:otto", "create"),
                                                                    ("console:otto", "edit")]
    api = await page.request.get(f"{hub.url}/admin/v1/reports/rules", headers={"Authorization": f"Bearer {VIEWER}"})
    assert [r["threshold"] for r in (await api.json())["items"] if r["id"] == "RT-FAIL-3"] == [5]

    await page.click("#rule-create-box summary")  # the same id again: the service's refusal is the answer
    await form.locator("input[name=id]").fill("RT-FAIL-3")
    await form.locator("input[name=name]").fill("dup")
    await page.click("#rule-create-submit")
    await expect(page.locator("#message")).to_contain_text("exists")
    await page.goto(f"{hub.url}/console/reports")

    await row.locator("button.rule-delete").click()
    await expect(page.locator("#done")).to_contain_text("rule_deleted")
    await expect(page.locator("#rule-table tr[data-rule='RT-FAIL-3']")).to_have_count(0)
    assert await hub.db.report_rules.find_one({"_id": "RT-FAIL-3"}) is None
    await page.close()


async def seed_failures(hub: Hub) -> str:
    """A real-time send that failed an hour ago and one three days ago (the drill-down's records, as
    app/reports/realtime.py records them), and the open alert of the recent one."""
    now = datetime.now(UTC)
    key = f"report:K{uuid.uuid4().hex[:6]}:1:design:enter"
    sends = [{"_id": key, "report": "internet_line", "partner": "group", "order_id": "K1", "stage": "design",
              "on": "enter", "outcome": "failed", "attempts": 2, "http_status": 500, "error": "HTTP 500",
              "sent_at": now - timedelta(hours=1), "first_at": now - timedelta(hours=2),
              "payload": {"customerName": SECRET_NAME, "crmOrderId": "CRM-1"}},
             {"_id": f"{key}-old", "report": "internet_line", "partner": "group", "order_id": "K2", "stage": "accept",
              "on": "exit", "outcome": "gave_up", "attempts": 6, "http_status": 503, "error": "HTTP 503",
              "sent_at": now - timedelta(days=3), "first_at": now - timedelta(days=3),
              "payload": {"customerName": SECRET_NAME}}]
    await hub.db.report_sends.insert_many(sends)
    alert_id = f"realtime:{key}"
    await hub.db.report_alerts.insert_one({
        "_id": alert_id, "kind": "realtime_failed", "status": "open", "report": "internet_line", "key": key,
        "order_id": "K1", "stage": "design", "error": "对端: 失败\u202e<b>x</b>", "attempts": 2,
        "first_at": now - timedelta(hours=2), "last_at": now - timedelta(hours=1)})
    return alert_id


async def test_counts_drill_down_masked_then_an_alert_noted_and_resolved(hub: Hub, browser: BrowserContext  # noqa: F811
                                                                          ) -> None:
    alert_id = await seed_failures(hub)
    page = await browser.new_page()
    await sign_in(page, hub.url, OPERATOR)
    await page.goto(f"{hub.url}/console/reports")
    await expect(page.locator("#m-realtime_failures b")).to_have_text("1")  # 24 h: the recent one only
    await expect(page.locator("#recent-failures tbody tr")).to_have_count(1)
    await page.click("#w-7d")
    await expect(page.locator("#m-realtime_failures b")).to_have_text("2")
    await page.click("#m-realtime_failures")
    await expect(page.locator("#drill-rows tbody tr")).to_have_count(2)
    await shot(page, "reports-drill")
    html = await page.content()
    assert SECRET_NAME not in html  # masked as the API masks it
    api = await page.request.get(f"{hub.url}/admin/v1/reports/overview/realtime_failures?since=7d",
                                 headers={"Authorization": f"Bearer {VIEWER}"})
    masked = (await api.json())["items"][0]["payload"]["customerName"]
    assert masked != SECRET_NAME and masked in html
    await expect(page.locator("#definitions tr[data-report='internet_line']")).to_have_count(1)

    row = page.locator(f"#alert-table tr[data-alert='{alert_id}']")
    await expect(row.locator(".a-error")).to_have_text("对端: 失败\\u202e<b>x</b>")  # inert: spelled out, not markup
    await row.locator("input[name=text]").fill("已联系一编，等待对端恢复")
    await row.locator("button.add-note").click()
    await expect(page.locator("#done")).to_contain_text("note")
    row = page.locator(f"#alert-table tr[data-alert='{alert_id}']")
    await expect(row.locator("li.note-progress")).to_contain_text("已联系一编，等待对端恢复")
    await expect(row.locator("li.note-progress")).to_contain_text("console:otto")
    await expect(row.locator(".a-status")).to_have_text("open")
    await row.locator("input[name=text]").fill("对端已恢复，重发成功")
    await row.locator("button.resolve").click()
    await expect(row.locator(".a-status")).to_have_text("resolved")
    await expect(row.locator(".a-resolution")).to_contain_text("对端已恢复，重发成功")
    await expect(row.locator("button.resolve")).to_have_count(0)
    await shot(page, "reports-alert-resolved")
    doc = await hub.db.report_alerts.find_one({"_id": alert_id})
    assert doc["status"] == "resolved" and doc["resolved_by"] == "console:otto"
    assert [(n["kind"], n["who"]) for n in doc["notes"]] == [("progress", "console:otto"), ("result", "console:otto")]
    await page.goto(f"{hub.url}/console/reports")  # open only, by default: it is gone
    await expect(page.locator(f"#alert-table tr[data-alert='{alert_id}']")).to_have_count(0)
    await page.goto(f"{hub.url}/console/reports?lang=en")
    await expect(page.locator("#m-realtime_failures span")).to_have_text("Real-time report failures")
    await page.goto(f"{hub.url}/console/reports?lang=zh")
    await page.close()


async def test_a_job_run_now_is_in_the_history_and_refused_beside_a_running_one(hub: Hub, browser: BrowserContext  # noqa: F811
                                                                                ) -> None:
    page = await browser.new_page()
    accept_dialogs(page)
    await sign_in(page, hub.url, OPERATOR)
    await page.click("nav a[href='/console/jobs']")
    job = page.locator("#job-table tr[data-job='group-daily-files']")
    await expect(job).to_have_count(1)
    await expect(job.locator(".j-holder")).to_have_text("-")
    await job.locator("textarea[name=params]").fill("day=2026-04-09")
    await job.locator("button.run-now").click()
    await expect(page.locator("#run-status")).to_have_text("succeeded")
    await expect(page.locator("#runs .run-trigger").first).to_contain_text("manual:console:otto")
    await shot(page, "jobs-run")
    await page.click("#back")
    await page.select_option("#run-filters select[name=job]", "group-daily-files")
    await page.select_option("#run-filters select[name=status]", "succeeded")
    await page.click("#run-search")
    runs = page.locator("#runs tbody tr[data-run]")
    await expect(runs).to_have_count(1)
    await expect(runs.first.locator(".run-trigger")).to_contain_text("manual:console:otto")
    await expect(runs.first).to_contain_text("2026-04-09")  # its params
    await expect(job.locator(".j-last")).to_contain_text("succeeded")
    await page.goto(f"{hub.url}/console/jobs?status=failed&job=group-daily-files")
    await expect(page.locator("#runs tbody tr[data-run]")).to_have_count(0)

    # another worker runs the monthly files now: its lease is current, so "run now" must not start a second run
    now = datetime.now(UTC)
    await hub.db.job_leases.insert_one({"_id": "group-monthly-files", "holder": "worker-b:4242", "token": 7,
                                        "until": now + timedelta(minutes=5), "run_id": "group-monthly-files@x",
                                        "acquired_at": now})
    await page.goto(f"{hub.url}/console/jobs")
    monthly = page.locator("#job-table tr[data-job='group-monthly-files']")
    await expect(monthly.locator(".j-holder")).to_have_text("worker-b:4242")
    await monthly.locator("button.run-now").click()
    await expect(page.locator("#message")).to_contain_text("is running (group-monthly-files@x on worker-b:4242)")
    await shot(page, "jobs-refused")
    assert await hub.db.job_runs.count_documents({"job": "group-monthly-files"}) == 0
    lease = await hub.db.job_leases.find_one({"_id": "group-monthly-files"})
    assert lease["token"] == 7 and lease["holder"] == "worker-b:4242"  # untouched
    await page.close()


async def test_a_viewer_reads_both_pages_and_cannot_change_anything(hub: Hub, browser: BrowserContext  # noqa: F811
                                                                   ) -> None:
    alert_id = await seed_failures(hub)
    await hub.db.report_rules.insert_one({"_id": "KEEP", "name": "keep", "metric": "file_failures", "report": None,
                                          "threshold": 1, "window_h": 24.0, "severity": "major", "enabled": True,
                                          "history": []})
    page = await browser.new_page()
    await sign_in(page, hub.url, VIEWER)
    await page.goto(f"{hub.url}/console/reports?status=any")
    await expect(page.locator("#rule-table tr[data-rule='KEEP']")).to_have_count(1)
    await expect(page.locator(f"#alert-table tr[data-alert='{alert_id}']")).to_have_count(1)
    for hidden in ("#rule-create", "button.rule-save", "button.rule-delete", "form.alert-note"):
        assert await page.locator(hidden).count() == 0, hidden
    await shot(page, "reports-viewer")
    await page.goto(f"{hub.url}/console/jobs")
    await expect(page.locator("#job-table tr[data-job='group-daily-files']")).to_have_count(1)
    assert await page.locator("button.run-now").count() == 0
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    assert csrf
    runs_before = await hub.db.job_runs.count_documents({})
    forged = {"/console/reports/rules": {"id": "X1", "name": "x", "metric": "file_failures", "threshold": "1",
                                         "window_h": "1", "severity": "major"},
              "/console/reports/rules/KEEP/edit": {"name": "changed", "metric": "file_failures", "threshold": "9",
                                                   "window_h": "1", "severity": "major"},
              "/console/reports/rules/KEEP/delete": {},
              f"/console/reports/alerts/{alert_id}/note": {"text": "x", "resolve": "1"},
              "/console/jobs/group-daily-files/run": {"params": "day=2026-04-08"}}
    for path, fields in forged.items():
        answer = await page.request.post(f"{hub.url}{path}", form={"_csrf": csrf, **fields})
        assert answer.status == 403 and "operator" in (await answer.json())["detail"], path
    assert await hub.db.report_rules.find_one({"_id": "X1"}) is None
    keep = await hub.db.report_rules.find_one({"_id": "KEEP"})
    assert keep is not None and keep["name"] == "keep" and keep["threshold"] == 1
    alert = await hub.db.report_alerts.find_one({"_id": alert_id})
    assert alert["status"] == "open" and not alert.get("notes")
    assert await hub.db.job_runs.count_documents({}) == runs_before
    await page.close()

    operator = await browser.new_page()  # and an operator's POST without the CSRF token is refused too
    await sign_in(operator, hub.url, OPERATOR)
    no_token = await operator.request.post(f"{hub.url}/console/reports/rules/KEEP/delete", form={})
    assert no_token.status == 403 and "CSRF" in (await no_token.json())["detail"]
    assert await hub.db.report_rules.find_one({"_id": "KEEP"}) is not None
    await operator.close()
