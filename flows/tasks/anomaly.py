"""P36.2 result-anomaly recognition (§3.1.6.1.2): after a push, the alarms on the pushed cells are
judged by the task's order type and whether the alarm affects service.

Pure: the alarms come from the NMS's alarm query (flows/tasks/pipeline.py), the rules from
config/tasks/wireless.yaml; an alarm on a cell none of the chunk's tasks touched is not ours.
"""

from __future__ import annotations

from typing import Any

from flows.tasks.model import AnomalyRule


def verdict(rules: list[AnomalyRule], order_type: str, service_affecting: bool) -> str:
    """The first rule that matches decides; none matching means the alarm is ignored."""
    for rule in rules:
        if rule.order_types is not None and order_type not in rule.order_types:
            continue
        if rule.service_affecting is not None and rule.service_affecting != service_affecting:
            continue
        return rule.verdict
    return "ignore"


def judge(rules: list[AnomalyRule], tasks: list[dict[str, str]], alarms: list[dict[str, Any]],
          ) -> list[dict[str, Any]]:
    """One anomaly per (alarm, task on the alarm's cell) whose verdict is not ``ignore``."""
    by_cell: dict[str, list[dict[str, str]]] = {}
    for task in tasks:
        by_cell.setdefault(task["cell"], []).append(task)
    found = []
    for alarm in alarms:
        cell = str(alarm.get("cell", ""))
        affecting = str(alarm.get("service_affecting", "")).lower() in {"true", "1", "yes", "是"}
        for task in by_cell.get(cell, ()):
            level = verdict(rules, task["order_type"], affecting)
            if level != "ignore":
                found.append({"task_id": task["task_id"], "order_no": task["order_no"], "cell": cell,
                              "order_type": task["order_type"], "alarm": str(alarm.get("alarm", "")),
                              "service_affecting": affecting, "verdict": level})
    return found
