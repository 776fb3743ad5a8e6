"""Stuck-order rules against the real MongoDB with an injected clock (no sleeps): alerts raised once
per episode and resolved when the condition clears, two evaluators -> each alert once, the lease,
the overview snapshot and its drill-down, the work-item lifecycle, exports read back, and the
notification sinks (a local webhook / SMS receiver and a local aiosmtpd server)."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from motor.motor_asyncio import AsyncIOMotorDatabase
from openpyxl import load_workbook

from app.admin.replay import Refused
from app.ops.alerts import ALERTS, AlertFilter, AlertStore
from app.ops.evaluator import Evaluator
from app.ops.exports import csv_chunks, xlsx_chunks
from app.ops.notify import Notifier
from app.ops.overview import drill_down, overview
from app.ops.rules import Rule, RuleStore, Sink
from app.ops.service import ALERT_COLUMNS, OpsService
from app.ops.settings import OpsSettings
from flows.documents import ORDERS
from hub import db as hubdb
from hub.deadletter import ACTIONS
from hub.partners import load_partners
from hub.settings import Settings
from tests.unit.ops_rules_test import T0, order

pytestmark = pytest.mark.integration
OPS = OpsSettings(eval_interval_s=60, lease_s=120, batch=100)
DESIGN_1H = Rule(id="DESIGN-1H", name="design over an hour", scope={"stage": "design"},
                 when="data.time_in_stage_s > 3600", severity="major", notify=["hook", "mail", "sms"])


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client = hubdb.connect(settings)
    database = hubdb.database(client, settings)
    await hubdb.ensure_indexes(database)
    yield database
    client.close()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_an_alert_is_raised_once_per_episode_and_resolves_itself(db: AsyncIOMotorDatabase[Any]) -> None:
    await RuleStore(db).seed([DESIGN_1H])
    await db[ORDERS].insert_many([order("a", since=T0), order("b", since=T0 + 3000), order("c", stage="archive")])
    clock = Clock(T0 + 3601)
    ev = Evaluator(db, settings=OPS, clock=clock)
    first = await ev.cycle()
    assert first is not None and (first.orders, first.raised, first.holding) == (3, 1, 1)
    assert await ev.cycle() is None  # the same interval: the cycle is held (lease)
    clock.t += 60
    again = await ev.cycle()
    assert again is not None and again.raised == 0 and again.holding == 1  # still holding: no second alert
    alerts = await AlertStore(db).list(AlertFilter(status="any"))
    assert [(a["order_id"], a["status"], a["active"]) for a in alerts] == [("a", "open", True)]
    assert "design over an hour: order a at design" in alerts[0]["summary"]

    # order a moves on: the condition clears and the alert resolves itself
    await db[ORDERS].update_one({"_id": "a"}, {"$set": {"current_stage": "archive",
                                                        "state.tokens.a:1:token.node": "archive"}})
    clock.t += 60
    cleared = await ev.cycle()
    assert cleared is not None and cleared.cleared == 1
    alert = await AlertStore(db).get(alerts[0]["id"])
    assert alert is not None and alert["status"] == "resolved" and alert["resolved_by"] == "system"
    assert alert["active"] is False and alert["records"][-1]["note"] == "condition cleared"

    # back in design for long (a G9 loop): a new episode, a new alert; b has crossed the hour as well
    await db[ORDERS].update_one({"_id": "a"}, {"$set": {"current_stage": "design",
                                                        "state.tokens.a:1:token.node": "design"}})
    clock.t += 3600
    last = await ev.cycle()
    assert last is not None and last.raised == 2
    everything = await AlertStore(db).list(AlertFilter(status="any"))
    assert sorted((a["order_id"], a["status"]) for a in everything) == [("a", "open"), ("a", "resolved"),
                                                                         ("b", "open")]
    rule = await RuleStore(db).get("DESIGN-1H")
    assert rule is not None and rule["holding"] == 2 and rule["last_error"] is None

    # a disabled rule holds for nobody: its alerts resolve at the next cycle
    await RuleStore(db).set_enabled("DESIGN-1H", False, "test")
    clock.t += 60
    off = await ev.cycle()
    assert off is not None and off.cleared == 2 and await AlertStore(db).count(AlertFilter()) == 0


async def test_two_evaluators_raise_each_alert_once(db: AsyncIOMotorDatabase[Any]) -> None:
    await RuleStore(db).seed([DESIGN_1H])
    await db[ORDERS].insert_many([order(f"o{i}", since=T0) for i in range(60)])
    clock = Clock(T0 + 7200)
    raised: list[str] = []

    async def hook(alert: dict[str, Any]) -> None:
        raised.append(alert["_id"])

    one, two = (Evaluator(db, settings=OPS, clock=clock, owner=w, on_raised=[hook]) for w in ("w1", "w2"))
    # the lease: at the same moment only one of them runs the cycle
    reports = await asyncio.gather(one.cycle(), two.cycle())
    assert sorted(r is None for r in reports) == [False, True]
    await db[ALERTS].delete_many({})
    raised.clear()
    # and even when both run at once (a lapsed lease), the unique index gives each alert once
    both = await asyncio.gather(one.cycle(force=True), two.cycle(force=True))
    assert all(r is not None for r in both)
    assert sum(r.raised for r in both if r) == 60 and len(raised) == 60
    assert await db[ALERTS].count_documents({}) == 60
    assert len(await db[ALERTS].distinct("order_id")) == 60


async def test_overview_snapshot_and_drill_down(db: AsyncIOMotorDatabase[Any]) -> None:
    await RuleStore(db).seed([DESIGN_1H])
    now = T0 + 7200
    await db[ORDERS].insert_many([
        order("late", since=T0, deadline=now - 10), order("soon", since=T0, deadline=now + 600),
        order("fine", since=now - 60, deadline=now + 86400), order("g1", product="5g_lan", stage="accept"),
        {**order("done"), "status": "completed"}])
    clock = Clock(now)
    await Evaluator(db, settings=OPS, clock=clock).cycle()
    snap = await overview(db, clock=clock)
    assert snap["live"] is False and snap["age_s"] == 0
    rows = {(r["product"], r["stage"]): r for r in snap["rows"]}
    assert rows[("internet_line", "design")] == {"product": "internet_line", "stage": "design", "in_flight": 3,
                                                 "overdue": 1, "due_soon": 1, "stuck": 2, "blocked": 0}
    assert rows[("5g_lan", "accept")]["in_flight"] == 1 and snap["totals"]["in_flight"] == 4
    live = await overview(db, live=True, clock=clock)
    assert live["rows"] == snap["rows"]
    ids = {s: [r["order_id"] for r in await drill_down(db, s, product="internet_line", stage="design", now=now)]
           for s in ("in_flight", "overdue", "due_soon", "stuck")}
    assert ids == {"in_flight": ["late", "soon", "fine"], "overdue": ["late"], "due_soon": ["soon"],
                   "stuck": ["late", "soon"]}
    stuck = await drill_down(db, "stuck", now=now)
    assert {a["rule_id"] for r in stuck for a in r["alerts"]} == {"DESIGN-1H"}


async def _one_alert(db: AsyncIOMotorDatabase[Any], n: int = 1) -> list[dict[str, Any]]:
    await RuleStore(db).seed([DESIGN_1H])
    await db[ORDERS].insert_many([order(f"w{i}", since=T0) for i in range(n)])
    await Evaluator(db, settings=OPS, clock=Clock(T0 + 7200)).cycle()
    return await AlertStore(db).list(AlertFilter(), limit=n)


async def test_work_item_lifecycle(db: AsyncIOMotorDatabase[Any], settings: Settings) -> None:
    (alert,) = await _one_alert(db)
    svc = OpsService(db, settings.config_dir, load_partners(settings.config_dir))
    aid = alert["id"]
    with pytest.raises(Refused, match="close needs resolved"):
        await svc.act(aid, "close", "ops:li")
    tracked = await svc.act(aid, "ack", "ops:li", note="looking")
    assert tracked["status"] == "tracking" and tracked["assignee"] == "ops:li"
    assert (await svc.act(aid, "assign", "ops:li", assignee="ops:wang"))["assignee"] == "ops:wang"
    await svc.act(aid, "note", "ops:wang", note="called the resource center")
    assert (await svc.act(aid, "resolve", "ops:wang", note="design re-sent"))["status"] == "resolved"
    closed = await svc.act(aid, "close", "ops:li")
    assert closed["status"] == "closed"
    with pytest.raises(Refused):
        await svc.act(aid, "ack", "ops:li")
    assert [(r["who"], r["action"], r.get("to")) for r in closed["records"]] == [
        ("system", "raised", None), ("ops:li", "ack", "tracking"), ("ops:li", "assign", None),
        ("ops:wang", "note", None), ("ops:wang", "resolve", "resolved"), ("ops:li", "close", "closed")]
    assert closed["records"][3]["note"] == "called the resource center"
    audit = [d["action"] async for d in db[ACTIONS].find({}).sort("at", 1)]
    assert audit == ["alert.ack", "alert.assign", "alert.note", "alert.resolve", "alert.close"]
    # closed while the condition still holds: the episode keeps its key, no second alert
    await Evaluator(db, settings=OPS, clock=Clock(T0 + 9000)).cycle(force=True)
    assert await db[ALERTS].count_documents({}) == 1


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def test_exports_read_back_row_by_row(db: AsyncIOMotorDatabase[Any], settings: Settings) -> None:
    alerts = await _one_alert(db, 5)
    svc = OpsService(db, settings.config_dir, load_partners(settings.config_dir))
    flt = AlertFilter()
    expected = [[str(a["id"]), a["kind"], a["rule_id"], a["rule_name"], a["severity"], a["status"], a["subject"],
                 a["order_id"], a["product"], a["stage"], "", a["raised_at"].isoformat(timespec="seconds"), "",
                 a["updated_at"].isoformat(timespec="seconds"), a["summary"]] for a in alerts]
    raw = await _collect(csv_chunks(svc.alert_batches(flt, 100, chunk=2), ALERT_COLUMNS))
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == [h for _, h in ALERT_COLUMNS] and rows[1:] == expected
    book = await _collect(xlsx_chunks(svc.alert_batches(flt, 100, chunk=2), ALERT_COLUMNS, "alerts"))
    ws = (await asyncio.to_thread(load_workbook, io.BytesIO(book), read_only=True))["alerts"]
    got = [["" if v is None else v for v in r] for r in ws.iter_rows(values_only=True)]
    assert got[0] == [h for _, h in ALERT_COLUMNS] and got[1:] == expected


async def test_notifications_go_to_webhook_smtp_and_sms(db: AsyncIOMotorDatabase[Any]) -> None:
    from aiosmtpd.controller import Controller

    posts: dict[str, list[Any]] = {"/hook": [], "/sms": []}

    async def receive(request: web.Request) -> web.Response:
        posts[request.path].append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    app.router.add_post("/sms", receive)
    mails: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    with socket.socket() as probe:  # a free port (aiosmtpd checks readiness by connecting to the port given)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    await asyncio.to_thread(smtp.start)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url(""))
        sinks = [Sink(name="hook", type="webhook", url=f"{base}/hook"),
                 Sink(name="mail", type="smtp", host="127.0.0.1", port=port,
                      sender="hub@example.com", to=["ops@example.com"]),
                 Sink(name="sms", type="sms", url=f"{base}/sms", to=["13800000000"], min_severity="critical")]
        await RuleStore(db).seed([DESIGN_1H])
        await db[ORDERS].insert_one(order("n1", since=T0))
        ev = Evaluator(db, settings=OPS, clock=Clock(T0 + 7200), on_raised=[Notifier(sinks, db)])
        await ev.cycle()
        await ev.cycle(force=True)  # still holding: nobody is told twice
    finally:
        await server.close()
        await asyncio.to_thread(smtp.stop)
    (alert,) = await AlertStore(db).list(AlertFilter())
    assert [p["id"] for p in posts["/hook"]] == [alert["id"]] and posts["/hook"][0]["order_id"] == "n1"
    assert posts["/sms"] == []  # a major alert is below the SMS sink's min_severity
    assert len(mails) == 1 and mails[0].rcpt_tos == ["ops@example.com"]
    assert alert["id"] in mails[0].content.decode()
    stored = await AlertStore(db).get(alert["id"])
    assert stored is not None and [(n["sink"], n["result"]) for n in stored["notified"]] == [("hook", "ok"),
                                                                                              ("mail", "ok")]


async def test_interface_and_indicator_rules_share_the_lifecycle(db: AsyncIOMotorDatabase[Any]) -> None:
    from datetime import UTC, datetime

    from app.ops.rules import parse_rule
    from flows.documents import CALLS

    now = T0 + 3600

    def at(s: float) -> datetime:
        return datetime.fromtimestamp(s, UTC)

    calls = [{"_id": f"e{i}", "partner": "esop", "operation": "notifyOrderResult", "order_id": f"o{i}",
              "outcome": "failed" if i < 4 else "ok", "duration_ms": 100.0 * (i + 1), "started_at": at(now - 60 * i)}
             for i in range(10)]
    calls += [{"_id": f"r{i}", "partner": "resource", "operation": "design", "order_id": f"o{i}", "outcome": "ok",
               "duration_ms": 50.0, "started_at": at(now - 30)} for i in range(5)]
    await db[CALLS].insert_many(calls)
    await db[ORDERS].insert_many([order("late", since=T0, deadline=now - 1), order("ok", since=T0)])
    rules = [parse_rule({"id": "IF-RATE", "name": "success rate under 80 %", "kind": "interface", "window_s": 900,
                         "when": "data.calls >= 5 && data.success_rate < 0.8", "severity": "major"}),
             parse_rule({"id": "IF-SLOW", "name": "ESOP slow", "kind": "interface",
                         "scope": {"partner": "esop"}, "when": "data.p99_ms > 5000"}),
             parse_rule({"id": "BI-OVERDUE", "name": "overdue internet lines", "kind": "indicator",
                         "indicator": {"source": "orders", "match": {"product": "internet_line"}, "overdue": True},
                         "when": "data.value >= 1"})]
    await RuleStore(db).seed(rules)
    clock = Clock(now)
    ev = Evaluator(db, settings=OPS, clock=clock)
    report = await ev.cycle(force=True)
    assert report is not None and report.raised == 2 and not report.errors
    alerts = {a["rule_id"]: a for a in await AlertStore(db).list(AlertFilter())}
    assert set(alerts) == {"IF-RATE", "BI-OVERDUE"}
    assert alerts["IF-RATE"]["subject"] == "esop.notifyOrderResult" and alerts["IF-RATE"]["kind"] == "interface"
    assert alerts["IF-RATE"]["facts"]["success_rate"] == 0.6 and alerts["IF-RATE"]["facts"]["p99_ms"] == 1000.0
    assert alerts["BI-OVERDUE"]["facts"]["value"] == 1
    again = await ev.cycle(force=True)
    assert again is not None and again.raised == 0
    # the failures age out of the window and the overdue order completes: both resolve themselves
    clock.t = now + 15 * 60 + 1
    await db[ORDERS].update_one({"_id": "late"}, {"$set": {"status": "completed"}})
    cleared = await ev.cycle(force=True)
    assert cleared is not None and cleared.cleared == 2
    assert {a["status"] for a in await AlertStore(db).list(AlertFilter(status="any"))} == {"resolved"}
    assert await AlertStore(db).count(AlertFilter(kind="interface", status="any")) == 1


async def test_order_list_fields_and_stage_durations_export(db: AsyncIOMotorDatabase[Any], settings: Settings,
                                                            tmp_path: Any) -> None:
    from datetime import UTC, datetime

    from app.admin.queries import OrderFilter, Queries
    from app.ops.reports import ORDER_COLUMNS, STAGE_COLUMNS, order_batches, stage_durations
    from flows.documents import CALLS

    def at(s: float) -> datetime:
        return datetime.fromtimestamp(s, UTC)

    def stages(*minutes: float) -> list[dict[str, Any]]:
        return [{"stage": s, "title": s.title(), "kind": "call", "entered_at": at(T0), "duration_ms": m * 60000}
                for s, m in zip(("accept", "design"), minutes, strict=False)]

    first = {**order("first"), "external_order_id": "E-9", "status": "cancelled", "created_at": at(T0 - 900),
             "stages": stages(2, 10)}
    again = {**order("again"), "external_order_id": "E-9", "created_at": at(T0), "sla_deadline": at(T0 + 86400),
             "stages": stages(4)}
    other = {**order("other"), "external_order_id": "E-7", "created_at": at(T0 + 5), "stages": stages(6, 30)}
    await db[ORDERS].insert_many([first, again, other])
    await db[CALLS].insert_many([{"_id": "c2", "order_id": "again", "started_at": at(T0 + 120)},
                                 {"_id": "c1", "order_id": "again", "started_at": at(T0 + 60)}])
    queries = Queries(db, load_partners(settings.config_dir))
    batches = order_batches(db, queries, OrderFilter(), 100, chunk=2)
    raw = await _collect(csv_chunks(batches, ORDER_COLUMNS))
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    got = [(r["order"], r["withdrawn and re-entered"], r["first dispatch (UTC)"], r["assessment deadline (UTC)"])
           for r in rows]
    assert got == [("other", "no", "", ""), ("again", "yes", at(T0 + 60).isoformat(timespec="seconds"),
                                             at(T0 + 86400).isoformat(timespec="seconds")),
                   ("first", "no", "", "")]
    report = await stage_durations(db, product="internet_line")
    expected = [["internet_line", "accept", "Accept", 3, 4.0, 4.0, 6.0, 6.0],
                ["internet_line", "design", "Design", 2, 20.0, 10.0, 30.0, 30.0]]
    assert [[r[k] for k, _ in STAGE_COLUMNS] for r in report] == expected

    async def one() -> AsyncIterator[list[dict[str, Any]]]:
        yield report

    book = await _collect(xlsx_chunks(one(), STAGE_COLUMNS, "stages"))
    ws = (await asyncio.to_thread(load_workbook, io.BytesIO(book), read_only=True))["stages"]
    assert [list(r) for r in ws.iter_rows(values_only=True)] == [[h for _, h in STAGE_COLUMNS], *expected]
