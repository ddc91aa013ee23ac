"""``python3 -m fleet`` runs the command line."""

from fleet.cli import run

run()
