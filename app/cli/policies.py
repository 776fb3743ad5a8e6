"""``hub dlq policies list | set | pause | resume | delete`` — automatic dead-letter replay per partner
(app/ops/replay_policy.py). Registered into the ``hub dlq`` group (listed after app.cli.dlq)."""

from __future__ import annotations

from typing import Any

import typer

from app.admin import console as c
from app.cli.dlq import app as dlq_app
from app.ops.replay_policy import PolicyStore, parse_policy
from app.ops.service import OpsService

app = typer.Typer(help="Automatic replay per partner once it answers again: list, set, pause, resume, delete.",
                  no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")
WHO = typer.Option(None, "--as", help="name recorded in the history (default cli:user@host)")


def _audit(o: c.Ops, who: str, action: str, detail: str) -> Any:
    return OpsService(o.db, o.settings.config_dir, o.partners).audit(who, action, detail)


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """The policies and what each did last."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await PolicyStore(o.db).list()

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    for r in rows:
        last = r.get("last_run") or {}
        r["last"] = f"{last.get('replayed', 0)} replayed" + (f" ({last['skipped']})" if last.get("skipped") else "")
    c.table(rows, [("partner", "partner"), ("paused", "paused"), ("rate", "per s"), ("hours", "hours (UTC)"),
                   ("max_per_run", "max per run"), ("probe_url", "probe"), ("last_run.at", "last run"),
                   ("last", "last result")], title=f"{len(rows)} replay policies")


@app.command("set")
def set_(partner: str, rate: float = typer.Option(5.0, "--rate", help="letters per second"),
         hours: str = typer.Option("00:00-24:00", "--hours", help="UTC window, e.g. 08:00-20:00"),
         max_per_run: int = typer.Option(500, "--max-per-run"),
         probe_url: str | None = typer.Option(None, "--probe-url", help="health URL (default: an ok call)"),
         paused: bool = typer.Option(False, "--paused/--active"), who: str | None = WHO,
         as_json: bool = JSON) -> None:
    """Create or replace a partner's policy."""
    policy = parse_policy({"partner": partner, "rate": rate, "hours": hours, "max_per_run": max_per_run,
                           "probe_url": probe_url, "paused": paused})

    async def go(o: c.Ops) -> dict[str, Any]:
        name = who or c.default_who()
        out = await PolicyStore(o.db).put(policy, name)
        await _audit(o, name, "policy.set", f"{partner}: {policy.model_dump_json(exclude={'partner'})}")
        return out

    doc = c.run(go)
    c.dump(doc) if as_json else typer.echo(f"replay policy for {partner} set")


def _pause(partner: str, paused: bool, who: str | None) -> None:
    async def go(o: c.Ops) -> dict[str, Any]:
        name = who or c.default_who()
        out = await PolicyStore(o.db).set_paused(partner, paused, name)
        await _audit(o, name, "policy.pause" if paused else "policy.resume", partner)
        return out

    c.run(go)
    typer.echo(f"replay policy for {partner} {'paused' if paused else 'resumed'}")


@app.command()
def pause(partner: str, who: str | None = WHO) -> None:
    """Stop automatic replays for the partner (the policy stays)."""
    _pause(partner, True, who)


@app.command()
def resume(partner: str, who: str | None = WHO) -> None:
    """Replay automatically again."""
    _pause(partner, False, who)


@app.command()
def delete(partner: str, who: str | None = WHO) -> None:
    async def go(o: c.Ops) -> bool:
        done = await PolicyStore(o.db).delete(partner)
        if done:
            await _audit(o, who or c.default_who(), "policy.delete", partner)
        return done

    if not c.run(go):
        c.err.print(f"[red]no replay policy for {c.visible(partner)}[/red]")
        raise typer.Exit(1)
    typer.echo(f"replay policy for {partner} deleted")


def register_cli(root: typer.Typer) -> None:
    dlq_app.add_typer(app, name="policies")
