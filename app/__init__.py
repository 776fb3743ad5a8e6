"""The composition root: the one place that wires every layer together.

``runtime`` (process services), ``agents`` (the Faust app and its agents), ``router`` and
``delivery`` (the envelope-moving agents), ``web`` (the HTTP server), ``worker`` (one hub process),
``admin`` (operator service layer and API), ``cli`` (the ``hub`` command), ``infra`` (the embedded
servers of the default profile). Nothing below this package imports it (see pyproject.toml,
[tool.importlinter]); docs/architecture.md draws the layers.
"""
