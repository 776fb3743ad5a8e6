"""The node kinds of v2 blueprints, one class each, registered by name in ``NODE_KINDS``.

Why a registry: the v1 engine grows an if-chain with every stage kind; here a kind is a spec model (what
a blueprint may say) plus behaviour (what a token does there), and adding one is one ``@register``. The
kinds only ever talk to the engine through ``Run`` (flows/graph/machine.py): they read the scope, derive
ids, emit commands and move tokens — no clock, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from flows.graph import commands as cmd
from flows.graph.expr import compile_expr, compile_mapping, evaluate_mapping
from flows.graph.model import NODE_KINDS, CallSpec, NodeSpec
from flows.graph.rules import FieldRule, check_submission

__all__ = ["Kind", "register"]

Token = dict[str, Any]


class Kind:
    """Behaviour of one kind; the defaults are those of a node that does nothing but wait."""

    name: ClassVar[str]
    spec: ClassVar[type[NodeSpec]]
    on_timeout: ClassVar[Any] = None  # a kind's own reaction to a timeout without `to` (receive: release)

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        raise NotImplementedError

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        return False

    def cancel(self, run: Any, token: Token, spec: Any) -> None:
        """Called when the token is interrupted (cancel, a timeout path, a lost join race)."""


def register(kind: type[Kind]) -> type[Kind]:
    if kind.name in NODE_KINDS:
        raise ValueError(f"node kind {kind.name!r} registered twice")
    NODE_KINDS[kind.name] = kind()
    return kind


# ---- auto -------------------------------------------------------------------------------------
class AutoSpec(NodeSpec):
    """A system action (G8: operator 系统自动, team matching, field derivation): set fields, move on."""

    kind: Literal["auto"] = "auto"
    set: dict[str, str] = Field(default_factory=dict, description="data field → CEL expression")

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        return super().expressions() + [(("set", k), v) for k, v in self.set.items()]


@register
class Auto(Kind):
    name = "auto"
    spec = AutoSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        run.data.update(evaluate_mapping(compile_mapping(spec.set), run.scope()))
        run.data.setdefault("_operators", {})[token["node"]] = "系统自动"
        run.leave(token, run.choose(spec, run.scope()))


# ---- choice -----------------------------------------------------------------------------------
class ChoiceSpec(NodeSpec):
    """An exclusive gateway: the first transition whose ``when`` holds, else ``next``."""

    kind: Literal["choice"] = "choice"


@register
class Choice(Kind):
    name = "choice"
    spec = ChoiceSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        run.leave(token, run.choose(spec, run.scope()))


# ---- call -------------------------------------------------------------------------------------
class CallNodeSpec(NodeSpec):
    """A partner operation, or ordered sub-steps (P06.4 PON = GPON then SR): step i+1 is sent only
    when step i succeeded. A failed step goes to ``on_failure`` (e.g. 资源重查), else the order fails."""

    kind: Literal["call"] = "call"
    steps: list[CallSpec] = Field(min_length=1)
    on_failure: str | None = None
    waits: ClassVar[bool] = True

    def successors(self) -> list[str]:
        return super().successors() + ([self.on_failure] if self.on_failure else [])

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        found = super().expressions()
        for i, s in enumerate(self.steps):
            found += [(("steps", i, "payload", k), v) for k, v in s.payload.items()]
            found += [(("steps", i, "save", k), v) for k, v in s.save.items()]
            found += [(("steps", i, key), src) for key in ("ok", "error") if (src := getattr(s, key))]
        return found

    def calls(self) -> list[tuple[tuple[Any, ...], str, str]]:
        found = super().calls()
        for i, s in enumerate(self.steps):
            ops = [s.operation] + [o for o in (s.poll_operation, s.cancel_operation) if o]
            found += [(("steps", i), s.partner, op) for op in ops]
        return found


#: the documents' local time (China Standard Time, no DST) for the G3 status texts
CST = timezone(timedelta(hours=8))


def status_text(label: str, ok: bool, at: float, reason: str = "") -> str:
    """G3: "X成功（YYYY-MM-DD HH:MM:SS）" at the time the call succeeded, or
    "X失败（reason），请解决问题后重新点击X按钮" with the partner's error text."""
    if ok:
        return f"{label}成功（{datetime.fromtimestamp(at, CST):%Y-%m-%d %H:%M:%S}）"
    return f"{label}失败（{reason or '未知原因'}），请解决问题后重新点击{label}按钮"


@register
class Call(Kind):
    name = "call"
    spec = CallNodeSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        self._send(run, token, spec, 0)

    def _send(self, run: Any, token: Token, spec: Any, index: int) -> None:
        s: CallSpec = spec.steps[index]
        call_id = run.new_id("call")
        token["wait"] = {"step": index, "call_id": call_id, "polls": 0}
        payload = evaluate_mapping(compile_mapping(s.payload), run.scope())
        run.emit(cmd.call(call_id, s.partner, s.operation, payload, purpose="call", node=token["node"]))

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        wait = token["wait"]
        s: CallSpec = spec.steps[wait["step"]]
        if event["type"] == "timer_fired" and token["timers"].get(event.get("timer_id")) == "poll":
            del token["timers"][event["timer_id"]]
            run.changed = True
            wait["polls"] += 1
            run.emit(cmd.call(run.new_id("poll"), s.partner, str(s.poll_operation), {"call_id": wait["call_id"]},
                              purpose="poll", node=token["node"]))
            return True
        if event["type"] == "retry" and event.get("node") == token["node"] and s.mode == "poll":
            # the re-query button (P06.4 刷新): ask for the result now; a manual query is not counted
            run.emit(cmd.call(run.new_id("poll"), s.partner, str(s.poll_operation), {"call_id": wait["call_id"]},
                              purpose="poll", node=token["node"]))
            return True
        if event["type"] != "call_result" or event.get("call_id") != wait["call_id"]:
            return False
        if event.get("pending") and s.mode != "poll":
            return True  # "accepted" of a step answered by callback: consumed, nothing changes (no write)
        run.changed = True
        if event.get("pending"):  # accepted, or a poll answered "not yet"
            if s.mode == "poll" and wait["polls"] < s.poll_limit:
                run.cancel_timers(token, "poll")
                run.start_timer(token, run.now + s.poll_interval_s, "poll")
            elif s.mode == "poll":
                self._failed(run, token, spec, {"error": f"no result after {s.poll_limit} queries"})
            return True
        result = event.get("result") or {}
        scope = run.scope(result=result)
        ok = compile_expr(s.ok).test(scope) if s.ok else bool(event.get("ok", result.get("ok") is True))
        run.cancel_timers(token, "poll")
        reason = "" if ok or not s.error else str(compile_expr(s.error).evaluate(scope))
        log = run.data.setdefault("_calls", [])
        log.append({"node": token["node"], "operation": s.operation, "ok": ok, "via": event.get("via", "sync"),
                    "at": run.now, "text": status_text(s.label or s.operation, ok, run.now, reason)})
        if not ok:
            self._failed(run, token, spec, result)
            return True
        run.data.update(evaluate_mapping(compile_mapping(s.save), scope))
        if wait["step"] + 1 < len(spec.steps):
            self._send(run, token, spec, wait["step"] + 1)
        else:
            run.leave(token, run.choose(spec, scope), result=result)
        return True

    def _failed(self, run: Any, token: Token, spec: Any, result: dict[str, Any]) -> None:
        run.data["_last_error"] = {"node": token["node"], "result": result}
        if spec.on_failure:
            run.redirect(token, spec.on_failure)
        else:
            run.fail(f"{token['node']}: call failed")

    def cancel(self, run: Any, token: Token, spec: Any) -> None:
        wait = token.get("wait") or {}
        if "call_id" not in wait:
            return
        s: CallSpec = spec.steps[wait["step"]]
        if s.cancel_operation:  # the partner supports cancelling a pending request
            run.emit(cmd.call(run.new_id("cancel"), s.partner, s.cancel_operation, {"call_id": wait["call_id"]},
                              purpose="cancel", node=token["node"]))


# ---- user -------------------------------------------------------------------------------------
class UserSpec(NodeSpec):
    """A manual submission through the API, checked by field rules (G4, P06.4 locks and defaults)."""

    kind: Literal["user"] = "user"
    fields: list[FieldRule] = Field(default_factory=list)
    waits: ClassVar[bool] = True

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        found = super().expressions()
        for i, f in enumerate(self.fields):
            found += [(("fields", i, *loc), src) for loc, src in f.expressions()]
        return found


@register
class User(Kind):
    name = "user"
    spec = UserSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        token["wait"] = {"submission": token["node"]}

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        if event["type"] != "submission" or event.get("node") != token["node"]:
            return False
        run.changed = True
        user = event.get("user") or {}
        fields, errors = check_submission(spec.fields, dict(event.get("fields") or {}), run.scope(user=user))
        if errors:  # G4: no submit; the submitter gets the errors, the token stays
            run.emit(cmd.reply("submitter", {}, node=token["node"], errors=errors))
            return True
        run.data.update(fields)
        run.data.setdefault("_operators", {})[token["node"]] = user.get("id", "")
        run.leave(token, run.choose(spec, run.scope(fields=fields, user=user)), fields=fields, user=user)
        return True


# ---- parallel / join --------------------------------------------------------------------------
class ParallelSpec(NodeSpec):
    """Start one token per branch; they meet again at a ``join`` naming this node."""

    kind: Literal["parallel"] = "parallel"
    branches: list[str] = Field(min_length=2)

    def successors(self) -> list[str]:
        return super().successors() + list(self.branches)


@register
class Parallel(Kind):
    name = "parallel"
    spec = ParallelSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        fork_id = run.new_id("fork")
        run.state["forks"][fork_id] = {"node": token["node"], "size": len(spec.branches), "arrived": 0}
        forks = [*token["forks"], fork_id]
        run.state["tokens"].pop(token["id"])
        children = [run.spawn(branch, forks) for branch in spec.branches]
        for child, branch in zip(children, spec.branches, strict=True):
            if child["id"] in run.state["tokens"] and run.state["status"] == "running":
                run.enter(child, branch)


class JoinSpec(NodeSpec):
    """Wait for the branches of ``of`` (a parallel node): all of them, any one, or ``count`` of them.
    With any / N, the branches still running are interrupted."""

    kind: Literal["join"] = "join"
    of: str
    mode: Literal["all", "any", "n"] = "all"
    count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _count(self) -> JoinSpec:
        if (self.mode == "n") != (self.count is not None):
            raise ValueError("`count` is given exactly when mode is n")
        return self


@register
class Join(Kind):
    name = "join"
    spec = JoinSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        fork_id = token["forks"][-1] if token["forks"] else None
        fork = run.state["forks"].get(fork_id)
        if fork is None or fork["node"] != spec.of:
            run.fail(f"{token['node']}: reached without a branch of {spec.of!r}")
            return
        fork["arrived"] += 1
        need = {"all": fork["size"], "any": 1, "n": spec.count}[spec.mode]
        if fork["arrived"] < need:
            run.state["tokens"].pop(token["id"])  # this branch is done; the last one carries on
            return
        del run.state["forks"][fork_id]
        for other in list(run.state["tokens"].values()):
            if other is not token and fork_id in other["forks"]:
                run.kill(other)
        token["forks"] = token["forks"][:-1]
        run.leave(token, run.choose(spec, run.scope()))


# ---- timer ------------------------------------------------------------------------------------
class TimerSpec(NodeSpec):
    """Wait until ``after_s`` from entry, or until ``at`` (CEL, epoch seconds). Durable: it is a command."""

    kind: Literal["timer"] = "timer"
    after_s: float | None = Field(default=None, gt=0)
    at: str | None = None
    waits: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one(self) -> TimerSpec:
        if (self.after_s is None) == (self.at is None):
            raise ValueError("a timer has exactly one of after_s (relative) and at (absolute)")
        return self

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        return super().expressions() + ([(("at",), self.at)] if self.at else [])


@register
class Timer(Kind):
    name = "timer"
    spec = TimerSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        at = run.now + spec.after_s if spec.after_s is not None else float(compile_expr(spec.at).evaluate(run.scope()))
        run.start_timer(token, at, "timer")

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        if event["type"] != "timer_fired" or token["timers"].get(event.get("timer_id")) != "timer":
            return False
        del token["timers"][event["timer_id"]]
        run.changed = True
        run.leave(token, run.choose(spec, run.scope()))
        return True


# ---- receive ----------------------------------------------------------------------------------
class ReceiveSpec(NodeSpec):
    """Wait for messages correlated by ``key`` from other orders (D.1 fusion group): publish our own on
    entry, go on once ``count`` orders (this one included) are in. On a timeout without ``to``,
    ``partial: true`` releases with what arrived (partial release); otherwise the order fails."""

    kind: Literal["receive"] = "receive"
    key: str
    count: str = Field(description="CEL: how many orders make the group, this one included")
    payload: dict[str, str] = Field(default_factory=dict, description="what this order publishes")
    save: str = Field(default="correlated", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    partial: bool = False
    waits: ClassVar[bool] = True

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        found = [*super().expressions(), (("key",), self.key), (("count",), self.count)]
        return found + [(("payload", k), v) for k, v in self.payload.items()]


def _release(run: Any, token: Token, spec: Any) -> None:
    if not spec.partial:
        run.fail(f"{token['node']}: correlation incomplete at the timeout")
        return
    _done(run, token, spec)


def _done(run: Any, token: Token, spec: Any) -> None:
    messages = token["wait"]["messages"]
    run.data[spec.save] = {"key": token["wait"]["key"], "orders": sorted(messages), "complete":
                           len(messages) + 1 >= token["wait"]["count"]}
    run.leave(token, run.choose(spec, run.scope(messages=messages)))


@register
class Receive(Kind):
    name = "receive"
    spec = ReceiveSpec
    on_timeout = staticmethod(_release)

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        scope = run.scope()
        key = str(compile_expr(spec.key).evaluate(scope))
        count = int(compile_expr(spec.count).evaluate(scope))
        token["wait"] = {"key": key, "count": count, "messages": {}}
        payload = evaluate_mapping(compile_mapping(spec.payload), scope)
        run.emit({"type": "publish", "key": key, "order_id": run.state["order_id"], "payload": payload})
        if count <= 1:
            _done(run, token, spec)

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        wait = token["wait"]
        if event["type"] != "message" or event.get("key") != wait.get("key"):
            return False
        sender = str(event.get("order_id"))
        if sender == run.state["order_id"] or sender in wait["messages"]:
            return True  # our own echo or a redelivery: consumed, nothing changes
        run.changed = True
        wait["messages"][sender] = event.get("payload") or {}
        if len(wait["messages"]) + 1 >= wait["count"]:
            _done(run, token, spec)
        return True


# ---- subflow ----------------------------------------------------------------------------------
class SubflowSpec(NodeSpec):
    """Another blueprint as a child with its own record (P14 construction dispatch); ``output`` maps
    the child's document (``child``) back into ours."""

    kind: Literal["subflow"] = "subflow"
    blueprint: str
    input: dict[str, str] = Field(default_factory=dict)
    output: dict[str, str] = Field(default_factory=dict)
    on_failure: str | None = None
    waits: ClassVar[bool] = True

    def successors(self) -> list[str]:
        return super().successors() + ([self.on_failure] if self.on_failure else [])

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        found = super().expressions() + [(("input", k), v) for k, v in self.input.items()]
        return found + [(("output", k), v) for k, v in self.output.items()]


@register
class Subflow(Kind):
    name = "subflow"
    spec = SubflowSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        child_id = run.new_id("child")
        token["wait"] = {"child_id": child_id}
        run.emit({"type": "start_subflow", "child_id": child_id, "blueprint": spec.blueprint,
                  "input": evaluate_mapping(compile_mapping(spec.input), run.scope()), "node": token["node"]})

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        if event["type"] != "subflow_finished" or event.get("child_id") != token["wait"].get("child_id"):
            return False
        run.changed = True
        child = event.get("data") or {}
        if event.get("status") != "completed":
            # like a failed call: the G3 "click again" node that on_failure names routes on data._last_error.node
            run.data["_last_error"] = {"node": token["node"], "result": {"status": event.get("status"),
                                                                         "error": child.get("error", "")}}
            if spec.on_failure:
                run.redirect(token, spec.on_failure)
            else:
                run.fail(f"{token['node']}: sub-flow {spec.blueprint} {event.get('status')}")
            return True
        scope = run.scope(child=child)
        run.data.update(evaluate_mapping(compile_mapping(spec.output), scope))
        run.leave(token, run.choose(spec, scope))
        return True

    def cancel(self, run: Any, token: Token, spec: Any) -> None:
        if "child_id" in token.get("wait", {}):
            run.emit({"type": "cancel_subflow", "child_id": token["wait"]["child_id"]})


# ---- end --------------------------------------------------------------------------------------
class EndSpec(NodeSpec):
    """The end of the order: its status and the reply to the origin."""

    kind: Literal["end"] = "end"
    status: Literal["completed", "failed", "cancelled"] = "completed"
    reply: dict[str, str] = Field(default_factory=dict)

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        return super().expressions() + [(("reply", k), v) for k, v in self.reply.items()]


@register
class End(Kind):
    name = "end"
    spec = EndSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        run.finish(spec.status, token["node"], reply=evaluate_mapping(compile_mapping(spec.reply), run.scope()))



# ---- fusion (issue 13): fusion_wait and fusion_plan live in flows/fusion/kinds.py ----------------
from flows.fusion import kinds as _fusion_kinds  # noqa: E402,F401  (registers them in NODE_KINDS)
