"""Partner simulators: ESOP (real SOAP service) and every REST partner declared in
``simulators/partners/<partner>.yaml`` (simulators/spec.py: sync, callback, poll, staged replies, the
partner's own success and error answers), on one aiohttp server with a path prefix per partner.

Every partner has switchable failure modes (``POST /_control/{partner}``): ``ok``, ``down``
(connection dropped), ``slow``, ``error`` (the partner's own business error answer),
``http_error`` (500), ``duplicate_callback``, ``late_callback``. ``GET /_calls`` counts what each
partner received, so tests can assert "exactly one notifyOrderResult per order".
"""

from simulators.server import SimulatorState, build_app, serve

__all__ = ["SimulatorState", "build_app", "serve"]
