"""The v2 engine as a pure function: ``step(blueprint, state, event, now) -> (state, commands)``.

Why pure: an engine that reads no clock, does no I/O and draws no random numbers can be replayed —
recorded events give the same commands every time (tests/fixtures/flows/), so a blueprint edit that
would break running orders fails a test, and the runtime that wires it in (MongoDB outbox, durable
timers, relay: docs/flows-v2.md) can retry a write without fearing a different outcome. Ids are derived
from the order id and a counter in the state; ``now`` is handed in with every event.

The state is one JSON document: ``status``, ``data`` (the order document), ``tokens`` (several per order
for parallel branches; a token's ``due`` keeps when each of its timers is due), ``forks`` (open parallel
splits), ``done`` (completed nodes with a compensation, in order), ``held_done`` (completed nodes whose
``on_suspend`` / ``on_resume`` notice is sent ``during: completed``), ``sla`` (the order's G7 clock,
flows/graph/sla.py), ``seq``, ``trail``, and while an operator holds the order ``suspended`` {at,
reason, by, timers, events}. The input state is never mutated.

Generic behaviour lives here — gate reports on entry/exit (G2/G6), node timeouts (take a path and/or
escalate), cancel (cancel pending work, compensations in reverse, reply, finish), suspend / resume
(timers paused with their remaining time, events kept in ``suspended.events`` and applied on resume).
Each kind's own behaviour is in flows/graph/nodes.py, found by name in ``NODE_KINDS``.
"""

from __future__ import annotations

from typing import Any

from flows.graph import commands as cmd
from flows.graph import sla
from flows.graph.commands import Command, Event
from flows.graph.expr import compile_expr, compile_mapping, copy_json, evaluate_mapping
from flows.graph.model import NODE_KINDS, Blueprint, NodeSpec, ReportSpec
from hub.errors import ConfigError, ValidationFailed

__all__ = ["MAX_TRANSITIONS", "Run", "step"]

#: transitions one event may cause; more means a loop with no waiting node (a blueprint error).
MAX_TRANSITIONS = 100
#: node entries kept in ``state["trail"]`` (the timeline operators see); older ones are dropped.
TRAIL_LIMIT = 300


def step(blueprint: Blueprint, state: dict[str, Any] | None, event: Event, now: float,
         ) -> tuple[dict[str, Any], list[Command]]:
    """Apply one event; return the new state and the commands to carry out (nothing is done here)."""
    event = copy_json(event)  # what the event carries into the state is the state's own
    kind = event.get("type")
    if kind == "order_received":
        if state:  # a redelivered intake: the order exists, nothing to do
            return state, []
        run = Run(blueprint, _new_state(blueprint, event, now), now)
        run.start()
        return run.state, run.out
    if not state:
        raise ValidationFailed(f"{kind} event for an order that was never received")
    if state["status"] != "running":  # late callbacks, timers and cancels after the end change nothing
        return state, []
    run = Run(blueprint, _working_copy(state), now)
    run.dispatch(event)
    if not run.changed:
        return state, []
    return run.state, run.out


#: the parts of ``data`` the engine changes in place (everything else is only ever replaced whole)
_DATA_LOGS = ("_operators", "_calls")


def _working_copy(state: dict[str, Any]) -> dict[str, Any]:
    """Copy what the engine writes: the tokens, forks and logs deeply, the order document shallowly.

    Why not a deep copy of everything: ``data`` is the order document, often hundreds of intake fields
    that no node changes; kinds only ever *assign* top-level fields of it (``data[k] = …``), never
    mutate a nested value, except the two logs in ``_DATA_LOGS``. That keeps the input state intact
    (tests/unit/flows_graph_harness.py checks it after every step) at a cost independent of the
    order's size."""
    work = dict(state)
    work["tokens"] = {tid: _copy_token(t) for tid, t in state["tokens"].items()}
    work["forks"] = {fid: dict(f) for fid, f in state["forks"].items()}
    work["done"] = list(state["done"])  # entries are appended, never changed
    work["trail"] = [dict(e) for e in state.get("trail", ())]  # entries get closed (left_at) in place
    if state.get("suspended"):  # its lists are appended to, their entries never changed
        paused = state["suspended"]
        work["suspended"] = {**paused, "timers": list(paused["timers"]), "events": list(paused["events"])}
    data = work["data"] = dict(state["data"])
    for key in _DATA_LOGS:  # appended to / keyed into, never their entries changed: one level
        if isinstance(data.get(key), list):
            data[key] = list(data[key])
        elif isinstance(data.get(key), dict):
            data[key] = dict(data[key])
    return work


def _copy_token(token: dict[str, Any]) -> dict[str, Any]:
    """A token's own shape, copied level by level (the generic copy was a fifth of a step)."""
    return {**token, "timers": dict(token["timers"]), "due": dict(token.get("due", ())),
            "gates": {k: dict(g) for k, g in token["gates"].items()}, "wait": copy_json(token["wait"]),
            "forks": list(token["forks"])}


def _tells_when_completed(spec: NodeSpec) -> bool:
    return any(n is not None and "completed" in n.during for n in (spec.on_suspend, spec.on_resume))


def _new_state(blueprint: Blueprint, event: Event, now: float) -> dict[str, Any]:
    order_id = str(event["order_id"])
    return {"order_id": order_id, "blueprint": blueprint.name, "digest": blueprint.digest(),
            "status": "running", "started_at": now, "data": dict(event.get("data") or {}),
            "tokens": {}, "forks": {}, "done": [], "seq": 0}


class Run:
    """One event being applied: the working copy of the state and the commands produced so far."""

    def __init__(self, blueprint: Blueprint, state: dict[str, Any], now: float) -> None:
        self.bp = blueprint
        self.state = state
        self.now = now
        self.out: list[Command] = []
        self.changed = False
        self._budget = MAX_TRANSITIONS

    # ---- helpers the kinds use -------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        return self.state["data"]

    def new_id(self, what: str) -> str:
        """A deterministic id: the same state and event always give the same ids (replay)."""
        self.state["seq"] += 1
        return f"{self.state['order_id']}:{self.state['seq']}:{what}"

    def emit(self, command: Command) -> None:
        self.changed = True
        self.out.append(command)

    def scope(self, **extra: Any) -> dict[str, Any]:
        return {"data": self.data, "now": self.now, "order_id": self.state["order_id"], **extra}

    def spec(self, token: dict[str, Any]) -> NodeSpec:
        return self.bp.nodes[token["node"]]

    def choose(self, spec: NodeSpec, scope: dict[str, Any]) -> str | None:
        """The first transition whose condition holds, else ``next`` (None: no way on)."""
        for t in spec.transitions:
            if t.when is None or compile_expr(t.when).test(scope):
                return t.to
        return spec.next

    def start_timer(self, token: dict[str, Any], at: float, purpose: str) -> str:
        timer_id = self.new_id(purpose)
        token["timers"][timer_id] = purpose
        # when each live timer is due, so a suspend can pause it with its remaining time (kinds delete
        # fired timers from ``timers`` themselves; their ``due`` entries are dropped here)
        token["due"] = {t: d for t, d in token.get("due", {}).items() if t in token["timers"]}
        token["due"][timer_id] = at
        self.emit(cmd.timer(timer_id, at, purpose=purpose, node=token["node"]))
        return timer_id

    def cancel_timers(self, token: dict[str, Any], purpose: str | None = None) -> None:
        for timer_id, p in list(token["timers"].items()):
            if purpose is None or p == purpose:
                del token["timers"][timer_id]
                token.get("due", {}).pop(timer_id, None)
                self.emit({"type": "cancel_timer", "timer_id": timer_id})

    def send_report(self, token: dict[str, Any], r: ReportSpec, on: str, **extra: Any) -> str:
        report_id = self.new_id("report")
        payload = evaluate_mapping(compile_mapping(r.payload), self.scope(**extra))
        self.emit(cmd.report(report_id, r.partner, r.operation, payload, node=token["node"], on=on, gate=r.gate))
        if r.gate:
            token["gates"][report_id] = {"index": self.spec(token).reports.index(r), "ok": None}
        return report_id

    # ---- token lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.changed = True
        sla.start(self)  # G7: the order's SLA clock starts on receipt
        token = self.spawn(self.bp.start, forks=[])
        self.enter(token, self.bp.start)

    def spawn(self, node: str, forks: list[str]) -> dict[str, Any]:
        token_id = self.new_id("token")
        token = {"id": token_id, "node": node, "phase": "new", "since": self.now, "timers": {}, "gates": {},
                 "wait": {}, "forks": list(forks)}
        self.state["tokens"][token_id] = token
        return token

    def enter(self, token: dict[str, Any], node: str, **extra: Any) -> None:
        self._budget -= 1
        if self._budget < 0:
            raise ConfigError(f"blueprint {self.bp.name}: more than {MAX_TRANSITIONS} transitions in one "
                              f"event (a loop without a waiting node through {node!r})")
        self.changed = True
        self._exit_trail(token, "left")
        token.update(node=node, phase="enter", since=self.now, wait={}, gates={})
        spec = self.bp.nodes[node]
        trail = self.state.setdefault("trail", [])
        trail.append({"node": node, "token": token["id"], "at": self.now})
        if len(trail) > TRAIL_LIMIT:
            del trail[: len(trail) - TRAIL_LIMIT]
        for r in spec.reports:
            if r.at == "enter":
                self.send_report(token, r, "enter", **extra)
        if not token["gates"]:
            self.activate(token)

    def activate(self, token: dict[str, Any]) -> None:
        token["phase"] = "active"
        token["gates"] = {}
        spec = self.spec(token)
        if spec.timeout is not None and spec.waits:
            self.start_timer(token, self.now + spec.timeout.after_s, "timeout")
        NODE_KINDS[spec.kind].enter(self, token, spec)

    def leave(self, token: dict[str, Any], to: str | None, **extra: Any) -> None:
        """Complete the token's node and move on to ``to`` (exit reports first, gated ones awaited)."""
        spec = self.spec(token)
        self.cancel_timers(token)
        if spec.compensate is not None:
            self.state["done"].append({"node": token["node"], "at": self.now})
        if _tells_when_completed(spec) and token["node"] not in self.state.get("held_done", ()):
            # a new list: the input state keeps its own (on_suspend / on_resume `during: completed`)
            self.state["held_done"] = [*self.state.get("held_done", ()), token["node"]]
        # the scope extras (a submission's fields and user, a call's result) are kept for a G2 re-send
        token.update(phase="exit", gates={}, wait={"to": to, "extra": extra})
        for r in spec.reports:
            if r.at == "exit":
                self.send_report(token, r, "exit", **extra)
        if not token["gates"]:
            self._go(token, to)

    def redirect(self, token: dict[str, Any], to: str) -> None:
        """Move on *without* completing the node (a failure path): no exit reports, nothing to
        compensate, and the node's timers cancelled so none of them fires in the next node."""
        self.cancel_timers(token)
        self.enter(token, to)

    def _go(self, token: dict[str, Any], to: str | None) -> None:
        if to is None:
            self.fail(f"node {token['node']!r} has no way on")
            return
        self.enter(token, to)

    def _exit_trail(self, token: dict[str, Any], outcome: str) -> None:
        """Close the token's open entry in ``trail`` (the order's timeline: node, entered, left, how)."""
        for entry in reversed(self.state.get("trail", [])):
            if entry["token"] == token["id"]:
                if "left_at" not in entry:
                    entry.update(left_at=self.now, outcome=outcome)
                return

    def kill(self, token: dict[str, Any], outcome: str = "stopped") -> None:
        """Remove a token (a lost race at a join, the end of the order); cancel what it waits for."""
        self._exit_trail(token, outcome)
        self.cancel_timers(token)
        NODE_KINDS[self.spec(token).kind].cancel(self, token, self.spec(token))
        self.state["tokens"].pop(token["id"], None)
        self.changed = True

    def finish(self, status: cmd.Status, reason: str = "", reply: dict[str, Any] | None = None) -> None:
        for other in list(self.state["tokens"].values()):
            self.kill(other, "ended")
        self.state["status"] = status
        self.state["finished_at"] = self.now
        sla.stop(self)
        if reply is not None:
            self.emit(cmd.reply("origin", reply, status=status))
        self.emit(cmd.finish(status, reason))

    def fail(self, reason: str) -> None:
        self.finish("failed", reason, reply={"reason": reason})

    # ---- events ------------------------------------------------------------------------------
    def dispatch(self, event: Event) -> None:
        kind = event.get("type")
        if kind not in cmd.EVENT_TYPES:
            raise ValidationFailed(f"unknown event type {kind!r}")
        if kind == "cancel":  # D.1.8: at once, suspended or not
            self.cancel(str(event.get("reason", "")), str(event.get("by") or ""))
            return
        if kind == "suspend":
            self.suspend(event)
            return
        if kind == "resume":
            self.resume(event)
            return
        paused = self.state.get("suspended")
        if paused:
            self._keep(paused, event)
            return
        if kind == "timer_fired" and sla.fire(self, event):
            return
        for token in list(self.state["tokens"].values()):
            if token["id"] not in self.state["tokens"] or self.state["status"] != "running":
                continue
            if self._offer(token, event):
                return

    def _offer(self, token: dict[str, Any], event: Event) -> bool:
        """Hand ``event`` to ``token`` if it is the one waiting for it; True when consumed."""
        kind = event["type"]
        if kind == "report_result":
            gate = token["gates"].get(event.get("report_id"))
            if gate is None or gate["ok"]:
                return False
            self.changed = True
            gate["ok"] = bool(event.get("ok"))
            gate["error"] = event.get("error")
            if all(g["ok"] for g in token["gates"].values()):
                if token["phase"] == "enter":
                    self.activate(token)
                elif token["phase"] == "exit":
                    self._go(token, token["wait"].get("to"))
            return True
        if kind == "retry" and token["gates"]:
            if token["node"] != event.get("node"):
                return False
            failed = [(rid, g) for rid, g in token["gates"].items() if g["ok"] is False]
            for rid, g in failed:  # G2: the user clicks again; the report is sent again, the order waits
                del token["gates"][rid]
                extra = token["wait"].get("extra", {}) if token["phase"] == "exit" else {}
                self.send_report(token, self.spec(token).reports[g["index"]], token["phase"], **extra)
            return bool(failed)  # a retry while a gate report is still out changes nothing
        if token["phase"] != "active":
            return False
        spec = self.spec(token)
        if kind == "timer_fired" and token["timers"].get(event.get("timer_id")) == "timeout":
            del token["timers"][event["timer_id"]]
            self.changed = True
            self.timeout(token, spec)
            return True
        return bool(NODE_KINDS[spec.kind].on_event(self, token, spec, event))

    def timeout(self, token: dict[str, Any], spec: NodeSpec) -> None:
        assert spec.timeout is not None
        if spec.timeout.escalate is not None:
            self.send_report(token, spec.timeout.escalate, "escalate")
        if spec.timeout.to is not None:
            NODE_KINDS[spec.kind].cancel(self, token, spec)
            self.leave(token, spec.timeout.to)
        elif NODE_KINDS[spec.kind].on_timeout is not None:
            NODE_KINDS[spec.kind].on_timeout(self, token, spec)
        elif spec.timeout.escalate is None:
            NODE_KINDS[spec.kind].cancel(self, token, spec)
            self.fail(f"{token['node']}: timed out")

    def cancel(self, reason: str, by: str = "") -> None:
        """Withdraw / terminate (issue 10 §5, P26.4): stop everything now, undo what partners did.

        Order of the commands: each waiting token's timers cancelled and its pending work cancelled
        (a call's ``cancel_operation``, a sub-flow), then the compensations of completed nodes, latest
        first, then the reply to the origin and ``finish cancelled``. A suspended order is cancelled
        the same way; its paused timers were cancelled at the suspend and its kept events are dropped
        (the order is over: a late result changes nothing, as after any end)."""
        self.changed = True
        self.state.pop("suspended", None)
        if by:
            self.state["cancelled_by"] = by
        for token in list(self.state["tokens"].values()):
            self.kill(token)
        for done in reversed(self.state["done"]):
            comp = self.bp.nodes[done["node"]].compensate
            assert comp is not None
            payload = evaluate_mapping(compile_mapping(comp.payload), self.scope())
            self.emit(cmd.call(self.new_id("compensate"), comp.partner, comp.operation, payload,
                               purpose="compensate", node=done["node"]))
        self.finish("cancelled", reason, reply={"reason": reason, **({"by": by} if by else {})})

    # ---- suspend / resume (D.1.8) ----------------------------------------------------------------
    def suspend(self, event: Event) -> None:
        """Freeze the order now: every timer is cancelled and remembered with its remaining time
        (an SLA clock must not run out while an operator holds the order); events arriving meanwhile
        are kept (``_keep``), so nothing is sent to a partner until ``resume``. A pending partner
        call is *not* cancelled — its answer is kept like any other event. A second suspend is a no-op."""
        if self.state.get("suspended"):
            return
        self.changed = True
        paused = []
        for token in self.state["tokens"].values():
            due = token.get("due", {})
            for timer_id, purpose in token["timers"].items():
                paused.append({"token": token["id"], "purpose": purpose,
                               "remaining": max(0.0, float(due.get(timer_id, self.now)) - self.now)})
                self.emit({"type": "cancel_timer", "timer_id": timer_id})
            token["timers"], token["due"] = {}, {}
        self.state["suspended"] = {"at": self.now, "reason": str(event.get("reason", "")),
                                   "by": str(event.get("by") or ""), "timers": paused, "events": []}
        sla.pause(self)
        self._tell_partners("on_suspend", {"reason": self.state["suspended"]["reason"],
                                           "by": self.state["suspended"]["by"], "at": self.now})

    def _tell_partners(self, which: str, hold: dict[str, Any]) -> None:
        """The ``on_suspend`` / ``on_resume`` notices of the nodes that hold work for the order
        (issue 13 §5): an active token's node (``during: active``) and the nodes completed earlier
        (``during: completed``), each once, in token then completion order. Sent now, as reports:
        the hold stops the order's own work, not telling the partner about it. Nothing moves while
        the order is held, so the resume finds the same nodes the suspend did."""
        nodes: list[str] = []
        for token in self.state["tokens"].values():
            notice = getattr(self.spec(token), which)
            if notice is not None and "active" in notice.during and token["node"] not in nodes:
                nodes.append(token["node"])
        for node in self.state.get("held_done", ()):
            notice = getattr(self.bp.nodes[node], which)
            if notice is not None and "completed" in notice.during and node not in nodes:
                nodes.append(node)
        for node in nodes:
            notice = getattr(self.bp.nodes[node], which)
            payload = evaluate_mapping(compile_mapping(notice.payload), self.scope(hold=hold))
            self.emit(cmd.report(self.new_id("report"), notice.partner, notice.operation, payload, node=node,
                                 on=which.removeprefix("on_"), gate=False))

    def _keep(self, paused: dict[str, Any], event: Event) -> None:
        """An event for a suspended order: kept in arrival order, applied on resume. A paused timer
        that fired anyway (it was due as the suspend was applied) is dropped: resume restarts it."""
        if event.get("type") == "timer_fired":  # every timer was cancelled at the suspend
            return
        if event.get("type") == "report_result" and not any(
                event.get("report_id") in t["gates"] for t in self.state["tokens"].values()):
            return  # the answer of an ungated report (the suspend notice itself): nobody waits for it
        self.changed = True
        paused["events"].append({"at": self.now, "event": event})

    def resume(self, event: Event) -> None:
        """Restart the paused timers with their remaining time (new ids: a stale firing of an old
        one is ignored), then apply the kept events in arrival order, as if they arrived now."""
        paused = self.state.pop("suspended", None)
        if not paused:
            return
        self.changed = True
        self.state["suspensions"] = [*self.state.get("suspensions", ()),  # a new list: the input state keeps its own
                                     {"at": paused["at"], "until": self.now, "reason": paused["reason"],
                                      "by": paused["by"]}]
        self._tell_partners("on_resume", {"reason": str(event.get("reason", "")), "by": str(event.get("by") or ""),
                                          "at": self.now})
        sla.restart(self, paused["at"])
        for timer in paused["timers"]:
            token = self.state["tokens"].get(timer["token"])
            if token is not None:
                self.start_timer(token, self.now + timer["remaining"], timer["purpose"])
        for kept in paused["events"]:
            if self.state["status"] != "running":
                break  # a kept event ended the order: the rest are late
            self._budget = MAX_TRANSITIONS
            self.dispatch(kept["event"])
