"""Notification sinks for raised alerts: a webhook (JSON POST), e-mail over SMTP, the SMS gateway.

Configured as ``sinks:`` in config/rules/*.yaml and named by a rule's ``notify``. Only the worker whose
insert raised the alert notifies (app/ops/alerts.py), so a sink hears of each alert once. What each
sink answered is kept on the alert (``notified``), and counted (``hub_ops_notifications_total``); a
sink that fails is logged and never stops the evaluation.

The SMS gateway (G7) is an HTTP partner: ``POST url {"to": [...], "text": ...}``. SMTP goes through
the standard library's client in a thread (a short message; no dependency for it).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiohttp

from app.ops import metrics
from app.ops.alerts import ALERTS
from app.ops.rules import SEVERITIES, Sink

__all__ = ["Notifier", "text_of"]

log = logging.getLogger(__name__)


def text_of(alert: dict[str, Any]) -> str:
    """One line for SMS and mail subjects: severity, alert id, the rule's summary."""
    return f"[{alert['severity']}] {alert['_id']} {alert.get('summary') or alert.get('rule_name')}"


def _body(alert: dict[str, Any]) -> dict[str, Any]:
    keep = ("kind", "rule_id", "rule_name", "severity", "action", "subject", "order_id", "product", "scenario",
            "stage", "assignee", "summary", "status")
    return {"id": alert["_id"], **{k: alert.get(k) for k in keep},
            "raised_at": alert["raised_at"].isoformat() if alert.get("raised_at") else None}


class Notifier:
    """The ``on_raised`` hook of the evaluator that sends to the sinks the rule names."""

    def __init__(self, sinks: list[Sink], db: Any = None, *, timeout_s: float = 5.0) -> None:
        self.sinks = {s.name: s for s in sinks}
        self.db = db
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __call__(self, alert: dict[str, Any]) -> None:
        results = []
        for name in alert.get("notify") or []:
            sink = self.sinks.get(name)
            if sink is None or SEVERITIES.index(alert["severity"]) < SEVERITIES.index(sink.min_severity):
                continue
            try:
                await self.send(sink, alert)
                result = "ok"
            except Exception as exc:
                log.warning("notification of alert %s to %s failed: %r", alert["_id"], name, exc)
                result = f"failed: {type(exc).__name__}: {exc}"[:300]
            metrics.NOTIFY.labels(name, "ok" if result == "ok" else "failed").inc()
            results.append({"sink": name, "at": datetime.now(UTC), "result": result})
        if results and self.db is not None:
            await self.db[ALERTS].update_one({"_id": alert["_id"]}, {"$push": {"notified": {"$each": results}}})

    async def send(self, sink: Sink, alert: dict[str, Any]) -> None:
        if sink.type == "smtp":
            await asyncio.to_thread(self._mail, sink, alert)
            return
        body: dict[str, Any] = _body(alert) if sink.type == "webhook" else {"to": sink.to, "text": text_of(alert)}
        assert sink.url is not None  # the model requires it for webhook and sms
        async with aiohttp.ClientSession(timeout=self.timeout) as session, session.post(sink.url, json=body) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"{sink.type} answered {resp.status}")

    @staticmethod
    def _mail(sink: Sink, alert: dict[str, Any]) -> None:
        msg = EmailMessage()
        msg["Subject"] = text_of(alert)
        msg["From"] = sink.sender or ""
        msg["To"] = ", ".join(sink.to)
        b = _body(alert)
        msg.set_content("\n".join(f"{k}: {v}" for k, v in b.items() if v is not None))
        assert sink.host is not None
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
            smtp.send_message(msg)
