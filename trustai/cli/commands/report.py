"""``trustai report``: a compliance report rendered from a run's ledger."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trustai.cli._console import console
from trustai.errors import TrustaiUserError


def report(
    target: Annotated[Path | None, typer.Argument(help="run folder or checkpoint folder")] = None,
    framework: Annotated[str, typer.Option(help="eu-ai-act, nist-ai-rmf or iso-42001")] = "eu-ai-act",
    fmt: Annotated[
        str | None, typer.Option("--format", help="html, pdf or md (default: from -o's suffix, else html)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="report file (default trustai-report-FRAMEWORK.FMT)")
    ] = None,
    system: Annotated[Path | None, typer.Option(help="the provider's system.yaml to merge")] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: trustai's default key, if any)")
    ] = None,
    init_system: Annotated[
        Path | None, typer.Option(help="write a commented system.yaml template to this file and stop")
    ] = None,
) -> None:
    """Render a compliance report from a run's ledger: EU AI Act Annex IV, NIST AI RMF or ISO/IEC 42001.
    Exit 1 when an integrity check fails (the report is still written, with the alarm on page 1)."""
    if init_system is not None:
        from trustai.reports.system import write_template

        write_template(init_system)
        console.print(f"system description template: {init_system} (fill it in, then pass --system)")
        return
    if target is None:
        raise TrustaiUserError("no run folder given", fix="trustai report RUN_DIR [--framework ...]")
    from trustai.reports.build import render_report

    with console.status(f"rendering the {framework} report..."):
        doc, files = render_report(target, framework, fmt, output, system=system, public_key=public_key)
    console.print(f"report: {files[0]}")
    if len(files) > 1:
        console.print(f"figures: {len(files) - 1} PNG files in {files[1].parent}")
    if doc.tampered:
        for verdict in doc.verdicts:
            for problem in verdict.problems if verdict.status == "failed" else ():
                console.print(f"[red]✗[/red] {escape(verdict.name)}: {escape(problem)}", highlight=False)
        console.print("[red]INTEGRITY FAILURE[/red]: the report says so on its first page; do not rely on it")
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``trustai report`` to ``root``."""
    root.command()(report)
