"""``hub flows list|show|check`` — the shipped blueprints, validated exactly as a worker loads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from hub.settings import load_settings

if TYPE_CHECKING:
    from flows.blueprint import Blueprints

flows_app = typer.Typer(help="Product blueprints (config/flows/*.yaml).", no_args_is_help=True)


def _load() -> Blueprints:
    from flows.blueprint import load_blueprints
    from hub.partners import load_partners

    settings = load_settings()
    return load_blueprints(settings.config_dir, load_partners(settings.config_dir))


def _dur(seconds: float | None) -> str:
    if not seconds:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@flows_app.command("list")
def list_flows() -> None:
    """Every blueprint: product, scenario, stages, SLA, file."""
    bps = _load()
    typer.echo(f"{'PRODUCT':<16} {'SCENARIO':<10} {'STAGES':>6} {'SLA':>5}  TITLE / FILE")
    for bp in bps:
        typer.echo(f"{bp.product:<16} {bp.scenario.value:<10} {len(bp.stages):>6} {_dur(bp.sla):>5}  "
                   f"{bp.title}  ({bps.files[bp.key].name})")


@flows_app.command("show")
def show(product: str = typer.Argument(...), scenario: str = typer.Argument(...)) -> None:
    """One blueprint, stage by stage: kind, SLA, calls, progress reports (gated or not), transitions."""
    bps = _load()
    bp = bps.get(product, scenario)
    if bp is None:
        known = ", ".join(f"{b.product} {b.scenario.value}" for b in bps)
        typer.echo(f"no blueprint for {product} {scenario} (known: {known})", err=True)
        raise typer.Exit(1)
    typer.echo(f"{bp.product} / {bp.scenario.value} — {bp.title}  (SLA {_dur(bp.sla)}, {bps.files[bp.key]})")
    for i, st in enumerate(bp.stages, 1):
        typer.echo(f"{i:>2}. {st.name} [{st.kind}] {st.title}  SLA {_dur(st.sla)}")
        if st.skip_when:
            typer.echo(f"      skip when {st.skip_when.model_dump(exclude_none=True, by_alias=True)}")
        for hook, label in (("on_enter", "on enter"), ("on_submit", "on submit")):
            hooks = getattr(st, hook)
            for r in hooks.reports:
                typer.echo(f"      {label}: report {r.code}{r.state} → {', '.join(r.to)}"
                           f"{'  (gated)' if r.gate else ''}")
            for c in hooks.calls:
                typer.echo(f"      {label}: call {c.operation} → {', '.join(c.to)}")
        if st.auto:
            typer.echo(f"      auto: {st.auto.action}")
        for n, c in enumerate(st.calls, 1):
            typer.echo(f"      call {n}: {c.operation} → {', '.join(c.to)}"
                       f"{'  (waits for callback)' if c.await_callback else ''}  on failure: {c.on_failure}")
        if st.wait_for:
            typer.echo(f"      waits for callback {st.wait_for.operation} from {st.wait_for.partner}")
        if st.required_fields:
            typer.echo(f"      required: {', '.join(st.required_fields)}")
        for t in st.transitions:
            cond = t.when.model_dump(exclude_none=True, by_alias=True) if t.when else "always"
            typer.echo(f"      → {t.to} when {cond}")


@flows_app.command("check")
def check() -> None:
    """Validate every blueprint against the partners' outbound config (exit 2 on any problem)."""
    bps = _load()  # ConfigError → exit 2 with every problem, file:line: key
    typer.echo(f"{len(bps)} blueprint(s) OK")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(flows_app, name="flows")
