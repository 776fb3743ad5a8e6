"""The REST partners of the simulator server, driven by their declarations (simulators/spec.py).

One handler for every declared partner, so the failure modes of ``POST /_control/{partner}`` (down,
slow, error, http_error, duplicate_callback, late_callback) and the idempotency-key dedupe (a key
already accepted gets the first answer again and no second effect: no second callback, no second poll
job) hold for a partner added as a file exactly as for the ones shipped.

Reply kinds: ``sync`` answers ``accepted`` + the result; ``callback`` answers ``accepted`` and POSTs the
result to the request's ``callback_url`` (with its ``callback_ref``); ``staged`` does the same with
several callbacks in order; ``poll`` answers ``accepted`` + ``ref`` and keeps the result for the
partner's ``query`` operation, which answers ``status: processing`` ``processing`` times, then the
result. A query names its job by ``call_id`` (what the hub's poll sends: the polled call's id, which
the polled request carried as ``callback_ref``), ``callback_ref`` or ``ref``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from simulators.spec import OperationSim, PartnerSim, Shape, render
from simulators.state import Answer, Control, Job, SimulatorState

__all__ = ["STATE", "RestPartners", "gate", "remember", "replay"]

STATE: web.AppKey[SimulatorState] = web.AppKey("sim_state", SimulatorState)


def _drop(request: web.Request) -> web.Response:
    """Partner 'down': the connection is cut without an answer."""
    if request.transport is not None:
        request.transport.close()
    raise ConnectionResetError("simulated partner down")


async def gate(state: SimulatorState, partner: str, request: web.Request) -> Control:
    """The failure modes that act before a request is read: down (cut) and slow (delay)."""
    ctl = state.partner(partner).control
    if ctl.mode == "down":
        _drop(request)
    if ctl.mode == "slow":
        await asyncio.sleep(ctl.delay_s)
    return ctl


def remember(state: SimulatorState, partner: str, key: str | None, resp: web.Response) -> web.Response:
    """Remember the answer to a key accepted for the first time (a repeat gets it again)."""
    body = resp.body
    state.accept(partner, key, Answer(resp.status, body if isinstance(body, bytes) else b"", resp.content_type,
                                      resp.charset))
    return resp


def replay(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type,
                        charset=answer.charset)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def _job_ref(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("call_id", "callback_ref", "ref"):
        if body.get(key):
            return str(body[key])
    return None


class RestPartners:
    """The declared partners (name → PartnerSim) and the one aiohttp handler that serves them."""

    def __init__(self, sims: dict[str, PartnerSim]) -> None:
        self.sims = sims

    def routes(self) -> dict[str, dict[str, tuple[str, bool]]]:
        """partner → {last path segment: (operation, answered later?)} — the old REST_ROUTES view."""
        return {name: {op.path.rsplit("/", 1)[1]: (op_name, op.reply != "sync")
                       for op_name, op in sim.operations.items()} for name, sim in self.sims.items()}

    async def handle(self, request: web.Request) -> web.Response:
        state: SimulatorState = request.app[STATE]
        partner = request.match_info["partner"]
        sim = self.sims.get(partner)
        found = sim.by_path("/" + request.match_info["tail"]) if sim is not None else None
        if sim is None or found is None:
            return web.json_response({"code": "404", "msg": f"no operation {request.match_info['tail']}"}, status=404)
        operation, op = found
        ctl = await gate(state, partner, request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"code": "400", "msg": "invalid JSON"}, status=400)
        key = request.headers.get("Idempotency-Key")
        first = state.repeated(partner, key)
        if first is not None:  # already accepted: the first answer, no second effect
            state.record(partner, operation, key, body, "duplicate")
            return replay(first)
        ref = uuid.uuid4().hex[:8]

        def shape(s: Shape, extra: dict[str, Any] | None = None) -> web.Response:
            out = render(s.body, ref=ref, partner=partner, operation=operation, request=body)
            if extra:
                out = {**out, **extra}
            return web.json_response(out, status=s.status, dumps=_dumps)

        if ctl.mode == "http_error":
            state.record(partner, operation, key, body, "http_error")
            return shape(sim.server_error)
        if ctl.mode == "error":
            state.record(partner, operation, key, body, "rejected")
            return shape(op.rejected or sim.rejected)
        success = op.accepted or sim.accepted
        if op.reply == "query":
            return self._query(state, sim, operation, op, key, body, shape)
        state.record(partner, operation, key, body, "ok")
        result = render(op.result_for(body), ref=ref, partner=partner, operation=operation, request=body)
        request_doc = body if isinstance(body, dict) else {}
        extra: dict[str, Any] | None = None
        if op.reply == "sync":
            extra = result
        elif op.reply == "callback":
            state.schedule_callback(partner, request_doc, operation, result)
        elif op.reply == "staged":
            stages = [(st.status, render(st.result, ref=ref, partner=partner, operation=operation, request=body))
                      for st in op.stages]
            state.schedule_callbacks(partner, request_doc, operation, stages)
        else:  # poll: keep the result for the query operation
            job = Job(operation, result, op.processing)
            for job_key in {ref, str(request_doc.get("callback_ref") or ref)}:
                state.jobs[(partner, job_key)] = job
            extra = {"ref": ref}
        return remember(state, partner, key, shape(success, extra))

    @staticmethod
    def _query(state: SimulatorState, sim: PartnerSim, operation: str, op: OperationSim, key: str | None,
               body: Any, shape: Any) -> web.Response:
        job_ref = _job_ref(body)
        job = state.jobs.get((sim.partner, job_ref)) if job_ref else None
        if job is None:
            state.record(sim.partner, operation, key, body, "unknown_ref")
            return web.json_response({"code": "404", "msg": f"no request {job_ref!r} to report on"}, status=404)
        state.record(sim.partner, operation, key, body, "ok")
        job.queries += 1
        success = op.accepted or sim.accepted
        if job.queries <= job.processing:
            return remember(state, sim.partner, key, shape(success, {"status": "processing", "ref": job_ref}))
        return remember(state, sim.partner, key, shape(success, job.result))
