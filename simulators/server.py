"""The simulator server: one aiohttp app, one path prefix per partner.

=====================  ==============================================================
``/esop/soap``         ESOP webservice (SOAP 1.1, the shipped ``config/wsdl/esop.wsdl``):
                       ``notifyOrderResult``, ``reportProgress``; ``?wsdl`` serves the WSDL
``/<partner>/…``       every REST partner declared in ``simulators/partners/<partner>.yaml``
                       (simulators/spec.py, simulators/rest.py): 一编, 资管, the IP / core /
                       transmission workbenches, the construction platform, and what the catalogues add
``/_control/{p}``      POST ``{"mode": …, "delay_s": …}``; ``/_calls`` GET counts and ``duplicates``
                       (keys a partner accepted more than once); ``/_reset``
=====================  ==============================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import zeep
import zeep.helpers
from aiohttp import web
from lxml import etree
from pydantic import ValidationError

from simulators.rest import STATE, RestPartners, gate, remember, replay
from simulators.spec import SIM_DIR, load_sims
from simulators.state import Control, SimulatorState

log = logging.getLogger(__name__)
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)

#: the REST partners declared in simulators/partners/*.yaml (loaded at import: a bad file fails the start)
REST = RestPartners(load_sims(SIM_DIR))
#: partner → {path segment: (operation, answered later?)}: the declared operations, as before the files
REST_ROUTES: dict[str, dict[str, tuple[str, bool]]] = REST.routes()


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
        ctl = await gate(state, "esop", request)
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
            return replay(first)
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
        return remember(state, "esop", key, resp) if ctl.mode != "error" else resp

    @staticmethod
    def _fault(code: str, text: str) -> web.Response:
        xml = (f'<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope xmlns:soap-env="{SOAP_NS}"><soap-env:Body>'
               f"<soap-env:Fault><faultcode>soap-env:{code}</faultcode><faultstring>{text}</faultstring>"
               "</soap-env:Fault></soap-env:Body></soap-env:Envelope>")
        return web.Response(status=500, body=xml.encode(), content_type="text/xml", charset="utf-8")


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
    """The key each simulated partner presents on its callbacks (from the partners' config).

    Cached by the partner files' stats and the HUB_* environment: parsing the two dozen partner files
    costs ~200 ms of CPU, which a test building the app on its event loop must not pay each time."""
    files = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted((config_dir / "partners").glob("*")))
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("HUB_")))
    return dict(_callback_keys(config_dir, files, env))


@functools.lru_cache(maxsize=8)
def _callback_keys(config_dir: Path, files: tuple[Any, ...],
                   env: tuple[Any, ...]) -> tuple[tuple[str, tuple[str, str]], ...]:
    from hub.partners import load_partners

    keys: list[tuple[str, tuple[str, str]]] = []
    for name, p in load_partners(config_dir).items():
        auth = p.outbound.callback_auth if p.outbound else None
        if auth is not None:
            keys.append((name, (auth.header, auth.keys[0].get_secret_value())))
    return tuple(keys)


def build_app(config_dir: Path, state: SimulatorState | None = None,
              rest: RestPartners | None = None) -> web.Application:
    """The simulator server: ESOP's SOAP service, every partner of ``rest`` (default: the files in
    simulators/partners/), the control endpoints."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE] = state or SimulatorState(callback_keys(config_dir))
    esop = Esop(config_dir / "wsdl" / "esop.wsdl")
    app.router.add_get("/esop/soap", esop.wsdl)
    app.router.add_post("/esop/soap", esop.handle)
    app.router.add_post("/_control/{partner}", control)
    app.router.add_get("/_calls", calls)
    app.router.add_post("/_reset", reset)
    app.router.add_post(r"/{partner:[a-z][a-z0-9_]*}/{tail:.+}", (rest or REST).handle)

    async def close(app: web.Application) -> None:
        await app[STATE].close()

    app.on_cleanup.append(close)
    return app


async def serve(config_dir: Path, host: str, port: int) -> tuple[web.AppRunner, SimulatorState]:
    """Start the simulators on ``host:port``; the caller cleans the runner up. The app is built in a
    thread: it parses ~40 partner and simulator files and the ESOP WSDL (~200 ms of CPU), which on the
    caller's event loop failed the tests' loop check at fixture setup."""
    keys = await asyncio.to_thread(callback_keys, config_dir)
    state = SimulatorState(keys)
    runner = web.AppRunner(await asyncio.to_thread(build_app, config_dir, state), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, state
