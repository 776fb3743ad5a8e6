"""SOAP 1.1 webservices: inbound (the hub publishes a WSDL per partner) and outbound (zeep).

Each module registers itself with ``connectors.registry`` when imported below.
"""
from connectors.soap import sink as _sink  # noqa: F401  outbound (zeep), registers "soap"
from connectors.soap import source as _source  # noqa: F401  inbound webservice, registers "soap" source
