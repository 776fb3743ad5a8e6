"""The v2 blueprint: a graph of named nodes, each of a kind registered by name.

Why a graph: v1 blueprints are a list of stages with one cursor per order, which cannot say "go back"
(G9 audit loop, G10 reject paths), "several things at once" (parallel design, joins), "wait for other
orders" (D.1 fusion) or "run a shared child flow" (P14). Here every node names its successors, so loops
and branches are ordinary transitions, and the kind of a node is looked up in ``NODE_KINDS`` — adding a
kind is one registration (flows/graph/nodes.py), never another branch of an if-chain.

The models only describe; behaviour lives with each kind in nodes.py and the pure engine in machine.py.
Expressions are kept as source text here and compiled once by ``Blueprint.compiled`` (flows/graph/expr.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationInfo,
    model_validator,
)

__all__ = [
    "NODE_KINDS",
    "Blueprint",
    "CallSpec",
    "Compensation",
    "HoldNotice",
    "NodeKind",
    "NodeSpec",
    "ReportSpec",
    "SlaSpec",
    "TimeoutSpec",
    "Transition",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Transition(_Model):
    """One outgoing edge: taken when ``when`` (a CEL condition) holds; no ``when`` = always."""

    to: str
    when: str | None = None


class ReportSpec(_Model):
    """A progress report (G2) or SRV6 stage report (G6) attached to a node's entry or exit.

    ``gate: true`` (G2): the token may not enter (``on: enter``) or leave (``on: exit``) the node until
    the report succeeded; a failed report keeps it where it is until a ``retry`` event re-sends it.
    (The key is ``at``, not ``on``: YAML 1.1 reads a bare ``on`` as ``true``.)
    """

    at: Literal["enter", "exit"] = Field(default="enter", description="`on` would be a YAML boolean")
    partner: str
    operation: str
    payload: dict[str, str] = Field(default_factory=dict, description="field → CEL expression")
    gate: bool = False


class Compensation(_Model):
    """What undoes a completed node on cancel (P26.4): a partner call, run in reverse completion order."""

    partner: str
    operation: str
    payload: dict[str, str] = Field(default_factory=dict)


During = Literal["active", "completed"]


def _active() -> list[During]:
    return ["active"]


class HoldNotice(_Model):
    """What a node tells a partner when an operator suspends or resumes the order (D.1.8, issue 13 §5).

    Why on the node: the partner that holds work for the order is the one the node sent it to (the
    fusion dispatch node's construction task at the maintenance system), so the integration engineer
    declares the notice next to that call, like ``compensate`` for cancel. Sent at the suspend /
    resume itself, not queued behind the hold (D.1.8: executed immediately), as a report (nobody waits
    for its answer). ``during``: whether the node must be ``active`` (a token in it: the work is still
    pending) and/or ``completed`` (done earlier in this order) for the notice to go. The payload sees
    ``hold`` ({reason, by, at}) besides the usual names.
    """

    partner: str
    operation: str
    payload: dict[str, str] = Field(default_factory=dict, description="field → CEL expression (also `hold`)")
    during: list[During] = Field(
        default_factory=_active, min_length=1,
        description="sent when the node is active (pending work) and/or completed earlier in the order")


class TimeoutSpec(_Model):
    """A deadline on a waiting node: after ``after_s`` send ``escalate`` (G7 SLA) and/or take ``to``.

    With no ``to`` the node's kind decides (``receive`` with ``partial`` releases what arrived); a kind
    with no such rule keeps waiting after an escalation, and fails the order when there is nothing to do.
    """

    after_s: float = Field(gt=0)
    to: str | None = None
    escalate: ReportSpec | None = None


#: the SLA when a blueprint's ``sla`` gives no duration: the documents name none (G7 says only that the
#: clock starts on receipt), so this is our assumption, overridden per product in its blueprints
DEFAULT_SLA_HOURS = 72.0


class Escalation(_Model):
    """One notice sent when the order's SLA runs out (G7): a partner operation, payload CEL."""

    partner: str
    operation: str
    payload: dict[str, str] = Field(default_factory=dict, description="field → CEL expression")


class SlaSpec(_Model):
    """The order's SLA clock (G7 "the SLA timer starts on receipt"): one durable timer per order.

    It starts when the order is received, pauses while an operator holds the order (suspend: its
    remaining time is kept), ends when the order ends, and when it runs out sends ``escalate`` (e.g. an
    SMS to the handling team) — the order goes on: an SLA is a promise, not a stop. The order document
    shows the deadline (``sla_deadline``; overdue once past it) and when it is due soon
    (``due_soon_share`` of the span gone). ``after_s`` or ``hours`` (not both); neither:
    ``DEFAULT_SLA_HOURS``.
    """

    after_s: float | None = Field(default=None, gt=0, description="the SLA in seconds")
    hours: float | None = Field(default=None, gt=0, description="the SLA in hours (the products' unit)")
    due_soon_share: float = Field(default=0.8, gt=0, lt=1,
                                  description="the share of the SLA after which the order is due soon")
    escalate: list[Escalation] = Field(default_factory=list, description="sent when the SLA runs out")

    @model_validator(mode="after")
    def _one_duration(self) -> SlaSpec:
        if self.after_s is not None and self.hours is not None:
            raise ValueError("give after_s or hours, not both")
        return self

    @property
    def seconds(self) -> float:
        if self.after_s is not None:
            return self.after_s
        return (self.hours if self.hours is not None else DEFAULT_SLA_HOURS) * 3600.0


class CallSpec(_Model):
    """One partner operation and how its outcome arrives.

    ``mode``: ``sync`` (the answer of the call itself), ``callback`` (the partner calls back later) or
    ``poll`` (the call is accepted; the result operation ``poll_operation`` is queried every
    ``poll_interval_s`` up to ``poll_limit`` times — B.7 result query, P06.4 刷新). A callback is accepted
    in poll mode too. ``ok`` decides success from ``result`` (default: ``result.ok == true``); ``label``
    and ``error`` make the G3 status text ("X成功（time）" / "X失败（reason），请解决问题后重新点击X按钮").
    """

    partner: str
    operation: str
    payload: dict[str, str] = Field(default_factory=dict)
    mode: Literal["sync", "callback", "poll"] = "sync"
    poll_operation: str | None = None
    poll_interval_s: float = Field(default=30, gt=0)
    poll_limit: int = Field(default=10, ge=1)
    ok: str | None = None
    save: dict[str, str] = Field(default_factory=dict, description="data field → CEL over `result`")
    cancel_operation: str | None = Field(default=None, description="the partner's cancel, sent if still pending")
    label: str = Field(default="", description="the action's name in the G3 status text (default: the operation)")
    error: str | None = Field(default=None, description="CEL over `result`: the partner's error text (G3 reason)")

    @model_validator(mode="after")
    def _poll_needs_operation(self) -> CallSpec:
        if self.mode == "poll" and not self.poll_operation:
            raise ValueError("mode poll needs poll_operation (the result-query operation)")
        return self


class NodeSpec(_Model):
    """Fields every node has. Kinds subclass this (nodes.py) and add their own."""

    kind: str
    title: str = Field(default="", description="the stage name shown and reported (G6 `progress`)")
    next: str | None = None
    transitions: list[Transition] = Field(default_factory=list)
    reports: list[ReportSpec] = Field(default_factory=list)
    timeout: TimeoutSpec | None = None
    compensate: Compensation | None = None
    on_suspend: HoldNotice | None = Field(default=None, description="sent to a partner when the order is suspended")
    on_resume: HoldNotice | None = Field(default=None, description="sent to a partner when the order is resumed")

    #: does a token wait in this node for an event (and so may carry a timeout)?
    waits: ClassVar[bool] = False

    def successors(self) -> list[str]:
        """Every node this one can hand a token to; check.py walks these for reachability."""
        out = [t.to for t in self.transitions]
        if self.next:
            out.append(self.next)
        if self.timeout and self.timeout.to:
            out.append(self.timeout.to)
        return out

    def expressions(self) -> list[tuple[tuple[Any, ...], str]]:
        """``(location, source)`` of every expression, for load-time compilation with line numbers."""
        found: list[tuple[tuple[Any, ...], str]] = []
        for i, t in enumerate(self.transitions):
            if t.when is not None:
                found.append((("transitions", i, "when"), t.when))
        for i, r in enumerate(self.reports):
            found += [(("reports", i, "payload", k), v) for k, v in r.payload.items()]
        if self.timeout and self.timeout.escalate:
            found += [(("timeout", "escalate", "payload", k), v) for k, v in self.timeout.escalate.payload.items()]
        if self.compensate:
            found += [(("compensate", "payload", k), v) for k, v in self.compensate.payload.items()]
        for key, notice in (("on_suspend", self.on_suspend), ("on_resume", self.on_resume)):
            if notice is not None:
                found += [((key, "payload", k), v) for k, v in notice.payload.items()]
        return found

    def calls(self) -> list[tuple[tuple[Any, ...], str, str]]:
        """``(location, partner, operation)`` of every partner operation named, for reference checks."""
        found: list[tuple[tuple[Any, ...], str, str]] = [
            (("reports", i), r.partner, r.operation) for i, r in enumerate(self.reports)]
        if self.timeout and self.timeout.escalate:
            found.append((("timeout", "escalate"), self.timeout.escalate.partner, self.timeout.escalate.operation))
        if self.compensate:
            found.append((("compensate",), self.compensate.partner, self.compensate.operation))
        for key, notice in (("on_suspend", self.on_suspend), ("on_resume", self.on_resume)):
            if notice is not None:
                found.append(((key,), notice.partner, notice.operation))
        return found


class NodeKind(Protocol):
    """What a registered kind provides (nodes.py): its spec model and its behaviour."""

    name: ClassVar[str]
    spec: ClassVar[type[NodeSpec]]


#: kind name → kind; filled by flows/graph/nodes.py (``@register``).
NODE_KINDS: dict[str, Any] = {}


def _parse_node(raw: Any) -> Any:
    """Validate one node with the spec model of its registered kind (not a hard-coded union)."""
    if isinstance(raw, NodeSpec):
        return raw
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ValueError("a node is a mapping with a `kind`")
    kind = NODE_KINDS.get(raw["kind"])
    if kind is None:
        raise ValueError(f"unknown node kind {raw['kind']!r} (known: {', '.join(sorted(NODE_KINDS))})")
    return kind.spec.model_validate(raw)


class Blueprint(_Model):
    """One v2 blueprint file: a name, a start node and the named nodes."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_.-]*$")
    description: str = ""
    product: str | None = Field(default=None, description="canonical product the blueprint runs (None: a sub-flow)")
    scenario: str | None = Field(default=None, description="canonical scenario (open, change, ...)")
    catalogue: str | None = Field(default=None, description="the CATALOGUE.md row it implements, e.g. P06.4")
    section: str = Field(default="", description="the documents' section, e.g. §3.1.4.1.1")
    source: Literal["specified", "inferred"] = Field(
        default="specified", description="inferred: built from the standard template where the documents are silent")
    source_note: str = Field(default="", description="why it is inferred, what was assumed")
    sla: SlaSpec | None = Field(default=None, description="G7: the order's SLA clock, started on receipt")
    start: str
    #: SerializeAsAny: dump each node by its kind's model (steps, fields, …), not just the NodeSpec fields,
    #: so the digest covers everything the engine reads and a stored version validates back (§2 pinning)
    nodes: dict[str, Annotated[SerializeAsAny[NodeSpec], BeforeValidator(_parse_node)]]

    @model_validator(mode="after")
    def _edges_exist(self, info: ValidationInfo) -> Blueprint:
        if info.context and info.context.get("edges_checked"):
            return self  # the library reports each missing edge itself, at the line that names it
        missing = [f"{name} → {to}" for name, node in self.nodes.items() for to in node.successors()
                   if to not in self.nodes]
        if self.start not in self.nodes:
            missing.insert(0, f"start → {self.start}")
        if missing:
            raise ValueError(f"transitions to unknown nodes: {', '.join(missing)}")
        return self

    def digest(self) -> str:
        """Content digest an order pins (issue 10 §2): the same content gives the same digest."""
        cached = _DIGESTS.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        body = json.dumps(_pinned_form(self.model_dump(mode="json")), sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        _DIGESTS[id(self)] = (self, digest)  # the model is frozen: its digest never changes
        return digest


_DIGESTS: dict[int, tuple[Blueprint, str]] = {}

#: optional fields added after orders had pinned versions: left out of the digest while unset, so a
#: blueprint that does not use them keeps the digest its running orders pinned (their stored version,
#: read back by this model, must give the same digest: flows/graph/library.py ``restore``)
_LATER_TOP = ("sla",)
_LATER_NODE = ("on_suspend", "on_resume")


def _pinned_form(dump: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in dump.items() if not (k in _LATER_TOP and v is None)}
    out["nodes"] = {name: {k: v for k, v in node.items() if not (k in _LATER_NODE and v is None)}
                    for name, node in dump["nodes"].items()}
    return out
