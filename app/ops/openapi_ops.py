"""The OpenAPI descriptions of the operations center's admin routes (app/ops/api.py), kept beside
them; app/openapi.py appends them to its ``OPERATIONS`` (every route must be described there)."""

from __future__ import annotations

from typing import Any

from app.ops import api
from app.ops.alerts import TRANSITIONS, AlertFilter
from app.ops.rules import Rule

__all__ = ["operations"]

RULE_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
ALERT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.:-]+$"}
OBJ = {"type": "object"}
FILES = {"text/csv": {"type": "string"},  # ?format=csv / xlsx: the whole selection as a file
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"type": "string", "format": "binary"}}
PARTNER = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.-]+$"}
RULE_EXAMPLE = {"id": "DESIGN-4H", "name": "design over 4 hours", "scope": {"product": "internet_line",
                                                                           "stage": "design"},
                "when": "data.time_in_stage_s > 4 * 3600", "severity": "major", "action": {"type": "alert"}}
DOES = {"ack": "Start tracking an alert (open -> tracking)", "assign": "Give an alert to a person or team",
        "note": "Add a progress record", "resolve": "Record the result (-> resolved)",
        "close": "Close a resolved alert", "reopen": "Track a resolved alert again"}


def operations() -> tuple[Any, ...]:
    """Imported late: app/openapi.py defines what these are built from before it asks for them."""
    from app.admin import api as admin_api
    from app.admin.queries import OrderFilter
    from app.openapi import ADMIN_ERRORS, ADMIN_WRITE_ERRORS, LIMIT, PAGING, Answer, Operation, Query, _problem

    p404 = _problem("no such rule or alert")
    p409 = _problem("refused: a rule with this id exists, or the alert is not in a stage this action starts from")
    states = {"type": "string", "enum": ["in_flight", "overdue", "due_soon", "stuck", "blocked"],
              "default": "in_flight", "description": "which orders of the cell"}
    flag = {"type": "string", "enum": ["true", "false"]}
    fmt = {"type": "string", "enum": ["json", "csv", "xlsx"], "default": "json"}
    return (
        Operation("GET", "/admin/v1/overview", "ops_overview", "Open orders per product x stage", "operations",
                  "viewer", {200: Answer("in flight, overdue, due soon, stuck, blocked; the API failure rate",
                                         schema=OBJ), **ADMIN_ERRORS},
                  query=Query(extra={"live": {**flag, "description": "scan now instead of the last cycle's "
                                                                     "snapshot"}}),
                  description="The snapshot of the last evaluation cycle (`age_s` says how old), or a live scan."),
        Operation("GET", "/admin/v1/overview/orders", "ops_overview_orders", "Drill down to the orders of a cell",
                  "operations", "viewer", {200: Answer("the orders with their facts", schema=OBJ), **ADMIN_ERRORS},
                  query=Query(extra={"state": states, "product": {"type": "string"}, "stage": {"type": "string"},
                                     **LIMIT})),
        Operation("GET", "/admin/v1/rules", "rules_list", "Stuck-order rules", "operations", "viewer",
                  {200: Answer("by code", schema={"type": "array", "items": OBJ}), **ADMIN_ERRORS},
                  query=Query(extra={"q": {"type": "string", "description": "words of the code or name (fuzzy)"},
                                     "enabled": flag})),
        Operation("POST", "/admin/v1/rules", "rules_add", "Add a rule", "operations", "operator",
                  {201: Answer("the stored rule", schema=OBJ), 409: p409, **ADMIN_WRITE_ERRORS},
                  body=Rule, body_example=RULE_EXAMPLE),
        Operation("GET", "/admin/v1/rules/{id}", "rules_show", "One rule and its last evaluation", "operations",
                  "viewer", {200: Answer("the rule", schema=OBJ), 404: p404, **ADMIN_ERRORS},
                  path_params={"id": RULE_ID}),
        Operation("PATCH", "/admin/v1/rules/{id}", "rules_edit", "Change fields of a rule", "operations", "operator",
                  {200: Answer("the rule", schema=OBJ), 404: p404, **ADMIN_WRITE_ERRORS},
                  body_schema={"type": "object", "description": "the fields to change (the rule's shape)"},
                  path_params={"id": RULE_ID}),
        Operation("DELETE", "/admin/v1/rules/{id}", "rules_delete", "Delete a rule", "operations", "operator",
                  {204: Answer("deleted", schema={"type": "string"}), 404: p404, **ADMIN_ERRORS},
                  path_params={"id": RULE_ID}),
        Operation("POST", "/admin/v1/rules/{id}/enable", "rules_enable", "Enable a rule", "operations", "operator",
                  {200: Answer("the rule", schema=OBJ), 404: p404, **ADMIN_WRITE_ERRORS},
                  body_required=False, path_params={"id": RULE_ID}),
        Operation("POST", "/admin/v1/rules/{id}/disable", "rules_disable", "Disable a rule", "operations",
                  "operator", {200: Answer("the rule", schema=OBJ), 404: p404, **ADMIN_WRITE_ERRORS},
                  body_required=False, path_params={"id": RULE_ID}),
        Operation("GET", "/admin/v1/exports/orders", "exports_orders",
                  "Order list with withdrawn-and-re-entered, first dispatch, assessment deadline", "operations",
                  "viewer", {200: Answer("JSON page, or the whole selection as CSV / XLSX (streamed)",
                                         schema={"type": "array", "items": OBJ}, also=FILES),
                             **ADMIN_ERRORS},
                  query=Query(OrderFilter, admin_api.ORDER_QUERY, {**PAGING, "format": fmt})),
        Operation("GET", "/admin/v1/exports/stages", "exports_stages", "Stage durations per product (C.7)",
                  "operations", "viewer", {200: Answer("per product and stage: orders, mean, p50, p90, longest",
                                                       schema={"type": "array", "items": OBJ}, also=FILES),
                                           **ADMIN_ERRORS},
                  query=Query(extra={"product": {"type": "string"}, "since": {"type": "string"},
                                     "until": {"type": "string"}, "format": fmt})),
        Operation("GET", "/admin/v1/replay-policies", "replay_policies_list", "Automatic replay per partner",
                  "operations", "viewer", {200: Answer("the policies and their last runs",
                                                       schema={"type": "array", "items": OBJ}), **ADMIN_ERRORS}),
        Operation("PUT", "/admin/v1/replay-policies/{partner}", "replay_policies_put", "Set a partner's replay policy",
                  "operations", "operator", {200: Answer("the policy", schema=OBJ), **ADMIN_WRITE_ERRORS},
                  body=api.PolicyBody, body_required=False, path_params={"partner": PARTNER}),
        Operation("DELETE", "/admin/v1/replay-policies/{partner}", "replay_policies_delete", "Remove a replay policy",
                  "operations", "operator", {204: Answer("deleted", schema={"type": "string"}), 404: p404,
                                             **ADMIN_ERRORS}, path_params={"partner": PARTNER}),
        *(Operation("POST", f"/admin/v1/replay-policies/{{partner}}/{verb}", f"replay_policies_{verb}",
                    f"{verb.title()} a partner's automatic replay", "operations", "operator",
                    {200: Answer("the policy", schema=OBJ), 404: p404, **ADMIN_WRITE_ERRORS},
                    body_required=False, path_params={"partner": PARTNER}) for verb in ("pause", "resume")),
        Operation("GET", "/admin/v1/alerts", "alerts_list", "Alerts (real-time: active; history: status=any)",
                  "operations", "viewer", {200: Answer("one page, newest first", schema=OBJ), **ADMIN_ERRORS},
                  query=Query(AlertFilter, api.ALERT_QUERY, PAGING)),
        Operation("GET", "/admin/v1/alerts/export", "alerts_export", "Export alerts as CSV or XLSX", "operations",
                  "viewer", {200: Answer("the file, streamed", media_type="text/csv", schema={"type": "string"}),
                             **ADMIN_ERRORS},
                  query=Query(AlertFilter, api.ALERT_QUERY, {"format": {"type": "string", "enum": ["csv", "xlsx"],
                                                                        "default": "csv"}})),
        Operation("GET", "/admin/v1/alerts/{id}", "alerts_show", "One alert with its handling records", "operations",
                  "viewer", {200: Answer("the alert", schema=OBJ), 404: p404, **ADMIN_ERRORS},
                  path_params={"id": ALERT_ID}),
        *(Operation("POST", f"/admin/v1/alerts/{{id}}/{action}", f"alerts_{action}", DOES[action], "operations",
                    "operator", {200: Answer("the alert", schema=OBJ), 404: p404, 409: p409, **ADMIN_WRITE_ERRORS},
                    body=api.AlertAction, body_required=False, path_params={"id": ALERT_ID})
          for action in TRANSITIONS),
    )
