"""Auto-stage actions, registered explicitly by name (blueprints name them: ``auto: {action: …}``).

An action reads the order context and returns the data the stage is submitted with. Actions are
pure and synchronous: anything that talks to a partner is a ``call`` stage, not an action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

Action = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
_ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    def deco(fn: Action) -> Action:
        if name in _ACTIONS:
            raise RuntimeError(f"auto action {name!r} registered twice")
        _ACTIONS[name] = fn
        return fn

    return deco


def names() -> list[str]:
    return sorted(_ACTIONS)


def run(name: str, context: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return _ACTIONS[name](context, params)


@action("accept")
def accept(context: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Automatic acceptance (受理自动提交): the order passed intake validation already."""
    return {"accepted": True, **params.get("set", {})}


@action("match_team")
def match_team(context: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Install/maintenance team by region (装维班组自动匹配, §3.1.1.1.1.1).

    ``params.teams``: city (or district) → {team, members}; ``default`` when nothing matches. The
    reporting operator is "one member of the team" (§3.1.4.1.1): picked stably from the order id so
    a retried report names the same person.
    """
    teams: dict[str, Any] = params.get("teams", {})
    city = district = None
    for addr in context.get("order", {}).get("addresses", []):
        city, district = addr.get("city"), addr.get("district")
        break
    entry = teams.get(district or "") or teams.get(city or "") or teams.get("default") or {"team": "unassigned"}
    members = entry.get("members") or ["system"]
    pick = int(hashlib.sha256(str(context.get("order_id", "")).encode()).hexdigest(), 16) % len(members)
    return {"team": entry.get("team", "unassigned"), "operator": members[pick], "city": city}
