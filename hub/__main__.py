"""``python -m hub`` = the ``hub`` command."""

from app.cli import main

main()
