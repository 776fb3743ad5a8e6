"""``hub fusion list | show KEY | release KEY | wait KEY | cancel KEY`` — fusion "one visit" groups
(issue 13 §2, §6; D.1.6 combined view, D.1.7 takers). Same layer as ``/admin/v1/fusion`` (flows/fusion/views.py)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import typer

from app.admin import console as c
from app.admin.queries import masker
from app.admin.replay import NotFound, Refused
from flows.cancel import direct_services
from flows.fusion import views

app = typer.Typer(help="Fusion one-visit groups: waiting / incomplete / dispatched, one group's members and "
                       "takers, and the operator's choice on an incomplete group.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")


def _services(o: c.Ops) -> Any:
    return direct_services(o.settings, o.db, o.replays.producer)


async def _answer(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """The views' refusals as the console's: unknown group exit 1 (not found), nothing waiting exit 1."""
    try:
        return await work
    except views.NoGroup as exc:
        raise NotFound(str(exc)) from exc
    except views.NothingWaiting as exc:
        raise Refused(str(exc)) from exc


@app.command("list")
def list_(state: str | None = typer.Option(None, "--state", help=", ".join(views.STATES)),
          limit: int = typer.Option(100, "--limit", "-n", min=1, max=10_000), as_json: bool = JSON) -> None:
    """Fusion groups, newest first."""

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        return await views.groups(_services(o), state=state, limit=limit)

    rows = c.run(go)
    if as_json:
        c.dump(rows)
        return
    c.table(rows, [("fusion_key", "fusion key"), ("state", "state"), ("arrived", "arrived"),
                   ("related_count", "of"), ("tasks", "tasks"), ("deadline", "deadline"), ("alerts", "alerts")],
            title=f"{len(rows)} fusion groups")


@app.command()
def show(key: str, as_json: bool = JSON) -> None:
    """One group: each member's business type, order ids, installation address, stage, status, link
    (D.1.6), and every construction order's taker, phone and status (D.1.7). Addresses are masked,
    takers are not (D.1.7 wants them shown)."""

    async def go(o: c.Ops) -> dict[str, Any]:
        return views.mask_group(await _answer(views.show(_services(o), key)), masker(o.partners))

    group = c.run(go)
    if as_json:
        c.dump(group)
        return
    typer.echo(f"fusion group {group['fusion_key']}: {group['state']}, {group['arrived']} of "
               f"{group['related_count']} orders, {group['tasks']} task(s), {group['alerts']} alert(s)")
    for m in group["members"]:
        m["address"] = " ".join(str(v) for v in (m["installation_address"] or {}).values() if v)
        m["taker_name"], m["taker_phone"] = (m["taker"] or {}).get("name"), (m["taker"] or {}).get("phone")
    c.table(group["members"], [("business_type", "business type"), ("external_order_id", "order"),
                               ("order_id", "hub order"), ("address", "installation address"),
                               ("current_stage", "stage"), ("status", "status"), ("task_id", "task"),
                               ("team", "team"), ("first_contact", "first contact"), ("taker_name", "taker"),
                               ("taker_phone", "phone"), ("construction_status", "construction"),
                               ("link", "link")], title="members")


def _decide(decision: str, key: str, reason: str | None, who: str | None, as_json: bool) -> None:
    async def go(o: c.Ops) -> dict[str, Any]:
        return await _answer(views.decide(_services(o), key, decision, who=who or c.default_who(), reason=reason))

    answer = c.run(go)
    if as_json:
        c.dump(answer)
        return
    typer.echo(f"{decision} sent to {answer['waiting']} waiting member(s) of {key}: {', '.join(answer['orders'])}")


REASON = typer.Option(None, "--reason", help="recorded in the action log")
WHO = typer.Option(None, "--as", help="name recorded in the history")


@app.command()
def release(key: str, reason: str | None = REASON, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Dispatch the members that arrived without waiting for the rest (partial release)."""
    _decide("release", key, reason, who, as_json)


@app.command()
def wait(key: str, reason: str | None = REASON, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Keep waiting: every waiting member gets a new deadline (its product's wait again)."""
    _decide("wait", key, reason, who, as_json)


@app.command()
def cancel(key: str, reason: str | None = REASON, who: str | None = WHO, as_json: bool = JSON) -> None:
    """Cancel every waiting member of the group (each answered to its origin as cancelled)."""
    _decide("cancel", key, reason, who, as_json)


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="fusion")
