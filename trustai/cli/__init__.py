"""The ``trustai`` command line, built from one module per command (``trustai.cli.commands``).

Bad input exits 2 with one clear message; verification failures exit 1 and name what failed; a
``block`` finding that fails makes gating commands exit 1."""

import typer

from trustai.cli._console import run
from trustai.cli.commands import (
    audit,
    demo,
    drift,
    keys,
    ledger,
    monitor,
    pack,
    report,
    status,
    train,
    verify,
)

app = typer.Typer(
    help="Trustworthy-AI governance for robot policy training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (train, status, verify, audit, report, monitor, drift, demo, pack, ledger, keys):
    command.register(app)


def main() -> None:
    """Entry point: run the app; user errors print one message and exit 2."""
    run(app)
