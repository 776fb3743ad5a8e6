"""REST over HTTP(S): order intake from partners (source) — registered as ``rest``."""

from connectors.rest.config import RestSourceConfig
from connectors.rest.sink import RestSink, RestSinkConfig
from connectors.rest.source import RestOrderSource

__all__ = ["RestOrderSource", "RestSink", "RestSinkConfig", "RestSourceConfig"]
