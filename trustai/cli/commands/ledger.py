"""``trustai ledger verify``: re-hash a run's evidence ledger, walk its chain and check its signed
anchors."""

from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console

app = typer.Typer(help="The evidence ledger of a run.", no_args_is_help=True)

INTERNAL_ONLY = (
    "no public key: only the ledger's internal consistency was checked. That proves nothing against "
    "someone who can write the run folder: they can rewrite every record and recompute every hash. Pass "
    "--public-key to check the signed anchors."
)


@app.command("verify")
def ledger_verify(
    path: Annotated[Path, typer.Argument(help="run folder or ledger.sqlite")],
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: $TRUSTAI_HOME's, else ~/.config/trustai's)")
    ] = None,
) -> None:
    """Re-hash every record, walk the chain and check every signed anchor; exit 1 naming each edited,
    deleted, reordered or unanchored record and each anchor that does not verify."""
    from rich.markup import escape

    from trustai.attest.keys import public_key_fingerprint, resolve_public_key
    from trustai.attest.verify import verify_ledger
    from trustai.layout import require_ledger

    fix = "pass a run folder (it holds trustai/ledger.sqlite) or the ledger file"
    ledger_path = path if path.is_file() else require_ledger(path, fix=fix)
    key = resolve_public_key(public_key)
    verdict = verify_ledger(ledger_path, key.path if key else None)
    if key is not None:
        said = f"public key: {key.path} ({key.source}, sha256:{public_key_fingerprint(key.path)})"
        console.print(said, markup=False, highlight=False, soft_wrap=True)
    for problem in verdict.problems:
        console.print(f"[red]✗[/red] {escape(problem)}", highlight=False)
    if not verdict.ok:
        console.print(f"[red]ledger verification failed[/red]: {ledger_path}", highlight=False)
        raise typer.Exit(1)
    if key is None:
        for note in verdict.anchors.unanchored:
            console.print(f"note: {note}", markup=False, highlight=False)
        console.print(
            f"ledger consistent: {verdict.records} records, chain intact ({ledger_path})", highlight=False
        )
        console.print(f"[yellow]{INTERNAL_ONLY}[/yellow]")
        return
    anchors = verdict.anchors
    console.print(
        f"[green]ledger verified[/green]: {verdict.records} records, all covered by {anchors.anchors} "
        f"signed anchors (the last is record {anchors.covered}, signed by key sha256:{anchors.signer}) "
        f"({ledger_path})",
        highlight=False,
    )


def register(root: typer.Typer) -> None:
    """Add ``trustai ledger`` to ``root``."""
    root.add_typer(app, name="ledger")
