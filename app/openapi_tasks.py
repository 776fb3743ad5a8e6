"""The OpenAPI descriptions of the wireless task batch routes (flows/tasks/intake.py, CATALOGUE P36.1),
kept beside the other additions; app/openapi.py appends them to its ``OPERATIONS``.

The models describe the JSON the handler reads and answers; the handler itself checks tasks with plain
code (flows/tasks/model.py ``parse_task``: 100,000 tasks per batch), with the same fields and limits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.tasks.model import MAX_TEXT

__all__ = ["WirelessBatch", "WirelessTask", "operations"]

TEXT = Field(min_length=1, max_length=MAX_TEXT)


class WirelessTask(BaseModel):
    """One wireless parameter change on one cell (P36.1)."""

    model_config = ConfigDict(extra="allow")

    task_id: str = TEXT
    order_no: str = TEXT
    order_type: str = Field(min_length=1, max_length=MAX_TEXT, examples=["optimisation"],
                            description="one of config/tasks/wireless.yaml order_types; P36.2 judges alarms by it")
    ne: str = TEXT
    cell: str = TEXT
    parameter: str = TEXT
    value: str = Field(default="", max_length=MAX_TEXT)


class WirelessBatch(BaseModel):
    """A batch of tasks from the ARAN workbench; its id makes a resend one batch."""

    batch_id: str = Field(min_length=1, max_length=64)
    tasks: list[WirelessTask] = Field(min_length=1, description="at most max_batch_tasks; task ids unique")


class BatchAccepted(BaseModel):
    batch_id: str
    received: int = Field(ge=0, description="tasks stored now (0 for a batch sent before)")
    tasks: int = Field(ge=0)
    duplicate: bool
    account: str = Field(description="the one dedicated NMS account the tasks go out under")


BATCH_EXAMPLE = {"batch_id": "ARAN-20261202-0001", "tasks": [
    {"task_id": "T000000001", "order_no": "WO-000001", "order_type": "optimisation", "ne": "gNB-0000001",
     "cell": "CELL-000001", "parameter": "pMax", "value": "23"}]}


def operations() -> tuple[Any, ...]:
    """Imported late: app/openapi.py defines what these are built from before it asks for them."""
    from app.openapi import P400, P401_PARTNER, P413, P503, Answer, Operation, _problem

    batch_param = {"type": "string", "minLength": 1, "maxLength": 64}
    return (
        Operation("POST", "/api/v1/network-tasks/wireless", "wireless_batch",
                  "The ARAN workbench sends a batch of wireless parameter tasks (P36.1)", "network-tasks", "partner",
                  {202: Answer("stored as chunks; they go to the NMS under the dedicated account", BatchAccepted),
                   400: P400, 401: P401_PARTNER, 413: P413, 503: P503},
                  body=WirelessBatch, body_example=BATCH_EXAMPLE,
                  description="With the ARAN workbench's API key. The same batch_id again is a duplicate: nothing "
                              "is pushed twice. docs/network-tasks.md."),
        Operation("GET", "/api/v1/network-tasks/wireless/{batch_id}", "wireless_batch_status",
                  "A wireless task batch: counters, failed tasks and P36.2 anomalies", "network-tasks", "partner",
                  {200: Answer("the batch", schema={"type": "object"}), 401: P401_PARTNER,
                   404: _problem("no such batch"), 503: P503},
                  path_params={"batch_id": batch_param}),
    )
