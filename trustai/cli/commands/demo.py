"""``trustai demo``: the whole governed path on a laptop (the work is ``trustai.cli.demo``)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustai.cli._console import console
from trustai.cli.commands.pack import PackOption, PolicyAlias, chosen_pack
from trustai.layout import ledger_path


def demo(
    out: Annotated[Path, typer.Option(help="output folder (must be new)")] = Path("trustai-demo"),
    pack: PackOption = None,
    policy: PolicyAlias = None,
) -> None:
    """Synthetic dataset -> governed LeRobot ACT training (CPU) -> signed cards -> verification."""
    from trustai.cli.demo import run_demo

    chosen = chosen_pack(pack, policy)
    with console.status("governed training of a tiny ACT policy on a synthetic dataset..."):
        result = run_demo(out, chosen)
    table = Table("checkpoint", "card", "verified")
    for path, verified in zip(result.checkpoints, result.reports, strict=True):
        table.add_row(
            str(path.relative_to(result.out)),
            "trustai/card.json + README.md",
            "[green]yes[/green]" if verified.ok else "[red]no[/red]",
        )
    console.print(table)
    console.print(
        f"dataset:    {result.dataset}\nrun:        {result.run_dir}\n"
        f"ledger:     {ledger_path(result.run_dir)}\npublic key: {result.public_key}\n"
        f"check it:   trustai verify {result.checkpoints[-1]} --public-key {result.public_key}\n"
        f"report:     {result.compliance_report} (EU AI Act technical documentation)"
    )
    if not all(r.ok for r in result.reports):
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai demo`` to ``root``."""
    root.command()(demo)
