"""The wireless NMS as the bulk path calls it: one call carries a chunk of tasks, under one account.

Why not the delivery agent (app/delivery.py): it sends one envelope per call through Kafka, which at
~1,000 tasks/s is a thousand produce/consume round trips a second; here one HTTP call carries
``chunk_size`` tasks and ``window`` calls are in flight. The partner file (config/partners/
wireless_nms.yaml) still says where and how: base URL, paths, headers (the dedicated account), the
success rule and error field (G3). The chunk id is the Idempotency-Key, so a chunk pushed again after
a crash is applied once by the NMS.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from connectors.rest.sink import RestSinkConfig
from flows.tasks.model import NMS_CALLS
from hub.errors import ConfigError, PermanentError, RetryableError
from hub.partners import Partner

PUSH = "push_parameters"
ALARMS = "alarm_query"


class NmsClient:
    """Pipelined calls to the NMS; ``RetryableError`` when it cannot be reached or answers 5xx,
    ``PermanentError`` when it refuses the chunk by its success rule."""

    def __init__(self, partner: Partner, account: str, *, window: int) -> None:
        if partner.outbound is None:
            raise ConfigError(f"partner {partner.name}: no outbound section for the wireless NMS")
        self.config = RestSinkConfig.model_validate(partner.outbound.config)
        for op in (PUSH, ALARMS):
            if op not in self.config.operations:
                raise ConfigError(f"partner {partner.name}: operation {op!r} is required by the wireless tasks")
        self.partner = partner.name
        self.account = account
        self.timeout_s = partner.outbound.policy.timeout_s
        self.window = window
        self._session: aiohttp.ClientSession | None = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.window * 2),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                json_serialize=lambda o: json.dumps(o, ensure_ascii=False))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, operation: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        op = self.config.operations[operation]
        headers = {**self.config.headers, "Idempotency-Key": key, "X-NMS-Account": self.account}
        if self.config.auth is not None:
            headers[self.config.auth.header] = self.config.auth.key.get_secret_value()
        http = await self._http()
        try:
            async with http.request(op.method, self.config.base_url.rstrip("/") + op.path,
                                    json={"account": self.account, **body}, headers=headers) as resp:
                status = resp.status
                answer = await resp.json(content_type=None) if resp.content_length != 0 else {}
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            NMS_CALLS.labels(operation, "error").inc()
            raise RetryableError(f"{self.partner} {operation}: {exc or type(exc).__name__}") from exc
        if status >= 500 or status == 429:
            NMS_CALLS.labels(operation, "error").inc()
            raise RetryableError(f"{self.partner} {operation}: HTTP {status}")
        ok, error = op.success.judge(status, answer)
        if not ok:
            NMS_CALLS.labels(operation, "rejected").inc()
            raise PermanentError(f"{self.partner} {operation} refused: {error}")
        NMS_CALLS.labels(operation, "ok").inc()
        return answer if isinstance(answer, dict) else {}

    async def push(self, batch_id: str, chunk_id: str, tasks: list[dict[str, str]]) -> dict[str, Any]:
        """Send one chunk; the answer lists the tasks the NMS could not apply (``failed``)."""
        body = {"batchId": batch_id, "chunkId": chunk_id, "tasks": [
            {"taskId": t["task_id"], "ne": t["ne"], "cell": t["cell"], "parameter": t["parameter"],
             "value": t["value"]} for t in tasks]}
        return await self.call(PUSH, body, chunk_id)

    async def alarms(self, label: str, cells: list[str]) -> list[dict[str, Any]]:
        """The active alarms on ``cells`` (P36.2's watch after a push). A query, not an effect: its key is
        new every time (a repeated key would get the first answer back from an idempotent partner)."""
        answer = await self.call(ALARMS, {"chunks": label, "cells": cells}, f"alarms:{label}:{time.time_ns()}")
        alarms = answer.get("alarms") or []
        return [a for a in alarms if isinstance(a, dict)]
