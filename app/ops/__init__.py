"""The operations center (issue 14): order facts, the stuck-order rule library, alerts as work items,
the overview per product x stage, exports and notification sinks.

Modules, one job each: ``settings`` (HUB_OPS_*), ``facts`` (what a rule sees of an order), ``rules``
(model, validation, config seeding, the rule store), ``alerts`` (alerts and their handling stages),
``evaluator`` (one evaluation cycle: rules -> alerts, the overview snapshot, gauges), ``overview``
(the snapshot and the drill-down), ``exports`` (CSV / XLSX), ``notify`` (webhook, SMTP, SMS), ``api``
(``/admin/v1/overview``, ``/admin/v1/rules…``, ``/admin/v1/alerts…``), ``agent`` (the periodic evaluator
in the worker). The CLI is app/cli/overview.py, rules.py and alerts.py.
"""
