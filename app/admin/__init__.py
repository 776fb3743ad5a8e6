"""Operator tooling: dead-letter replay, order lookup, call statistics — the service layer shared by
the ``hub dlq|orders|calls`` CLI and the authenticated admin API (``/admin/v1/…``).

* :mod:`app.admin.replay`   — the one replay path (DLQ replay, ``orders retry``, call re-call) and discard
* :mod:`app.admin.queries`  — filters, listings (masked), order views, call statistics
* :mod:`hub.auth`     — bearer tokens → roles (viewer, operator)
* :mod:`app.admin.patch`    — RFC 6902 JSON patch applied to a payload before replay
* :mod:`app.admin.api`      — the aiohttp routes
"""
