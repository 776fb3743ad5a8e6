"""Declarative partner simulators (simulators/partners/*.yaml, simulators/spec.py, simulators/rest.py):
the shipped files match the partners' config, and every reply kind (sync, callback, poll, staged),
failure mode and the idempotency dedupe behave the same for any declared partner — here one declared
in the test, served by the real simulator app on loopback with a real callback receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.errors import ConfigError
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT
from simulators.rest import RestPartners
from simulators.server import REST, STATE, build_app
from simulators.spec import INTERIM_STATUSES, PartnerSim, load_sims, render
from simulators.state import Control
from tests.support import eventually

CONFIG = PROJECT_ROOT / "config"

DEMO: dict[str, Any] = {
    "partner": "demo_partner",
    "accepted": {"status": 200, "body": {"retCode": 0, "retMsg": "ok"}},
    "rejected": {"status": 200, "body": {"retCode": 9, "retMsg": "演示失败 {request.orderId}"}},
    "operations": {
        "lookup": {"path": "/api/lookup", "result": {"echo": "{request.orderId}", "n": "{request.n}",
                                                     "text": "n={request.n} ref={ref}"}},
        "dispatch": {"path": "/api/dispatch", "reply": "callback", "result": {"team": "zz", "at": "{now}"}},
        "survey": {"path": "/v2/survey/submit", "reply": "poll", "processing": 2,
                   "result": {"ok": True, "survey_id": "S-{ref}"}},
        "survey_result": {"path": "/v2/survey/result", "reply": "query"},
        "build": {"path": "/api/build", "reply": "staged", "stages": [
            {"status": "accepted"}, {"status": "processing", "result": {"phase": "surveyed"}},
            {"status": "completed", "result": {"phase": 2, "order": "{request.orderId}"}}]},
    },
}


# ---- the shipped files -------------------------------------------------------------------------------
def test_every_shipped_simulator_file_matches_its_partner_file() -> None:
    """A simulated path must be the one the hub calls (config/partners/<p>.yaml), or orders hang."""
    partners = load_partners(CONFIG)
    for name, sim in load_sims().items():
        assert name in partners, f"simulators/partners/{name}.yaml has no config/partners/{name}.yaml"
        outbound = partners[name].outbound
        assert outbound is not None and outbound.protocol == "rest", name
        ops = outbound.config["operations"]
        for op_name, op in sim.operations.items():
            assert op_name in ops, f"{name}.{op_name} is not an operation of config/partners/{name}.yaml"
            assert ops[op_name].get("path") == op.path, (name, op_name)


def test_every_rest_operation_of_the_partner_files_is_simulated() -> None:
    sims = load_sims()
    for name, partner in load_partners(CONFIG).items():
        if partner.outbound is None or partner.outbound.protocol != "rest":
            continue
        assert name in sims, f"config/partners/{name}.yaml calls REST but simulators/partners/{name}.yaml is missing"
        assert set(partner.outbound.config["operations"]) <= set(sims[name].operations), name


def test_a_bad_file_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("partner: x\naccepted: {}\nrejected: {}\noperations:\n"
                                     "  a: {path: /api/a, reply: poll}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml:1: .*poll operation needs a result-query"):
        load_sims(tmp_path)
    (tmp_path / "x.yaml").write_text("partner: x\naccepted: {}\nrejected: {}\noperations:\n"
                                     "  a:\n    path: /api/a\n    reply: later\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml:7: operations.a.reply"):
        load_sims(tmp_path)
    (tmp_path / "x.yaml").write_text("partner: x\naccepted: {body: {m: '{nope}'}}\nrejected: {}\noperations:\n"
                                     "  a: {path: /api/a}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown placeholder \{nope\}"):
        load_sims(tmp_path)


def test_a_staged_reply_sends_only_interim_statuses_the_hub_reads_as_not_yet(tmp_path: Path) -> None:
    from flows.runtime.translate import PENDING_STATUSES

    assert INTERIM_STATUSES == PENDING_STATUSES
    (tmp_path / "x.yaml").write_text("partner: x\naccepted: {}\nrejected: {}\noperations:\n  a:\n    path: /api/a\n"
                                     "    reply: staged\n    stages: [{status: surveyed}, {status: completed}]\n",
                                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"interim stage status 'surveyed'"):
        load_sims(tmp_path)


def test_templates_echo_typed_values_and_fill_text() -> None:
    out = render({"a": "{request.x.y}", "b": "{request.x.y}-{ref}", "c": "{request.none}", "d": [1, "{partner}"]},
                 ref="r1", partner="p", operation="o", request={"x": {"y": 5}})
    assert out == {"a": 5, "b": "5-r1", "c": None, "d": [1, "p"]}


# ---- a declared partner, served ----------------------------------------------------------------------
class Hub:
    """A real callback receiver on loopback (what the hub's callback endpoint does: record and 200)."""

    def __init__(self) -> None:
        self.callbacks: list[dict[str, Any]] = []

    async def receive(self, request: web.Request) -> web.Response:
        self.callbacks.append(await request.json())
        return web.json_response({"accepted": True})


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, Hub, Any]]:
    hub = Hub()
    hub_app = web.Application()
    hub_app.router.add_post("/cb", hub.receive)
    rest = RestPartners({"demo_partner": PartnerSim.model_validate(DEMO), **REST.sims})
    sim_app = await asyncio.to_thread(build_app, CONFIG, rest=rest)  # the WSDL parse: ~120 ms of CPU
    async with TestServer(hub_app, host="127.0.0.1") as hub_srv, TestServer(sim_app, host="127.0.0.1") as srv:
        hub.url = str(hub_srv.make_url("/cb"))  # type: ignore[attr-defined]
        yield str(srv.make_url("")), hub, sim_app[STATE]


async def _post(url: str, body: Any, key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_sync_reply_carries_the_result_and_echoes_the_request(sim: tuple[str, Hub, Any]) -> None:
    url, _, _ = sim
    status, body = await _post(f"{url}/demo_partner/api/lookup", {"orderId": "O-1", "n": 3})
    assert status == 200 and body["retCode"] == 0 and body["echo"] == "O-1" and body["n"] == 3
    assert body["text"].startswith("n=3 ref=")
    status, body = await _post(f"{url}/demo_partner/api/nothing", {})
    assert status == 404


async def test_callback_reply_posts_the_result_to_the_callback_url(sim: tuple[str, Hub, Any]) -> None:
    url, hub, _ = sim
    req = {"callback_url": hub.url, "callback_ref": "O1:3:call", "hub_order_id": "O1"}  # type: ignore[attr-defined]
    status, body = await _post(f"{url}/demo_partner/api/dispatch", req, key="k1")
    assert status == 200 and body == {"retCode": 0, "retMsg": "ok"}
    (cb,) = await eventually(lambda: _value(hub.callbacks))
    assert cb["callback_ref"] == "O1:3:call" and cb["order_id"] == "O1" and cb["status"] == "ok"
    assert cb["result"]["team"] == "zz" and len(cb["result"]["at"]) == 19


async def test_staged_reply_sends_its_callbacks_in_order(sim: tuple[str, Hub, Any]) -> None:
    url, hub, _ = sim
    req = {"callback_url": hub.url, "callback_ref": "O2:5:call", "orderId": "O2"}  # type: ignore[attr-defined]
    await _post(f"{url}/demo_partner/api/build", req, key="k2")
    cbs = await eventually(lambda: _value(hub.callbacks if len(hub.callbacks) == 3 else []))
    assert [c["status"] for c in cbs] == ["accepted", "processing", "completed"]
    assert cbs[-1]["result"] == {"phase": 2, "order": "O2"} and {c["callback_ref"] for c in cbs} == {"O2:5:call"}


async def test_poll_reply_answers_processing_then_the_result(sim: tuple[str, Hub, Any]) -> None:
    url, _, _ = sim
    status, accepted = await _post(f"{url}/demo_partner/v2/survey/submit", {"callback_ref": "O3:2:call"}, key="k3")
    assert status == 200 and accepted["retCode"] == 0 and accepted["ref"]
    answers = [(await _post(f"{url}/demo_partner/v2/survey/result", {"call_id": "O3:2:call"}, key=f"q{i}"))[1]
               for i in range(3)]
    assert [a.get("status") for a in answers[:2]] == ["processing", "processing"]
    assert answers[2]["ok"] is True and answers[2]["survey_id"] == f"S-{accepted['ref']}"
    by_ref = (await _post(f"{url}/demo_partner/v2/survey/result", {"ref": accepted["ref"]}))[1]
    assert by_ref["survey_id"] == answers[2]["survey_id"]
    status, _ = await _post(f"{url}/demo_partner/v2/survey/result", {"call_id": "never-sent"})
    assert status == 404


async def test_failure_modes_and_dedupe_apply_to_a_declared_partner(sim: tuple[str, Hub, Any]) -> None:
    url, hub, state = sim
    state.partner("demo_partner").control = Control(mode="error")
    status, body = await _post(f"{url}/demo_partner/api/lookup", {"orderId": "O-9"}, key="e1")
    assert status == 200 and body == {"retCode": 9, "retMsg": "演示失败 O-9"}
    state.partner("demo_partner").control = Control(mode="http_error")
    status, _ = await _post(f"{url}/demo_partner/api/lookup", {}, key="e1")
    assert status == 500
    state.partner("demo_partner").control = Control(mode="down")
    with pytest.raises(aiohttp.ClientError):
        await _post(f"{url}/demo_partner/api/lookup", {}, key="e1")
    state.partner("demo_partner").control = Control(mode="duplicate_callback")
    req = {"callback_url": hub.url, "callback_ref": "O4:1:call"}  # type: ignore[attr-defined]
    first = await _post(f"{url}/demo_partner/api/dispatch", req, key="d1")
    again = await _post(f"{url}/demo_partner/api/dispatch", req, key="d1")
    assert first == again
    await eventually(lambda: _value(hub.callbacks if len(hub.callbacks) == 2 else []))
    assert state.duplicates() == {"demo_partner": {"d1": 2}}
    assert [c.answered for c in state.partner("demo_partner").calls] == [
        "rejected", "http_error", "ok", "duplicate"]


async def _value(v: Any) -> Any:
    return v
