"""G7 "the SLA timer starts on receipt" on the real servers (one ``hub run``, tansu + SecantusDB, the
simulators in-process): a shipped G7 blueprint (P10.1 跨省MPLS-VPN survey, which includes
config/flows/fragments/sla.yaml) with its SLA cut to a few seconds. The order waits at its first manual
stage; the durable SLA timer runs out, the fragment's escalation reaches the SMS simulator, and the
order document and the operators' views show the order overdue; once it completes the clock is
stopped (met: false) and it is no longer overdue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from hub.settings import Settings
from tests.integration.flow_harness import FlowEnv, running_flow_env
from tests.support import eventually

pytestmark = pytest.mark.integration
SLA_S = 4.0
VIEWER = {"Authorization": "Bearer dev-viewer-token-0001"}


def short_sla(flows: Path) -> None:
    path = flows / "cross_province_mpls" / "survey.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["sla"] = {"after_s": SLA_S}  # key by key over the fragment's: its SMS escalation stays
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    async with running_flow_env(settings, tmp_path, add_flows=short_sla) as e:
        yield e


async def get(env: FlowEnv, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{env.hub.url}/admin/v1{path}", headers=VIEWER) as r:
        assert r.status == 200, await r.text()
        return await r.json(content_type=None)


async def test_a_short_sla_runs_out_escalates_by_sms_and_the_order_reads_overdue(env: FlowEnv) -> None:
    posted = time.time()
    oid = await env.post_order("group", "G-SLA-1", "cross_province_mpls", scenario="survey")
    doc = await env.wait_order(oid, lambda d: d.get("current_stage") == "design")
    deadline = doc["sla_deadline"]
    assert isinstance(deadline, datetime) and posted < deadline.timestamp() <= time.time() + SLA_S
    assert doc["sla"]["started_at"].timestamp() >= posted and doc["sla"]["fired_at"] is None
    assert [c for c in env.sim.calls("sms") if c.body.get("kind") == "sla_overdue"] == []

    doc = await env.wait_order(oid, lambda d: d["sla"]["fired_at"] is not None, timeout=30)
    fired = doc["sla"]["fired_at"].timestamp()
    assert fired >= deadline.timestamp() - 0.01  # the sweep fires it at the deadline, not before
    assert doc["sla_deadline"] == deadline and doc["current_stage"] == "design"  # the order goes on, overdue

    async def escalated() -> list[Any] | None:  # the escalation is an outbox entry: the relay sends it after the write
        found = [c for c in env.sim.calls("sms") if c.body.get("kind") == "sla_overdue" and c.answered]
        return found or None

    sms = await eventually(escalated, timeout=20, interval=0.2)
    assert len(sms) == 1 and sms[0].body["order_id"] == oid and sms[0].body["stage_title"] == "SLA超时"
    assert sms[0].body["team"] == "跨省MPLS-VPN勘察班组" and sms[0].answered == "ok"

    shown = await get(env, f"/orders/{oid}")
    assert shown["overdue"] is True, shown
    overdue = await get(env, "/overview/orders?state=overdue&product=cross_province_mpls")
    assert [r["order_id"] for r in overdue["items"]] == [oid]

    fields = {"total_days": 5, "degrade_reason_l1": "无", "degrade_reason_l2": "无", "degrade_reason_l3": "无",
              "building_scene": "写字楼"}
    for stage in ("design", "remote_survey", "site_survey", "survey_summary"):
        await env.wait_order(oid, lambda d, s=stage: d.get("current_stage") == s)
        status, body = await env.submit(oid, stage, fields)
        assert status == 202, body
    doc = await env.wait_order(oid, lambda d: d["status"] == "completed", timeout=60)
    assert doc["sla_deadline"] is None and doc["sla"]["met"] is False
    assert len([c for c in env.sim.calls("sms") if c.body.get("kind") == "sla_overdue"]) == 1
