"""``trustai keys generate``: a new ECDSA P-256 signing key pair."""

from pathlib import Path
from typing import Annotated

import typer

from trustai.cli._console import console

app = typer.Typer(help="Signing keys (ECDSA P-256).", no_args_is_help=True)


@app.command("generate")
def keys_generate(
    private: Annotated[
        Path | None, typer.Option(help="private key path (default: $TRUSTAI_HOME, else ~/.config/trustai)")
    ] = None,
    public: Annotated[Path | None, typer.Option(help="public key path")] = None,
) -> None:
    """Write a new ECDSA P-256 key pair (private key mode 0600); never overwrites."""
    from trustai.attest.keys import default_key_paths, generate_keypair

    default_private, default_public = default_key_paths()
    private = private or default_private
    public = public or (private.with_suffix(".pub") if private != default_private else default_public)
    generate_keypair(private, public)
    console.print(f"private key: {private} (0600)\npublic key:  {public}")


def register(root: typer.Typer) -> None:
    """Add ``trustai keys`` to ``root``."""
    root.add_typer(app, name="keys")
