"""Flow engine v2 (issue 10): blueprints as graphs of named nodes, and a pure deterministic engine.

The worker runs it through flows/runtime (docs/flows.md, "One source of truth").
Importing the package registers the node kinds.
"""

from flows.graph import nodes as _nodes  # noqa: F401  (registers the kinds in NODE_KINDS)
from flows.graph.machine import step
from flows.graph.model import NODE_KINDS, Blueprint

__all__ = ["NODE_KINDS", "Blueprint", "step"]
