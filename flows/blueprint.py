"""Blueprints: a product + scenario's stages as configuration (``config/flows/*.yaml``).

A blueprint is validated twice at load: its own shape (pydantic, errors name file, line and key)
and its references — every stage a transition names, every partner and operation a call or a
progress report names, every auto action — against the partners' ``outbound`` config. A worker
refuses to start with a bad blueprint, so a bad blueprint never reaches a running worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from flows import actions
from hub import paths
from hub.configfile import format_loc, line_of, load_model, read_yaml
from hub.errors import ConfigError
from hub.order import Scenario
from hub.partners import Partner
from hub.services import ServiceKey

END_COMPLETE = "complete"
END_FAIL = "fail"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """``90`` / ``"90s"`` / ``"15m"`` / ``"4h"`` / ``"2d"`` → seconds."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if not m:
            raise ValueError("duration must look like 90s, 15m, 4h or 2d")
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]


class Condition(BaseModel):
    """A test on the order context: ``order.*`` (the canonical order), ``data.<stage>.*`` (what a
    stage produced: submission, call answers, callbacks), ``calls.<stage>.ok``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: str = Field(pattern=r"^(order|data|calls)\.[A-Za-z0-9_.]+$", examples=["order.extensions.changetype"])
    equals: Any = None
    not_equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        given = [x for x in (self.equals, self.not_equals, self.in_, self.exists) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, not_equals, in, exists")
        return self

    def matches(self, context: dict[str, Any]) -> bool:
        value = paths.get(context, self.field)
        if self.exists is not None:
            return (value is not None) == self.exists
        if self.equals is not None:
            return _same(value, self.equals)
        if self.not_equals is not None:
            return not _same(value, self.not_equals)
        return any(_same(value, v) for v in self.in_ or [])


def _same(a: Any, b: Any) -> bool:
    """Compare as text: YAML ``1`` and a partner's ``"1"`` mean the same code."""
    return a is not None and str(a) == str(b)


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(description=f"a stage name, {END_COMPLETE!r} or {END_FAIL!r}")
    when: Condition | None = None


class Report(BaseModel):
    """A progress report (§3.1.4.1.1): ``<code><state>`` to each target; gated ⇒ the order may not
    enter (on_enter) / leave (on_submit) the stage until every target accepted it."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[A-Z][0-9]{3}$", examples=["B001"])
    state: Literal["processing", "finished"]
    to: list[Name] = Field(min_length=1, examples=[["group", "esop"]])
    gate: bool = True
    operation: Name = "progress_report"


class CallSpec(BaseModel):
    """One request to one or more partners (fan-out: one envelope per target)."""

    model_config = ConfigDict(extra="forbid")

    to: list[Name] = Field(min_length=1)
    operation: Name
    request: dict[str, Any] = Field(default_factory=dict, description="template over the order context")
    await_callback: bool = Field(default=False, description="done only when the partner's callback arrived")
    on_failure: Literal["block", "fail"] = Field(
        default="block", description="block: the order waits, visibly, for a replay; fail: the order fails"
    )


class Hooks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reports: list[Report] = Field(default_factory=list)
    calls: list[CallSpec] = Field(default_factory=list, description="side calls; they never hold the stage")


class AutoSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = "accept"
    params: dict[str, Any] = Field(default_factory=dict)


class WaitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partner: Name
    operation: Name = Field(description="the callback's operation name")


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    title: str = ""
    kind: Literal["auto", "call", "wait", "manual"]
    sla: Duration | None = None
    skip_when: Condition | None = None
    on_enter: Hooks = Field(default_factory=Hooks)
    on_submit: Hooks = Field(default_factory=Hooks)
    auto: AutoSpec | None = None
    calls: list[CallSpec] = Field(default_factory=list, description="kind call: one after the other")
    wait_for: WaitSpec | None = None
    required_fields: list[str] = Field(default_factory=list, description="kind manual: submission data keys")
    transitions: list[Transition] = Field(default_factory=list, description="first match wins; else next stage")

    @model_validator(mode="after")
    def _kind_fields(self) -> Stage:
        if self.kind == "call" and not self.calls:
            raise ValueError("a call stage needs calls")
        if self.kind != "call" and self.calls:
            raise ValueError(f"calls are only for kind call (this stage is {self.kind}); use on_enter.calls")
        if self.kind == "wait" and self.wait_for is None:
            raise ValueError("a wait stage needs wait_for")
        if self.kind != "auto" and self.auto is not None:
            raise ValueError("auto is only for kind auto")
        if self.kind != "manual" and self.required_fields:
            raise ValueError("required_fields is only for kind manual")
        return self


class Blueprint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(pattern=r"^[a-z0-9_]+$")
    scenario: Scenario
    title: str = ""
    sla: Duration | None = Field(default=None, description="whole order")
    stages: list[Stage] = Field(min_length=1)

    @property
    def key(self) -> tuple[str, str]:
        return self.product, self.scenario.value

    @model_validator(mode="after")
    def _references(self) -> Blueprint:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique: {', '.join(dupes)}")
        known = set(names) | {END_COMPLETE, END_FAIL}
        for stage in self.stages:
            for t in stage.transitions:
                if t.to not in known:
                    raise ValueError(f"stage {stage.name!r}: transition to unknown stage {t.to!r}")
        return self

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def next_after(self, name: str) -> str:
        idx = [s.name for s in self.stages].index(name)
        return self.stages[idx + 1].name if idx + 1 < len(self.stages) else END_COMPLETE


class Blueprints:
    """All loaded blueprints by (product, scenario); frozen after load."""

    def __init__(self, items: dict[tuple[str, str], Blueprint], files: dict[tuple[str, str], Path]) -> None:
        self._items = items
        self.files = files

    def get(self, product: str | None, scenario: str | None) -> Blueprint | None:
        return self._items.get((product or "", scenario or ""))

    def __iter__(self) -> Iterator[Blueprint]:
        return iter(sorted(self._items.values(), key=lambda b: b.key))

    def __len__(self) -> int:
        return len(self._items)


def _check_refs(bp: Blueprint, partners: dict[str, Partner]) -> list[tuple[tuple[Any, ...], str]]:
    """References to partners, operations and auto actions: (location, message) pairs."""
    problems: list[tuple[tuple[Any, ...], str]] = []

    def check_op(loc: tuple[Any, ...], partner: str, operation: str) -> None:
        p = partners.get(partner)
        if p is None:
            problems.append((loc, f"unknown partner {partner!r} (known: {', '.join(sorted(partners))})"))
        elif p.outbound is None:
            problems.append((loc, f"partner {partner!r} has no outbound section"))
        elif operation not in p.outbound.config.get("operations", {}):
            problems.append((loc, f"partner {partner!r} has no outbound operation {operation!r}"))

    for i, st in enumerate(bp.stages):
        for hook_name in ("on_enter", "on_submit"):
            hooks: Hooks = getattr(st, hook_name)
            for j, r in enumerate(hooks.reports):
                for target in r.to:
                    check_op(("stages", i, hook_name, "reports", j, "to"), target, r.operation)
            for j, c in enumerate(hooks.calls):
                for target in c.to:
                    check_op(("stages", i, hook_name, "calls", j, "to"), target, c.operation)
        for j, c in enumerate(st.calls):
            for target in c.to:
                check_op(("stages", i, "calls", j, "to"), target, c.operation)
        if st.wait_for is not None and st.wait_for.partner not in partners:
            problems.append((("stages", i, "wait_for", "partner"), f"unknown partner {st.wait_for.partner!r}"))
        if st.kind == "auto":
            action = (st.auto or AutoSpec()).action
            if action not in actions.names():
                problems.append((("stages", i, "auto", "action"),
                                 f"unknown auto action {action!r} (known: {', '.join(actions.names())})"))
    return problems


def _is_v1(path: Path) -> bool:
    """v2 blueprints (a graph: top-level ``nodes``) are loaded by flows/graph/library.py."""
    data, _ = read_yaml(path)
    return not (isinstance(data, dict) and "nodes" in data)


def load_blueprints(config_dir: Path, partners: dict[str, Partner]) -> Blueprints:
    """Load and cross-check ``config_dir/flows/*.yaml``; every problem of every file at once."""
    directory = config_dir / "flows"
    loaded: dict[Path, Blueprint] = {}
    bad: list[str] = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            if _is_v1(path):
                loaded[path] = load_model(path, Blueprint)
        except ConfigError as exc:  # every bad file at once, not just the first
            bad.extend(exc.problems or [str(exc)])
    if bad:
        raise ConfigError(f"invalid configuration under {directory}", bad)
    items: dict[tuple[str, str], Blueprint] = {}
    files: dict[tuple[str, str], Path] = {}
    problems: list[str] = []
    for path, bp in loaded.items():
        _, node = read_yaml(path)
        for loc, msg in _check_refs(bp, partners):
            problems.append(f"{path}:{line_of(node, loc)}: {format_loc(loc)}: {msg}")
        if bp.key in items:
            problems.append(f"{path}: product {bp.product!r} scenario {bp.scenario.value!r} is also in {files[bp.key]}")
        items[bp.key] = bp
        files[bp.key] = path
    if problems:
        raise ConfigError(f"invalid blueprints under {directory}", problems)
    return Blueprints(items, files)


BLUEPRINTS: ServiceKey[Blueprints] = ServiceKey("blueprints")
"""The blueprints this process loaded (the worker at start; a web-only process on first use)."""
