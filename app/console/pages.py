"""The console's read pages: overview, orders, one order, dead letters, API calls, flows, routes, history.

Every listing and document comes from the admin service layer (app/admin/queries.py) — the same
masked read models as ``hub orders|dlq|calls`` and ``/admin/v1/…`` — with the same filter models
(``OrderFilter``, ``DeadLetterFilter``, ``CallFilter``) built from the same query parameters, so a
page shows exactly what the CLI and the API show. Only the counts of the overview and the flow
diagrams are the console's own (app/console/data.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from app.admin.api import CALL_QUERY, DLQ_QUERY, ORDER_QUERY, _paging, _services
from app.admin.queries import CallFilter, DeadLetterFilter, OrderFilter
from app.console import data, svg
from app.console.render import page
from flows.runtime.agents import pinned_blueprint
from hub.errors import ConfigError, ValidationFailed
from hub.services import SERVICES, ServiceKey

PAGE = 50
EXPORT_MAX = 10_000
STATUSES = ("in_flight", "waiting", "completed", "failed", "cancelled")
DLQ_STATUSES = ("dead", "replaying", "replayed", "discarded", "resolved", "any")
OVERVIEW: ServiceKey[data.Snapshots] = ServiceKey("console_overview")


def _filter(request: web.Request, model: Any, mapping: dict[str, str]) -> tuple[Any, list[str]]:
    """The filter the query asks for, empty fields dropped (a blank form field means "any"); a bad
    value is shown on the page (the API's 400 text) and the filter without it is used."""
    args = {k: v for k, v in request.query.items() if v != "" and k in mapping}
    try:
        return model.model_validate({mapping[k]: v for k, v in args.items()}), []
    except (ValidationError, ValidationFailed) as exc:
        return model(), [str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)]


def _paged(request: web.Request) -> tuple[int, int]:
    try:
        limit, skip = _paging(request)
    except ValidationFailed:
        limit, skip = PAGE, 0
    return min(limit, 200), skip


async def overview(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    db = request.app[SERVICES].db
    assert db is not None
    runtime = request.app[SERVICES]
    snapshots = runtime.get(OVERVIEW) or runtime.put(OVERVIEW, data.Snapshots())
    counts = await snapshots.get(db, queries)
    matrix: dict[tuple[str, str], int] = counts["matrix"]
    products = sorted({p for p, _ in matrix})
    stages = sorted({s for _, s in matrix}, key=lambda s: (-sum(n for (_, st), n in matrix.items() if st == s), s))
    heat = svg.heatmap(products, stages, matrix,
                       link=lambda p, s: f"/console/orders?product={p}&stage={s}")
    chart = svg.line_chart([(p["label"], p["rate"]) for p in counts["series"]])
    return await page(request, "overview.html", c=counts, heatmap=heat, chart=chart)


async def orders(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    flt, problems = _filter(request, OrderFilter, ORDER_QUERY)
    limit, skip = _paged(request)
    # newest first in created_at windows (app/admin/listing.py); one more: is there a next page?
    rows = await queries.orders(flt, limit=limit + 1, skip=skip)
    more = len(rows) > limit
    args = {k: v for k, v in request.query.items() if k in ORDER_QUERY and v}
    return await page(request, "orders.html", rows=rows[:limit], more=more, skip=skip, limit=limit, args=args,
                      problems=problems, statuses=STATUSES)


async def orders_export(request: web.Request) -> web.StreamResponse:
    """CSV of the filtered list (masked like the page), at most EXPORT_MAX rows, written as it is read."""
    queries, _ = _services(request)
    flt, problems = _filter(request, OrderFilter, ORDER_QUERY)
    if problems:
        raise web.HTTPBadRequest(text="; ".join(problems))
    columns = ("id", "external_order_id", "partner", "product", "scenario", "status", "current_stage",
               "waiting_for", "blocked_reason", "sla_deadline", "created_at", "updated_at", "completed_at")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="orders-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"'})
    await response.prepare(request)
    await response.write("\ufeff".encode())  # BOM: Excel opens UTF-8 Chinese correctly
    skip, chunk = 0, 1000
    while skip < EXPORT_MAX:
        rows = await queries.orders(flt, limit=min(chunk, EXPORT_MAX - skip), skip=skip)
        if not rows:
            break
        text = await asyncio.to_thread(_csv, rows, columns, skip == 0)
        await response.write(text.encode())
        skip += len(rows)
        if len(rows) < chunk:
            break
    await response.write_eof()
    return response


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...], header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return out.getvalue()


async def order(request: web.Request, *, errors: list[dict[str, Any]] | None = None,
                submitted: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    queries, _ = _services(request)
    order_id = request.match_info["id"]
    doc = await queries.order(order_id)
    if doc is None:
        return await page(request, "missing.html", status=404, what=order_id)
    try:
        bp = await pinned_blueprint(request.app[SERVICES], doc)
    except ConfigError:
        bp = None
    group, spans = await asyncio.gather(fusion_group(request, doc, queries), queries.order_trace(order_id))
    return await page(request, "order.html", status=status, **order_view(doc, bp),
                      errors=errors or [], submitted=submitted or {}, group=group, spans=spans)


async def fusion_group(request: web.Request, doc: dict[str, Any], queries: Any) -> dict[str, Any] | None:
    """The order's fusion group (D.1.6) as ``hub fusion show`` gives it (flows/fusion/views.py, masked
    the same way), or None for an order outside any group."""
    from flows.fusion.views import NoGroup, mask_group, show

    data = (doc.get("state") or {}).get("data") or {}
    key = (data.get("fusion") or {}).get("fusion_key") or (data.get("fusion_group") or {}).get("key")
    if not key:
        return None
    try:
        group = await show(request.app[SERVICES], str(key))
    except NoGroup:
        return {"fusion_key": key, "members": [], "state": "-"}
    return dict(await asyncio.to_thread(mask_group, group, queries.mask))


def order_view(doc: dict[str, Any], bp: Any) -> dict[str, Any]:
    """What the order page shows, derived from the masked document and its pinned blueprint."""
    created = doc.get("created_at")
    start = created.timestamp() if isinstance(created, datetime) else 0.0
    stages = []
    for st in doc.get("stages") or []:
        entered = st.get("entered_at")
        stages.append({**st, "start_s": (entered.timestamp() - start) if isinstance(entered, datetime) else 0.0})
    tokens = list(((doc.get("state") or {}).get("tokens") or {}).values())
    forms, reports = [], []
    for token in tokens:
        spec = bp.nodes.get(token["node"]) if bp is not None else None
        if spec is None:
            continue
        if spec.kind == "user" and token.get("phase") == "active" and doc.get("status") in data.OPEN:
            forms.append({"stage": token["node"], "title": spec.title or token["node"],
                          "fields": list(getattr(spec, "fields", []))})
        gates = {g.get("index"): g for g in (token.get("gates") or {}).values()}
        for i, r in enumerate(spec.reports):
            g = gates.get(i)
            state = "pending" if g is None or g.get("ok") is None else ("open" if g["ok"] else "held")
            reports.append({"node": token["node"], "partner": r.partner, "operation": r.operation, "at": r.at,
                            "gate": r.gate, "state": state, "error": (g or {}).get("error")})
    open_calls = [c for c in (doc.get("open_calls") or {}).values() if isinstance(c, dict)]
    return {"o": doc, "stages": stages, "timeline": svg.timeline(stages), "forms": forms, "reports": reports,
            "open_calls": open_calls, "trace": doc.get("trace") or doc.get("traceparent")}


async def dlq(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    flt, problems = _filter(request, DeadLetterFilter, DLQ_QUERY)
    limit, skip = _paged(request)
    rows, total = await asyncio.gather(queries.dead_letters(flt, limit=limit, skip=skip),
                                       queries.count_dead_letters(flt))
    args = {k: v for k, v in request.query.items() if k in DLQ_QUERY and v}
    return await page(request, "dlq.html", rows=rows, total=total, skip=skip, limit=limit, args=args,
                      problems=problems, statuses=DLQ_STATUSES)


async def dlq_show(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    letter = await queries.dead_letter(request.match_info["id"])
    if letter is None:
        return await page(request, "missing.html", status=404, what=request.match_info["id"])
    return await page(request, "dlq_show.html", d=letter)


async def history(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    flt, problems = _filter(request, DeadLetterFilter, {"since": "since"})
    rows = await queries.history(dead_letter_id=request.query.get("id") or None,
                                 who=request.query.get("who") or None, since=flt.since, limit=200)
    return await page(request, "history.html", rows=rows, problems=problems)


async def calls(request: web.Request) -> web.Response:
    queries, _ = _services(request)
    flt, problems = _filter(request, CallFilter, CALL_QUERY)
    if flt.since is None:
        flt = flt.model_copy(update={"since": CallFilter(since="1h").since})
    failed_flt = flt.model_copy(update={"outcome": "failures"})
    stats, failed = await asyncio.gather(queries.call_stats(flt), queries.calls(failed_flt, limit=100))
    totals = {k: sum(r[k] for r in stats) for k in ("total", "succeeded", "failed", "pending")}
    finished = totals["succeeded"] + totals["failed"]
    totals["success_rate"] = round(totals["succeeded"] / finished, 4) if finished else None
    args = {k: v for k, v in request.query.items() if k in CALL_QUERY and v}
    return await page(request, "calls.html", stats=stats, totals=totals, failed=failed, args=args,
                      problems=problems, since=request.query.get("since") or "1h")


async def flows(request: web.Request) -> web.Response:
    from flows.admission import loaded_library

    runtime = request.app[SERVICES]
    library = await asyncio.to_thread(loaded_library, runtime)
    assert runtime.db is not None
    counts = await data.node_counts(runtime.db)
    diagrams = []
    for bp in sorted(library or [], key=lambda b: b.name):
        # the main path (`next`) first: the layout's depth-first walk then ranks it straight down, and
        # the failure stage (`on_failure`, whose retries lead back up) last
        nodes = {n: (spec.title, spec.kind, [s for s in (spec.next, *spec.successors(),
                                                          getattr(spec, "on_failure", None)) if s])
                 for n, spec in bp.nodes.items()}
        here = counts.get(bp.name, {})
        link = (lambda node, bp=bp: f"/console/orders?product={bp.product}&scenario={bp.scenario}&stage={node}"
                ) if bp.product else None
        failure = frozenset(f for spec in bp.nodes.values() if (f := getattr(spec, "on_failure", None)))
        diagrams.append({"bp": bp, "svg": svg.flow_diagram(bp.name, bp.start, nodes, here, link=link, weak=failure),
                         "open": sum(here.values())})
    return await page(request, "flows.html", diagrams=diagrams)


async def routes(request: web.Request) -> web.Response:
    from app.runtime import Runtime
    from routes.manager import ROUTE_RELOADS

    runtime = request.app[SERVICES]
    checks = await runtime.readiness() if isinstance(runtime, Runtime) else {}
    info = checks.get("routes") or {"routes": {}, "rejected": []}
    changed: dict[str, float | None] = {}

    def mtimes() -> None:  # the reloader polls the files every 2 s: a file's change is its last reload
        for name, r in info["routes"].items():
            path = r.get("file")
            changed[name] = os.stat(path).st_mtime if path and os.path.exists(path) else None

    await asyncio.to_thread(mtimes)
    reloads = {s.labels.get("outcome", "?"): int(s.value) for m in ROUTE_RELOADS.collect() for s in m.samples
               if s.name.endswith("_total")}
    deps = {k: v for k, v in checks.items() if k != "routes"}
    return await page(request, "routes.html", routes=info["routes"], rejected=info["rejected"],
                      degraded=info.get("degraded", []), reloads=reloads, deps=deps,
                      changed={k: datetime.fromtimestamp(v, UTC) if v else None for k, v in changed.items()})


async def alerts(request: web.Request) -> web.Response:
    """Stuck-order, interface and indicator alerts and the rules that raise them (C.1, C.2, C.4): the
    operations center's service (app/ops), as ``/admin/v1/alerts`` and ``/admin/v1/rules`` list them."""
    from app.ops.alerts import TRANSITIONS, AlertFilter
    from app.ops.api import ALERT_QUERY, _ops

    svc = _ops(request)
    flt, problems = _filter(request, AlertFilter, ALERT_QUERY)
    limit, skip = _paged(request)
    rows, total, rules = await asyncio.gather(svc.alerts.list(flt, limit=limit, skip=skip), svc.alerts.count(flt),
                                              svc.rules.find())
    args = {k: v for k, v in request.query.items() if k in ALERT_QUERY and v}
    return await page(request, "alerts.html", rows=rows, total=total, rules=rules, args=args, problems=problems,
                      actions=TRANSITIONS, skip=skip, limit=limit)
