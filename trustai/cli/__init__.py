"""The ``trustai`` command line, built from one module per command (``trustai.cli.commands``).

Bad input exits 2 with one clear message; verification failures exit 1 and name what failed; a
``block`` finding that fails makes gating commands exit 1."""

import typer

from trustai.cli._console import run
from trustai.cli.commands import (
    audit,
    demo,
    drift,
    export,
    keys,
    ledger,
    monitor,
    pack,
    report,
    serve,
    status,
    train,
    verify,
)

app = typer.Typer(
    help="Trustworthy-AI governance for robot policy training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
COMMANDS = (train, status, serve, verify, export, audit, report, monitor, drift, demo, pack, ledger, keys)
for command in COMMANDS:
    command.register(app)


def main() -> None:
    """Entry point: run the app; user errors print one message and exit 2."""
    run(app)
