"""The OpenAPI descriptions of ``/admin/v1/fusion…`` (app/admin/fusion_api.py), kept beside them;
app/openapi.py appends them to its ``OPERATIONS`` (every route must be described there)."""

from __future__ import annotations

from typing import Any

from app.admin import fusion_api
from flows.fusion import views

__all__ = ["operations"]

KEY = {"type": "string", "minLength": 1, "maxLength": 64, "description": "the fusion key (融合工单主键)"}
OBJ = {"type": "object"}
DOES = {"release": ("Release an incomplete group", "dispatch the members that arrived (partial release)"),
        "wait": ("Keep waiting", "every waiting member gets a new deadline (its product's wait)"),
        "cancel": ("Cancel a waiting group", "every waiting member is cancelled and answered as cancelled")}


def operations() -> tuple[Any, ...]:
    """Imported late: app/openapi.py defines what these are built from before it asks for them."""
    from app.openapi import ADMIN_ERRORS, ADMIN_WRITE_ERRORS, LIMIT, P503, Answer, Operation, Query, _problem

    p404 = _problem("no member of this fusion key reached the wait")
    listing = Operation(
        "GET", "/admin/v1/fusion", "fusion_list", "Fusion one-visit groups", "fusion", "viewer",
        {200: Answer("newest first: state, arrived of related_count, tasks, deadline, alerts",
                     schema={"type": "array", "items": OBJ}), 503: P503, **ADMIN_ERRORS},
        query=Query(extra={"state": {"type": "string", "enum": list(views.STATES)}, **LIMIT}))
    show = Operation(
        "GET", "/admin/v1/fusion/{key}", "fusion_show", "One fusion group: members and takers", "fusion", "viewer",
        {200: Answer("the D.1.6 combined view per member and every construction order's taker (D.1.7); "
                     "addresses masked", schema=OBJ), 404: p404, 503: P503, **ADMIN_ERRORS},
        path_params={"key": KEY})
    decisions = tuple(
        Operation("POST", f"/admin/v1/fusion/{{key}}/{name}", f"fusion_{name}", summary, "fusion", "operator",
                  {202: Answer("sent to every waiting member", schema=OBJ), 404: p404,
                   409: _problem("no member of the group is waiting"), 503: P503, **ADMIN_WRITE_ERRORS},
                  description=f"{what}; recorded in the action log as `fusion_{name}`.",
                  body=fusion_api.DecisionBody, body_required=False, path_params={"key": KEY},
                  body_example={"reason": "客户催装"})
        for name, (summary, what) in DOES.items())
    return (listing, show, *decisions)
