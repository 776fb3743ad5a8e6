"""``hub rules list | show | add | edit | delete | enable | disable`` — the stuck-order rule library.

A rule from options (``--id --name --when --product --stage --severity --action --team``) or from a
YAML / JSON file (``--file``: one rule, the shape of config/rules/*.yaml entries). Checked like the
admin API's: CEL syntax, the facts a condition reads, the scope against the blueprints, the sinks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

from app.admin import console as c
from app.ops.service import OpsService

app = typer.Typer(help="Stuck-order rules: list, show, add, edit, delete, enable, disable.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")
WHO = typer.Option(None, "--as", help="name recorded in the history (default cli:user@host)")


def _svc(o: c.Ops) -> OpsService:
    return OpsService(o.db, o.settings.config_dir, o.partners)


def _fields(file: Path | None, **options: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if file is not None:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{file}: expected one rule (a mapping)")
        data.update(loaded)
    keys = ("product", "scenario", "stage", "partner", "operation")
    scope = {k: options[k] for k in keys if options.get(k) is not None}
    for k in keys:
        options.pop(k, None)
    if scope:
        data["scope"] = {**(data.get("scope") or {}), **scope}
    action = {k: v for k, v in (("type", options.pop("action", None)), ("team", options.pop("team", None)))
              if v is not None}
    if action:
        data["action"] = {**(data.get("action") or {}), **action}
    notify = options.pop("notify", None)
    if notify:
        data["notify"] = notify
    data.update({k: v for k, v in options.items() if v is not None})
    return data


def _print(rule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        c.dump(rule)
        return
    c.show_fields({**rule, "scope": json.dumps(rule.get("scope")), "action": json.dumps(rule.get("action"))},
                  "rule", rule["id"], False, ("id", "name", "enabled", "severity", "scope", "when", "action",
                                              "notify", "description", "source", "version", "updated_by",
                                              "updated_at", "last_evaluated_at", "holding", "last_error"))



@app.command("list")
def list_(
    q: str | None = typer.Option(None, "--q", "-q", help="search code and name (every word, case-insensitive)"),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled", help="only enabled / disabled rules"),
    as_json: bool = JSON,
) -> None:
    """The rules, by code (id)."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await _svc(o).rules.find(enabled=enabled, q=q)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    for r in rows:
        scope = r.get("scope") or {}
        keys = ("partner", "operation") if r.get("kind") == "interface" else ("product", "scenario", "stage")
        r["scope_text"] = "-" if r.get("kind") == "indicator" else "/".join(scope.get(k) or "*" for k in keys)
        r["action_text"] = (r.get("action") or {}).get("type")
    c.table(rows, [("id", "code"), ("name", "name"), ("kind", "kind"), ("enabled", "enabled"),
                   ("severity", "severity"), ("scope_text", "scope"), ("when", "condition"), ("action_text", "action"),
                   ("holding", "holding"), ("last_error", "last error")], title=f"{len(rows)} rules")


@app.command()
def show(rule_id: str, as_json: bool = JSON) -> None:
    """One rule with its last evaluation (orders it holds for, last error)."""

    async def go(o: c.Ops) -> dict[str, Any] | None:
        return await _svc(o).rules.get(rule_id)

    rule = c.run(go)
    if rule is None:
        c.err.print(f"[red]no rule {c.visible(rule_id)}[/red]")
        raise typer.Exit(1)
    _print(rule, as_json)


@app.command()
def add(
    file: Path | None = typer.Option(None, "--file", "-f", exists=True, dir_okay=False, help="a rule in YAML/JSON"),
    rule_id: str | None = typer.Option(None, "--id"), name: str | None = typer.Option(None, "--name"),
    when: str | None = typer.Option(None, "--when", help="CEL condition over data (facts) and now"),
    product: str | None = typer.Option(None, "--product"), scenario: str | None = typer.Option(None, "--scenario"),
    stage: str | None = typer.Option(None, "--stage"),
    kind: str | None = typer.Option(None, "--kind", help="order (default), interface or indicator (use --file)"),
    partner: str | None = typer.Option(None, "--partner", help="order: origin; interface: the partner called"),
    operation: str | None = typer.Option(None, "--operation", help="interface rules: the partner operation"),
    window_s: float | None = typer.Option(None, "--window-s", help="interface rules: the window in seconds"),
    severity: str | None = typer.Option(None, "--severity", help="info, warning, major, critical"),
    action: str | None = typer.Option(None, "--action", help="alert, escalate, retry"),
    team: str | None = typer.Option(None, "--team", help="the team an escalate action assigns"),
    notify: list[str] | None = typer.Option(None, "--notify", help="a sink name (repeat for several)"),
    description: str | None = typer.Option(None, "--description"),
    who: str | None = WHO, as_json: bool = JSON,
) -> None:
    """Add a rule; exit 2 with every problem when it does not validate."""
    data = _fields(file, id=rule_id, name=name, when=when, product=product, scenario=scenario, stage=stage,
                   kind=kind, partner=partner, operation=operation, window_s=window_s,
                   severity=severity, action=action, team=team, notify=notify, description=description)

    async def go(o: c.Ops) -> dict[str, Any]:
        return await _svc(o).add_rule(data, who or c.default_who())

    _print(c.run(go), as_json)


@app.command()
def edit(
    rule_id: str,
    file: Path | None = typer.Option(None, "--file", "-f", exists=True, dir_okay=False, help="fields to change"),
    name: str | None = typer.Option(None, "--name"), when: str | None = typer.Option(None, "--when"),
    product: str | None = typer.Option(None, "--product"), scenario: str | None = typer.Option(None, "--scenario"),
    stage: str | None = typer.Option(None, "--stage"), severity: str | None = typer.Option(None, "--severity"),
    action: str | None = typer.Option(None, "--action"), team: str | None = typer.Option(None, "--team"),
    notify: list[str] | None = typer.Option(None, "--notify"),
    description: str | None = typer.Option(None, "--description"),
    who: str | None = WHO, as_json: bool = JSON,
) -> None:
    """Change the given fields of a rule (the whole rule is validated again)."""
    changes = _fields(file, name=name, when=when, product=product, scenario=scenario, stage=stage,
                      severity=severity, action=action, team=team, notify=notify, description=description)

    async def go(o: c.Ops) -> dict[str, Any]:
        return await _svc(o).edit_rule(rule_id, changes, who or c.default_who())

    _print(c.run(go), as_json)


@app.command()
def delete(rule_id: str, who: str | None = WHO) -> None:
    """Delete a rule (kept as a tombstone: the config seed does not bring it back)."""

    async def go(o: c.Ops) -> bool:
        return await _svc(o).delete_rule(rule_id, who or c.default_who())

    if not c.run(go):
        c.err.print(f"[red]no rule {c.visible(rule_id)}[/red]")
        raise typer.Exit(1)
    typer.echo(f"rule {rule_id} deleted")


def _switch(rule_id: str, enabled: bool, who: str | None, as_json: bool) -> None:
    async def go(o: c.Ops) -> dict[str, Any]:
        return await _svc(o).enable_rule(rule_id, enabled, who or c.default_who())

    rule = c.run(go)
    if as_json:
        c.dump(rule)
    else:
        typer.echo(f"rule {rule_id} {'enabled' if enabled else 'disabled'}")


@app.command()
def enable(rule_id: str, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Evaluate the rule again from the next cycle."""
    _switch(rule_id, True, who, as_json)


@app.command()
def disable(rule_id: str, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Stop evaluating the rule (its open alerts resolve at the next cycle)."""
    _switch(rule_id, False, who, as_json)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="rules")
