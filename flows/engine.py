"""The stage engine: applies one order event to one order document, in memory, and says which
outbound envelopes follow. No I/O here — ``flows/agents.py`` loads and saves the document
(optimistic ``version``) and sends the outbox *after* the document is saved, so every envelope the
hub ever sends is first recorded in the order (``calls[].envelope``) and can be re-sent from MongoDB.

A stage goes through three phases::

    entering ──(gated on_enter reports ok)──▶ active ──(work done / submitted)──▶ leaving
        ──(gated on_submit reports ok)──▶ finished → transition → next stage (or complete / fail)

Events (envelope ``type`` on ``{p}.orders``): ``order.received``, ``call.result`` (from delivery),
``callback`` (partner callback via HTTP), ``stage.submit`` (manual), ``order.tick`` (recovery
timer). Each has at most one effect: results and callbacks are matched to a call by ``call_id``
and ignored once that call is settled, so late and duplicate callbacks change nothing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flows import actions
from flows.blueprint import END_COMPLETE, END_FAIL, Blueprint, Blueprints, CallSpec, Report, Stage
from flows.documents import CallOutcome, CallRecord, OrderStatus, StageRecord
from flows.settings import FlowSettings
from hub import topics
from hub.envelope import Envelope
from hub.partners import Partner
from hub.templates import render

log = logging.getLogger(__name__)
MAX_APPLIED = 16
SETTLED_BAD = (CallOutcome.failed.value, CallOutcome.dead_lettered.value)


@dataclass
class Step:
    """What applying one event did: document changed? which calls changed? what to send."""

    changed: bool = False
    outbox: list[tuple[str, Envelope]] = field(default_factory=list)
    dirty_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (stage, outcome) finished here
    note: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds() * 1000, 1)


class Engine:
    def __init__(self, blueprints: Blueprints, partners: dict[str, Partner], prefix: str,
                 flow_settings: FlowSettings, callback_base_url: str) -> None:
        self.blueprints = blueprints
        self.partners = partners
        self.prefix = prefix
        self.fs = flow_settings
        self.callback_base_url = callback_base_url.rstrip("/")

    # --- entry points ------------------------------------------------------------------------
    def new_order(self, env: Envelope) -> tuple[dict[str, Any], Step]:
        """The document for an ``order.received`` envelope, already advanced as far as it can go."""
        now = _now()
        payload = env.payload
        doc: dict[str, Any] = {
            "_id": env.correlation_id, "order_id": env.correlation_id, "partner": env.source,
            "external_order_id": payload.get("external_order_id", ""), "product": env.product or "",
            "scenario": env.scenario or "", "status": OrderStatus.in_flight.value, "current_stage": None,
            "waiting_for": None, "stages": [], "calls": [], "order": payload, "created_at": now, "updated_at": now,
            "completed_at": None, "sla_deadline": None, "version": 0, "data": {}, "phase": None,
            "blocked_reason": None, "outcome": None, "next_check_at": None, "submitted_by": f"partner:{env.source}",
            "received_via": env.protocol, "intake_envelope_id": env.id, "applied": [env.id], "team": None,
            "operator": None,
        }
        step = Step(changed=True)
        bp = self.blueprints.get(env.product, env.scenario)
        if bp is None:  # intake refuses these (flows/admission.py); only a blueprint removed since gets here
            reason = f"no blueprint for product {env.product!r} scenario {env.scenario!r}"
            self._fail(doc, reason, now)
            self._report_unrunnable(doc, reason, now, env, step)
            return doc, step
        doc["blueprint"] = f"{bp.product}/{bp.scenario.value}"
        if bp.sla:
            doc["order_sla_deadline"] = now + timedelta(seconds=bp.sla)
        self._enter(doc, bp, bp.stages[0], now, env, step)
        self._advance(doc, bp, now, env, step)
        return doc, step

    def apply(self, doc: dict[str, Any], env: Envelope) -> Step:
        """Apply one event to an existing order document (mutates ``doc``)."""
        step = Step()
        if env.id in doc.get("applied", []):
            step.note = "event already applied"
            return step
        if env.type == "order.received":
            step.note = "duplicate order"
            return step
        bp = self.blueprints.get(doc["product"], doc["scenario"])
        if bp is None or doc["status"] in (OrderStatus.completed, OrderStatus.failed, OrderStatus.cancelled):
            if env.type == "call.result":  # still record what happened to a straggling call
                self._record_result(doc, env, step)
            step.note = step.note or "order is settled"
            return self._finish(doc, env, step)
        now = _now()
        handler = {"call.result": self._on_result, "callback": self._on_callback,
                   "stage.submit": self._on_submit, "order.tick": self._on_tick}.get(env.type)
        if handler is None:
            step.note = f"unknown event type {env.type!r}"
            return step
        if handler(doc, bp, env, now, step):
            self._advance(doc, bp, now, env, step)
        return self._finish(doc, env, step)

    def _finish(self, doc: dict[str, Any], env: Envelope, step: Step) -> Step:
        if step.changed:
            doc["applied"] = [*doc.get("applied", [])[-(MAX_APPLIED - 1):], env.id]
            doc["updated_at"] = _now()
        return step

    # --- event handlers (return True when the order may move) --------------------------------
    def _on_result(self, doc: dict[str, Any], bp: Blueprint, env: Envelope, now: datetime, step: Step) -> bool:
        return self._record_result(doc, env, step)

    def _record_result(self, doc: dict[str, Any], env: Envelope, step: Step) -> bool:
        p = env.payload
        call = self._call(doc, p.get("call_id"))
        if call is not None and call["outcome"] == CallOutcome.ok and p.get("ok") and not call.get("attempts"):
            # the partner's callback overtook the synchronous answer: keep the answer for the call log
            call["response"], call["attempts"] = p.get("response"), list(p.get("attempts", []))
            self._dirty(call, step)
            return False
        if call is None or call["outcome"] == CallOutcome.ok:
            step.note = "result for an unknown or already settled call"
            return False
        if not p.get("ok") and p.get("round", 1) < call.get("round", 1):
            step.note = "stale failure of an earlier round"
            return False
        finished = datetime.fromisoformat(p["finished_at"]) if p.get("finished_at") else _now()
        call["outcome"] = CallOutcome.ok.value if p.get("ok") else p.get("outcome", CallOutcome.dead_lettered.value)
        call["error"] = None if p.get("ok") else p.get("error")
        call["response"] = p.get("response")
        call["attempts"] = [*call.get("attempts", []), *p.get("attempts", [])]
        call["finished_at"] = finished
        call["duration_ms"] = _ms(call["started_at"], finished)
        call["dead_letter_id"] = p.get("dead_letter_id") or call.get("dead_letter_id")
        if not p.get("ok") and call.get("gate"):
            doc["next_check_at"] = _now() + timedelta(seconds=self.fs.gate_retry_s)
        self._dirty(call, step)
        return True

    def _on_callback(self, doc: dict[str, Any], bp: Blueprint, env: Envelope, now: datetime, step: Step) -> bool:
        p = env.payload
        call = self._call(doc, p.get("callback_ref"))
        ok = str(p.get("status", "ok")).lower() in ("ok", "success", "0", "1", "true")
        if call is None or call["partner"] != env.source:
            stage = bp.stage(doc["current_stage"]) if doc.get("current_stage") else None
            wf = stage.wait_for if stage else None
            if (stage and stage.kind == "wait" and wf and doc["phase"] == "active" and wf.partner == env.source
                    and wf.operation == p.get("operation")):
                self._submit(doc, bp, stage, dict(p.get("result") or {}, ok=ok), f"partner:{env.source}", now, env,
                             step)
                return True
            step.note = "callback matches no waiting call"
            return False
        if call.get("callback") is not None:
            step.note = "duplicate callback"
            return False
        call["callback"] = {"status": "ok" if ok else "failed", "result": p.get("result"), "at": now}
        if ok and call["outcome"] != CallOutcome.ok:
            call["outcome"] = CallOutcome.ok.value  # the callback proves the partner got the request
            call["finished_at"] = call.get("finished_at") or now
            call["duration_ms"] = call.get("duration_ms") or _ms(call["started_at"], now)
        elif not ok:
            call["outcome"] = CallOutcome.failed.value
            call["error"] = str((p.get("result") or {}).get("msg") or "partner reported failure in its callback")
        self._dirty(call, step)
        return True

    def _on_submit(self, doc: dict[str, Any], bp: Blueprint, env: Envelope, now: datetime, step: Step) -> bool:
        p = env.payload
        visit = p.get("visit")
        if (doc.get("current_stage") != p.get("stage") or doc.get("phase") != "active"
                or (visit is not None and visit != self._stage_rec(doc).get("visit"))):
            step.note = f"stage {p.get('stage')!r} is not open for submission"
            return False
        stage = bp.stage(doc["current_stage"])
        if stage.kind not in ("manual", "wait"):
            step.note = f"stage {stage.name!r} is {stage.kind}, not submitted by hand"
            return False
        data = dict(p.get("data") or {})
        missing = [f for f in stage.required_fields if data.get(f) in (None, "")]
        if missing:
            step.note = f"missing required fields {missing}"
            return False
        self._submit(doc, bp, stage, data, str(p.get("submitted_by") or "operator"), now, env, step)
        return True

    def _on_tick(self, doc: dict[str, Any], bp: Blueprint, env: Envelope, now: datetime, step: Step) -> bool:
        """Recovery: re-send unsettled calls; open a new round for failed gated reports."""
        stale = now - timedelta(seconds=self.fs.stale_after_s)
        force = bool(env.payload.get("resend_all"))
        for call in doc["calls"]:
            if call["outcome"] == CallOutcome.pending and (force or call.get("sent_at", now) <= stale):
                call["sent_at"] = now
                out = self._envelope(doc, call, env)
                call["envelope_id"] = out.id
                step.outbox.append((topics.outbound(self.prefix, call["partner"]), out))
                step.changed = True
            elif call.get("gate") and call["outcome"] in SETTLED_BAD and self._current_visit(doc, call):
                self._reissue(doc, call, env, now, step)
        doc["next_check_at"] = now + timedelta(seconds=self.fs.stale_after_s)
        step.changed = True
        return True

    # --- stage machinery -------------------------------------------------------------------
    def _enter(self, doc: dict[str, Any], bp: Blueprint, stage: Stage, now: datetime, env: Envelope,
               step: Step) -> None:
        visit = 1 + sum(1 for s in doc["stages"] if s["stage"] == stage.name)
        rec = StageRecord(stage=stage.name, kind=stage.kind, entered_at=now,
                          sla_deadline=now + timedelta(seconds=stage.sla) if stage.sla else None).model_dump()
        rec["visit"] = visit
        rec["title"] = stage.title
        doc["stages"].append(rec)
        doc["current_stage"], doc["phase"] = stage.name, "entering"
        doc["sla_deadline"] = rec["sla_deadline"] or doc.get("order_sla_deadline")
        step.changed = True
        if stage.skip_when is not None and stage.skip_when.matches(self._context(doc)):
            rec["outcome"] = "skipped"
            doc["phase"] = "leaving"
            return
        self._hooks(doc, stage, "enter", now, env, step)

    def _advance(self, doc: dict[str, Any], bp: Blueprint, now: datetime, env: Envelope, step: Step) -> None:
        """Move the order as far as it can go without waiting for anything."""
        step.changed = True
        for _ in range(4 * len(bp.stages) + 8):  # bounded: a loop of transitions cannot spin forever
            stage = bp.stage(doc["current_stage"])
            phase = doc["phase"]
            if phase in ("entering", "leaving"):
                hook = "enter" if phase == "entering" else "submit"
                blocked = self._gate(doc, stage, hook)
                if blocked is not None:
                    self._wait(doc, blocked)
                    return
                if phase == "entering":
                    doc["phase"] = "active"
                    self._start_work(doc, bp, stage, now, env, step)
                    continue
                nxt = self._leave(doc, bp, stage, now)
                step.transitions.append((stage.name, self._stage_rec(doc)["outcome"]))
                if nxt == END_COMPLETE:
                    self._complete(doc, now)
                    return
                if nxt == END_FAIL:
                    self._fail(doc, f"blueprint ended in fail after stage {stage.name!r}", now)
                    return
                self._enter(doc, bp, bp.stage(nxt), now, env, step)
                continue
            # active
            if stage.kind == "call":
                state = self._call_stage(doc, bp, stage, now, env, step)
                if state == "done":
                    continue
                return
            if stage.kind == "auto":
                spec = stage.auto
                data = actions.run(spec.action if spec else "accept", self._context(doc), spec.params if spec else {})
                self._submit(doc, bp, stage, data, "system", now, env, step)
                continue
            self._wait(doc, f"manual submission of {stage.name}" if stage.kind == "manual"
                       else f"callback {stage.wait_for.operation if stage.wait_for else ''} from "
                            f"{stage.wait_for.partner if stage.wait_for else ''}", blocked=False)
            return
        self._fail(doc, "transition loop: the blueprint never reaches an end", now)

    def _start_work(self, doc: dict[str, Any], bp: Blueprint, stage: Stage, now: datetime, env: Envelope,
                    step: Step) -> None:
        doc["blocked_reason"] = None
        self._stage_rec(doc)["blocked_reason"] = None

    def _call_stage(self, doc: dict[str, Any], bp: Blueprint, stage: Stage, now: datetime, env: Envelope,
                    step: Step) -> str:
        """Sequential call specs; each fans out to its targets. Returns done / waiting / blocked."""
        rec = self._stage_rec(doc)
        results: dict[str, Any] = {}
        for idx, spec in enumerate(stage.calls):
            calls = [c for c in self._visit_calls(doc, stage.name, rec["visit"]) if c.get("hook") == f"work{idx}"]
            if not calls:
                for target in spec.to:
                    self._issue(doc, stage.name, rec["visit"], f"work{idx}", target, spec.operation,
                                self._call_request(doc, spec, target), now, env, step,
                                await_callback=spec.await_callback, on_failure=spec.on_failure)
                self._wait(doc, f"{spec.operation} at {', '.join(spec.to)}", blocked=False, in_flight=True)
                return "waiting"
            bad = [c for c in calls if c["outcome"] in SETTLED_BAD]
            if bad:
                c = bad[0]
                if spec.on_failure == "fail":
                    self._fail(doc, f"{c['operation']} at {c['partner']} failed: {c.get('error')}", now)
                else:
                    self._wait(doc, f"{c['operation']} at {c['partner']} failed: {c.get('error')} "
                                    f"(dead letter {c.get('dead_letter_id') or '-'}; replay to continue)")
                return "blocked"
            if any(c["outcome"] != CallOutcome.ok or (c.get("await_callback") and not c.get("callback"))
                   for c in calls):
                waiting = [c for c in calls if c["outcome"] == CallOutcome.ok]
                self._wait(doc, f"callback {spec.operation} from {', '.join(c['partner'] for c in waiting)}"
                           if waiting else f"{spec.operation} at {', '.join(spec.to)}", blocked=False,
                           in_flight=not waiting)
                return "waiting"
            for c in calls:
                body = (c.get("callback") or {}).get("result") if c.get("await_callback") else c.get("response")
                results[spec.operation if len(calls) == 1 else f"{spec.operation}_{c['partner']}"] = body
        self._submit(doc, bp, stage, results, "system", now, env, step)
        return "done"

    def _submit(self, doc: dict[str, Any], bp: Blueprint, stage: Stage, data: dict[str, Any], by: str,
                now: datetime, env: Envelope, step: Step) -> None:
        rec = self._stage_rec(doc)
        rec["submitted_by"], rec["submitted_at"], rec["data"] = by, now, data
        doc["data"][stage.name] = data
        if data.get("team"):
            doc["team"], doc["operator"] = data["team"], data.get("operator")
        doc["phase"] = "leaving"
        self._hooks(doc, stage, "submit", now, env, step)

    def _leave(self, doc: dict[str, Any], bp: Blueprint, stage: Stage, now: datetime) -> str:
        rec = self._stage_rec(doc)
        rec["finished_at"] = now
        rec["duration_ms"] = _ms(rec["entered_at"], now)
        rec["outcome"] = rec.get("outcome") or "submitted"
        rec["blocked_reason"] = None
        ctx = self._context(doc)
        for t in stage.transitions:
            if t.when is None or t.when.matches(ctx):
                return t.to
        return bp.next_after(stage.name)

    def _hooks(self, doc: dict[str, Any], stage: Stage, hook: str, now: datetime, env: Envelope, step: Step) -> None:
        hooks = stage.on_enter if hook == "enter" else stage.on_submit
        visit = self._stage_rec(doc)["visit"]
        for report in hooks.reports:
            for target in report.to:
                self._issue(doc, stage.name, visit, hook, target, report.operation,
                            self._report_request(doc, stage, report), now, env, step, gate=report.gate,
                            code=f"{report.code}{report.state}")
        for spec in hooks.calls:
            for target in spec.to:
                self._issue(doc, stage.name, visit, f"{hook}-side", target, spec.operation,
                            self._call_request(doc, spec, target), now, env, step)

    def _gate(self, doc: dict[str, Any], stage: Stage, hook: str) -> str | None:
        """None when every gated report of this hook succeeded; else why the order is held."""
        visit = self._stage_rec(doc)["visit"]
        gated = [c for c in self._visit_calls(doc, stage.name, visit) if c.get("hook") == hook and c.get("gate")]
        failed = [c for c in gated if c["outcome"] in SETTLED_BAD]
        if failed:
            c = failed[0]
            return (f"progress report {c.get('code')} to {c['partner']} failed: {c.get('error')}; "
                    f"the order stays at {stage.name} and the report is retried")
        pending = [c for c in gated if c["outcome"] != CallOutcome.ok]
        if pending:
            return f"progress report {pending[0].get('code')} to {', '.join(c['partner'] for c in pending)} pending"
        return None

    def _report_unrunnable(self, doc: dict[str, Any], reason: str, now: datetime, env: Envelope, step: Step) -> None:
        """Tell the origin partner its order failed — through its ``close_report`` operation when it
        declares one (same request shape as a blueprint's close-report, ``resultCode`` "0") — so an
        accepted order never fails silently. The document already says why (``outcome``)."""
        partner = self.partners.get(doc["partner"])
        if partner is None or partner.outbound is None or "close_report" not in partner.outbound.config.get(
                "operations", {}):
            return
        request = {"orderId": doc["external_order_id"], "hubOrderId": doc["order_id"], "resultCode": "0",
                   "resultDesc": reason, "finishTime": now.isoformat(timespec="seconds")}
        self._issue(doc, "intake", 1, "failed", doc["partner"], "close_report", request, now, env, step)

    # --- calls -------------------------------------------------------------------------------
    def _issue(self, doc: dict[str, Any], stage: str, visit: int, hook: str, target: str, operation: str,
               request: dict[str, Any], now: datetime, env: Envelope, step: Step, *, gate: bool = False,
               code: str | None = None, await_callback: bool = False, on_failure: str = "block") -> None:
        key = f"call:{doc['order_id']}:{stage}#{visit}:{hook}:{operation}{':' + code if code else ''}:{target}"
        call_id = "c-" + hashlib.sha256(key.encode()).hexdigest()[:20]
        if await_callback:
            request = {**request, "callback_ref": call_id, "hub_order_id": doc["order_id"],
                       "callback_url": f"{self.callback_base_url}/api/v1/partners/{target}/callbacks"}
        topic = topics.outbound(self.prefix, target)
        rec = CallRecord(call_id=call_id, order_id=doc["order_id"], partner=target, operation=operation, stage=stage,
                         idempotency_key=key, request=request, started_at=now).model_dump()
        rec.update(hook=hook, visit=visit, gate=gate, code=code, round=1, await_callback=await_callback,
                   on_failure=on_failure, callback=None, topic=topic, sent_at=now)
        out = self._envelope(doc, rec, env)
        rec["envelope_id"] = out.id
        doc["calls"].append(rec)
        step.outbox.append((topic, out))
        step.changed = True

    def _envelope(self, doc: dict[str, Any], call: dict[str, Any], env: Envelope) -> Envelope:
        """The outbound envelope of a call, rebuilt from the call record (same idempotency key, so a
        re-sent or re-issued call is deduplicated by delivery); the document stays small."""
        partner = self.partners[call["partner"]]
        rnd = call.get("round", 1)
        return env.caused(type="call.request", protocol=partner.outbound.protocol if partner.outbound else "rest",
                          idempotency_key=call["idempotency_key"], product=doc["product"], scenario=doc["scenario"],
                          payload={"call_id": call["call_id"], "operation": call["operation"], "stage": call["stage"],
                                   "round": rnd, "partner": call["partner"], "request": call["request"]},
                          headers={"partner": call["partner"]}, attempt=rnd - 1)

    def _reissue(self, doc: dict[str, Any], call: dict[str, Any], env: Envelope, now: datetime, step: Step) -> None:
        """A failed gated report gets a new round: same idempotency key, new envelope."""
        if doc.get("next_check_at") and doc["next_check_at"] > now:
            return
        call.update(round=call.get("round", 1) + 1, outcome=CallOutcome.pending.value, sent_at=now)
        out = self._envelope(doc, call, env)
        call["envelope_id"] = out.id
        step.outbox.append((topics.outbound(self.prefix, call["partner"]), out))
        step.changed = True

    def _report_request(self, doc: dict[str, Any], stage: Stage, report: Report) -> dict[str, Any]:
        """Canonical progress report; each partner's ``template`` maps it onto its own fields."""
        rec = self._stage_rec(doc)
        operator = rec.get("submitted_by") if report.state == "finished" else None
        if not operator or operator == "system" or operator.startswith("partner:"):
            operator = doc.get("operator") or "system"
        return {"order_id": doc["order_id"], "external_order_id": doc["external_order_id"], "code": report.code,
                "state": report.state, "progress_code": f"{report.code}{report.state}", "stage": stage.name,
                "stage_title": stage.title or stage.name, "team": doc.get("team") or "system",
                "operator": operator, "reported_at": _now().isoformat(timespec="seconds"),
                "desc_outline": 1 if report.state == "processing" else 2}

    def _call_request(self, doc: dict[str, Any], spec: CallSpec, target: str) -> dict[str, Any]:
        rendered = render(spec.request, {**self._context(doc), "target": target})
        return rendered if isinstance(rendered, dict) else {}

    # --- helpers -----------------------------------------------------------------------------
    def _context(self, doc: dict[str, Any]) -> dict[str, Any]:
        calls: dict[str, dict[str, Any]] = {}
        for c in doc["calls"]:
            calls.setdefault(c["stage"], {})[c["operation"]] = c["outcome"]
        return {"order": doc["order"], "order_id": doc["order_id"], "external_order_id": doc["external_order_id"],
                "partner": doc["partner"], "product": doc["product"], "scenario": doc["scenario"],
                "data": doc["data"], "calls": calls, "team": doc.get("team"), "operator": doc.get("operator"),
                "stage": doc.get("current_stage"), "now": _now().isoformat(timespec="seconds")}

    @staticmethod
    def _call(doc: dict[str, Any], call_id: str | None) -> dict[str, Any] | None:
        return next((c for c in doc["calls"] if c["call_id"] == call_id), None) if call_id else None

    @staticmethod
    def _visit_calls(doc: dict[str, Any], stage: str, visit: int) -> list[dict[str, Any]]:
        return [c for c in doc["calls"] if c["stage"] == stage and c.get("visit") == visit]

    def _current_visit(self, doc: dict[str, Any], call: dict[str, Any]) -> bool:
        rec = self._stage_rec(doc)
        return bool(rec) and call["stage"] == rec["stage"] and call.get("visit") == rec.get("visit")

    @staticmethod
    def _stage_rec(doc: dict[str, Any]) -> dict[str, Any]:
        return doc["stages"][-1] if doc["stages"] else {}

    @staticmethod
    def _dirty(call: dict[str, Any], step: Step) -> None:
        """A call settled (or its callback arrived): copy it to the flat ``calls`` collection."""
        step.dirty_calls[call["call_id"]] = call
        step.changed = True

    def _wait(self, doc: dict[str, Any], reason: str, *, blocked: bool = True, in_flight: bool = False) -> None:
        doc["status"] = OrderStatus.in_flight.value if in_flight else OrderStatus.waiting.value
        doc["waiting_for"] = None if blocked else reason
        doc["blocked_reason"] = reason if blocked else None
        rec = self._stage_rec(doc)
        rec["blocked_reason"] = reason if blocked else None
        pending = any(c["outcome"] == CallOutcome.pending for c in doc["calls"])
        gate_failed = blocked and "retried" in reason
        if gate_failed:
            doc["next_check_at"] = doc.get("next_check_at") or _now() + timedelta(seconds=self.fs.gate_retry_s)
        elif pending:
            doc["next_check_at"] = _now() + timedelta(seconds=self.fs.stale_after_s)
        else:
            doc["next_check_at"] = None

    def _complete(self, doc: dict[str, Any], now: datetime) -> None:
        doc.update(status=OrderStatus.completed.value, current_stage=None, phase=None, waiting_for=None,
                   blocked_reason=None, completed_at=now, outcome="completed", next_check_at=None, sla_deadline=None,
                   duration_ms=_ms(doc["created_at"], now))

    def _fail(self, doc: dict[str, Any], reason: str, now: datetime) -> None:
        doc.update(status=OrderStatus.failed.value, outcome=reason, waiting_for=None, blocked_reason=reason,
                   completed_at=now, next_check_at=None)
        log.warning("order %s failed: %s", doc["order_id"], reason)
