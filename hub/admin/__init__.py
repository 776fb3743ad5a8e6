"""Operator tooling: dead-letter replay, order lookup, call statistics — the service layer shared by
the ``hub dlq|orders|calls`` CLI and the authenticated admin API (``/admin/v1/…``).

* :mod:`hub.admin.replay`   — the one replay path (DLQ replay, ``orders retry``, call re-call) and discard
* :mod:`hub.admin.queries`  — filters, listings (masked), order views, call statistics
* :mod:`hub.admin.auth`     — bearer tokens → roles (viewer, operator)
* :mod:`hub.admin.patch`    — RFC 6902 JSON patch applied to a payload before replay
* :mod:`hub.admin.api`      — the aiohttp routes
"""
