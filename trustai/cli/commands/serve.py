"""``trustai serve``: a local, read-only web dashboard over governed runs (``trustai.dashboard``)."""

from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console

RUNS_HELP = "folders of governed runs (each holds trustai/ledger.sqlite)"
HOST_HELP = "address to listen on; 0.0.0.0 exposes the runs to the network"


def serve(
    run_dirs: Annotated[list[Path], typer.Argument(help=RUNS_HELP)],
    host: Annotated[str, typer.Option(help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8765,
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: $TRUSTAI_HOME's, else ~/.config/trustai's)")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="open the dashboard in a web browser")] = False,
) -> None:
    """Serve a dashboard over RUN_DIRS while they train: gates, integrity (the checks of `trustai
    verify`), each check's metrics over steps, findings with their evidence and artifacts, cards and
    their differences, compliance reports. Reads only; listens on 127.0.0.1 unless told otherwise.
    Exit 2 when a folder is not a governed run."""
    import uvicorn

    from trustai.attest.keys import public_key_fingerprint, resolve_public_key
    from trustai.dashboard.app import create_app

    key = resolve_public_key(public_key)
    app = create_app(list(run_dirs), public_key=key.path if key else None, host=host)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    said = f"sha256:{public_key_fingerprint(key.path)}" if key else "none (signatures not checked)"
    console.print(
        f"trustai dashboard: {url}  (public key: {said}; Ctrl-C stops)", highlight=False, markup=False
    )
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(root: typer.Typer) -> None:
    """Add ``trustai serve`` to ``root``."""
    root.command()(serve)
