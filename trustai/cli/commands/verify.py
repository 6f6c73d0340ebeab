"""``trustai verify``: one verdict over a checkpoint, and the key it was checked against."""

from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console


def verify(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder or its pretrained_model folder")],
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: $TRUSTAI_HOME's, else ~/.config/trustai's)")
    ] = None,
) -> None:
    """Check signature, every file digest, card vs ledger, evidence vs ledger, the ledger chain and its
    signed anchors, and the checkpoint's identity (its run, place, step, and that its card is the
    latest the ledger holds for it); exit 1 naming each file, record or checkpoint at fault. Name the
    public key used (path, where it came from, sha256 fingerprint)."""
    from trustai.attest.keys import default_key_paths, public_key_fingerprint, resolve_public_key
    from trustai.attest.verify import verify_checkpoint

    key = resolve_public_key(public_key)
    report = verify_checkpoint(checkpoint, key.path if key else None)
    if key is not None:
        said = f"public key: {key.path} ({key.source}, sha256:{public_key_fingerprint(key.path)})"
    else:
        said = f"public key: none given, none at {default_key_paths()[1]} (signatures not checked)"
    console.print(said, markup=False, highlight=False, soft_wrap=True)  # whole, for copying
    for step in report.steps:
        mark = "[green]✓[/green]" if step.ok else "[red]✗[/red]"
        console.print(f"{mark} {step.name}")
        for problem in step.problems:
            console.print(f"    {problem}", markup=False)
    if not report.ok:
        console.print(f"[red]verification failed[/red]: {report.checkpoint}")
        raise typer.Exit(1)
    console.print(f"[green]verified[/green]: {report.checkpoint}")


def register(root: typer.Typer) -> None:
    """Add ``trustai verify`` to ``root``."""
    root.command()(verify)
