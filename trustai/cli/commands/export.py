"""``trustai export``: a sealed checkpoint as an upload-ready folder that verifies wherever it is copied
(the work is ``trustai.attest.export``)."""

from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console


def export(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder or its pretrained_model folder")],
    out: Annotated[Path, typer.Argument(help="new folder to write the export into")],
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: $TRUSTAI_HOME's, else ~/.config/trustai's)")
    ] = None,
) -> None:
    """Verify CHECKPOINT, then write OUT: its Hugging Face card at the top, the signed folder byte for
    byte, the run's ledger and the public key with its sha256 fingerprint; `trustai verify
    OUT/checkpoints/<step>` passes on any copy of OUT. Exit 1 when the checkpoint does not verify
    (nothing written), 2 on bad input."""
    from rich.markup import escape

    from trustai.attest.export import ExportRefused, export_checkpoint
    from trustai.attest.keys import public_key_fingerprint, resolve_public_key
    from trustai.errors import TrustaiUserError

    key = resolve_public_key(public_key)
    if key is None:
        raise TrustaiUserError(
            "no public key: an export is verified before it is written",
            fix="pass --public-key, or run `trustai keys generate` where the run was signed",
        )
    try:
        model, report = export_checkpoint(checkpoint, out, key.path)
    except ExportRefused as refused:
        for step in refused.report.steps:
            for problem in step.problems:
                console.print(f"[red]✗[/red] {escape(step.name)}: {escape(problem)}", highlight=False)
        console.print(f"[red]not exported[/red]: {escape(str(refused.report.checkpoint))} does not verify")
        raise typer.Exit(1) from None
    fingerprint = public_key_fingerprint(key.path)
    console.print(f"exported: {out}  (public key sha256:{fingerprint})", markup=False, highlight=False)
    console.print(f"verify with: trustai verify {model} --public-key PUB", markup=False, highlight=False)
    if not report.ok:  # the copy on disk differs from what was verified a moment ago
        console.print("[red]the written export does not verify[/red]")
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai export`` to ``root``."""
    root.command()(export)
