"""``hub flows list|show|check|diff|schema|products-schema|coverage|docs`` — the v2 blueprint library,
loaded exactly as a worker loads it.

Every command reads ``config/flows/**/*.yaml`` through ``flows.graph.library.load_library`` with the
partners' operations, so what ``check`` accepts is what ``hub run`` runs. ``--config DIR`` points at
another configuration folder (its ``flows/`` and ``partners/``), ``--dir DIR`` at another flows folder
(tests/fixtures/flows). ``diff`` compares two versions of a blueprint — files, names, or ``name@digest``
(a version an order pinned: the current one, or one the worker stored in MongoDB) — node by node.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hub.errors import ConfigError, HubError, RetryableError
from hub.settings import load_settings

if TYPE_CHECKING:
    from flows.graph.library import Library
    from flows.graph.model import Blueprint, NodeSpec

flows_app = typer.Typer(help="Flow blueprints (config/flows/**/*.yaml).", no_args_is_help=True)

CONFIG = typer.Option(None, "--config", help="configuration folder (its flows/ and partners/); default: the hub's")
DIR = typer.Option(None, "--dir", help="read the blueprints from this folder instead of CONFIG/flows")


def _fail(exc: HubError) -> typer.Exit:
    """Every problem on stderr, one per line (``file:line: key: message``), and exit 2."""
    typer.echo(str(exc).split("\n", 1)[0], err=True)
    for p in getattr(exc, "problems", []):
        typer.echo(f"  - {p}", err=True)
    return typer.Exit(2)


def _config_dir(config: Path | None) -> Path:
    return config if config is not None else load_settings().config_dir


def _operations(config_dir: Path) -> dict[str, set[str]]:
    from flows.graph.check import partner_operations
    from hub.partners import load_partners

    return partner_operations(load_partners(config_dir))


def _load(config: Path | None, directory: Path | None) -> Library:
    from flows.graph.library import load_library

    config_dir = _config_dir(config)
    try:
        return load_library(config_dir, _operations(config_dir), directory=directory)
    except ConfigError as exc:
        raise _fail(exc) from exc


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _dur(seconds: float | None) -> str:
    if not seconds:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@flows_app.command("list")
def list_flows(config: Path | None = CONFIG, directory: Path | None = DIR) -> None:
    """Every blueprint: name, product, scenario, catalogue row, specified|inferred, section, nodes, file."""
    lib = _load(config, directory)
    rows = [(bp.name, bp.product or "-", bp.scenario or "-", bp.catalogue or "-", bp.source, bp.section or "-",
             str(len(bp.nodes)), _rel(lib.files[bp.name])) for bp in sorted(lib, key=lambda b: b.name)]
    head = ("NAME", "PRODUCT", "SCENARIO", "CATALOGUE", "SOURCE", "SECTION", "NODES", "FILE")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for what, found in (("templates", lib.templates), ("fragments", lib.fragments)):
        if found:
            typer.echo(f"{what}: " + ", ".join(f"{n} ({_rel(p)})" for n, p in sorted(found.items())))


def _common_lines(node: NodeSpec) -> list[str]:
    out: list[str] = []
    for r in node.reports:
        out.append(f"report at {r.at}: {r.partner}.{r.operation}{'  (gated)' if r.gate else ''}")
    if node.timeout:
        t = node.timeout
        then = [f"→ {t.to}"] if t.to else []
        if t.escalate:
            then.append(f"escalate {t.escalate.partner}.{t.escalate.operation}")
        out.append(f"timeout {_dur(t.after_s)} " + (", ".join(then) or "(the kind decides)"))
    if node.compensate:
        out.append(f"compensate on cancel: {node.compensate.partner}.{node.compensate.operation}")
    out += [f"→ {t.to} when {t.when}" if t.when else f"→ {t.to}" for t in node.transitions]
    if node.next:
        out.append(f"→ {node.next}" + ("  (otherwise)" if node.transitions else ""))
    return out


def _own_lines(node: NodeSpec) -> list[str]:
    """The kind's own fields (whatever kind: a registered kind needs no code here)."""
    from flows.graph.model import NodeSpec as Base

    out: list[str] = []
    for name in type(node).model_fields:
        if name in Base.model_fields:
            continue
        value = getattr(node, name)
        if value in (None, [], {}, ""):
            continue
        if name == "steps":
            for i, s in enumerate(value, 1):
                extra = f", query {s.poll_operation} every {_dur(s.poll_interval_s)} ×{s.poll_limit}" \
                    if s.mode == "poll" else ""
                out.append(f"call {i}: {s.partner}.{s.operation} ({s.mode}{extra})"
                           + (f"  ok: {s.ok}" if s.ok else ""))
        elif name == "fields":
            out.append("fields: " + ", ".join(
                f"{f.name} ({f.type}{', required' if f.required else ''})" for f in value))
        elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            out += [f"{name} {k} = {v}" for k, v in value.items()]  # set / input / output / reply: CEL
        else:
            shown = value if isinstance(value, str | int | float) else json.dumps(
                node.model_dump(mode="json")[name], ensure_ascii=False)
            out.append(f"{name}: {shown}")
    return out


@flows_app.command("show")
def show(
    target: str = typer.Argument(..., help="a blueprint name, or a product (then give the scenario)"),
    scenario: str | None = typer.Argument(None, help="the scenario, with a product"),
    config: Path | None = CONFIG,
    directory: Path | None = DIR,
) -> None:
    """One blueprint node by node: kind, title, calls, reports, timeout, where a token goes next."""
    lib = _load(config, directory)
    bp = lib.get(target, scenario) if scenario is not None else lib.by_name(target)
    if bp is None:
        asked = f"{target} {scenario}" if scenario is not None else target
        known = ", ".join(f"{b.name} ({b.product} {b.scenario})" if b.product else b.name for b in lib)
        typer.echo(f"no blueprint {asked} (known: {known or 'none'})", err=True)
        raise typer.Exit(1)
    typer.echo(f"{bp.name} — {_rel(lib.files[bp.name])}")
    facts = [f"product {bp.product}", f"scenario {bp.scenario}"] if bp.product else ["sub-flow"]
    facts += [f"catalogue {bp.catalogue}"] if bp.catalogue else []
    facts += [bp.source] + ([bp.section] if bp.section else []) + [f"{len(bp.nodes)} nodes", f"digest {bp.digest()}"]
    typer.echo("  " + " · ".join(facts))
    if bp.source_note:
        typer.echo(f"  note: {bp.source_note}")
    if lib.uses.get(bp.name):
        typer.echo("  built from: " + ", ".join(lib.uses[bp.name]))
    typer.echo(f"  start: {bp.start}")
    for name, node in bp.nodes.items():
        typer.echo(f"{name} [{node.kind}]{' ' + node.title if node.title else ''}")
        for line in _own_lines(node) + _common_lines(node):
            typer.echo(f"    {line}")


@flows_app.command("check")
def check(config: Path | None = CONFIG, directory: Path | None = DIR) -> None:
    """Validate every blueprint: model, expressions, partner operations, sub-flows, reachability (exit 2
    with every problem as file:line: key: message)."""
    lib = _load(config, directory)
    from hub.products import load_products

    try:
        products = load_products(_config_dir(config))
    except ConfigError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{len(lib)} blueprint(s) OK ({len(lib.templates)} template(s), {len(lib.fragments)} fragment(s)); "
               f"{len(products)} product field file(s) OK")


# ---- diff -------------------------------------------------------------------------------------
def _stored_version(config_dir: Path, name: str, digest: str) -> Blueprint | None:
    """A version a worker stored in MongoDB (flows/runtime/store.py ``blueprint_versions``)."""
    from pymongo.errors import PyMongoError

    from flows.graph.library import restore
    from flows.runtime.store import VERSIONS
    from hub import db as hubdb

    settings = load_settings()

    async def find() -> dict[str, Any] | None:
        client = hubdb.connect(settings)
        try:
            coll = hubdb.database(client, settings)[VERSIONS]
            found: dict[str, Any] | None = await coll.find_one({"_id": digest})
            return found
        finally:
            client.close()

    try:
        doc = asyncio.run(find())
    except PyMongoError as exc:  # the current files need no database; a stored version does
        raise RetryableError(f"version {digest} of {name!r} is not the current file, and MongoDB "
                          f"({settings.mongo_db}) could not be asked for it: {type(exc).__name__}") from exc
    if doc is None:
        return None
    if doc.get("name") != name:
        raise ConfigError(f"version {digest} is blueprint {doc.get('name')!r}, not {name!r}")
    return restore(doc["blueprint"])


def _version(spec: str, lib: Library, config_dir: Path, directory: Path | None) -> tuple[Blueprint, str]:
    """A blueprint and where it came from, for a file, a name or ``name@digest``."""
    from flows.graph.library import load_file

    path = Path(spec)
    if path.is_file():
        return load_file(path, config_dir, _operations(config_dir), directory=directory), _rel(path)
    name, _, digest = spec.partition("@")
    current = lib.by_name(name)
    if not digest:
        if current is None:
            raise ConfigError(f"no blueprint {name!r} and no such file (blueprints: {', '.join(lib.blueprints)})")
        return current, _rel(lib.files[name])
    if current is not None and current.digest().startswith(digest):
        return current, _rel(lib.files[name])
    stored = _stored_version(config_dir, name, digest)
    if stored is None:
        raise ConfigError(f"no version {digest} of {name!r}: neither the current file nor stored by a worker")
    return stored, "stored version"


def _changed(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@flows_app.command("diff")
def diff(
    a: str = typer.Argument(..., help="the old version: a file, a blueprint name or name@digest"),
    b: str = typer.Argument(..., help="the new version, the same way"),
    config: Path | None = CONFIG,
    directory: Path | None = DIR,
) -> None:
    """Nodes added, removed and changed (with the fields that changed) from A to B; exit 0 when they
    are the same version (same digest), 1 when they differ, 2 when one cannot be loaded."""
    lib = _load(config, directory)
    config_dir = _config_dir(config)
    try:
        (old, old_from), (new, new_from) = (_version(s, lib, config_dir, directory) for s in (a, b))
    except HubError as exc:  # a bad file, an unknown name or version, MongoDB unreachable
        raise _fail(exc) from exc
    typer.echo(f"--- {old.name}@{old.digest()}  ({old_from})")
    typer.echo(f"+++ {new.name}@{new.digest()}  ({new_from})")
    if old.digest() == new.digest():
        typer.echo("identical")
        return
    od, nd = old.model_dump(mode="json"), new.model_dump(mode="json")
    on, nn = od.pop("nodes"), nd.pop("nodes")
    for key in _changed(od, nd):
        typer.echo(f"~ {key}: {json.dumps(od.get(key), ensure_ascii=False)} → "
                   f"{json.dumps(nd.get(key), ensure_ascii=False)}")
    added = [n for n in nn if n not in on]
    removed = [n for n in on if n not in nn]
    changed = [(n, _changed(on[n], nn[n])) for n in on if n in nn and on[n] != nn[n]]
    for n in added:
        typer.echo(f"+ node {n} [{nn[n]['kind']}]")
    for n in removed:
        typer.echo(f"- node {n} [{on[n]['kind']}]")
    for n, fields in changed:
        typer.echo(f"~ node {n} [{nn[n]['kind']}]: {', '.join(fields)}")
    typer.echo(f"{len(added)} node(s) added, {len(removed)} removed, {len(changed)} changed")
    raise typer.Exit(1)


@flows_app.command("schema")
def schema(output: Path | None = typer.Option(None, "--output", "-o", help="write to this file")) -> None:
    """JSON Schema of a flow file (blueprint, template, fragment) for editors; docs/flows-schema.json."""
    from flows.graph.schema import flows_schema

    _write_json(flows_schema(), output)


def _write_json(doc: Any, output: Path | None) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)


@flows_app.command("products-schema")
def products_schema_cmd(output: Path | None = typer.Option(None, "--output", "-o", help="write to this file")) -> None:
    """JSON Schema of a product field file (config/products/<product>.yaml); docs/products.schema.json."""
    from hub.products import products_schema

    _write_json(products_schema(), output)


# ---- catalogue: coverage, generated product docs ----------------------------------------------------
def _catalogue(config: Path | None) -> Any:
    from app.catalogue import load_catalogue

    try:
        return load_catalogue(_config_dir(config))
    except ConfigError as exc:
        raise _fail(exc) from exc


@flows_app.command("coverage")
def coverage_cmd(config: Path | None = CONFIG, directory: Path | None = DIR,
                 as_json: bool = typer.Option(False, "--json", help="one JSON document")) -> None:
    """Every catalogue ID in scope of issues 11 and 12 (config/catalogue.yaml) with the blueprint(s)
    carrying it, or MISSING; exit 1 when any is missing."""
    from app.catalogue import coverage
    from hub.settings import PROJECT_ROOT

    lib = _load(config, directory)
    rows = coverage(_catalogue(config), lib, PROJECT_ROOT)
    sources = {bp.name: bp.source for bp in lib}
    missing = [r.row.id for r in rows if r.missing]
    if as_json:
        typer.echo(json.dumps({"ids": [{"id": r.row.id, "issue": r.row.issue, "title": r.row.title,
                                        "section": r.row.section, "blueprints": r.blueprints,
                                        "sources": [sources[b] for b in r.blueprints],
                                        "carried_by": r.row.carried_by if r.carried else None,
                                        "missing": r.missing} for r in rows],
                               "missing": missing}, ensure_ascii=False, indent=2))
    else:
        width = max(len(r.row.id) for r in rows)
        for r in rows:
            carrier = (", ".join(f"{b} ({sources[b]})" for b in r.blueprints) if r.blueprints
                       else str(r.row.carried_by) if r.carried else "MISSING")
            typer.echo(f"{r.row.id.ljust(width)}  {r.row.issue}  {carrier}")
        inferred = sum(1 for r in rows if r.blueprints and all(sources[b] == "inferred" for b in r.blueprints))
        typer.echo(f"{len(rows)} IDs: {sum(1 for r in rows if r.blueprints) - inferred} specified, {inferred} "
                   f"inferred only, {sum(1 for r in rows if r.carried and not r.blueprints)} carried by another "
                   f"file, {len(missing)} missing" + (f": {', '.join(missing)}" if missing else ""))
    if missing:
        raise typer.Exit(1)


@flows_app.command("docs")
def docs_cmd(config: Path | None = CONFIG, directory: Path | None = DIR,
             output: Path | None = typer.Option(None, "--output", "-o", help="write to this file")) -> None:
    """docs/products.md from the blueprints: a table per product (scenarios, stages, partners, codes,
    specified/inferred), the product field files, the coverage and the A.6 progress-code senders."""
    from app.catalogue import products_md
    from hub.products import load_products
    from hub.settings import PROJECT_ROOT

    lib = _load(config, directory)
    try:
        products = load_products(_config_dir(config))
    except ConfigError as exc:
        raise _fail(exc) from exc
    text = products_md(list(lib), _catalogue(config), products, PROJECT_ROOT)
    if output:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(flows_app, name="flows")
