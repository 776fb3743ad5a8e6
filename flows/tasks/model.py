"""Wireless parameter tasks (CATALOGUE P36.1/P36.2): the configuration and the task record.

Why not the canonical work order: a wireless task is one parameter change on one cell, arriving by the
hundred thousand in one ARAN file (peak 4,000,000 a day, §1.1–1.2), so it is checked with plain code
(~1 µs a task) instead of a pydantic model and a Kafka envelope per task (docs/network-tasks.md).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from connectors.sftp.config import SftpSourceConfig
from hub.configfile import load_model
from hub.errors import ValidationFailed

TASKS = Counter("hub_network_tasks_total",
                "Wireless parameter tasks by outcome (received, ok, failed, anomaly)", ["outcome"])
NMS_CALLS = Counter("hub_network_task_nms_calls_total",
                    "Calls to the wireless NMS by operation and outcome (ok, rejected, error)",
                    ["operation", "outcome"])

#: the fields of one task, as the hub names them (``columns`` maps an ARAN file's headers onto them)
TASK_FIELDS = ("task_id", "order_no", "order_type", "ne", "cell", "parameter", "value")
MAX_TEXT = 128


class AnomalyRule(BaseModel):
    """One row of P36.2's judgement: an alarm on a pushed cell, by the task's order type and whether the
    alarm affects service. Absent conditions match anything; the first rule that matches decides."""

    model_config = ConfigDict(extra="forbid")

    order_types: list[str] | None = Field(default=None, description="the task's order_type; absent = any")
    service_affecting: bool | None = Field(default=None, description="the alarm's flag; absent = either")
    verdict: Literal["critical", "major", "minor", "ignore"]


class AnomalySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    watch_s: float = Field(default=60.0, ge=0, le=86400,
                           description="how long after a push the chunk's cells are checked for alarms")
    poll_s: float = Field(default=1.0, gt=0, le=60, description="how often due chunks are looked for")
    rules: list[AnomalyRule] = Field(min_length=1)


class WirelessTaskSettings(BaseModel):
    """``config/tasks/wireless.yaml``: where wireless tasks come from and how they go out."""

    model_config = ConfigDict(extra="forbid")

    nms_partner: str = Field(default="wireless_nms", description="partner file of the wireless NMS")
    account: str = Field(min_length=1, description="the ONE dedicated NMS account every task goes out under "
                                                   "(§3.1.6.1.1 分权分域)")
    origin_partner: str = Field(default="aran_workbench", description="who sends the tasks (its API key)")
    chunk_size: int = Field(default=500, ge=1, le=5000, description="tasks per NMS call")
    window: int = Field(default=4, ge=1, le=64, description="NMS calls in flight")
    max_batch_tasks: int = Field(default=100_000, ge=1, description="largest REST batch")
    max_body_bytes: int = Field(default=32 * 1_048_576, ge=1024, description="largest REST batch body")
    order_types: list[str] = Field(min_length=1, description="accepted order_type values")
    columns: dict[str, str] = Field(default_factory=dict, description="file column → task field")
    sftp: SftpSourceConfig | None = Field(default=None, description="the ARAN file drop; absent = REST only")
    anomaly: AnomalySettings


@functools.lru_cache(maxsize=8)
def load_settings(config_dir: Path) -> WirelessTaskSettings | None:
    """The settings, or None when this configuration has no wireless task intake (read once per
    process: a file error shows at the worker's start, ConfigError naming file:line: key)."""
    path = config_dir / "tasks" / "wireless.yaml"
    return load_model(path, WirelessTaskSettings) if path.is_file() else None


def parse_task(raw: dict[str, Any], settings: WirelessTaskSettings, where: str = "") -> dict[str, str]:
    """One task as the hub stores and sends it; ValidationFailed names every bad field."""
    columns = settings.columns
    task: dict[str, str] = {}
    errors: list[dict[str, Any]] = []
    for key, value in raw.items():
        name = columns.get(key, key)
        if name in TASK_FIELDS:
            task[name] = "" if value is None else str(value).strip()
    for name in TASK_FIELDS:
        value = task.get(name, "")
        if not value and name != "value":
            errors.append({"field": f"{where}{name}", "message": "required"})
        elif len(value) > MAX_TEXT:
            errors.append({"field": f"{where}{name}", "message": f"longer than {MAX_TEXT} characters"})
    if task.get("order_type") and task["order_type"] not in settings.order_types:
        errors.append({"field": f"{where}order_type",
                       "message": f"{task['order_type']!r} is not one of {settings.order_types}"})
    if errors:
        raise ValidationFailed("invalid wireless task", errors)
    task.setdefault("value", "")
    return task
