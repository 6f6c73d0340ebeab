"""``trustai drift``: per-feature drift between two LeRobot datasets, outside any run."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from trustai.cli._console import console


def drift(
    reference: Annotated[
        Path, typer.Option(help="reference LeRobot dataset folder (e.g. the training data)")
    ],
    current: Annotated[Path, typer.Option(help="current LeRobot dataset folder (e.g. new field data)")],
    out: Annotated[
        Path | None, typer.Option(help="folder for drift_report.html and drift.json (default: not kept)")
    ] = None,
    max_drift_share: Annotated[
        float, typer.Option(help="exit 1 when the share of drifted features exceeds this")
    ] = 0.5,
    max_frames: Annotated[int, typer.Option(help="frames sampled evenly from each dataset")] = 5000,
    images: Annotated[bool, typer.Option(help="include per-camera image statistics")] = True,
    ray: Annotated[bool, typer.Option("--ray", help="compute features per frame file as Ray tasks")] = False,
) -> None:
    """Per-feature drift (state, action, camera statistics) of CURRENT against REFERENCE, with Evidently;
    exit 1 when the drifted share is over the limit or the check failed."""
    import json
    import tempfile

    from trustai.cli.monitor import check_drift

    with tempfile.TemporaryDirectory(prefix="trustai-drift-") as tmp:
        folder = out or Path(tmp)
        with console.status("computing features and drift tests..."):
            result = check_drift(
                reference, current, folder, max_frames=max_frames, images=images, use_ray=ray
            )
        if result.error:
            console.print(f"[red]drift check failed[/red]: {result.error}", highlight=False)
            raise typer.Exit(1)
        if out is not None:
            (out / "drift.json").write_text(
                json.dumps({"metrics": result.metrics, "features": result.tables["features"]}, indent=2),
                encoding="utf-8",
            )
    table = Table(Column("feature", overflow="fold"), "group", "test", "score", "threshold", "drifted")
    for row in result.tables["features"]:
        mark = "[red]yes[/red]" if row["drifted"] else "no"
        table.add_row(
            row["feature"],
            row["group"],
            str(row["method"]),
            f"{row['score']:.4g}",
            str(row["threshold"]),
            mark,
        )
    console.print(table)
    share = float(result.metrics["drifted_share"] or 0.0)
    console.print(
        f"drifted features: {result.metrics['drifted_features']} of {result.metrics['features']} "
        f"(share {share:.2f}, limit {max_drift_share:.2f})"
        + (f"; report: {out / 'drift_report.html'}" if out is not None else "")
    )
    if share > max_drift_share:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai drift`` to ``root``."""
    root.command()(drift)
