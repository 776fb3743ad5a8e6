"""Report definitions (C.5, C.6): what the hub reports to 一编 per product, and how.

``config/reports/*.yaml``; each file names the partner the reports go to, the fields every report
shares (C.6 §3.1.1.5: 工单主题, CRM订单号, …) and one definition per product with the fields C.6
adds for it. A definition may send a **real-time** report on stage events (``realtime.on``:
``enter`` / ``exit``; app/reports/realtime.py) and be written to **daily / monthly files**
(``files``; app/reports/files.py, format in docs/reporting.md).

A field is ``key`` (the JSON key and CSV column), ``label`` (the group's name for it, from C.6),
and where its value comes from: ``path`` into the order document (``order.extensions.subject``,
``external_order_id``, ``current_stage``) or into the stage event (``event.stage``,
``event.on``, ``event.at``, ``event.by``), or a constant ``value``. Validated when loaded, with
``file:line: key`` like blueprints: unknown partner, duplicate names or keys, a product defined twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.sftp.config import SftpConnection
from hub import paths
from hub.configfile import line_of, load_model, read_yaml
from hub.errors import ConfigError
from hub.partners import Partner
from hub.retry import SuccessRule

KEY = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
Stage = Literal["enter", "exit"]
STAGE_EVENTS: tuple[Stage, ...] = ("enter", "exit")


class FieldDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY, examples=["crmOrderId"])
    label: str = Field(default="", description="the group's name for the field (C.6)", examples=["CRM订单号"])
    path: str | None = Field(default=None, examples=["external_order_id", "order.extensions.subject", "event.stage"])
    value: Any = Field(default=None, description="a constant instead of a path")
    default: Any = Field(default=None, description="when the path finds nothing")

    @model_validator(mode="after")
    def _source(self) -> FieldDef:
        if (self.path is None) == (self.value is None):
            raise ValueError("give exactly one of path or value")
        return self


class Realtime(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: list[Stage] = Field(default_factory=lambda: list(STAGE_EVENTS), min_length=1)
    stages: list[str] | None = Field(default=None, description="only these stages (default: every stage)")


class Files(BaseModel):
    model_config = ConfigDict(extra="forbid")

    periods: list[Literal["daily", "monthly"]] = Field(min_length=1)
    prefix: str = Field(pattern=r"^[A-Z0-9_]{1,32}$", description="file name prefix", examples=["ZYCS"])


class ReportDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    products: list[str] = Field(min_length=1, description="hub product keys (blueprint `product`)")
    title: str = Field(description="the product as C.6 names it", examples=["互联网专线"])
    catalogue: str = Field(default="", description="CATALOGUE.md row", examples=["C.6.6"])
    cross_province: bool = Field(default=False, description="counted as 跨省工单透明化 (C.5 (1))")
    fields: list[FieldDef] = Field(default_factory=list, description="added to the file's base_fields")
    realtime: Realtime | None = None
    files: Files | None = None


class FileTransport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection: SftpConnection
    dir: str = Field(default="/reports/{partner}/{period}/{yyyy}{mm}", description="placeholders: partner, "
                     "period, yyyy, mm, dd")
    max_rows: int = Field(default=500_000, ge=1, le=10_000_000, description="rows per file; more: next seq")
    timezone: str = "Asia/Shanghai"


class ReportsFile(BaseModel):
    """One ``config/reports/*.yaml``."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(examples=["group"])
    operation: str = Field(default="realtime_report", description="real-time reports: the partner's outbound "
                           "REST operation (its path, success rule, auth, crypto); when the partner file has "
                           "none, POST to base_url + `path`, judged by `success`")
    path: str = Field(default="/api/realtimeReport", pattern=r"^/")
    success: SuccessRule = Field(default_factory=lambda: SuccessRule(http_status=[201], error_field="parameterValue"))
    base_fields: list[FieldDef] = Field(default_factory=list)
    files: FileTransport | None = None
    reports: list[ReportDef] = Field(min_length=1)


@dataclass(frozen=True)
class Report:
    """A loaded definition: the report, its partner and transport, every field (base + own)."""

    definition: ReportDef
    partner: str
    path: str
    fields: tuple[FieldDef, ...]
    transport: FileTransport | None
    source: str
    operation: str = "realtime_report"
    success: SuccessRule = field(default_factory=SuccessRule)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def file_fields(self) -> tuple[FieldDef, ...]:
        """The fields of a file row: the stage event's (``event.*``) exist only in real-time reports."""
        return tuple(f for f in self.fields if not (f.path or "").startswith("event."))


@dataclass
class Reports:
    by_name: dict[str, Report] = field(default_factory=dict)
    by_product: dict[str, list[Report]] = field(default_factory=dict)

    def realtime_for(self, product: str) -> list[Report]:
        return [r for r in self.by_product.get(product, []) if r.definition.realtime is not None]

    def files_for(self, period: str) -> list[Report]:
        return [r for r in self.by_name.values()
                if r.definition.files is not None and period in r.definition.files.periods]


def load_reports(config_dir: Path, partners: dict[str, Partner] | None = None) -> Reports:
    """Every ``config/reports/*.yaml``; all problems at once, each ``file:line: key: message``."""
    out = Reports()
    problems: list[str] = []
    for path in sorted((config_dir / "reports").glob("*.yaml")):
        try:
            doc = load_model(path, ReportsFile)
        except ConfigError as exc:
            problems.extend(exc.problems or [str(exc)])
            continue
        node = read_yaml(path)[1]

        def at(*loc: Any, _node: Any = node, _path: Path = path) -> str:
            return f"{_path}:{line_of(_node, loc) or 1}"

        if partners is not None and doc.partner not in partners:
            problems.append(f"{at('partner')}: partner: unknown partner {doc.partner!r}")
        for i, rep in enumerate(doc.reports):
            if rep.name in out.by_name:
                problems.append(f"{at('reports', i, 'name')}: reports[{i}].name: {rep.name!r} defined twice "
                                f"(also in {out.by_name[rep.name].source})")
                continue
            fields = (*doc.base_fields, *rep.fields)
            keys = [f.key for f in fields]
            for j, key in enumerate(rep.fields):
                if keys.count(key.key) > 1:
                    problems.append(f"{at('reports', i, 'fields', j, 'key')}: reports[{i}].fields[{j}].key: "
                                    f"{key.key!r} is already a field of this report")
            if rep.files is not None and doc.files is None:
                problems.append(f"{at('reports', i, 'files')}: reports[{i}].files: the file has no top-level "
                                "`files:` transport (connection, dir)")
            for p in rep.products:
                taken = [r.name for r in out.by_product.get(p, []) if r.definition.realtime and rep.realtime]
                if taken:
                    problems.append(f"{at('reports', i, 'products')}: reports[{i}].products: {p!r} already has "
                                    f"the real-time report {taken[0]!r}")
            report = Report(rep, doc.partner, doc.path, fields, doc.files, str(path), doc.operation, doc.success)
            out.by_name[rep.name] = report
            for p in rep.products:
                out.by_product.setdefault(p, []).append(report)
    if problems:
        raise ConfigError(f"invalid configuration under {config_dir / 'reports'}", problems)
    return out


def values(report: Report, doc: dict[str, Any], event: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's fields of one order and stage event (a file row: no event), in definition order."""
    scope = {**doc, "event": event} if event is not None else doc
    out: dict[str, Any] = {}
    for f in report.fields if event is not None else report.file_fields:
        if f.path is None:
            out[f.key] = f.value
        else:
            found = paths.get(scope, f.path)
            out[f.key] = f.default if found is None else found
    return out


def projection(reports: Iterable[Report], *, also: Iterable[str] = ()) -> dict[str, int]:
    """The MongoDB projection of what the field paths of ``reports`` read of an order (plus ``also``),
    so that any path a definition names (``order.customer.name``, ``state.data.resource_status``) is
    found by the daily file and by the real-time sweep alike, and neither reads a whole document.

    A path is projected down to its first list index (``order.addresses.0.city`` → ``order.addresses``:
    a projection cannot index a list); a path under another one is left out (MongoDB refuses
    ``order`` with ``order.customer``); ``event.*`` is the stage event, not the document."""
    wanted = set(also)
    for report in reports:
        for f in report.fields:
            if f.path and not f.path.startswith("event."):
                parts = paths.split(f.path)
                keys = next((parts[:i] for i, part in enumerate(parts) if part.isdigit()), parts)
                wanted.add(".".join(keys or parts[:1]))
    return {p: 1 for p in sorted(wanted) if not any(p.startswith(q + ".") for q in wanted)}
