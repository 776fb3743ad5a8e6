"""Prometheus metrics of the operations center (the default registry: /metrics shows them).

The overview gauges are set by each evaluation cycle from the same counts as ``hub overview``, so a
dashboard and the CLI never disagree; a worker that did not run the cycle keeps its last values."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OVERVIEW = Gauge(
    "hub_ops_orders", "Open orders by product, current stage and state (in_flight, overdue, due_soon, stuck)",
    ["product", "stage", "state"])
API_FAILURE_RATE = Gauge("hub_ops_api_failure_rate",
                         "Share of partner calls that failed, over HUB_OPS_FAILURE_WINDOW_S")
ALERTS_RAISED = Counter("hub_ops_alerts_raised_total", "Alerts raised, by rule and severity", ["rule", "severity"])
ALERTS_CLEARED = Counter("hub_ops_alerts_cleared_total", "Alerts whose condition cleared, by kind", ["kind"])
RULE_ERRORS = Counter("hub_ops_rule_errors_total", "Rule conditions that failed to evaluate on an order", ["rule"])
NOTIFY = Counter("hub_ops_notifications_total", "Notifications sent, by sink and result (ok, failed)",
                 ["sink", "result"])
CYCLE_SECONDS = Histogram("hub_ops_cycle_seconds", "Wall time of one rule evaluation cycle",
                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100))
