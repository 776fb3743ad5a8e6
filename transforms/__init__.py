"""Mappings between partner payloads and the canonical model; masking of sensitive fields."""
