"""``trustai monitor``: post-market monitoring of a governed run (the work is ``trustai.cli.monitor``)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustai.cli._console import console, status_markup
from trustai.cli.commands.pack import PolicyAlias, chosen_pack
from trustai.layout import ledger_path


def monitor(
    run_dir: Annotated[Path, typer.Argument(help="folder of a governed run (holds trustai/ledger.sqlite)")],
    current: Annotated[Path, typer.Option(help="current LeRobot dataset folder (new field data)")],
    reference: Annotated[
        Path | None,
        typer.Option(
            help="reference dataset (default: the run's training dataset, checked against the fingerprint "
            "the run recorded or verified)"
        ),
    ] = None,
    pack: Annotated[
        str | None, typer.Option("--pack", help="policy pack (default: the pack the run recorded)")
    ] = None,
    policy: PolicyAlias = None,
    key: Annotated[
        Path | None,
        typer.Option(
            help="the run's private signing key, to anchor the records (default: trustai's default key)"
        ),
    ] = None,
) -> None:
    """Post-market monitoring: run the pack's monitor checks on CURRENT, appended to the run's ledger."""
    from trustai.cli.monitor import monitor_run
    from trustai.core.gate import gate

    chosen = chosen_pack(pack, policy, default=None)
    with console.status("running monitor-stage checks..."):
        done = monitor_run(run_dir, current, reference=reference, pack=chosen, key=key)
    if done.reference is not None:
        console.print(f"reference: {status_markup(done.reference.status.value)}: {done.reference.message}")
    table = Table("check", "audit", "status", "severity", "message")
    for f in done.findings:
        table.add_row(f.check_id, f.audit, status_markup(f.status.value), f.severity.value, f.message)
    console.print(table)
    console.print(f"recorded in {ledger_path(run_dir)}")
    if gate(done.findings).blocked:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai monitor`` to ``root``."""
    root.command()(monitor)
