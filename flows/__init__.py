"""Flows: the stage engine, product blueprints, fan-outs and fusion aggregation."""
