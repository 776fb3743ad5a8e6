"""Real-time reports to 一编 (app/reports/realtime.py) against a real MongoDB and an HTTP double of
the group's endpoint: one report per configured stage event with the product's C.6 fields, never
twice; a failure is recorded, counted, alerted and retried, and the retry's success resolves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from motor.motor_asyncio import AsyncIOMotorDatabase

from app.reports.definitions import load_reports
from app.reports.realtime import ALERTS, SENDS, SENT, STATE, RealtimeReporter
from hub.partners import load_partners
from hub.settings import Settings
from tests.integration.test_jobs import Clock, db  # noqa: F401  # db: a fixture
from tests.unit.catalogue_resource_status_test import played_state

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 4, 10, 2, 0, tzinfo=UTC)


class Group:
    """The group's real-time endpoint: 201 on success, 400 + parameterValue for refused orders."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.refuse: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.got.append(body)
        self.keys.append(request.headers.get("X-Api-Key", ""))
        if body["crmOrderId"] in self.refuse:
            return web.json_response({"parameterValue": "工单不存在"}, status=400)
        return web.json_response({"parameterValue": "ok"}, status=201)


@pytest.fixture
async def group() -> AsyncIterator[tuple[Group, str]]:
    g = Group()
    app = web.Application()
    app.router.add_post("/group/api/realtimeReport", g.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield g, f"http://127.0.0.1:{server.port}/group"
    finally:
        await server.close()


def internet_order(n: int, stages: list[dict[str, Any]], updated: datetime) -> dict[str, Any]:
    return {"_id": f"R{n}", "order_id": f"R{n}", "product": "internet_line", "scenario": "open", "status": "in_flight",
            "external_order_id": f"CRM-{n}", "current_stage": stages[-1]["stage"], "stages": stages,
            "order": {"customer": {"name": "杭州某公司"}, "extensions": {"build_type": "新建", "new_onu_sn": "SN1"}},
            "created_at": T0, "updated_at": updated, "submitted_by": "partner:esop"}


def stage(name: str, entered: datetime, finished: datetime | None = None) -> dict[str, Any]:
    return {"stage": name, "title": name, "kind": "auto", "entered_at": entered, "finished_at": finished}


def reporter_to(url: str, settings: Settings, database: AsyncIOMotorDatabase[Any], clock: Clock) -> RealtimeReporter:
    """The shipped reports and partners, with the group's endpoint at ``url``."""
    partners = load_partners(ROOT / "config")
    out = partners["group"].outbound
    assert out is not None
    out.config = {**out.config, "base_url": url}
    return RealtimeReporter(database, settings, partners, load_reports(ROOT / "config", partners), clock=clock)


async def test_stage_events_are_reported_once_and_failures_are_recorded_alerted_and_retried(
        settings: Settings, db: AsyncIOMotorDatabase[Any], group: tuple[Group, str]) -> None:  # noqa: F811
    g, url = group
    clock = Clock(T0 + timedelta(minutes=1))
    reporter = reporter_to(url, settings, db, clock)
    failed_before = SENT.labels("internet_line", "failed")._value.get()
    try:
        await db["orders"].insert_many([
            internet_order(1, [stage("accept", T0, T0 + timedelta(seconds=5)),
                               stage("design", T0 + timedelta(seconds=5))], T0 + timedelta(seconds=5)),
            internet_order(2, [stage("accept", T0)], T0 + timedelta(seconds=6)),
            {**internet_order(3, [stage("accept", T0)], T0), "product": "cloud_pc"},  # no real-time report defined
        ])
        g.refuse = {"CRM-2"}
        counts = await reporter.sweep()
        assert counts["sent"] == 3 and counts["failed"] == 1  # R1: accept enter+exit, design enter; R2: refused
        by_id = {b["reportId"]: b for b in g.got}
        first = by_id["internet_line:R1:0:accept:enter"]
        assert first["crmOrderId"] == "CRM-1" and first["stage"] == "accept" and first["stageEvent"] == "enter"
        assert first["buildType"] == "新建" and first["newOnuSn"] == "SN1" and first["customerName"] == "杭州某公司"
        assert first["stageTime"] == "2026-04-10T02:00:00+00:00"
        assert set(g.keys) == {"dev-hub-to-group-0001"}

        assert (await reporter.sweep())["sent"] == 0  # the same events again: nothing re-sent
        assert len(g.got) == 4

        failed = await db[SENDS].find_one({"_id": "internet_line:R2:0:accept:enter"})
        assert failed is not None and failed["outcome"] == "failed" and failed["attempts"] == 1
        assert failed["http_status"] == 400 and "工单不存在" in failed["error"]
        alert = await db[ALERTS].find_one({"_id": "realtime:internet_line:R2:0:accept:enter"})
        assert alert is not None and alert["status"] == "open" and alert["kind"] == "realtime_failed"
        assert SENT.labels("internet_line", "failed")._value.get() == failed_before + 1

        # R1 leaves design (a new event); the failed send's backoff passes and 一编 takes it now
        await db["orders"].update_one({"_id": "R1"}, {"$set": {
            "stages.1.finished_at": T0 + timedelta(seconds=90), "updated_at": T0 + timedelta(seconds=90)}})
        g.refuse = set()
        clock.advance(minutes=2)
        counts = await reporter.sweep()
        assert counts["sent"] == 1 and counts["retried"] == 1
        assert [b["reportId"] for b in g.got[4:]].count("internet_line:R1:1:design:exit") == 1
        retried = await db[SENDS].find_one({"_id": "internet_line:R2:0:accept:enter"})
        assert retried is not None and retried["outcome"] == "ok" and retried["attempts"] == 2
        alert = await db[ALERTS].find_one({"_id": "realtime:internet_line:R2:0:accept:enter"})
        assert alert is not None and alert["status"] == "resolved"
        assert not [b for b in g.got if b["crmOrderId"] == "CRM-3"]
    finally:
        await reporter.close()


async def test_a_second_sweeper_sends_nothing_again_over_more_keys_than_one_lookup_asks(
        settings: Settings, db: AsyncIOMotorDatabase[Any], group: tuple[Group, str]) -> None:  # noqa: F811
    """A lease handover: the new holder remembers nothing and re-reads the same window of orders;
    its lookup of what is already recorded goes in chunks (hub/batching.py find_by_ids), and
    every chunk must count — 60 orders × 3 events is more than one chunk."""
    g, url = group
    partners = load_partners(ROOT / "config")
    out = partners["group"].outbound
    assert out is not None
    out.config = {**out.config, "base_url": url}
    reports = load_reports(ROOT / "config", partners)
    clock = Clock(T0 + timedelta(minutes=1))
    first = RealtimeReporter(db, settings, partners, reports, clock=clock)
    second = RealtimeReporter(db, settings, partners, reports, clock=clock)
    try:
        await db["orders"].insert_many([
            internet_order(n, [stage("accept", T0, T0 + timedelta(seconds=5)),
                               stage("design", T0 + timedelta(seconds=5))], T0 + timedelta(seconds=5))
            for n in range(60)])
        assert (await first.sweep())["sent"] == 180
        assert (await first.sweep())["sent"] == 0  # from its memory
        assert (await second.sweep())["sent"] == 0  # from the database, in chunks
        await db["orders"].update_one({"_id": "R7"}, {"$set": {
            "stages.1.finished_at": T0 + timedelta(seconds=30), "updated_at": T0 + timedelta(seconds=30)}})
        assert (await second.sweep())["sent"] == 1 and (await first.sweep())["sent"] == 0
        assert len(g.got) == 181 and len({b["reportId"] for b in g.got}) == 181
    finally:
        await first.close()
        await second.close()


async def test_the_report_says_whether_the_resource_center_had_resources(
        settings: Settings, db: AsyncIOMotorDatabase[Any], group: tuple[Group, str]) -> None:  # noqa: F811
    """资源满足情况 (resourceStatus) is what the blueprint saved of 资管's design reply, read from the order's
    flow state (``state.data.resource_status``); before 资管 answers there is none (an empty value)."""
    g, url = group
    reporter = reporter_to(url, settings, db, Clock(T0 + timedelta(minutes=1)))
    played = {n: await asyncio.to_thread(played_state, "p02-1-internet-line-open", answers) for n, answers in (
        (1, {}), (2, {"resource.design_request": {"needs_construction": False}}))}  # CPU: off the loop
    try:
        await db["orders"].insert_many([
            {**internet_order(n, [stage("design", T0)], T0 + timedelta(seconds=n)), "state": state}
            for n, state in played.items()] + [internet_order(3, [stage("accept", T0)], T0 + timedelta(seconds=3))])
        assert (await reporter.sweep())["sent"] == 3
        assert {b["crmOrderId"]: b["resourceStatus"] for b in g.got} == {
            "CRM-1": "资源不满足，需建设", "CRM-2": "资源满足", "CRM-3": ""}
    finally:
        await reporter.close()


async def test_a_sweep_that_finds_no_reported_order_still_moves_its_watermark_on(
        settings: Settings, db: AsyncIOMotorDatabase[Any], group: tuple[Group, str]) -> None:  # noqa: F811
    """Orders of products with no real-time report (here cloud_pc) are all that changes: the watermark
    must follow the clock, or every later sweep reads every order written since it last found one
    (2.5 s a sweep after 3,000 fusion orders on the embedded database). A reported order written
    afterwards is still sent."""
    g, url = group
    clock = Clock(T0 + timedelta(minutes=10))
    reporter = reporter_to(url, settings, db, clock)
    try:
        await db["orders"].insert_many([{**internet_order(n, [stage("accept", T0)], T0 + timedelta(minutes=9)),
                                         "product": "cloud_pc"} for n in range(20)])
        assert (await reporter.sweep())["orders"] == 0
        state = await db[STATE].find_one({"_id": "realtime"})
        assert state is not None and _aware(state["watermark"]) == clock() - reporter.overlap
        clock.advance(minutes=5)
        assert (await reporter.sweep())["orders"] == 0
        state = await db[STATE].find_one({"_id": "realtime"})
        assert state is not None and _aware(state["watermark"]) == clock() - reporter.overlap
        await db["orders"].insert_one(internet_order(99, [stage("accept", clock())], clock()))
        assert (await reporter.sweep())["sent"] == 1 and g.got[-1]["crmOrderId"] == "CRM-99"
    finally:
        await reporter.close()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
