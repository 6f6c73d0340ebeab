"""The ``trustai`` command line. Bad input exits 2 with one clear message; verification failures
exit 1 and name what failed; a ``block`` finding that fails makes gating commands exit 1."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trustai.errors import TrustaiUserError

app = typer.Typer(
    help="Trustworthy-AI governance for robot policy training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Policy packs: list, show and validate.", no_args_is_help=True)
ledger_app = typer.Typer(help="The evidence ledger of a run.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys (ECDSA P-256).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
console = Console()


@policy_app.command("list")
def policy_list() -> None:
    """List the policy packs shipped with trustai."""
    from trustai.policy import load_pack, shipped_packs

    table = Table("pack", "version", "checks", "description")
    for name in shipped_packs():
        pack = load_pack(name)
        table.add_row(pack.name, str(pack.version), str(len(pack.checks)), pack.description)
    console.print(table)


@policy_app.command("show")
def policy_show(pack: Annotated[str, typer.Argument(help="shipped pack name or YAML file")]) -> None:
    """Show a pack's checks: stage, audit, thresholds, severity and regulatory references."""
    from trustai.policy import load_pack

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


@policy_app.command("validate")
def policy_validate(path: Annotated[Path, typer.Argument(help="YAML file to validate")]) -> None:
    """Validate a pack file; a malformed pack prints file:line and the offending key (exit 2)."""
    from trustai.policy import load_pack

    p = load_pack(path)
    console.print(f"[green]valid[/green]: {path} ({p.name} v{p.version}, {len(p.checks)} checks)")


@ledger_app.command("verify")
def ledger_verify(path: Annotated[Path, typer.Argument(help="run folder or ledger.sqlite")]) -> None:
    """Re-hash every record and walk the chain; exit 1 naming each edited, deleted or reordered record."""
    from trustai.ledger import Ledger, find_ledger

    ledger_path = path if path.is_file() else find_ledger(path)
    if ledger_path is None:
        raise TrustaiUserError(
            "no trustai ledger found",
            where=str(path),
            fix="pass a run folder (it holds trustai/ledger.sqlite) or the ledger file",
        )
    ledger = Ledger(ledger_path, create=False)
    report = ledger.verify()
    ledger.close()
    if report.ok:
        console.print(f"[green]ledger ok[/green]: {report.records} records, chain intact ({ledger_path})")
        return
    for problem in report.problems:
        console.print(f"[red]✗[/red] {problem}")
    console.print(f"[red]ledger verification failed[/red]: {ledger_path}")
    raise typer.Exit(1)


@keys_app.command("generate")
def keys_generate(
    private: Annotated[Path | None, typer.Option(help="private key path (default ~/.config/trustai)")] = None,
    public: Annotated[Path | None, typer.Option(help="public key path")] = None,
) -> None:
    """Write a new ECDSA P-256 key pair (private key mode 0600); never overwrites."""
    from trustai.keys import default_key_paths, generate_keypair

    default_private, default_public = default_key_paths()
    private = private or default_private
    public = public or (private.with_suffix(".pub") if private != default_private else default_public)
    generate_keypair(private, public)
    console.print(f"private key: {private} (0600)\npublic key:  {public}")


@app.command()
def verify(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder or its pretrained_model folder")],
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: trustai's default key)")
    ] = None,
) -> None:
    """Check signature, every file digest, card vs ledger, evidence vs ledger and the ledger chain."""
    from trustai.keys import default_key_paths
    from trustai.verify import verify_checkpoint

    if public_key is None and default_key_paths()[1].is_file():
        public_key = default_key_paths()[1]
    report = verify_checkpoint(checkpoint, public_key)
    for check in report.checks:
        mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        console.print(f"{mark} {check.name}")
        for problem in check.problems:
            console.print(f"    {problem}")
    if not report.ok:
        console.print(f"[red]verification failed[/red]: {report.checkpoint}")
        raise typer.Exit(1)
    console.print(f"[green]verified[/green]: {report.checkpoint}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    policy: Annotated[str, typer.Option("--policy", help="policy pack name or YAML file")] = "default",
    key: Annotated[
        Path | None, typer.Option(help="private signing key (default: trustai's default key)")
    ] = None,
    runtime: Annotated[str, typer.Option(help="where checkpoint audits run: inline or ray")] = "inline",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    ] = None,
) -> None:
    """Run LeRobot's trainer under governance: trustai train --policy PACK -- <lerobot-train flags>."""
    from trustai.keys import default_key_paths
    from trustai.lerobot_train import governed_train
    from trustai.policy import load_pack

    pack = load_pack(policy)
    key = key or default_key_paths()[0]
    if not key.is_file():
        raise TrustaiUserError(
            "signing key not found", where=str(key), fix="run `trustai keys generate` or pass --key PATH"
        )
    run_dir = governed_train(list(ctx.args), pack, key, runtime=runtime, ray_address=ray_address)
    console.print(f"governed run: {run_dir}  (ledger: {run_dir / 'trustai' / 'ledger.sqlite'})")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output folder (must be new)")] = Path("trustai-demo"),
    policy: Annotated[str, typer.Option("--policy", help="policy pack")] = "default",
) -> None:
    """Synthetic dataset -> governed LeRobot ACT training (CPU) -> signed cards -> verification."""
    from trustai.demo import run_demo

    with console.status("governed training of a tiny ACT policy on a synthetic dataset..."):
        result = run_demo(out, policy)
    table = Table("checkpoint", "card", "verified")
    for path, report in zip(result.checkpoints, result.reports, strict=True):
        table.add_row(
            str(path.relative_to(result.out)),
            "trustai/card.json + README.md",
            "[green]yes[/green]" if report.ok else "[red]no[/red]",
        )
    console.print(table)
    console.print(
        f"dataset:    {result.dataset}\nrun:        {result.run_dir}\n"
        f"ledger:     {result.run_dir / 'trustai' / 'ledger.sqlite'}\npublic key: {result.public_key}\n"
        f"check it:   trustai verify {result.checkpoints[-1]} --public-key {result.public_key}"
    )
    if not all(r.ok for r in result.reports):
        raise typer.Exit(1)


def main() -> None:
    """Entry point: run the app; user errors print one message and exit 2."""
    try:
        app()
    except TrustaiUserError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error[/red]: {exc}", highlight=False)
        sys.exit(2)
