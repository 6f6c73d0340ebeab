"""``python -m trustai`` runs the CLI."""

from trustai.cli import main

main()
