"""The console's report-control and scheduler pages (issue 16 §4 C.5, §5): ``/console/reports`` and
``/console/jobs``, with their actions.

Nothing here queries on its own: the counts, drill-downs, rules and report alerts come from
``ReportControl`` (app/reports/control.py) and the jobs, their leases and history from the
``Scheduler`` and ``History`` of app/jobs — the very objects ``/admin/v1/reports…`` and
``/admin/v1/jobs…`` use (their accessors ``control`` and ``scheduler``), so a page shows what the
API and ``hub reports`` / ``hub jobs`` show, masked the same way, and a change is refused for the
same reasons. Changes are recorded as ``console:<token name>``; the session, the operator role and
the CSRF token are checked before any of this (app/console/session.py ``guarded``).

A manual run goes through ``Scheduler.run_now``: under the job's lease, so it is refused while a
run of the job holds it (scheduled or manual, on any worker), and the page shows that answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from app.admin.jobs_api import scheduler
from app.admin.replay import NotFound, Refused
from app.admin.reports_api import control
from app.console.actions import _form, _refusal, _who
from app.console.render import page
from app.jobs.history import History
from app.jobs.scheduler import JobRefused
from app.reports.control import LABELS, METRICS, AlertNote, ReportRule, RulePatch
from hub.errors import ValidationFailed

log = logging.getLogger(__name__)
#: the windows of the C.5 counts (issue 16 §4: 24 h by default, or 7 days)
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
SEVERITIES = ("minor", "major", "critical")
ALERT_STATUSES = ("open", "resolved", "any")
RUN_STATUSES = ("running", "retry", "succeeded", "failed", "skipped")
#: the columns of each drill-down (the record's own field names; the whole masked record is shown too)
DRILL_COLUMNS: dict[str, tuple[str, ...]] = {
    "realtime_failures": ("report", "order_id", "stage", "on", "outcome", "attempts", "http_status", "error",
                          "sent_at"),
    "cross_province_failures": ("report", "order_id", "stage", "on", "outcome", "attempts", "http_status",
                                "error", "sent_at"),
    "reconciliation_diff_days": ("day", "partner", "status", "differences", "at"),
    "recollections": ("from", "to", "products", "status", "reason", "requested_at"),
    "file_failures": ("report", "period", "key", "status", "error", "failed_at"),
}
RECENT_FAILURES = 20


def _window(request: web.Request) -> tuple[str, datetime, datetime, list[str]]:
    name = request.query.get("window") or "24h"
    problems = [] if name in WINDOWS else [f"window: one of {', '.join(WINDOWS)} (not {name!r})"]
    name = name if name in WINDOWS else "24h"
    until = datetime.now(UTC)
    return name, until - WINDOWS[name], until, problems


async def reports(request: web.Request) -> web.Response:
    """C.5: the five counts over the window with the chosen one's records, the definitions, recent
    real-time failures, the rules and the report alerts with their handling records."""
    c = control(request)
    window, since, until, problems = _window(request)
    drill = request.query.get("drill") or None
    if drill is not None and drill not in METRICS:
        problems.append(f"drill: one of {', '.join(METRICS)} (not {drill!r})")
        drill = None
    status = request.query.get("status", "open")
    status = status if status in ALERT_STATUSES else "open"
    overview, rules, alerts, recent = await asyncio.gather(
        c.overview(since, until), c.rules(),
        c.alerts(None if status == "any" else status, request.query.get("kind") or None,
                 request.query.get("q") or None, 50),
        c.drill("realtime_failures", since, until, RECENT_FAILURES))
    rows = await c.drill(drill, since, until, 50) if drill else []
    definitions = sorted(c.reports.by_name.values(), key=lambda r: r.name)
    return await page(request, "reports.html", o=overview, window=window, windows=list(WINDOWS), metrics=METRICS,
                      labels=LABELS, drill=drill, drill_rows=rows, columns=DRILL_COLUMNS, recent=recent,
                      rules=rules, alerts=alerts, alert_status=status, statuses=ALERT_STATUSES, problems=problems,
                      definitions=definitions, severities=SEVERITIES, report_names=sorted(c.reports.by_name))


def _rule_fields(form: dict[str, Any], *, with_id: bool) -> dict[str, Any]:
    """The rule form as the API's body: every field given (a blank report means "every report")."""
    out: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in ("name", "metric", "threshold", "window_h",
                                                                         "severity")}
    out["report"] = str(form.get("report") or "").strip() or None
    out["enabled"] = form.get("enabled") == "1"
    if with_id:
        out["id"] = str(form.get("id") or "").strip()
    return out


def _invalid(exc: ValidationError) -> ValidationFailed:
    first = exc.errors(include_url=False)[0]
    return ValidationFailed(f"{'.'.join(str(p) for p in first['loc']) or 'rule'}: {first['msg']}")


async def rule_create(request: web.Request) -> web.Response:
    form = await _form(request)
    back = "/console/reports#rules"
    try:
        rule = ReportRule.model_validate(_rule_fields(form, with_id=True))
        await control(request).create_rule(rule, _who(request))
    except ValidationError as exc:
        return await _refusal(request, _invalid(exc), back)
    except (Refused, ValidationFailed) as exc:
        return await _refusal(request, exc, back)
    log.info("report rule %s created by %s", rule.id, _who(request))
    raise web.HTTPSeeOther(f"/console/reports?done=rule_created#rule-{rule.id}")


async def rule_edit(request: web.Request) -> web.Response:
    form = await _form(request)
    rule_id = request.match_info["id"]
    back = "/console/reports#rules"
    try:
        patch = RulePatch.model_validate(_rule_fields(form, with_id=False))
        await control(request).edit_rule(rule_id, patch, _who(request))
    except ValidationError as exc:
        return await _refusal(request, _invalid(exc), back)
    except (NotFound, Refused, ValidationFailed) as exc:
        return await _refusal(request, exc, back)
    log.info("report rule %s edited by %s", rule_id, _who(request))
    raise web.HTTPSeeOther(f"/console/reports?done=rule_edited#rule-{rule_id}")


async def rule_delete(request: web.Request) -> web.Response:
    rule_id = request.match_info["id"]
    try:
        await control(request).delete_rule(rule_id, _who(request))
    except NotFound as exc:
        return await _refusal(request, exc, "/console/reports#rules")
    log.info("report rule %s deleted by %s", rule_id, _who(request))
    raise web.HTTPSeeOther("/console/reports?done=rule_deleted#rules")


async def alert_note(request: web.Request) -> web.Response:
    """A handling record (progress or result) on a report alert; ``resolve`` ends the alert with it."""
    form = await _form(request)
    alert_id = request.match_info["id"]
    back = "/console/reports?status=any#report-alerts"
    resolve = form.get("resolve") == "1"
    try:
        note = AlertNote(text=str(form.get("text") or "").strip(), resolve=resolve,
                         kind="result" if resolve or form.get("kind") == "result" else "progress")
        await control(request).note(alert_id, note, _who(request))
    except ValidationError as exc:
        return await _refusal(request, ValidationFailed(f"text: {exc.errors(include_url=False)[0]['msg']}"), back)
    except NotFound as exc:
        return await _refusal(request, exc, back)
    log.info("report alert %s: %s by %s", alert_id, "resolved" if resolve else "note", _who(request))
    raise web.HTTPSeeOther(f"/console/reports?status=any&done={'resolved' if resolve else 'note'}#alert-{alert_id}")


# --- jobs ---------------------------------------------------------------------------------------
async def jobs(request: web.Request) -> web.Response:
    """Every configured job (schedule, next run, latest run, lease holder) and the run history."""
    sched = scheduler(request)
    job = request.query.get("job") or None
    status = request.query.get("status") or None
    problems = []
    if job is not None and job not in sched.jobs:
        problems.append(f"job: no job {job!r}")
    if status is not None and status not in RUN_STATUSES:
        problems.append(f"status: one of {', '.join(RUN_STATUSES)} (not {status!r})")
        status = None
    rows, runs = await asyncio.gather(sched.overview(), History(sched.db).list(job, status, 100))
    return await page(request, "jobs.html", jobs=rows, runs=runs, job=job or "", run_status=status or "",
                      statuses=RUN_STATUSES, problems=problems, params={n: j.params for n, j in sched.jobs.items()})


def parse_params(text: str) -> dict[str, Any]:
    """``key=value`` lines (the CLI's ``-p key=value``: a value that is JSON is taken as JSON)."""
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed(f"params line {n}: key=value, not {line!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


async def job_run(request: web.Request) -> web.Response:
    """``hub jobs run NAME``: once now under the job's lease; the run (or the refusal) is the answer."""
    name = request.match_info["name"]
    form = await _form(request)
    back = f"/console/jobs?job={name}"
    sched = scheduler(request)
    try:
        if name not in sched.jobs:
            raise NotFound(f"no job {name}")
        params = parse_params(str(form.get("params") or ""))
        log.info("job %s run requested by %s with %s", name, _who(request), params)
        run = await sched.run_now(name, params, who=_who(request))
    except JobRefused as exc:
        return await _refusal(request, Refused(str(exc)), back)
    except (NotFound, ValidationFailed) as exc:
        return await _refusal(request, exc, back)
    return await page(request, "job_run.html", run=run, back=back)  # a failed run is an answer too (as the API's)
