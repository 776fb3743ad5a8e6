"""Partner simulators: ESOP (real SOAP service), 一编, 资管, IP / core-network workbenches and the
construction platform, on one aiohttp server with a path prefix per partner.

Every partner has switchable failure modes (``POST /_control/{partner}``): ``ok``, ``down``
(connection dropped), ``slow``, ``error`` (the partner's own business error answer),
``http_error`` (500), ``duplicate_callback``, ``late_callback``. ``GET /_calls`` counts what each
partner received, so tests can assert "exactly one notifyOrderResult per order".
"""

from simulators.server import SimulatorState, build_app, serve

__all__ = ["SimulatorState", "build_app", "serve"]
