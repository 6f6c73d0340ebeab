"""``trustai status``: a governed run's checkpoints, findings and gate, read from its ledger (the work
is ``trustai.cli.status``)."""

from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console

JSON_HELP = (
    "print one JSON document instead: schema ('trustai.status/v1'), run, pack {name, version, digest}, "
    "dataset {id, fingerprint}, training {ended, steps}, run_findings [finding], checkpoints [{checkpoint, "
    "step, card, signed, release, gate, findings [finding]}], stages_after_training [{seq, stage, step, "
    "trigger, time}], gate {verdict: pass|warn|blocked, blocking, warnings, checkpoint}; a finding is "
    "{check, audit, stage, step, status, severity, summary, record}"
)


def status(
    run_dir: Annotated[Path, typer.Argument(help="folder of a governed run (holds trustai/ledger.sqlite)")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """A run's pack, dataset, checkpoints (step, card, signed, gate), the findings of each, the stages
    raised after training and the run's gate (the released checkpoint's). Reads only. Exit 0, 1 when the
    gate is blocked, 2 when RUN_DIR is not a governed run."""
    import json

    from trustai.cli.status import print_status
    from trustai.reports.run_status import run_status

    found = run_status(run_dir)
    if as_json:
        typer.echo(json.dumps(found.as_json(), indent=2))
    else:
        print_status(console, found)
    if found.gate.blocked:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai status`` to ``root``."""
    root.command()(status)
