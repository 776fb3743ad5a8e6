"""Declarative partner simulators: one ``simulators/partners/<partner>.yaml`` per simulated REST partner.

Why files instead of code: the catalogues (issues 11, 12) bring a dozen partner systems (3A, EOMS,
the video gateway, …) that differ only in *how* they answer — which path is which operation, whether
the answer carries the result (``sync``), comes later by callback (``callback``), must be fetched by a
result query (``poll``) or arrives as several callbacks in order (``staged``, the construction
platform: accepted → surveyed → built → completed) — and in their own success rule and error field
(G3: ``code "0"`` + ``msg``, ``code 0`` + ``message``, HTTP 201 + ``parameterValue``). A new partner is
one file; the server (simulators/server.py, simulators/rest.py) applies the failure modes of
``POST /_control/{partner}`` and the idempotency-key dedupe to every declared partner alike.

Templated values (in ``accepted``, ``rejected``, ``result`` and stage results): a string may hold
``{ref}`` (one random reference per request), ``{now}`` (China Standard Time, ``%Y-%m-%d %H:%M:%S``),
``{today}``, ``{partner}``, ``{operation}`` and ``{request.<field>[.<field>…]}`` (an echo of the
request body). A string that is exactly one placeholder keeps the echoed value's type (a number stays
a number); a missing request field gives ``null`` (alone) or the empty string (inside text).

An operation's ``cases`` answer some requests differently (the first whose ``match`` patterns all match
the request's fields is laid over ``result``): the resource center has no resources for ``hub demo``'s
orders, so the demo exercises the P14 construction path while other callers keep the plain answer.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.configfile import load_dir
from hub.errors import ConfigError

__all__ = ["INTERIM_STATUSES", "SIM_DIR", "Case", "OperationSim", "PartnerSim", "Shape", "Stage", "load_sims",
           "render"]

SIM_DIR = Path(__file__).resolve().parent / "partners"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_ROOTS = frozenset({"ref", "now", "today", "partner", "operation"})
_CST = dt.timezone(dt.timedelta(hours=8))
Reply = Literal["sync", "callback", "poll", "staged", "query"]
#: statuses of a staged reply's interim callbacks: what flows/runtime/translate.py PENDING_STATUSES reads
#: as "not yet" (simulators/ may not import flows/: tests/unit/simulators_partners_test.py keeps them equal)
INTERIM_STATUSES = frozenset({"pending", "processing", "running", "doing", "in_progress", "accepted"})


def _check_templates(value: Any, where: str) -> None:
    """Refuse an unknown placeholder at load (a typo would otherwise reach every answer)."""
    if isinstance(value, str):
        for name in _PLACEHOLDER.findall(value):
            if name not in _ROOTS and not name.startswith("request."):
                raise ValueError(f"{where}: unknown placeholder {{{name}}} (use {sorted(_ROOTS)} or request.<field>)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_templates(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_templates(v, f"{where}[{i}]")


class Shape(BaseModel):
    """One kind of HTTP answer: status and (templated) JSON body."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(default=200, ge=100, le=599)
    body: dict[str, Any] = Field(default_factory=dict)


class Stage(BaseModel):
    """One callback of a ``staged`` reply: the callback's ``status`` and what its ``result`` carries."""

    model_config = ConfigDict(extra="forbid")

    status: str = Field(min_length=1, description="callback status (ok/completed/success for the last one)")
    result: dict[str, Any] = Field(default_factory=dict)


class Case(BaseModel):
    """A request-dependent answer: when every ``match`` field of the request (dotted path → shell
    pattern, ``fnmatch``) matches, ``result`` is laid over the operation's result. Why: one simulated
    partner must answer some orders differently — the resource center has no resources for the demo's
    orders (``hub demo`` external ids ``DEMO-…``), so P11.6 exercises its P14 construction path, while
    the tests' orders keep the with-resources answer."""

    model_config = ConfigDict(extra="forbid")

    match: dict[str, str] = Field(min_length=1, description="request field (dotted) → fnmatch pattern")
    result: dict[str, Any] = Field(min_length=1, description="fields laid over the operation's result (templated)")
    note: str | None = None

    def matches(self, request: Any) -> bool:
        for dotted, pattern in self.match.items():
            value = _lookup(request, dotted)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True


class OperationSim(BaseModel):
    """One operation of a simulated partner."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(pattern=r"^(/[A-Za-z0-9_.\-]+)+$", description="path under /<partner>, as in config/partners")
    reply: Reply = Field(default="sync", description="sync: the answer carries the result; callback: accepted "
                         "now, result POSTed to callback_url; poll: accepted now, the result is fetched by a "
                         "`query` operation; staged: several callbacks in order; query: the result query of poll")
    result: dict[str, Any] = Field(default_factory=lambda: {"ref": "R-{ref}"},
                                   description="the result fields (templated)")
    processing: int = Field(default=1, ge=0, le=100,
                            description="poll: how many result queries answer 'processing' before the result")
    stages: list[Stage] = Field(default_factory=list, description="staged: the callbacks, in order")
    cases: list[Case] = Field(default_factory=list, description="request-dependent results; the first that "
                              "matches is laid over `result`")
    accepted: Shape | None = Field(default=None, description="this operation's success answer (else the partner's)")
    rejected: Shape | None = Field(default=None, description="this operation's business error (else the partner's)")
    note: str | None = Field(default=None, description="why it is named so (the seeds are silent), what it models")

    @model_validator(mode="after")
    def _consistent(self) -> OperationSim:
        if self.reply == "staged":
            if len(self.stages) < 2:
                raise ValueError("reply staged needs stages: at least two callbacks in order")
            if self.stages[-1].status.lower() not in {"ok", "success", "completed", "done"}:
                raise ValueError("the last stage of a staged reply is the result: status ok/success/completed/done")
            interim = [st.status for st in self.stages[:-1] if st.status.lower() not in INTERIM_STATUSES]
            if interim:
                raise ValueError(f"interim stage status {interim[0]!r}: the hub reads only "
                                 f"{sorted(INTERIM_STATUSES)} as 'not yet' (put the phase in the result)")
        elif self.stages:
            raise ValueError(f"stages are for reply staged, not {self.reply}")
        if self.cases and self.reply in ("staged", "query"):
            raise ValueError(f"cases are for a result (sync, callback, poll), not reply {self.reply}")
        return self

    def result_for(self, request: Any) -> dict[str, Any]:
        """The result template for this request: the first matching case laid over ``result``."""
        case = next((c for c in self.cases if c.matches(request)), None)
        return self.result if case is None else {**self.result, **case.result}


class PartnerSim(BaseModel):
    """A simulated partner: its answer shapes (G3) and its operations."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the name in config/partners/<partner>.yaml")
    title: str = ""
    accepted: Shape = Field(description="success answer; a sync reply adds the result fields to its body")
    rejected: Shape = Field(description="business error (mode error): the partner's own error field")
    server_error: Shape = Field(default_factory=lambda: Shape(status=500, body={"code": "500",
                                                                                "msg": "simulated server error"}))
    operations: dict[str, OperationSim] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> PartnerSim:
        paths: dict[str, str] = {}
        for name, op in self.operations.items():
            if op.path in paths:
                raise ValueError(f"operations {paths[op.path]} and {name} share path {op.path}")
            paths[op.path] = name
        if any(op.reply == "poll" for op in self.operations.values()) and not any(
                op.reply == "query" for op in self.operations.values()):
            raise ValueError("a poll operation needs a result-query operation (reply: query) in the same partner")
        _check_templates(self.model_dump(mode="json", exclude={"partner", "title"}), self.partner)
        return self

    def by_path(self, path: str) -> tuple[str, OperationSim] | None:
        for name, op in self.operations.items():
            if op.path == path:
                return name, op
        return None


def load_sims(directory: Path = SIM_DIR) -> dict[str, PartnerSim]:
    """Every ``*.yaml`` in ``directory``, validated; bad files are ConfigErrors naming ``file:line: key``."""
    sims: dict[str, PartnerSim] = {}
    for path, sim in load_dir(directory, PartnerSim).items():
        if sim.partner != path.stem:
            raise ConfigError(f"{path} is invalid", [f"{path}:1: partner: {sim.partner!r} must match the file "
                                                     f"name {path.stem!r}"])
        sims[sim.partner] = sim
    return sims


def _lookup(request: Any, dotted: str) -> Any:
    value = request
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def render(value: Any, *, ref: str, partner: str, operation: str, request: Any,
           now: dt.datetime | None = None) -> Any:
    """``value`` with its placeholders filled (see the module docstring)."""
    moment = now or dt.datetime.now(_CST)
    names = {"ref": ref, "now": moment.strftime("%Y-%m-%d %H:%M:%S"), "today": moment.strftime("%Y-%m-%d"),
             "partner": partner, "operation": operation}

    def one(name: str) -> Any:
        return _lookup(request, name[len("request."):]) if name.startswith("request.") else names[name]

    def fill(v: Any) -> Any:
        if isinstance(v, str):
            whole = _PLACEHOLDER.fullmatch(v)
            if whole:
                return one(whole.group(1))
            return _PLACEHOLDER.sub(lambda m: "" if (x := one(m.group(1))) is None else str(x), v)
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        return v

    return fill(value)
