"""What every ``trustai`` command shares: where output goes, and how a run of the app ends."""

import sys

import typer
from rich.console import Console

from trustai.errors import TrustaiUserError

console = Console()
stderr = Console(stderr=True, soft_wrap=True)
# Inconclusive gets a colour of its own: it is not a pass, and not the audit breaking either.
_STATUS_COLOURS = {
    "pass": "green",
    "warn": "yellow",
    "fail": "red",
    "error": "red",
    "inconclusive": "magenta",
}


def note(message: str) -> None:
    """Print a one-line note (e.g. a deprecation) on stderr, leaving stdout to the command's output."""
    stderr.print(f"[yellow]note[/yellow]: {message}", highlight=False)


def status_markup(status: str) -> str:
    """A finding's status (pass, warn, fail, error, inconclusive) coloured for the console."""
    colour = _STATUS_COLOURS[status]
    return f"[{colour}]{status}[/{colour}]"


def run(app: typer.Typer) -> None:
    """Run ``app`` on the command line; a TrustaiUserError prints one message on stderr and exits 2."""
    try:
        app()
    except TrustaiUserError as exc:
        stderr.print(f"[red]error[/red]: {exc}", highlight=False)
        sys.exit(2)
