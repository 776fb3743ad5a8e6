"""Protocol connectors, one package per protocol, all behind the contract in ``connectors/base.py``."""
