"""``trustai pack list|show|validate``, and the ``--pack`` option the governing commands share.

``trustai policy ...`` and ``--policy`` are the deprecated names of the same things: they still work,
with a one-line note on stderr."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustai.cli._console import console, note
from trustai.errors import TrustaiUserError

DEFAULT_PACK = "default"

app = typer.Typer(help="Policy packs: list, show and validate.", no_args_is_help=True)

PackOption = Annotated[
    str | None,
    typer.Option(
        "--pack", help="policy pack: a shipped pack's name or a YAML file", show_default=DEFAULT_PACK
    ),
]
# Exactly "--policy": click matches long options whole, so LeRobot's --policy.type=... after `--` (or
# even before it) never reaches this alias.
PolicyAlias = Annotated[str | None, typer.Option("--policy", hidden=True, help="deprecated: use --pack")]


def chosen_pack(pack: str | None, policy: str | None, default: str | None = DEFAULT_PACK) -> str | None:
    """The pack a command runs: ``--pack``, else the deprecated ``--policy`` (noted on stderr), else
    ``default``. Raises TrustaiUserError when both are given."""
    if policy is None:
        return pack if pack is not None else default
    if pack is not None:
        raise TrustaiUserError(
            "both --pack and --policy given", fix="pass only --pack (--policy is its deprecated name)"
        )
    note("--policy is deprecated: use --pack")
    return policy


@app.command("list")
def pack_list() -> None:
    """List the policy packs shipped with trustai."""
    from trustai.packs import load_pack, shipped_packs

    table = Table("pack", "version", "checks", "description")
    for name in shipped_packs():
        pack = load_pack(name)
        table.add_row(pack.name, str(pack.version), str(len(pack.checks)), pack.description)
    console.print(table)


@app.command("show")
def pack_show(pack: Annotated[str, typer.Argument(help="shipped pack name or YAML file")]) -> None:
    """Show a pack's checks: stage, audit, thresholds, severity and regulatory references."""
    from trustai.packs import load_pack

    p = load_pack(pack)
    table = Table(
        "check", "stage", "audit", "thresholds", "severity", "references", title=f"{p.name} v{p.version}"
    )
    for c in p.checks:
        bounds = [(m, "≥", t.min) for m, t in c.thresholds.items() if t.min is not None]
        bounds += [(m, "≤", t.max) for m, t in c.thresholds.items() if t.max is not None]
        th = ", ".join(f"{m} {op} {v:g}" for m, op, v in bounds)
        table.add_row(c.id, c.stage, c.audit, th, c.severity, ", ".join(c.references))
    console.print(table)


@app.command("validate")
def pack_validate(path: Annotated[Path, typer.Argument(help="YAML file to validate")]) -> None:
    """Validate a pack file; a malformed pack prints file:line and the offending key (exit 2)."""
    from trustai.packs import load_pack

    p = load_pack(path)
    console.print(f"[green]valid[/green]: {path} ({p.name} v{p.version}, {len(p.checks)} checks)")


def _policy_group() -> None:
    """Deprecated name of `trustai pack`."""
    note("`trustai policy` is deprecated: use `trustai pack`")


def register(root: typer.Typer) -> None:
    """Add ``trustai pack`` to ``root``, and ``trustai policy`` as its hidden, deprecated name."""
    root.add_typer(app, name="pack")
    root.add_typer(app, name="policy", hidden=True, callback=_policy_group)
