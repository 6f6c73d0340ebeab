"""``trustai audit``: a pack's checkpoint checks as a promotion gate (the work is ``trustai.cli.audit``)."""

import os
from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console
from trustai.cli.commands.pack import PackOption, PolicyAlias, chosen_pack


def audit(
    target: Annotated[
        Path, typer.Argument(help="checkpoint folder or its pretrained_model folder; a run folder with --all")
    ],
    dataset: Annotated[Path, typer.Option(help="LeRobot dataset folder with (held-out) frames")],
    pack: PackOption = None,
    policy: PolicyAlias = None,
    all_checkpoints: Annotated[
        bool, typer.Option("--all", help="audit every checkpoint of the run TARGET in parallel, on Ray")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster HOST:PORT for the audits (default: RAY_ADDRESS, else a local Ray)"),
    ] = None,
    frames: Annotated[int | None, typer.Option(help="frames per audit (overrides the pack's params)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run folder for a new ledger when no governed run owns the checkpoint")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(help="private signing key (default: $TRUSTAI_HOME's, else ~/.config/trustai's)"),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="public key the checkpoint's signature must verify with first")
    ] = None,
) -> None:
    """Run a pack's checkpoint checks on a checkpoint (or, with --all, every checkpoint of a run), re-sign
    the cards; exit 1 if a block check fails."""
    from trustai.cli.audit import audit_main

    code = audit_main(
        console,
        target,
        dataset,
        chosen_pack(pack, policy),
        all_checkpoints=all_checkpoints,
        ray_address=ray_address or os.environ.get("RAY_ADDRESS"),
        frames=frames,
        out=out,
        key=key,
        public_key=public_key,
    )
    if code:
        raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    """Add ``trustai audit`` to ``root``."""
    root.command()(audit)
