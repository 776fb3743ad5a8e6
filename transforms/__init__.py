"""Mappings between partner payloads and the canonical model (masking is the core's: hub/masking.py)."""
