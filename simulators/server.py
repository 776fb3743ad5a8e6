"""The simulator server: one aiohttp app, one path prefix per partner.

=====================  ==============================================================
``/esop/soap``         ESOP webservice (SOAP 1.1, the shipped ``config/wsdl/esop.wsdl``):
                       ``notifyOrderResult``, ``reportProgress``; ``?wsdl`` serves the WSDL
``/group/api/…``       一编: ``stage-report``, ``notifyOrderResult5GSlice`` (HTTP 201)
``/resource/api/…``    资管: ``design`` (async reply by callback), ``entry``, ``config``,
                       ``allocation``, ``config-plan``, ``archive`` (``code:"0"``)
``/ip_workbench/…``    IP workbench ``activation`` (result by callback)
``/core_workbench/…``  core-network workbench ``createLanBusinessUpfConfig``
``/transmission_workbench/…``  transmission workbench ``circuit-config`` (SPN/PTN circuits)
``/construction/…``    construction platform ``construction-order`` (reply by callback)
``/_control/{p}``      POST ``{"mode": …, "delay_s": …}``; ``/_calls`` GET counts and ``duplicates``
                       (keys a partner accepted more than once); ``/_reset``
=====================  ==============================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import zeep
import zeep.helpers
from aiohttp import web
from lxml import etree
from pydantic import ValidationError

from simulators.state import Answer, Control, SimulatorState

log = logging.getLogger(__name__)
STATE: web.AppKey[SimulatorState] = web.AppKey("sim_state", SimulatorState)
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)

# REST partners: partner → {path segment: (operation, async callback?)}
REST_ROUTES: dict[str, dict[str, tuple[str, bool]]] = {
    "group": {"stage-report": ("progress_report", False), "notifyOrderResult5GSlice": ("close_report", False)},
    "resource": {"design": ("design_request", True), "entry": ("resource_entry", False),
                 "config": ("resource_config", False), "allocation": ("resource_allocation", False),
                 "config-plan": ("config_plan", False), "archive": ("archive", False)},
    "ip_workbench": {"activation": ("activation", True)},
    "core_workbench": {"createLanBusinessUpfConfig": ("upf_config", False)},
    "transmission_workbench": {"circuit-config": ("circuit_config", False)},
    "construction": {"construction-order": ("construction_order", True)},
}


def _drop(request: web.Request) -> web.Response:
    """Partner 'down': the connection is cut without an answer."""
    if request.transport is not None:
        request.transport.close()
    raise ConnectionResetError("simulated partner down")


def _replay(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type,
                        charset=answer.charset)


def _accepted(state: SimulatorState, partner: str, key: str | None, resp: web.Response) -> web.Response:
    """Remember the answer to a key accepted for the first time (a repeat gets it again)."""
    body = resp.body
    state.accept(partner, key, Answer(resp.status, body if isinstance(body, bytes) else b"", resp.content_type,
                                      resp.charset))
    return resp


async def _gate(state: SimulatorState, partner: str, request: web.Request) -> Control:
    ctl = state.partner(partner).control
    if ctl.mode == "down":
        _drop(request)
    if ctl.mode == "slow":
        await asyncio.sleep(ctl.delay_s)
    return ctl


# --- ESOP (SOAP) -----------------------------------------------------------------------------
class Esop:
    def __init__(self, wsdl: Path) -> None:
        self.wsdl_path = wsdl
        client = zeep.Client(str(wsdl))
        self.binding = next(iter(client.wsdl.bindings.values()))

    async def wsdl(self, request: web.Request) -> web.Response:
        return web.Response(body=self.wsdl_path.read_bytes(), content_type="text/xml")

    async def handle(self, request: web.Request) -> web.Response:
        state = request.app[STATE]
        ctl = await _gate(state, "esop", request)
        try:
            envelope = etree.fromstring(await request.read(), parser=_PARSER)
            body = envelope.find(f"{{{SOAP_NS}}}Body")
            first = body[0] if body is not None and len(body) else None
            name = etree.QName(first).localname if first is not None else ""
            op = self.binding._operations[name]
            params = op.input.deserialize(envelope)
        except (etree.XMLSyntaxError, KeyError, TypeError, ValueError, zeep.exceptions.Error) as exc:
            return self._fault("Client", f"bad request: {exc}")
        data = zeep.helpers.serialize_object(params, dict)
        key = request.headers.get("Idempotency-Key")
        first = state.repeated("esop", key)
        if first is not None:  # already accepted: the first answer, no second effect
            state.record("esop", name, key, data, "duplicate")
            return _replay(first)
        if ctl.mode == "http_error":
            state.record("esop", name, key, data, "fault")
            return self._fault("Server", "simulated ESOP failure")
        if ctl.mode == "error":
            state.record("esop", name, key, data, "rejected")
            out = op.output.serialize(checkResult=0, parameterValue="ESOP模拟失败: simulated rejection")
        else:
            state.record("esop", name, key, data, "ok")
            out = op.output.serialize(checkResult=1, parameterValue="success")
        resp = web.Response(body=etree.tostring(out.content, xml_declaration=True, encoding="utf-8"),
                            content_type="text/xml", charset="utf-8")
        return _accepted(state, "esop", key, resp) if ctl.mode != "error" else resp

    @staticmethod
    def _fault(code: str, text: str) -> web.Response:
        xml = (f'<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope xmlns:soap-env="{SOAP_NS}"><soap-env:Body>'
               f"<soap-env:Fault><faultcode>soap-env:{code}</faultcode><faultstring>{text}</faultstring>"
               "</soap-env:Fault></soap-env:Body></soap-env:Envelope>")
        return web.Response(status=500, body=xml.encode(), content_type="text/xml", charset="utf-8")


# --- REST partners -----------------------------------------------------------------------------
def _result_for(operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """What the partner's reply carries (design scheme, construction data, activation result…)."""
    ref = uuid.uuid4().hex[:8]
    if operation == "design_request":
        return {"design_id": f"D-{ref}", "scheme": "PON access, OLT-HZ-01 port 3/1", "needs_construction": True}
    if operation == "construction_order":
        return {"manager": "王工", "phone": "13800000000", "status": "completed", "start_date": "2026-01-01",
                "end_date": "2026-01-03", "cost": 1200}
    if operation == "activation":
        return {"config_result": "success", "ne": "PE-HZ-01", "vlan": 1001}
    return {"ref": f"R-{ref}"}


async def rest_partner(request: web.Request) -> web.Response:
    state = request.app[STATE]
    partner, segment = request.match_info["partner"], request.match_info["op"]
    route = REST_ROUTES.get(partner, {}).get(segment)
    if route is None:
        return web.json_response({"code": "404", "msg": f"no operation {segment}"}, status=404)
    operation, is_async = route
    ctl = await _gate(state, partner, request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"code": "400", "msg": "invalid JSON"}, status=400)
    key = request.headers.get("Idempotency-Key")
    first = state.repeated(partner, key)
    if first is not None:  # already accepted: the first answer, no second callback
        state.record(partner, operation, key, body, "duplicate")
        return _replay(first)
    if ctl.mode == "http_error":
        state.record(partner, operation, key, body, "http_error")
        return web.json_response({"code": "500", "msg": "simulated server error"}, status=500)
    if ctl.mode == "error":
        state.record(partner, operation, key, body, "rejected")
        if partner == "group":
            return web.json_response({"parameterValue": "一编模拟失败: simulated rejection"}, status=400)
        field = "message" if partner.endswith("workbench") else "msg"
        return web.json_response({"code": "1", field: f"{partner} 模拟失败: simulated rejection"})
    state.record(partner, operation, key, body, "ok")
    result = _result_for(operation, body if isinstance(body, dict) else {})
    if is_async and isinstance(body, dict):
        state.schedule_callback(partner, body, operation, result)
    if partner == "group":
        return _accepted(state, partner, key, web.json_response({"parameterValue": "accepted"}, status=201))
    answer: dict[str, Any] = {"code": 0 if partner == "core_workbench" else "0", "msg": "accepted",
                              "message": "accepted"}
    if not is_async:
        answer.update(result)
    return _accepted(state, partner, key, web.json_response(answer))


# --- control ---------------------------------------------------------------------------------
async def control(request: web.Request) -> web.Response:
    try:
        ctl = Control.model_validate(await request.json())
    except (ValidationError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    request.app[STATE].partner(request.match_info["partner"]).control = ctl
    return web.json_response(ctl.model_dump())


async def calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    partner = request.query.get("partner")
    if partner:
        return web.json_response([dataclasses.asdict(c) for c in state.partner(partner).calls],
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))
    return web.json_response({"counts": state.counts(), "callbacks_sent": state.callbacks_sent,
                              "callbacks_failed": state.callbacks_failed, "duplicates": state.duplicates()})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


def callback_keys(config_dir: Path) -> dict[str, tuple[str, str]]:
    """The key each simulated partner presents on its callbacks (from the partners' config)."""
    from hub.partners import load_partners

    keys: dict[str, tuple[str, str]] = {}
    for name, p in load_partners(config_dir).items():
        auth = p.outbound.callback_auth if p.outbound else None
        if auth is not None:
            keys[name] = (auth.header, auth.keys[0].get_secret_value())
    return keys


def build_app(config_dir: Path, state: SimulatorState | None = None) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE] = state or SimulatorState(callback_keys(config_dir))
    esop = Esop(config_dir / "wsdl" / "esop.wsdl")
    app.router.add_get("/esop/soap", esop.wsdl)
    app.router.add_post("/esop/soap", esop.handle)
    app.router.add_post(r"/{partner:[a-z_]+}/api/{op}", rest_partner)
    app.router.add_post("/_control/{partner}", control)
    app.router.add_get("/_calls", calls)
    app.router.add_post("/_reset", reset)

    async def close(app: web.Application) -> None:
        await app[STATE].close()

    app.on_cleanup.append(close)
    return app


async def serve(config_dir: Path, host: str, port: int) -> tuple[web.AppRunner, SimulatorState]:
    """Start the simulators on ``host:port``; the caller cleans the runner up."""
    state = SimulatorState(callback_keys(config_dir))
    runner = web.AppRunner(build_app(config_dir, state), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, state
