"""What every ``trustai`` command shares: where output goes, and how a run of the app ends."""

import sys
from typing import Any

import typer
from rich.console import Console, ConsoleDimensions

from trustai.errors import TrustaiUserError

# Width for output into a pipe or file: wide enough that tables keep whole cells (rich would lay them
# out for 80 columns, squeezing and cutting them); tables only take the width their content needs.
PIPE_WIDTH = 200


class _Console(Console):
    """A rich Console that, writing to a pipe or file with no ``COLUMNS`` set, lays output out
    ``PIPE_WIDTH`` columns wide instead of 80 and never breaks a line of text; on a terminal it behaves
    as rich's own."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and "COLUMNS" not in self._environ:
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        """rich's print; into a pipe or file a line of text is never broken, however long (a path a
        script greps for stays on its line); tables are still laid out for the width above."""
        if soft_wrap is None and not self.is_terminal:
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = _Console()
stderr = _Console(stderr=True, soft_wrap=True)
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
