"""``trustai drift``: per-feature drift between two LeRobot datasets, outside any run."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from trustai.cli._console import console, note


def drift(
    reference: Annotated[
        Path, typer.Option(help="reference LeRobot dataset folder (e.g. the training data)")
    ],
    current: Annotated[Path, typer.Option(help="current LeRobot dataset folder (e.g. new field data)")],
    out: Annotated[
        Path | None, typer.Option(help="folder for drift_report.html and drift.json (default: not kept)")
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="chance of calling any feature drifted when none is (Holm over features)")
    ] = 0.05,
    min_effect: Annotated[
        float, typer.Option(help="smallest effect that counts: Wasserstein distance in pooled std units")
    ] = 0.5,
    max_frames: Annotated[int, typer.Option(help="frames sampled evenly from each dataset")] = 5000,
    images: Annotated[bool, typer.Option(help="include per-camera image statistics")] = True,
    ray: Annotated[bool, typer.Option("--ray", help="compute features per frame file as Ray tasks")] = False,
    max_drift_share: Annotated[
        float | None, typer.Option(hidden=True, help="deprecated and ignored: the verdict is the audit's")
    ] = None,
) -> None:
    """Per-feature drift (state, action, their steps, camera statistics) of CURRENT against REFERENCE,
    judged per episode: a feature drifts when its episode-permutation test is significant after Holm
    correction (p <= alpha) and its effect reaches min-effect. Exit 1 when any feature drifted, when
    the datasets hold too few episodes to tell (inconclusive), or when the check failed."""
    import json
    import tempfile

    from trustai.cli.monitor import check_drift

    if max_drift_share is not None:
        note(
            "--max-drift-share is deprecated and ignored: trustai drift exits 1 when any feature drifts "
            "(see --alpha and --min-effect)"
        )
    params = {"max_frames": max_frames, "images": images, "alpha": alpha, "min_effect": min_effect}
    with tempfile.TemporaryDirectory(prefix="trustai-drift-") as tmp:
        folder = out or Path(tmp)
        with console.status("computing features and drift tests..."):
            result = check_drift(reference, current, folder, use_ray=ray, **params)
        if result.error:
            console.print(f"[red]drift check failed[/red]: {result.error}", highlight=False)
            raise typer.Exit(1)
        if out is not None:
            (out / "drift.json").write_text(
                json.dumps({"metrics": result.metrics, "features": result.tables["features"]}, indent=2),
                encoding="utf-8",
            )
    table = Table(
        Column("feature", overflow="fold"),
        "group",
        "p (Holm)",
        "effect",
        "drifted",
        title="drift per feature",
    )
    for row in result.tables["features"]:
        table.add_row(
            row["feature"],
            row["group"],
            f"{row['score']:.3g}",
            f"{row['effect']:.3g}",
            "[red]yes[/red]" if row["drifted"] else "no",
        )
    console.print(table)
    m = result.metrics
    console.print(
        f"drifted features: {m['drifted_features']} of {m['features']} (p <= {alpha:g} after Holm and "
        f"effect >= {min_effect:g}; {m['reference_episodes']} vs {m['current_episodes']} episodes)"
        + (f"; report: {out / 'drift_report.html'}" if out is not None else ""),
        highlight=False,
    )
    if m["dataset_drift"]:
        console.print("verdict: [red]drift[/red]")
        raise typer.Exit(1)
    if result.inconclusive:
        console.print(f"verdict: [magenta]inconclusive[/magenta]: {result.inconclusive}", highlight=False)
        raise typer.Exit(1)
    console.print("verdict: [green]no drift[/green]")


def register(root: typer.Typer) -> None:
    """Add ``trustai drift`` to ``root``."""
    root.command()(drift)
