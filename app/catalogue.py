"""The product catalogue as the blueprints carry it: coverage of the catalogue IDs, the A.6 progress
codes and their senders, and docs/products.md — all computed from the loaded blueprints.

Why generated: issues 11 and 12 ask that no catalogue row be skipped silently and that the product
documentation match what runs. ``config/catalogue.yaml`` ships the IDs in scope (with title, section,
issue) and the A.6 code list; the hub never reads the requirement documents at run time. ``hub flows
coverage`` prints each ID with the blueprint(s) whose ``catalogue:`` names it (or MISSING), ``hub flows
docs`` writes docs/products.md, and tests fail when either is stale or incomplete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.configfile import load_model

__all__ = ["Catalogue", "CodeRow", "Coverage", "code_senders", "coverage", "load_catalogue", "products_md",
           "stages_of"]

#: a report's literal progress code: 'B001processing', 'E601finished'
_CODE = re.compile(r"^'([A-Z]\d{3})(processing|finished)'$")
_LITERAL = re.compile(r"^'([A-Z]\d{3})'$")
_SHORT = {"processing": "p", "finished": "f"}
#: partner keys of CATALOGUE §0 for the report targets
_PARTNER_KEY = {"group": "G", "esop": "E"}
_SKIP_KINDS = frozenset({"choice", "end"})


class CatalogueRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    title: str
    section: str = ""
    issue: Literal[11, 12]
    carried_by: str | None = Field(default=None, description="a file carrying the row instead of a blueprint")


class CodeRow(BaseModel):
    """One code + state pair of CATALOGUE A.6 and where the documents put it."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[A-Z]\d{3}$")
    state: Literal["processing", "finished"]
    product: str
    scenario: str
    stage: str
    to: str

    @property
    def key(self) -> str:
        return f"{self.code}{_SHORT[self.state]}"


class Catalogue(BaseModel):
    """``config/catalogue.yaml``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[CatalogueRow] = Field(min_length=1)
    progress_codes: list[CodeRow] = Field(default_factory=list)


def load_catalogue(config_dir: Path) -> Catalogue:
    return load_model(config_dir / "catalogue.yaml", Catalogue)


@dataclass
class Coverage:
    row: CatalogueRow
    blueprints: list[str] = field(default_factory=list)
    carried: bool = False

    @property
    def missing(self) -> bool:
        return not self.blueprints and not self.carried


def coverage(catalogue: Catalogue, blueprints: Iterable[Any], project_root: Path) -> list[Coverage]:
    """Each catalogue ID with the blueprints naming it; a ``carried_by`` file counts when it exists and
    names the ID."""
    by_id: dict[str, list[str]] = {}
    for bp in blueprints:
        if bp.catalogue:
            by_id.setdefault(str(bp.catalogue), []).append(bp.name)
    out = []
    for row in catalogue.ids:
        carried = False
        if row.carried_by:
            path = project_root / row.carried_by
            carried = path.is_file() and row.id in path.read_text(encoding="utf-8")
        out.append(Coverage(row, sorted(by_id.get(row.id, [])), carried))
    return out


@dataclass(frozen=True)
class Sender:
    blueprint: str
    product: str | None
    scenario: str | None
    node: str
    title: str
    targets: tuple[str, ...]


def _code_of(report: Any) -> str | None:
    """The report's literal code + state (``B001p``), or None when it sends none / computes it."""
    found = _CODE.match(report.payload.get("progress_code", "").strip())
    if found:
        return f"{found.group(1)}{_SHORT[found.group(2)]}"
    literal = _LITERAL.match(report.payload.get("code", "").strip())
    if literal:  # a bare code: the state follows from when it is sent (G1: p on entering, f on submitting)
        return f"{literal.group(1)}{'p' if report.at == 'enter' else 'f'}"
    return None


def code_senders(blueprints: Iterable[Any]) -> dict[str, list[Sender]]:
    """Code + state (``B001p``) → every blueprint stage that reports it, with the partners it goes to."""
    found: dict[tuple[str, str, str], set[str]] = {}
    meta: dict[tuple[str, str, str], tuple[Any, Any]] = {}
    for bp in blueprints:
        for name, node in bp.nodes.items():
            for report in node.reports:
                code = _code_of(report)
                if code is None:
                    continue
                key = (code, bp.name, name)
                found.setdefault(key, set()).add(_PARTNER_KEY.get(report.partner, report.partner))
                meta[key] = (bp, node)
    out: dict[str, list[Sender]] = {}
    for (code, bp_name, node_name), targets in sorted(found.items()):
        bp, node = meta[(code, bp_name, node_name)]
        out.setdefault(code, []).append(Sender(bp_name, bp.product, bp.scenario, node_name, node.title or node_name,
                                               tuple(sorted(targets))))
    return out


def stages_of(bp: Any) -> list[str]:
    """The blueprint's stages depth first from ``start``, each node's ``next`` before its other
    successors, so the usual path reads first (choices and ends left out)."""
    seen: list[str] = []
    stack = [bp.start]
    while stack:
        name = stack.pop()
        if name in seen or name not in bp.nodes:
            continue
        seen.append(name)
        node = bp.nodes[name]
        following = [node.next] if node.next else []
        following += [str(b) for b in getattr(node, "branches", None) or []]
        following += [s for s in node.successors() if s not in following]
        stack.extend(reversed(following))
    return [n for n in seen if bp.nodes[n].kind not in _SKIP_KINDS]


def _partners(bp: Any) -> list[str]:
    names: set[str] = set()
    for node in bp.nodes.values():
        names.update(partner for _, partner, _ in node.calls())
    return sorted(names)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


HEADER = """# Products — generated from the blueprints

<!-- GENERATED by `hub flows docs -o docs/products.md` from config/flows/**, config/products/ and
config/catalogue.yaml. Do not edit by hand: tests/unit/catalogue_docs_test.py fails when it is stale. -->

One table per product: each blueprint (product × scenario) with its catalogue row, whether the
documents specify it or it is **inferred** from the standard template (the reason is listed under the
table), its section, its stages in order, the partners it calls or reports to and the progress codes
it sends. Then the typed order fields of the product (`config/products/<product>.yaml`), the
sub-flows, the coverage of the catalogue IDs of issues 11 and 12, and the A.6 progress-code index
with the blueprint stage that sends each code.

## Product field files (`config/products/<product>.yaml`)

The fields a product's rows branch on, checked at intake for REST, SOAP, SFTP and AMQP (a 400
problem+json / SOAP fault / rejected record naming every bad field) and used by `hub demo --all` for
its sample orders. Schema: `docs/products.schema.json` (`hub flows products-schema`).

```yaml
product: srv6_vpn                  # = the file name and the blueprints' product
title: SRV6 VPN
catalogue: [P06.1, P06.4]
fields:
  change_type:                     # blueprints read data.extensions.change_type
    path: extensions.change_type   # default extensions.<name>; or a canonical field (access_type, …)
    title: 变更类型
    type: str                      # str | int | float | bool | list | object
    enum: [speed_up, speed_down, move]
    regex: null                    # a full match, for str
    min: null                      # int/float: lowest value; str/list: shortest length
    max: null
    required: [change]             # true | false | the scenarios that need it
    forbidden: [survey]            # the scenarios in which it must be absent
    sample: speed_up               # the demo's value (default: from the rules)
```
"""


def products_md(blueprints: list[Any], catalogue: Catalogue, products: dict[str, Any],
                project_root: Path) -> str:
    """docs/products.md (deterministic: sorted, no dates)."""
    lines = [HEADER]
    by_product: dict[str, list[Any]] = {}
    subflows = []
    for bp in sorted(blueprints, key=lambda b: (b.product or "", b.scenario or "", b.name)):
        if bp.product:
            by_product.setdefault(bp.product, []).append(bp)
        else:
            subflows.append(bp)
    codes_of: dict[str, list[str]] = {}
    for code, senders in code_senders(blueprints).items():
        for s in senders:
            codes_of.setdefault(s.blueprint, []).append(code)
    for product, bps in sorted(by_product.items()):
        spec = products.get(product)
        title = f" — {spec.title}" if spec is not None and spec.title else ""
        lines += [f"## {product}{title}", ""]
        lines += _blueprint_table(bps, codes_of)
        if spec is not None and spec.fields:
            lines += ["", "Order fields (`config/products/" + product + ".yaml`):", "",
                      "| field | path | type | rule | required in | forbidden in |", "|---|---|---|---|---|---|"]
            for name, f in spec.fields.items():
                rule = "; ".join(x for x in (f"one of {', '.join(map(str, f.enum))}" if f.enum else "",
                                             f"regex `{f.regex}`" if f.regex else "",
                                             f"min {f.min:g}" if f.min is not None else "",
                                             f"max {f.max:g}" if f.max is not None else "") if x) or "–"
                req = "all" if f.required is True else ", ".join(map(str, f.required)) if f.required else "–"
                lines.append(f"| {name}{' (' + f.title + ')' if f.title else ''} | `{f.path}` | {f.type} | "
                             f"{_cell(rule)} | {req} | {', '.join(map(str, f.forbidden)) or '–'} |")
        lines.append("")
    if subflows:
        lines += ["## Sub-flows (no product/scenario: started by other blueprints)", ""]
        lines += _blueprint_table(subflows, codes_of)
        lines.append("")
    lines += _coverage_section(catalogue, blueprints, project_root)
    lines += _codes_section(catalogue, blueprints)
    return "\n".join(lines).rstrip() + "\n"


def _blueprint_table(bps: list[Any], codes_of: dict[str, list[str]]) -> list[str]:
    lines = ["| scenario | catalogue | source | section | stages | partners | codes | blueprint |",
             "|---|---|---|---|---|---|---|---|"]
    notes = []
    for bp in bps:
        stages = " → ".join(stages_of(bp))
        codes = ", ".join(codes_of.get(bp.name, [])) or "–"
        lines.append(f"| {bp.scenario or '–'} | {bp.catalogue or '–'} | {bp.source} | {_cell(bp.section or '–')} | "
                     f"{stages} | {', '.join(_partners(bp)) or '–'} | {codes} | `{bp.name}` |")
        if bp.source == "inferred":
            notes.append(f"- `{bp.name}` (inferred): {_cell(bp.source_note.strip() or 'no reason given')}")
    return [*lines, "", *notes] if notes else lines


def _coverage_section(catalogue: Catalogue, blueprints: list[Any], project_root: Path) -> list[str]:
    rows = coverage(catalogue, blueprints, project_root)
    by_bp = {bp.name: bp for bp in blueprints}
    specified = sum(1 for r in rows if any(by_bp[b].source == "specified" for b in r.blueprints))
    missing = [r.row.id for r in rows if r.missing]
    lines = ["## Coverage of the catalogue IDs (issues 11 and 12)", "",
             f"{len(rows)} IDs: {specified} with a specified blueprint, "
             f"{sum(1 for r in rows if r.blueprints) - specified} inferred only, "
             f"{sum(1 for r in rows if r.carried and not r.blueprints)} carried by another file, "
             f"{len(missing)} missing{': ' + ', '.join(missing) if missing else ''}.", "",
             "| ID | issue | title | section | carried by |", "|---|---|---|---|---|"]
    for r in rows:
        if r.blueprints:
            carrier = ", ".join(f"`{b}` ({by_bp[b].source})" for b in r.blueprints)
        elif r.carried:
            carrier = f"`{r.row.carried_by}`"
        else:
            carrier = "**MISSING**"
        lines.append(f"| {r.row.id} | {r.row.issue} | {_cell(r.row.title)} | {_cell(r.row.section)} | {carrier} |")
    return [*lines, ""]


def _codes_section(catalogue: Catalogue, blueprints: list[Any]) -> list[str]:
    senders = code_senders(blueprints)
    listed = {c.key for c in catalogue.progress_codes}
    lines = ["## A.6 progress codes and the stages that send them", "",
             "Each code + state of CATALOGUE A.6 (p = processing, sent on entering the stage; f = finished, sent "
             "on submitting it), where the documents put it, and the blueprint stage(s) that send it.", "",
             "| code | A.6: product · scenario · stage → to | sent by (blueprint · stage → to) |", "|---|---|---|"]
    for row in catalogue.progress_codes:
        sent = senders.get(row.key, [])
        cell = "<br>".join(f"`{s.blueprint}` · {s.node} ({s.title}) → {'+'.join(s.targets)}" for s in sent)
        lines.append(f"| {row.key} | {row.product} · {row.scenario} · {row.stage} → {row.to} | "
                     f"{cell or '**no sender**'} |")
    extra = sorted(set(senders) - listed)
    if extra:
        lines += ["", "Codes sent that A.6 does not list: " + ", ".join(
            f"{code} (" + ", ".join(f"`{s.blueprint}` · {s.node}" for s in senders[code]) + ")" for code in extra)]
    return [*lines, ""]
