"""The operator console in a real browser (issue 15 §4): Playwright drives Debian's Chromium
(/usr/bin/chromium, installed by scripts/dev; no browser download) against one real ``hub run``
(tansu, SecantusDB, the partner simulators) shared by the module.

Sign in; submit a manual stage with a missing field, see the error, fix it, see the order move on;
find the order whose close-report was dead-lettered, open it, replay it, see it complete; a viewer
sees no replay button and a forged POST is refused; a POST without the CSRF token is refused.
Each page's screenshot goes to tests/console/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from hub.settings import Settings
from tests.conftest import _drop_topics
from tests.integration.flow_harness import FlowEnv, running_flow_env

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).parent / "screenshots"
OPERATOR_TOKEN = "dev-operator-token-0001"  # config/hub.yaml's dev defaults, as `hub run` reads them
VIEWER_TOKEN = "dev-viewer-token-0001"


KEEP_FLOWS = {"internet_line", "5g_lan", "fragments", "p14_construction"}


def _fewer_flows(flows: Path) -> None:
    """Only the blueprints these tests run (and what they include): the hub loads and checks every
    blueprint before it is ready, ~40 of them cost seconds of the suite's budget for nothing here."""
    for folder in flows.iterdir():
        if folder.is_dir() and folder.name not in KEEP_FLOWS:
            shutil.rmtree(folder)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(infra_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FlowEnv]:
    tag = uuid.uuid4().hex[:10]
    settings = infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}"})
    try:
        async with running_flow_env(settings, tmp_path_factory.mktemp("console"), _fewer_flows) as flow_env:
            yield flow_env
    finally:
        _drop_topics(settings)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """One Chromium for the module, with a fresh user-data-dir; nothing it loads leaves loopback."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=ARGS,
            locale="zh-CN", viewport={"width": 1280, "height": 900})
        outside: list[str] = []

        def watch(request: Any) -> None:
            if not re.match(r"^(http://127\.0\.0\.1[:/]|about:|data:)", request.url):
                outside.append(request.url)

        context.on("request", watch)
        try:
            yield context
        finally:
            await context.close()
        assert outside == [], f"the console asked for outside resources: {outside}"


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.context.clear_cookies()
    await page.goto(f"{base}/console")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await page.fill("#token", token)
    await page.click("#sign-in")
    await expect(page.locator("#user")).to_be_visible()


async def test_sign_in_with_a_wrong_token_then_every_page_renders(env: FlowEnv, browser: BrowserContext) -> None:
    page = await browser.new_page()
    base = env.hub.url
    await page.goto(f"{base}/console/orders")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await page.fill("#token", "not-a-token-of-this-hub")
    await page.click("#sign-in")
    await expect(page.locator("#login-error")).to_be_visible()
    await shot(page, "login")
    await page.fill("#token", OPERATOR_TOKEN)
    await page.click("#sign-in")
    await expect(page).to_have_url(f"{base}/console/orders")  # back where it was asked for
    cookie = next(c for c in await browser.cookies() if c["name"] == "hub_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"].count(".") == 1
    for name, path, marker in (("overview", "/console", "#c-in-flight"), ("orders", "/console/orders", "#orders"),
                               ("dlq", "/console/dlq", "#letters"), ("calls", "/console/calls", "#stats"),
                               ("alerts", "/console/alerts", "#rule-list"),
                               ("flows", "/console/flows", "svg.flow"), ("routes", "/console/routes", "#deps"),
                               ("history", "/console/history", "table.history")):
        response = await page.goto(f"{base}{path}")
        assert response is not None and response.status == 200, name
        await expect(page.locator(marker).first).to_be_visible()
        await shot(page, name)
        if name == "flows":  # drawn from the blueprint's graph
            await expect(page.locator("svg.flow[data-flow='p02-1-internet-line-open'] "
                                      "g.node[data-node='verification']")).to_have_count(1)
    await page.goto(f"{base}/console?lang=en")
    await expect(page.locator("#c-in-flight span")).to_have_text("In flight")
    await page.goto(f"{base}/console")  # the choice sticks
    await expect(page.locator("#c-in-flight span")).to_have_text("In flight")
    await page.goto(f"{base}/console?lang=zh")
    await expect(page.locator("#c-in-flight span")).to_have_text("在途工单数")


async def test_manual_stage_error_then_fix_then_dead_lettered_close_report_replayed(
        env: FlowEnv, browser: BrowserContext) -> None:
    page = await browser.new_page()
    base = env.hub.url
    await sign_in(page, base, OPERATOR_TOKEN)
    await env.sim.mode("esop", "down")  # the close-report to ESOP will be dead-lettered
    order_id = await env.post_order("esop", f"ESOP-CONSOLE-{uuid.uuid4().hex[:6]}", "internet_line")
    await env.wait_order(order_id, lambda d: d.get("current_stage") == "verification", timeout=60)

    await page.goto(f"{base}/console/orders/{order_id}")
    await page.select_option("#f-needs_intl_sites", "是")  # then intl_sites_ok is required (the blueprint's rule)
    await page.click("#submit-verification")
    errors = page.locator("#field-errors li[data-field='intl_sites_ok']")
    await expect(errors).to_contain_text("required")  # the API's G4 text, from flows/graph/rules.py
    await shot(page, "order-field-error")
    assert (await env.order(order_id) or {}).get("current_stage") == "verification"  # nothing was submitted
    await page.select_option("#f-intl_sites_ok", "是")
    await page.click("#submit-verification")
    await expect(page.locator("#done")).to_be_visible()
    await env.wait_order(order_id, lambda d: d.get("current_stage") != "verification", timeout=30)

    doc = await env.wait_order(order_id, lambda d: "replay dead letter" in (d.get("blocked_reason") or ""),
                               timeout=60)
    assert doc["current_stage"] == "close_report"
    await page.goto(f"{base}/console/dlq?partner=esop")
    row = page.locator(f"#letters tr[data-order='{order_id}']")
    await expect(row).to_have_count(1)
    await shot(page, "dlq-pending")
    await row.locator("a.order-link").click()
    await expect(page.locator("#order-id")).to_have_text(order_id)
    await expect(page.locator("#blocked")).to_contain_text("replay dead letter")
    await shot(page, "order-blocked")

    await env.sim.mode("esop", "ok")
    await page.locator("a.letter-link").first.click()
    await expect(page.locator("#letter-status")).to_have_text("dead")
    await page.check("#dry-run")
    await page.click("#replay")
    await expect(page.locator("#results td.result")).to_have_text("dry_run")  # the preview, nothing sent
    await shot(page, "dlq-preview")
    await page.click("#confirm")
    await expect(page.locator("#results td.result")).to_have_text("ok")
    await page.locator("#results a.order-link").click()
    await expect(page.locator("#order-status")).to_have_text("completed", timeout=30_000)  # live refresh
    await shot(page, "order-completed")
    assert len(env.sim.calls("esop", "notifyOrderResult")) == 1
    await page.goto(f"{base}/console/history?who=console:dev-operator")
    await expect(page.locator("table.history tbody tr").first).to_contain_text("replay")


async def test_viewer_sees_no_replay_button_and_a_forged_post_is_refused(env: FlowEnv, browser: BrowserContext
                                                                         ) -> None:
    order_id = await env.post_order("esop", f"ESOP-CONSOLE-{uuid.uuid4().hex[:6]}", "internet_line")
    await env.wait_order(order_id, lambda d: d.get("current_stage") == "verification", timeout=60)
    page = await browser.new_page()
    base = env.hub.url
    await sign_in(page, base, VIEWER_TOKEN)
    await page.goto(f"{base}/console/orders/{order_id}")
    await expect(page.locator("#manual-verification")).to_be_visible()
    assert await page.locator("#submit-verification").count() == 0 and await page.locator("#retry").count() == 0
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    assert csrf
    forged = await page.request.post(f"{base}/console/orders/{order_id}/stages/verification/submit",
                                     form={"_csrf": csrf, "f.needs_intl_sites": "否"})
    assert forged.status == 403 and "operator" in (await forged.json())["detail"]
    assert (await env.order(order_id) or {}).get("current_stage") == "verification"  # refused: nothing moved
    await page.close()
    operator = await browser.new_page()
    await sign_in(operator, base, OPERATOR_TOKEN)
    await operator.goto(f"{base}/console/orders/{order_id}")
    await operator.click("#submit-verification")  # an empty form passes this stage's rules
    await env.wait_order(order_id, lambda d: d.get("status") == "completed", timeout=60)


async def test_a_post_without_the_csrf_token_is_refused_and_a_viewer_cannot_replay(
        env: FlowEnv, browser: BrowserContext) -> None:
    await env.sim.mode("resource", "down")  # 资管 unreachable: the design request is dead-lettered
    order_id = await env.post_order("esop", f"ESOP-CONSOLE-{uuid.uuid4().hex[:6]}", "internet_line")
    doc = await env.wait_order(order_id, lambda d: "replay dead letter" in (d.get("blocked_reason") or ""),
                               timeout=60)
    await env.sim.mode("resource", "ok")
    (letter,) = [c["dead_letter_id"] for c in doc["open_calls"].values() if c.get("dead_letter_id")]
    page = await browser.new_page()
    base = env.hub.url
    await sign_in(page, base, VIEWER_TOKEN)
    await page.goto(f"{base}/console/dlq/{letter}")
    await expect(page.locator("#letter-status")).to_have_text("dead")
    assert await page.locator("#replay").count() == 0 and await page.locator("#discard").count() == 0
    await page.goto(f"{base}/console/dlq?status=dead")
    await expect(page.locator(f"#letters tr[data-letter='{letter}']")).to_have_count(1)
    assert await page.locator("button.replay").count() == 0
    await shot(page, "dlq-viewer")
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    forged = await page.request.post(f"{base}/console/dlq/{letter}/replay", form={"_csrf": csrf or ""})
    assert forged.status == 403

    await sign_in(page, base, OPERATOR_TOKEN)
    await page.goto(f"{base}/console/dlq/{letter}")
    no_token = await page.request.post(f"{base}/console/dlq/{letter}/replay", form={"reason": "x"})
    assert no_token.status == 403 and "CSRF" in (await no_token.json())["detail"]
    wrong = await page.request.post(f"{base}/console/dlq/{letter}/replay", form={"_csrf": "x" * 43})
    assert wrong.status == 403
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    stale = await page.request.post(f"{base}/console/dlq/{letter}/discard", form={"_csrf": csrf or "",
                                                                                   "reason": "客户撤单"})
    assert stale.status == 200  # the same request with the page's token is carried out
    doc = await env.db.dead_letters.find_one({"_id": letter})
    assert doc is not None and doc["status"] == "discarded"
    action = await env.db.dlq_actions.find_one({"dead_letter_id": letter, "action": "discard"})
    assert action is not None and action["who"] == "console:dev-operator" and action["reason"] == "客户撤单"
    await page.goto(f"{base}/console/orders/{order_id}")
    await shot(page, "order-failed-call")


async def test_pages_mask_exactly_as_the_api(env: FlowEnv, browser: BrowserContext) -> None:
    """The order page and the dead-letter page show the API's masked values, never the stored ones."""
    secrets = ("杭州某某科技有限公司", "13800001111", "文三路1号")
    order_id = await env.post_order("esop", f"ESOP-MASK-{uuid.uuid4().hex[:6]}", "internet_line",
                                    customer={"name": secrets[0], "contact_phone": secrets[1]},
                                    addresses=[{"city": "杭州", "detail": secrets[2]}])
    stored = await env.wait_order(order_id, lambda d: d.get("current_stage") == "verification", timeout=60)
    assert stored["order"]["customer"]["name"] == secrets[0]  # the database keeps the real values
    page = await browser.new_page()
    await sign_in(page, env.hub.url, VIEWER_TOKEN)
    api = await page.request.get(f"{env.hub.url}/admin/v1/orders/{order_id}",
                                 headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    masked = (await api.json())["order"]
    html = await (await page.request.get(f"{env.hub.url}/console/orders/{order_id}")).text()
    for secret in secrets:
        assert secret not in html
    for shown in (masked["customer"]["name"], masked["customer"]["contact_phone"], masked["addresses"][0]["detail"]):
        assert shown not in secrets and shown in html
    operator = await browser.new_page()
    await sign_in(operator, env.hub.url, OPERATOR_TOKEN)
    await operator.goto(f"{env.hub.url}/console/orders/{order_id}")
    await operator.click("#submit-verification")
    await env.wait_order(order_id, lambda d: d.get("status") == "completed", timeout=60)
