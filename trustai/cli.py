"""The ``trustai`` command line. Bad input exits 2 with one clear message; verification failures
exit 1 and name what failed; a ``block`` finding that fails makes gating commands exit 1."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

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
    from trustai.ledger import Ledger, require_ledger

    fix = "pass a run folder (it holds trustai/ledger.sqlite) or the ledger file"
    ledger_path = path if path.is_file() else require_ledger(path, fix=fix)
    with Ledger(ledger_path, create=False) as ledger:
        report = ledger.verify()
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
            console.print(f"    {problem}", markup=False)
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
    from trustai.training_hooks.dp_budget import PrivacyBudgetExhausted

    try:
        run_dir = governed_train(list(ctx.args), pack, key, runtime=runtime, ray_address=ray_address)
    except PrivacyBudgetExhausted as stop:  # a clean stop: final checkpoint sealed, ledger complete
        console.print(f"[red]training stopped[/red]: {stop}", highlight=False)
        raise typer.Exit(1) from None
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
        f"check it:   trustai verify {result.checkpoints[-1]} --public-key {result.public_key}\n"
        f"report:     {result.compliance_report} (EU AI Act technical documentation)"
    )
    if not all(r.ok for r in result.reports):
        raise typer.Exit(1)


@app.command()
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
    """Render a compliance report from a run's ledger: EU AI Act Annex IV, NIST AI RMF or ISO/IEC 42001."""
    if init_system is not None:
        from trustai.reports.system import write_template

        write_template(init_system)
        console.print(f"system description template: {init_system} (fill it in, then pass --system)")
        return
    if target is None:
        raise TrustaiUserError("no run folder given", fix="trustai report RUN_DIR [--framework ...]")
    from trustai.reports.build import write_report

    with console.status(f"rendering the {framework} report..."):
        files = write_report(target, framework, fmt, output, system=system, public_key=public_key)
    console.print(f"report: {files[0]}")
    if len(files) > 1:
        console.print(f"figures: {len(files) - 1} PNG files in {files[1].parent}")


@app.command()
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
    """Per-feature drift (state, action, camera statistics) of CURRENT against REFERENCE, with Evidently."""
    import json
    import tempfile

    from trustai.monitoring import check_drift

    with tempfile.TemporaryDirectory(prefix="trustai-drift-") as tmp:
        folder = out or Path(tmp)
        with console.status("computing features and drift tests..."):
            result = check_drift(
                reference, current, folder, max_frames=max_frames, images=images, use_ray=ray
            )
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


@app.command()
def monitor(
    run_dir: Annotated[Path, typer.Argument(help="folder of a governed run (holds trustai/ledger.sqlite)")],
    current: Annotated[Path, typer.Option(help="current LeRobot dataset folder (new field data)")],
    reference: Annotated[
        Path | None, typer.Option(help="reference dataset (default: the run's training dataset)")
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="policy pack (default: the pack the run recorded)")
    ] = None,
) -> None:
    """Post-market monitoring: run the pack's monitor checks on CURRENT, appended to the run's ledger."""
    from trustai.monitoring import monitor_run

    with console.status("running monitor-stage checks..."):
        findings = monitor_run(run_dir, current, reference=reference, pack=policy)
    table = Table("check", "audit", "status", "severity", "message")
    colours = {"pass": "green", "warn": "yellow", "fail": "red", "error": "red"}
    for f in findings:
        status = f"[{colours[f.status.value]}]{f.status.value}[/{colours[f.status.value]}]"
        table.add_row(f.check_id, f.audit, status, f.severity.value, f.message)
    console.print(table)
    console.print(f"recorded in {run_dir / 'trustai' / 'ledger.sqlite'}")
    if any(f.blocks for f in findings):
        raise typer.Exit(1)


@app.command()
def audit(
    target: Annotated[
        Path, typer.Argument(help="checkpoint folder or its pretrained_model folder; a run folder with --all")
    ],
    dataset: Annotated[Path, typer.Option(help="LeRobot dataset folder with (held-out) frames")],
    policy: Annotated[str, typer.Option("--policy", help="policy pack name or YAML file")] = "default",
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
        Path | None, typer.Option(help="private signing key (default: trustai's default key)")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="public key the checkpoint's signature must verify with first")
    ] = None,
) -> None:
    """Run a pack's checkpoint checks on a checkpoint (or, with --all, every checkpoint of a run), re-sign
    the cards; exit 1 if a block check fails."""
    from trustai.audit_command import audit_main

    code = audit_main(
        console,
        target,
        dataset,
        policy,
        all_checkpoints=all_checkpoints,
        ray_address=ray_address or os.environ.get("RAY_ADDRESS"),
        frames=frames,
        out=out,
        key=key,
        public_key=public_key,
    )
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Entry point: run the app; user errors print one message and exit 2."""
    try:
        app()
    except TrustaiUserError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error[/red]: {exc}", highlight=False)
        sys.exit(2)
