"""``trustai train``: LeRobot's trainer under governance, with LeRobot's own flags after ``--``.

Training is never stopped by the gate: once LeRobot's ``train()`` has returned (and the audits still
running have drained into the ledger), the command prints the verdict table read from the ledger and
exits 1 when the released checkpoint's gate is blocked (``trustai.reports.run_status``), unless
``--no-gate``."""

import os
from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console
from trustai.cli.commands.pack import PackOption, PolicyAlias, chosen_pack
from trustai.layout import ledger_path


def train(
    ctx: typer.Context,
    pack: PackOption = None,
    policy: PolicyAlias = None,
    key: Annotated[
        Path | None,
        typer.Option(help="private signing key (default: $TRUSTAI_HOME's, else ~/.config/trustai's)"),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="where data, checkpoint and release audits run: process (the default: local low-priority "
            "worker processes, beside the training loop), ray, or inline (in the loop's time)"
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    ] = None,
    no_gate: Annotated[
        bool, typer.Option("--no-gate", help="exit 0 when the gate is blocked (the verdict is still shown)")
    ] = False,
    track: Annotated[
        str | None,
        typer.Option(
            help="send findings, gates and card digests to experiment trackers: wandb (LeRobot's W&B run: "
            "add --wandb.enable=true), mlflow (MLFLOW_TRACKING_URI), or both: wandb,mlflow"
        ),
    ] = None,
) -> None:
    """Run LeRobot's trainer under governance: trustai train --pack PACK -- <lerobot-train flags>.
    Ends with the verdict per checkpoint; exit 1 when the released checkpoint's gate is blocked."""
    from trustai.attest.keys import resolve_signing_key
    from trustai.packs import load_pack

    loaded = load_pack(chosen_pack(pack, policy))
    signing_key = resolve_signing_key(key).path
    # Imported once the input is known good: LeRobot and torch take seconds to import.
    from trustai.audits.privacy.dp_budget import PrivacyBudgetExhausted
    from trustai.training_hooks.lerobot_train import governed_train
    from trustai.training_hooks.trackers import parse_trackers

    try:
        run_dir = governed_train(
            list(ctx.args),
            loaded,
            signing_key,
            ray_address=ray_address,
            trackers=parse_trackers(track),
            **({"runtime": runtime} if runtime is not None else {}),
        )
    except PrivacyBudgetExhausted as stop:  # a clean stop: final checkpoint sealed, ledger complete
        console.print(f"[red]training stopped[/red]: {stop}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"governed run: {run_dir}  (ledger: {ledger_path(run_dir)})")
    if os.environ.get("RANK", "0") != "0":  # under `accelerate launch` the main process alone gates
        return
    from trustai.cli.status import print_verdict
    from trustai.reports.run_status import run_status

    verdict = run_status(run_dir)
    print_verdict(console, verdict)
    if verdict.gate.blocked and not no_gate:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai train`` to ``root``; every option it does not know goes to LeRobot untouched."""
    root.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train)
