"""Routes declared in configuration (``config/routes/*.yaml``): source → transform → target."""
