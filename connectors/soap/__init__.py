"""SOAP 1.1 webservices: inbound (the hub publishes a WSDL per partner) and outbound (zeep).

Each module registers itself with ``connectors.registry`` when imported below.
"""
