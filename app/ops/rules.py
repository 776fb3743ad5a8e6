"""The stuck-order rule library: the rule model, its validation, seeding from ``config/rules/*.yaml``
and the rule store (MongoDB ``ops_rules``).

A rule is a *scope* (product, scenario, stage; each optional), a *condition* in the engine's expression
language (CEL, flows/graph/expr.py) over the order's facts (app/ops/facts.py: ``data.time_in_stage_s``,
``data.failed_calls``, ...) and ``now``, a *severity* and an *action*: ``alert`` (raise an alert),
``escalate`` (raise it assigned to a team) or ``retry`` (raise it and replay the order's stuck call, the
same audited replay as ``hub orders retry``). Everything is checked when the rule is written — CEL syntax,
names, the facts it reads, the scope against the blueprint library — so an evaluation cycle never
meets a rule that cannot run.

Why the config files only *seed*: operators edit rules at run time (API / CLI); a config rule is
inserted when its id was never seen, and never overwrites an edit or resurrects a deleted one (a
deleted rule stays as a tombstone, ``deleted_at`` set).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pymongo import ASCENDING, IndexModel

from app.admin.replay import NotFound, Refused
from app.ops.facts import FACTS
from flows.graph.expr import ExprError, compile_expr
from hub.configfile import load_dir
from hub.db import declare_indexes
from hub.errors import ConfigError, ValidationFailed

__all__ = ["RULES", "Rule", "RuleStore", "RulesFile", "Scope", "load_rule_files"]

RULES = "ops_rules"
RULE_NAMES = frozenset({"data", "now", "order_id"})
Severity = Literal["info", "warning", "major", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "major", "critical")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

declare_indexes(RULES, IndexModel([("enabled", ASCENDING), ("kind", ASCENDING)], name="by_enabled"))


class Scope(BaseModel):
    """Which orders a rule looks at; an empty field matches every value."""

    model_config = ConfigDict(extra="forbid")

    product: str | None = Field(default=None, examples=["internet_line"])
    scenario: str | None = Field(default=None, examples=["open"])
    stage: str | None = Field(default=None, examples=["design"], description="the current stage (node)")
    partner: str | None = Field(default=None, description="order rules: the origin; interface rules: the callee")
    operation: str | None = Field(default=None, description="interface rules: the partner operation")

    def matches(self, fact: dict[str, Any]) -> bool:
        return ((self.product is None or fact["product"] == self.product)
                and (self.scenario is None or fact["scenario"] == self.scenario)
                and (self.stage is None or fact["stage"] == self.stage)
                and (self.partner is None or fact["partner"] == self.partner))


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["alert", "escalate", "retry"] = Field(
        default="alert", description="alert: raise an alert; escalate: raise it assigned to `team`; "
                                     "retry: raise it and replay the order's dead-lettered call")
    team: str | None = Field(default=None, max_length=100, description="who gets an escalated alert")

    @model_validator(mode="after")
    def _team(self) -> Action:
        if self.type == "escalate" and not self.team:
            raise ValueError("an escalate action names the team it escalates to (action.team)")
        return self


ORDER_FIELDS = frozenset({"product", "scenario", "partner", "status", "current_stage"})
CALL_FIELDS = frozenset({"partner", "operation", "outcome", "stage"})


class Indicator(BaseModel):
    """A business indicator (C.4 (2)): a count of orders or calls matching ``match``, optionally within
    the last ``window_s`` (orders by ``created_at``, calls by ``started_at``); ``overdue: true`` counts
    open orders past their SLA."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["orders", "calls"]
    match: dict[str, str] = Field(default_factory=dict, examples=[{"product": "internet_line", "status": "failed"}])
    overdue: bool = False
    window_s: float | None = Field(default=None, gt=0, le=366 * 86400)

    @model_validator(mode="after")
    def _fields(self) -> Indicator:
        allowed = ORDER_FIELDS if self.source == "orders" else CALL_FIELDS
        bad = sorted(set(self.match) - allowed)
        if bad:
            raise ValueError(f"{self.source} cannot be matched on {', '.join(bad)} (only {', '.join(sorted(allowed))})")
        if self.overdue and self.source != "orders":
            raise ValueError("overdue counts orders")
        return self


class Rule(BaseModel):
    """One rule: ``kind: order`` (a stuck-order rule over each open order's facts), ``interface``
    (C.3 (4): over each partner operation's calls in the last ``window_s``) or ``indicator`` (C.4 (3):
    a threshold on a business indicator's value)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="the rule's code, e.g. STUCK-DESIGN-4H", examples=["STUCK-001"])
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000, description="why the rule exists")
    kind: Literal["order", "interface", "indicator"] = "order"
    scope: Scope = Field(default_factory=Scope)
    window_s: float = Field(default=900.0, gt=0, le=7 * 86400, description="interface rules: the window")
    indicator: Indicator | None = Field(default=None, description="indicator rules: what is counted")
    when: str = Field(min_length=1, max_length=2000, description="CEL condition over data (the facts) and now",
                      examples=["data.time_in_stage_s > 4 * 3600"])
    severity: Severity = "warning"
    action: Action = Field(default_factory=Action)
    notify: list[str] = Field(default_factory=list, description="notification sinks (config/rules/*.yaml sinks)")
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return v

    @field_validator("when")
    @classmethod
    def _when(cls, v: str, info: ValidationInfo) -> str:
        check_condition(v, KIND_FACTS[info.data.get("kind", "order")])
        return v

    @model_validator(mode="after")
    def _kind(self) -> Rule:
        sc = self.scope
        if self.kind == "order" and sc.operation:
            raise ValueError("scope.operation is for interface rules")
        if self.kind == "interface" and (sc.product or sc.scenario or sc.stage):
            raise ValueError("an interface rule is scoped by partner and operation, not product/scenario/stage")
        if self.kind == "indicator" and self.indicator is None:
            raise ValueError("an indicator rule says what it counts (indicator: {source, match, window_s})")
        if self.kind != "indicator" and self.indicator is not None:
            raise ValueError("indicator is for kind: indicator")
        if self.kind != "order" and self.action.type == "retry":
            raise ValueError("retry re-sends an order's stuck call: order rules only")
        return self


INTERFACE_FACTS: dict[str, str] = {
    "partner": "the partner called", "operation": "the operation",
    "calls": "calls started in the window", "succeeded": "of them ok", "failed": "failed or dead-lettered",
    "success_rate": "succeeded / finished (null when none finished)",
    "p50_ms": "median duration (null without durations)", "p99_ms": "99th percentile duration",
    "per_min": "load: calls per minute over the window", "window_s": "the rule's window",
}
INDICATOR_FACTS: dict[str, str] = {"value": "the indicator's count", "window_s": "its window (null: none)"}
KIND_FACTS: dict[str, dict[str, str]] = {"order": FACTS, "interface": INTERFACE_FACTS, "indicator": INDICATOR_FACTS}


def check_condition(source: str, facts: dict[str, str] = FACTS) -> None:
    """Compile a rule condition; raise ValueError naming what is wrong (syntax, a name, a fact)."""
    try:
        expr = compile_expr(source)
    except ExprError as exc:
        raise ValueError(str(exc).replace("(known: ", "(engine names: ")) from None
    extra = sorted(expr.names - RULE_NAMES)
    if extra:
        raise ValueError(f"a rule reads data (the order's facts), now and order_id, not {', '.join(extra)}")
    unknown = sorted({p[1] for p in expr.paths if p[0] == "data" and len(p) > 1 and p[1] not in facts})
    if unknown:
        raise ValueError(f"unknown fact {', '.join('data.' + u for u in unknown)} "
                         f"(facts: {', '.join(sorted(facts))})")


class Sink(BaseModel):
    """A notification sink (app/ops/notify.py): a webhook, SMTP e-mail or the SMS gateway."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: Literal["webhook", "smtp", "sms"]
    url: str | None = Field(default=None, description="webhook / SMS gateway URL")
    host: str | None = Field(default=None, description="SMTP server")
    port: int = Field(default=25, ge=1, le=65535)
    sender: str | None = Field(default=None, description="SMTP From")
    to: list[str] = Field(default_factory=list, description="mail addresses or phone numbers")
    min_severity: Severity = "info"

    @model_validator(mode="after")
    def _complete(self) -> Sink:
        if self.type in ("webhook", "sms") and not self.url:
            raise ValueError(f"a {self.type} sink needs url")
        if self.type == "smtp" and not (self.host and self.sender and self.to):
            raise ValueError("an smtp sink needs host, sender and to")
        if self.type == "sms" and not self.to:
            raise ValueError("an sms sink needs to (phone numbers)")
        return self


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    sinks: list[Sink] = Field(default_factory=list)


def load_rule_files(config_dir: Path) -> RulesFile:
    """Every ``config_dir/rules/*.yaml`` merged; a bad file or a duplicate id is a ConfigError with
    ``file:line: key: message`` lines."""
    merged = RulesFile()
    seen: dict[str, Path] = {}
    problems: list[str] = []
    for path, f in load_dir(config_dir / "rules", RulesFile).items():
        for key in [f"rule {r.id}" for r in f.rules] + [f"sink {s.name}" for s in f.sinks]:
            if key in seen:
                problems.append(f"{path}: {key} is also defined in {seen[key]}")
            seen[key] = path
        merged.rules.extend(f.rules)
        merged.sinks.extend(f.sinks)
    sinks = {s.name for s in merged.sinks}
    problems.extend(f"{seen['rule ' + r.id]}: rules.{r.id}.notify: unknown sink {n!r}"
                    for r in merged.rules for n in r.notify if n not in sinks)
    if problems:
        raise ConfigError(f"invalid rules under {config_dir / 'rules'}", problems)
    return merged


def check_scope(rule: Rule, scopes: dict[str, set[str]] | None) -> None:
    """The scope against the blueprint library (``product -> node names``): a typo'd product or stage
    would make a rule that silently never matches."""
    if scopes is None:
        return
    errs = []
    p, st = rule.scope.product, rule.scope.stage
    if p is not None and p not in scopes:
        errs.append({"field": "scope.product", "message": f"no blueprint runs product {p!r} "
                                                          f"(known: {', '.join(sorted(scopes))})"})
    elif st is not None:
        nodes = scopes[p] if p is not None else set().union(*scopes.values())
        if st not in nodes:
            errs.append({"field": "scope.stage", "message": f"no stage {st!r} in {p or 'any blueprint'}"})
    if errs:
        raise ValidationFailed(f"rule {rule.id}: " + "; ".join(f"{e['field']}: {e['message']}" for e in errs), errs)


def parse_rule(data: dict[str, Any]) -> Rule:
    """A rule from API / CLI input; pydantic errors become ValidationFailed (``field``, ``message``),
    the message naming each too (what the CLI prints)."""
    try:
        return Rule.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])) or "(rule)", "message": e["msg"].removeprefix("Value error, ")}
                  for e in exc.errors(include_url=False, include_input=False)]
        raise ValidationFailed("invalid rule: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                               errors) from exc


class RuleStore:
    """CRUD over ``ops_rules`` (``_id`` = rule id). Listings leave tombstones out."""

    def __init__(self, db: AsyncIOMotorDatabase[Any], scopes: dict[str, set[str]] | None = None,
                 sinks: Iterable[str] | None = None) -> None:
        self.db = db
        self.coll = db[RULES]
        self.scopes = scopes
        self.sinks = set(sinks) if sinks is not None else None

    def _check(self, rule: Rule) -> None:
        check_scope(rule, self.scopes)
        if self.sinks is not None:
            unknown = [n for n in rule.notify if n not in self.sinks]
            if unknown:
                raise ValidationFailed(f"rule {rule.id}: unknown sink {', '.join(unknown)}",
                                       [{"field": "notify", "message": f"unknown sink {n!r}"} for n in unknown])

    @staticmethod
    def _doc(rule: Rule, who: str, now: datetime) -> dict[str, Any]:
        return {**rule.model_dump(mode="json", exclude={"id"}), "updated_at": now, "updated_by": who}

    async def seed(self, rules: Iterable[Rule], now: datetime | None = None) -> int:
        """Insert the config rules never seen before; returns how many were inserted."""
        now = now or datetime.now(UTC)
        n = 0
        for rule in rules:
            res = await self.coll.update_one({"_id": rule.id}, {"$setOnInsert": {
                **self._doc(rule, "config", now), "created_at": now, "source": "config", "version": 1}},
                upsert=True)
            n += 1 if res.upserted_id is not None else 0
        return n

    async def find(self, *, enabled: bool | None = None, q: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"deleted_at": None}
        if enabled is not None:
            query["enabled"] = enabled
        if q:  # searchable by code and by name, fuzzy (C.4 (3)): every word appears in id or name
            words = [re.escape(w) for w in q.split()]
            query["$and"] = [{"$or": [{"_id": {"$regex": w, "$options": "i"}},
                                      {"name": {"$regex": w, "$options": "i"}}]} for w in words]
        return [self._out(d) async for d in self.coll.find(query).sort("_id", ASCENDING)]

    async def get(self, rule_id: str) -> dict[str, Any] | None:
        doc = await self.coll.find_one({"_id": rule_id, "deleted_at": None})
        return self._out(doc) if doc else None

    async def enabled_rules(self) -> list[Rule]:
        """The rules an evaluation cycle runs (a stored rule that no longer validates is skipped)."""
        out = []
        async for d in self.coll.find({"enabled": True, "deleted_at": None}):
            try:
                out.append(Rule.model_validate({k: v for k, v in self._out(d).items() if k in Rule.model_fields}))
            except ValidationError:
                continue
        return out

    async def add(self, rule: Rule, who: str, now: datetime | None = None) -> dict[str, Any]:
        self._check(rule)
        now = now or datetime.now(UTC)
        existing = await self.coll.find_one({"_id": rule.id})
        if existing is not None and existing.get("deleted_at") is None:
            raise Refused(f"rule {rule.id} exists; edit it instead")
        await self.coll.replace_one({"_id": rule.id}, {
            **self._doc(rule, who, now), "created_at": now, "source": who.split(":")[0],
            "version": int((existing or {}).get("version", 0)) + 1, "deleted_at": None}, upsert=True)
        return await self.get(rule.id) or {}

    async def edit(self, rule_id: str, changes: dict[str, Any], who: str,
                   now: datetime | None = None) -> dict[str, Any]:
        """Apply ``changes`` (top-level fields; ``scope`` / ``action`` merged) and re-validate the whole rule."""
        current = await self.get(rule_id)
        if current is None:
            raise NotFound(f"no rule {rule_id}")
        if "id" in changes and changes["id"] != rule_id:
            raise ValidationFailed("a rule's id cannot change", [{"field": "id", "message": "cannot change"}])
        merged = {k: v for k, v in current.items() if k in Rule.model_fields}
        for key, value in changes.items():
            if key in ("scope", "action") and isinstance(value, dict):
                merged[key] = {**(merged.get(key) or {}), **value}
            else:
                merged[key] = value
        rule = parse_rule(merged)
        self._check(rule)
        now = now or datetime.now(UTC)
        await self.coll.update_one({"_id": rule_id}, {"$set": self._doc(rule, who, now), "$inc": {"version": 1}})
        return await self.get(rule_id) or {}

    async def set_enabled(self, rule_id: str, enabled: bool, who: str) -> dict[str, Any]:
        return await self.edit(rule_id, {"enabled": enabled}, who)

    async def delete(self, rule_id: str, who: str, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        res = await self.coll.update_one({"_id": rule_id, "deleted_at": None},
                                         {"$set": {"deleted_at": now, "updated_by": who, "enabled": False}})
        return bool(res.modified_count)

    @staticmethod
    def _out(doc: dict[str, Any]) -> dict[str, Any]:
        out = dict(doc)
        out["id"] = out.pop("_id")
        return out
