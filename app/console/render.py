"""Rendering console pages: one jinja2 environment, autoescaped, templates compiled once at start.

Why in a thread: rendering a page of 50 orders with their masked fields is pure-Python work of a
few ms, a 1000-row export more; on the loop it would hold every partner's intake meanwhile (the
suite fails a test whose loop runs one callback > 100 ms of CPU). Compiling every template at
start-up (``warm``) keeps the first request of each page from paying for it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from app.admin.terminal import json_text, visible
from app.console import i18n
from app.console.session import CSRF_FIELD, LANG_COOKIE, SESSION
from app.console.svg import human_ms

TEMPLATES = Path(__file__).parent / "templates"
NAV = ("overview", "orders", "dlq", "calls", "alerts", "reports", "jobs", "flows", "routes", "history")
#: a nav item whose label is not its own key ("reports" is the order page's 进度上报)
NAV_LABELS = {"reports": "report_control"}


def _when(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def _inert_json(value: Any) -> str:
    """``pretty`` for a record a partner wrote into: C1 and bidi characters as ``\\uXXXX``."""
    return json_text(value, indent=2, sort_keys=True, default=str)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    # ``inert``: text a partner or a submitter wrote (errors, notes, payload values), control and format
    # characters spelled out as on the terminal (app/admin/terminal.py); autoescape does the HTML part
    env.filters.update(when=_when, pretty=_pretty, ms=human_ms, inert=visible, inert_json=_inert_json)
    env.globals.update(urlencode=urlencode, Markup=Markup, nav=NAV, nav_labels=NAV_LABELS)
    return env


ENV = _env()


def warm() -> None:
    """Compile every template now (blocking file reads and compilation: call it in a thread)."""
    for name in ENV.list_templates(extensions=["html"]):
        ENV.get_template(name)


def lang_of(request: web.Request) -> str:
    return i18n.pick(request.query.get("lang") or request.cookies.get(LANG_COOKIE))


async def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """The page ``template`` with the console's common context (labels, user, CSRF token, nav)."""
    lang = lang_of(request)
    session = request.get(SESSION)
    base = {"lang": lang, "t": lambda key: i18n.t(lang, key), "session": session,
            "user": session.principal if session else None, "csrf": session.csrf if session else "",
            "csrf_field": CSRF_FIELD, "path": request.path, "query": dict(request.query),
            "is_operator": bool(session and session.principal.may("operator")), "other_lang": _other(lang)}
    html = await asyncio.to_thread(lambda: ENV.get_template(template).render(**base, **context))
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                                   "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.query.get("lang") in i18n.LANGS:  # a chosen language sticks
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/console", samesite="Strict",
                            secure=request.secure)
    return response


def _other(lang: str) -> str:
    return "en" if lang == "zh" else "zh"
