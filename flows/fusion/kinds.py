"""The engine node kinds of fusion orders: ``fusion_wait`` (the group wait) and ``fusion_plan`` (the split).

``fusion_wait`` is ``receive`` (flows/graph/nodes.py) made safe for D.1 — what ``receive`` does not do:

* the group is checked: every member must agree on ``related_count`` and ``related_order_ids``; the
  first member to arrive (its arrival time, then its order id) defines the group, a later one that
  contradicts it fails with the reason (ESOP gets it in the reply) and both record an alert in
  ``data.fusion_alerts``;
* a member that leaves while the group waits (withdrawn, cancelled, failed) takes its message back
  (a ``publish`` with ``withdrawn``: the relay deletes its correlation row and tells the others);
* the timeout is per product (``config/fusion.yaml``, :mod:`flows.fusion.config`) and does not end the
  wait: the group is marked ``incomplete`` with an alert and keeps waiting — a late member still
  completes it — until an operator submits a decision to the node: ``release`` (go on with what
  arrived), ``wait`` (a new deadline) or ``cancel`` (the member is cancelled, compensations included).

Correlation itself is the runtime's (docs/flows.md "Correlation and sub-flows"): messages go through
MongoDB ``correlations``, so neither Kafka partitions nor workers matter; the engine ignores a
message it has seen (duplicates, redeliveries after a kill -9).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from flows.fusion import config as fusion_config
from flows.fusion.plan import plan, task_of
from flows.graph import commands as cmd
from flows.graph.expr import compile_expr
from flows.graph.model import NodeSpec, TimeoutSpec
from flows.graph.nodes import Kind, Token, register

DECISIONS = ("release", "wait", "cancel")


class FusionWaitSpec(NodeSpec):
    """Wait for the whole fusion group (D.1.1, SPEC §5); see the module docstring."""

    kind: Literal["fusion_wait"] = "fusion_wait"
    key: str = Field(default="data.fusion.fusion_key", description="CEL: the group's key")
    save: str = Field(default="fusion_group", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # the machine hands a "timeout" timer to on_timeout only when the node has a timeout; the value
    # is not used: the kind starts its own timer, per product (``waits`` False: the machine starts none)
    timeout: TimeoutSpec | None = Field(default_factory=lambda: TimeoutSpec(after_s=fusion_config.DEFAULT_WAIT_S))
    waits: ClassVar[bool] = False

    @model_validator(mode="after")
    def _deadline(self) -> FusionWaitSpec:
        if self.timeout is None:
            raise ValueError("fusion_wait: a timeout is needed (its length comes from config/fusion.yaml)")
        if self.timeout.to is not None:
            raise ValueError("fusion_wait: timeout.to is not used: an incomplete group waits for an operator")
        return self

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        return [*super().expressions(), (("key",), self.key)]


def member_payload(data: dict[str, Any], now: float) -> dict[str, Any]:
    """What a member tells the others: the four fields, when it arrived, and what the maintenance
    system needs of it (D.1.2: requirements, installation address, service level)."""
    f, ext, cust = data.get("fusion") or {}, data.get("extensions") or {}, data.get("customer") or {}
    return {"external_order_id": data.get("external_order_id"), "product": data.get("product"),
            "scenario": data.get("scenario"), "related_count": f.get("related_count"),
            "related_order_ids": sorted(f.get("related_order_ids") or []), "at": now,
            "addresses": data.get("addresses") or [], "service_level": ext.get("service_level"),
            "customer": {k: cust.get(k) for k in ("name", "contact_name", "contact_phone")},
            "requirements": {k: data.get(k) for k in ("bandwidth_mbps", "access_type") if data.get(k) is not None}}


def contradiction(first: dict[str, Any], other: dict[str, Any]) -> str | None:
    """Why ``other`` does not belong to the group ``first`` defines (None: it does)."""
    if other.get("related_count") != first.get("related_count"):
        return (f"related_count {other.get('related_count')} contradicts the group's {first.get('related_count')} "
                f"(first member {first.get('external_order_id')})")
    ids_a, ids_b = group_ids(first), group_ids(other)
    if ids_a and ids_b and ids_a != ids_b:
        return (f"related_order_ids {ids_b} contradict the group's {ids_a} "
                f"(first member {first.get('external_order_id')})")
    if ids_a and other.get("external_order_id") not in ids_a:
        return f"order {other.get('external_order_id')} is not among the group's related_order_ids {ids_a}"
    return None


def group_ids(p: dict[str, Any]) -> list[str]:
    """The group a member names: its related_order_ids plus itself (ESOP may list either)."""
    ids = list(p.get("related_order_ids") or [])
    return sorted({*ids, str(p.get("external_order_id"))}) if ids else []


def _alert(run: Any, kind: str, text: str, **extra: Any) -> None:
    # kinds assign data's top-level fields, never change a nested value (machine._working_copy)
    run.data["fusion_alerts"] = [*run.data.get("fusion_alerts", []), {"at": run.now, "kind": kind, "text": text,
                                                                      **extra}]


def _group(run: Any, token: Token, spec: Any, state: str) -> None:
    wait = token["wait"]
    run.data[spec.save] = {"key": wait["key"], "count": wait["count"], "state": state,
                           "orders": sorted([run.state["order_id"], *wait["messages"]]),
                           "arrived": len(wait["messages"]) + 1, "since": wait["since"],
                           "conflicts": dict(wait["conflicts"]), "deadline": wait.get("deadline")}


def _done(run: Any, token: Token, spec: Any, state: str) -> None:
    wait = token["wait"]
    _group(run, token, spec, state)
    run.data[spec.save]["members"] = {run.state["order_id"]: wait["me"], **wait["messages"]}
    run.leave(token, run.choose(spec, run.scope()))


def _on_timeout(run: Any, token: Token, spec: Any) -> None:
    """The deadline passed: the group is incomplete, an alert is recorded, the member keeps waiting."""
    wait = token["wait"]
    wait["incomplete"] = True
    _group(run, token, spec, "incomplete")
    _alert(run, "incomplete", f"fusion group {wait['key']}: {len(wait['messages']) + 1} of {wait['count']} "
                              "orders after the deadline; release, wait or cancel", key=wait["key"])


@register
class FusionWait(Kind):
    name = "fusion_wait"
    spec = FusionWaitSpec
    on_timeout = staticmethod(_on_timeout)

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        data = run.data
        f = data.get("fusion") or {}
        count = int(f.get("related_count") or 1)
        key = str(compile_expr(spec.key).evaluate(run.scope())) if f else ""
        me = member_payload(data, run.now)
        token["wait"] = {"key": key, "count": count, "messages": {}, "conflicts": {}, "me": me, "since": run.now}
        if not f or not f.get("is_fusion", True) or count <= 1:
            _done(run, token, spec, "single")  # not a fusion order: a group of one
            return
        run.emit({"type": "publish", "key": key, "order_id": run.state["order_id"], "payload": me})
        self._deadline(run, token)
        _group(run, token, spec, "waiting")

    @staticmethod
    def _deadline(run: Any, token: Token) -> None:
        at = run.now + fusion_config.current().wait_s(run.data.get("product"))
        token["wait"].update(deadline=at, incomplete=False)
        run.start_timer(token, at, "timeout")

    def on_event(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        wait = token["wait"]
        if event["type"] == "submission" and event.get("node") == token["node"]:
            return self._decide(run, token, spec, event)
        if event["type"] != "message" or event.get("key") != wait.get("key"):
            return False
        sender, payload = str(event.get("order_id")), dict(event.get("payload") or {})
        if sender == run.state["order_id"]:
            return True  # our own echo
        if payload.get("withdrawn"):
            if wait["messages"].pop(sender, None) is not None or wait["conflicts"].pop(sender, None) is not None:
                run.changed = True
                _group(run, token, spec, "incomplete" if wait.get("incomplete") else "waiting")
            return True
        if sender in wait["messages"] or sender in wait["conflicts"]:
            return True  # a duplicate or a redelivery: consumed, nothing changes
        run.changed = True
        mine = wait["me"]
        first = min([mine, payload, *wait["messages"].values()],
                    key=lambda p: (p.get("at") or 0.0, str(p.get("external_order_id"))))
        if first is not mine and contradiction(first, mine) is not None:
            reason = f"fusion group {wait['key']}: {contradiction(first, mine)}"
            _alert(run, "conflict", reason, key=wait["key"])
            run.fail(reason)  # the later member is refused; its withdrawal goes out with the kill
            return True
        why = contradiction(mine if first is mine else first, payload)
        if why is not None:
            wait["conflicts"][sender] = why
            _alert(run, "conflict", f"fusion group {wait['key']}: {why}", key=wait["key"], order=sender)
            _group(run, token, spec, "incomplete" if wait.get("incomplete") else "waiting")
            return True
        wait["messages"][sender] = payload
        if len(wait["messages"]) + 1 >= wait["count"]:
            _done(run, token, spec, "complete")
        else:
            _group(run, token, spec, "incomplete" if wait.get("incomplete") else "waiting")
        return True

    def _decide(self, run: Any, token: Token, spec: Any, event: dict[str, Any]) -> bool:
        """An operator's decision on the group (``hub fusion release|wait|cancel KEY``)."""
        fields = dict(event.get("fields") or {})
        decision, by = fields.get("decision"), str((event.get("user") or {}).get("id") or "")
        if decision not in DECISIONS:
            run.emit(cmd.reply("submitter", {}, node=token["node"], errors=[
                {"field": "decision", "message": f"one of {', '.join(DECISIONS)}"}]))
            return True
        run.changed = True
        run.data["fusion_decisions"] = [*run.data.get("fusion_decisions", []),
                                        {"at": run.now, "decision": decision, "by": by}]
        if decision == "release":
            _done(run, token, spec, "released")
        elif decision == "wait":
            run.cancel_timers(token, "timeout")
            self._deadline(run, token)
            _group(run, token, spec, "waiting")
        else:
            run.cancel(str(fields.get("reason") or f"fusion group {token['wait']['key']} cancelled"), by)
        return True

    def cancel(self, run: Any, token: Token, spec: Any) -> None:
        """The member leaves while the group waits: take its message back (the relay tells the others)."""
        wait = token.get("wait") or {}
        if wait.get("key") and wait.get("count", 1) > 1:
            run.emit({"type": "publish", "key": wait["key"], "order_id": run.state["order_id"],
                      "payload": {"withdrawn": True}, "withdrawn": True})


class FusionPlanSpec(NodeSpec):
    """Split the complete group into construction tasks by normalised installation address and keep
    this member's task (D.1.3 one task per address, D.1.4 the district's team, D.1.7 first contact)."""

    kind: Literal["fusion_plan"] = "fusion_plan"
    group: str = Field(default="fusion_group", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    save: str = Field(default="fusion_task", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    partner: str = Field(default="maintenance", description="whose split setting applies (config/fusion.yaml)")


@register
class FusionPlan(Kind):
    name = "fusion_plan"
    spec = FusionPlanSpec

    def enter(self, run: Any, token: Token, spec: Any) -> None:
        group = run.data.get(spec.group) or {}
        me = run.state["order_id"]
        members = group.get("members") or {me: member_payload(run.data, run.now)}
        conf = fusion_config.current()
        hub_split = conf.split_in_hub(spec.partner)
        tasks = plan(str(group.get("key") or me), members, conf, split_in_hub=hub_split)
        mine = task_of(tasks, me)
        own = {k: v for k, v in members[me].items() if k != "at"}
        run.data[spec.save] = {**mine, "split": "hub" if hub_split else "partner", "tasks": len(tasks),
                               "order": own, "related_count": own.get("related_count"),
                               "related_order_ids": own.get("related_order_ids"),
                               "first_contact": mine["first_contact_order"] == me,
                               "group_orders": sorted(members), "group_key": group.get("key"),
                               "group_state": group.get("state")}
        run.changed = True
        run.leave(token, run.choose(spec, run.scope()))
