"""The OpenAPI descriptions of the reporting and job routes (app/reports/http.py, app/admin/jobs_api.py,
app/admin/reports_api.py), kept beside them; app/openapi.py appends them to its ``OPERATIONS``."""

from __future__ import annotations

from typing import Any

from app.admin.jobs_api import RunRequest
from app.reports.control import METRICS, AlertNote, ReportRule
from app.reports.http import ReconciliationBody
from app.reports.recollect import RecollectRequest

__all__ = ["operations"]

OBJ = {"type": "object"}
JOB_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9][a-z0-9_-]*$"}
RULE_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
ALERT_ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9_.:-]+$"}
PARTNER = {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[a-z][a-z0-9_-]*$"}
WHEN = {"type": "string", "description": "1h, 30m, 2d or an ISO time (UTC); default the last 24 h"}
RULE_EXAMPLE = {"id": "RT-FAIL-10", "name": "10 real-time failures in an hour", "metric": "realtime_failures",
                "threshold": 10, "window_h": 1}


def operations() -> tuple[Any, ...]:
    """Imported late: app/openapi.py defines what these are built from before it asks for them."""
    from app.openapi import (
        ADMIN_ERRORS,
        ADMIN_WRITE_ERRORS,
        LIMIT,
        P400,
        P401_ADMIN,
        P401_PARTNER,
        P403_ROLE,
        P408,
        P413,
        P503,
        Answer,
        Operation,
        Query,
        _problem,
    )

    p404 = _problem("no such job, rule, alert or count")
    p409 = _problem("refused: the job is running elsewhere, a rule with this id exists, or an unknown report")
    window = Query(extra={"since": WHEN, "until": WHEN})
    return (
        Operation("GET", "/admin/v1/jobs", "jobs_list", "Scheduled jobs: schedule, next run, lease holder, last run",
                  "jobs", "viewer", {200: Answer("every configured job", schema=OBJ), **ADMIN_ERRORS}),
        Operation("GET", "/admin/v1/jobs/history", "jobs_history", "Job runs, newest first", "jobs", "viewer",
                  {200: Answer("runs with status, attempts, counts and errors", schema=OBJ), **ADMIN_ERRORS},
                  query=Query(extra={"job": JOB_NAME, "status": {"type": "string", "enum": [
                      "running", "retry", "succeeded", "failed", "skipped"]}, **LIMIT})),
        Operation("POST", "/admin/v1/jobs/{name}/run", "jobs_run", "Run a job once now, under its lease", "jobs",
                  "operator", {200: Answer("the run (its status says whether it succeeded)", schema=OBJ),
                               404: p404, 409: p409, **ADMIN_WRITE_ERRORS},
                  body=RunRequest, body_required=False, path_params={"name": JOB_NAME}),
        Operation("GET", "/admin/v1/reports", "reports_list", "Report definitions (C.6)", "reports", "viewer",
                  {200: Answer("per product: fields, real-time events, files", schema=OBJ), **ADMIN_ERRORS}),
        Operation("GET", "/admin/v1/reports/overview", "reports_overview", "The five report-control counts (C.5)",
                  "reports", "viewer", {200: Answer("counts, their labels, open alerts", schema=OBJ),
                                        **ADMIN_ERRORS}, query=window),
        Operation("GET", "/admin/v1/reports/overview/{metric}", "reports_drill", "The records behind one count",
                  "reports", "viewer", {200: Answer("masked records, newest first", schema=OBJ), 404: p404,
                                        **ADMIN_ERRORS},
                  query=Query(extra={"since": WHEN, "until": WHEN, **LIMIT}),
                  path_params={"metric": {"type": "string", "enum": list(METRICS)}}),
        Operation("GET", "/admin/v1/reports/rules", "report_rules_list", "Report rules", "reports", "viewer",
                  {200: Answer("by id", schema=OBJ), **ADMIN_ERRORS}),
        Operation("POST", "/admin/v1/reports/rules", "report_rules_add", "Add a report rule", "reports", "operator",
                  {201: Answer("the stored rule", schema=OBJ), 409: p409, **ADMIN_WRITE_ERRORS},
                  body=ReportRule, body_example=RULE_EXAMPLE),
        Operation("PATCH", "/admin/v1/reports/rules/{id}", "report_rules_edit", "Change fields of a report rule",
                  "reports", "operator", {200: Answer("the rule", schema=OBJ), 404: p404, 409: p409,
                                          **ADMIN_WRITE_ERRORS},
                  body_schema={"type": "object", "description": "the fields to change (the rule's shape)"},
                  path_params={"id": RULE_ID}),
        Operation("DELETE", "/admin/v1/reports/rules/{id}", "report_rules_delete", "Delete a report rule",
                  "reports", "operator", {200: Answer("deleted", schema=OBJ), 404: p404, **ADMIN_ERRORS},
                  path_params={"id": RULE_ID}),
        Operation("GET", "/admin/v1/reports/alerts", "report_alerts_list", "Alerts from report anomalies",
                  "reports", "viewer", {200: Answer("newest first", schema=OBJ), **ADMIN_ERRORS},
                  query=Query(extra={"status": {"type": "string", "enum": ["open", "resolved"]},
                                     "kind": {"type": "string"}, "q": {"type": "string"}, **LIMIT})),
        Operation("POST", "/admin/v1/reports/alerts/{id}/notes", "report_alerts_note",
                  "A handling record (progress or result) on a report alert", "reports", "operator",
                  {200: Answer("the alert", schema=OBJ), 404: p404, **ADMIN_WRITE_ERRORS},
                  body=AlertNote, path_params={"id": ALERT_ID}),
        Operation("POST", "/api/v1/partners/{partner}/reports/recollect", "reports_recollect",
                  "The group asks for re-collection (集团通知重采) of a date range", "reports", "partner",
                  {202: Answer("accepted: regenerating in the background", schema=OBJ), 400: P400,
                   401: P401_PARTNER, 408: P408, 413: P413, 503: P503},
                  body=RecollectRequest, body_example={"from": "2026-04-10", "to": "2026-04-10"},
                  path_params={"partner": PARTNER}),
        Operation("GET", "/api/v1/partners/{partner}/reports/recollect/{id}", "reports_recollect_status",
                  "A re-collection request: status, files regenerated, reports re-sent", "reports", "partner",
                  {200: Answer("the request", schema=OBJ), 401: P401_PARTNER, 404: p404, 503: P503},
                  path_params={"partner": PARTNER, "id": {"type": "string", "minLength": 1, "maxLength": 64}}),
        Operation("POST", "/api/v1/attachments/{province}", "attachments_upload",
                  "Upload a form or photo under the seed-003 rule; answers the path the stage must carry",
                  "attachments", "operator",
                  {201: Answer("uploaded: its path, bytes, SHA-256", schema=OBJ),
                   200: Answer("the same content was uploaded under this name before", schema=OBJ),
                   400: _problem("a bad name, province or kind"), 401: P401_ADMIN, 403: P403_ROLE,
                   409: _problem("the name holds other content"), 413: _problem("over 10 MB (a photo: 300 KB)"),
                   415: _problem("neither a PDF nor a JPEG by its bytes, or not what the name says"), 503: P503},
                  body_media_type="application/octet-stream", body_schema={"type": "string", "format": "binary"},
                  query=Query(extra={"name": {"type": "string", "pattern": "^[0-9]{12}[.](pdf|jpg|jpeg)$"},
                                     "kind": {"type": "string", "enum": ["form", "photo"], "default": "form"},
                                     "order_id": {"type": "string", "maxLength": 128}}),
                  path_params={"province": {"type": "string", "pattern": "^[A-Z0-9]{2,8}$"}}),
        Operation("POST", "/api/v1/partners/{partner}/reports/reconciliation", "reports_reconciliation",
                  "The group's figures of a day, reconciled with ours per product", "reports", "partner",
                  {200: Answer("per product: counts and the orders behind each difference", schema=OBJ),
                   400: P400, 401: P401_PARTNER, 408: P408, 413: P413, 503: P503},
                  body=ReconciliationBody, body_example={"day": "2026-04-10", "products": {"internet_line": ["E-1"]}},
                  path_params={"partner": PARTNER}),
    )
