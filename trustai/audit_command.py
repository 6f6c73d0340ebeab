"""``trustai audit``: a policy pack's checkpoint-stage checks on a saved checkpoint, outside training,
as a CI/CD promotion gate.

``plan_audit`` validates everything first and writes nothing: the pack and its params, the signing
key, the checkpoint (loaded, never unpickled), the dataset against the policy's inputs, where the
ledger is, and that the checkpoint, its card and the ledger are intact (a tampered checkpoint is
never re-signed). Only then ``run_audit`` appends to the run's ledger (or starts one in ``--out``
for a checkpoint that no governed run owns), runs each check, and refreshes and re-signs the
checkpoint's model card. The exit code is 1 when a ``block`` finding fails, 0 otherwise; bad input
raises TrustaiUserError (exit 2), a failed integrity check exits 1 before anything is written.
"""

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from trustai.adapters import PolicyAdapter
from trustai.audit import AuditContext, get_audit
from trustai.canonical import digest
from trustai.card import CARD_DIR, CARD_NAME
from trustai.checkpoint_inputs import register_policy_types
from trustai.datasets import dataset_fingerprint, open_dataset_meta
from trustai.errors import TrustaiUserError
from trustai.evidence import Finding, Inputs, Stage
from trustai.governance import Governance
from trustai.keys import default_key_paths
from trustai.ledger import LEDGER_NAME, Ledger, find_ledger
from trustai.policy import Check, PolicyPack, load_pack
from trustai.provenance import environment, weights_digest
from trustai.runtime import measure_with_limit
from trustai.signing import SIGNATURE_NAME, verify_folder
from trustai.verify import model_folder, verify_checkpoint

STATUS_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "error": "red"}


@dataclass
class AuditPlan:
    """A validated audit: what runs, on what, and where its evidence and card go."""

    folder: Path  # the checkpoint's pretrained_model folder
    adapter: PolicyAdapter
    dataset: Path
    pack: PolicyPack
    checks: list[Check]
    run_dir: Path
    new_ledger: bool
    manifest: dict[str, Any]
    seed: int
    step: int | None
    release: bool
    key: Path
    inputs: Inputs


class IntegrityError(Exception):
    """The checkpoint, its card or the ledger changed since they were signed or recorded."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def plan_audit(
    checkpoint: Path,
    dataset: Path,
    pack: str | Path = "default",
    *,
    frames: int | None = None,
    out: Path | None = None,
    key: Path | None = None,
    public_key: Path | None = None,
) -> AuditPlan:
    """Validate an audit without writing anything.

    Raises TrustaiUserError for bad input (missing or corrupt checkpoint files, pickle weights, a
    dataset that does not fit the policy, a pack without checkpoint checks, a missing key, an
    ambiguous ledger location) and IntegrityError when the signed checkpoint or its ledger changed.
    """
    policy_pack = load_pack(pack)
    checks = _checkpoint_checks(policy_pack, frames)
    key = Path(key) if key else default_key_paths()[0]
    _require_private_key(key)
    folder = model_folder(checkpoint)
    register_policy_types()
    adapter = PolicyAdapter.from_checkpoint(folder)
    info = open_dataset_meta(dataset)
    adapter.validate_dataset_features(info.features)
    ledger_path, new_ledger = _ledger_location(folder, out)
    _require_intact(folder, ledger_path, new_ledger, public_key, key)
    manifest = _recorded_manifest(ledger_path) if not new_ledger else _audit_manifest()
    step, release = _card_position(folder)
    return AuditPlan(
        folder=folder,
        adapter=adapter,
        dataset=Path(dataset),
        pack=policy_pack,
        checks=checks,
        run_dir=ledger_path.parent.parent,
        new_ledger=new_ledger,
        manifest=manifest,
        seed=int(manifest.get("seed") or 0),
        step=step,
        release=release,
        key=key,
        inputs=Inputs(
            checkpoint=str(folder),
            checkpoint_digest=weights_digest(folder),
            dataset=str(dataset),
            dataset_fingerprint=dataset_fingerprint(dataset),
            step=step,
        ),
    )


def _checkpoint_checks(pack: PolicyPack, frames: int | None) -> list[Check]:
    """The pack's checkpoint-stage checks, with ``frames`` replacing the param of audits that take it."""
    checks = pack.checks_for(Stage.CHECKPOINT)
    if not checks:
        raise TrustaiUserError(
            f"policy pack {pack.name!r} has no checkpoint-stage checks",
            where=pack.source or None,
            fix="pass --policy with a pack that has checks at stage: checkpoint (e.g. eu-ai-act-high-risk)",
        )
    if frames is None:
        return checks
    resized = []
    for check in checks:
        params_model = get_audit(check.audit).Params
        if "frames" in params_model.model_fields:
            params = {**check.params, "frames": frames}
            try:
                params_model.model_validate(params)
            except ValidationError as exc:
                raise TrustaiUserError(
                    f"--frames {frames} is not valid for {check.id}: {exc.errors()[0]['msg']}",
                    fix="pass a positive number of frames",
                ) from None
            check = check.model_copy(update={"params": params})
        resized.append(check)
    return resized


def _require_private_key(key: Path) -> None:
    """The key re-signs the card at the end; check it now so a bad key cannot fail after writing."""
    fix = "run `trustai keys generate` or pass --key PATH (the private signing key, PEM)"
    if not key.is_file():
        raise TrustaiUserError("signing key not found", where=str(key), fix=fix)
    try:
        loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError):
        loaded = None  # no detail: never echo anything derived from key material
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise TrustaiUserError("not an unencrypted PEM ECDSA private key", where=str(key), fix=fix)


def _ledger_location(folder: Path, out: Path | None) -> tuple[Path, bool]:
    """The ledger to append to and whether it is new: the governed run's, else one in ``out``."""
    found = find_ledger(folder)
    if found is not None:
        run_dir = found.parent.parent
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise TrustaiUserError(
                f"the checkpoint belongs to the governed run {run_dir}, whose ledger records its audits",
                where=str(out),
                fix="drop --out (or pass the run folder) so the evidence joins the run's ledger",
            )
        return found, False
    if out is None:
        raise TrustaiUserError(
            "no governed run owns this checkpoint (no trustai/ledger.sqlite above it)",
            where=str(folder),
            fix="pass --out DIR: the audit's ledger and evidence go to DIR/trustai/",
        )
    ledger = Path(out) / "trustai" / LEDGER_NAME
    if Path(out).exists() and not Path(out).is_dir():
        raise TrustaiUserError("--out is not a folder", where=str(out), fix="pass a folder path")
    return ledger, not ledger.is_file()


def _require_intact(folder: Path, ledger: Path, new_ledger: bool, public_key: Path | None, key: Path) -> None:
    """Raise IntegrityError when the signed folder, its card or the ledger no longer verify."""
    problems: list[str] = []
    signed = (folder / SIGNATURE_NAME).is_file()
    with _signer_public_key(public_key, key) as public:
        if (folder / CARD_DIR / CARD_NAME).is_file():
            report = verify_checkpoint(folder, public if signed else None)
            problems += [
                p for c in report.checks if signed or not c.name.startswith("signature") for p in c.problems
            ]
        elif signed:
            problems += verify_folder(folder, public).problems
    if not new_ledger:
        store = Ledger(ledger, create=False)
        try:
            problems += store.verify().problems
        finally:
            store.close()
    if problems:
        raise IntegrityError(list(dict.fromkeys(problems)))


@contextlib.contextmanager
def _signer_public_key(public_key: Path | None, key: Path) -> Iterator[Path]:
    """The public key the existing signature should verify with: ``--public-key``, else trustai's
    default public key, else the public half of the signing key (the auditor signed it before)."""
    default = default_key_paths()[1]
    if public_key is not None or default.is_file():
        yield Path(public_key) if public_key is not None else default
        return
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.TemporaryDirectory(prefix="trustai-audit-key-") as tmp:
        path = Path(tmp) / "signer.pub"
        path.write_bytes(pem)
        yield path


def _recorded_manifest(ledger_path: Path) -> dict[str, Any]:
    """The manifest of the run that owns the ledger (its last run.start), or {} when it has none."""
    ledger = Ledger(ledger_path, create=False)
    try:
        starts = ledger.records("run.start")
    finally:
        ledger.close()
    return dict(starts[-1].payload.get("manifest") or {}) if starts else {}


def _audit_manifest() -> dict[str, Any]:
    """The run.start manifest of a ledger that only audits: the auditing environment; how the
    checkpoint was trained is unknown, so the provenance fields are empty."""
    return {
        "git": None,
        "environment": environment(),
        "seed": None,
        "train_config": None,
        "dataset": {"id": None, "fingerprint": None},
        "origin": "trustai audit of a checkpoint outside any governed run",
    }


def _card_position(folder: Path) -> tuple[int | None, bool]:
    """The training step and release flag of the checkpoint: from its card, else its folder name."""
    card = folder / CARD_DIR / CARD_NAME
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        details = json.loads(card.read_text(encoding="utf-8"))["model_details"]
        step = details.get("step")
        return (int(step) if step is not None else None), bool(details.get("release"))
    name = folder.parent.name if folder.name == "pretrained_model" else folder.name
    return (int(name) if name.isdigit() else None), False


@dataclass
class AuditResult:
    """The findings of an audit and the card it re-signed."""

    findings: list[Finding]
    card: Path

    @property
    def exit_code(self) -> int:
        """1 when a ``block`` finding failed or errored (the promotion gate), else 0."""
        return 1 if any(f.blocks for f in self.findings) else 0


def run_audit(plan: AuditPlan, progress: Progress | None = None) -> AuditResult:
    """Record the audit in the ledger, run every check (each failure an ``error`` finding), then
    refresh and re-sign the checkpoint's card. ``progress`` shows one bar over the checks."""
    governance = Governance(plan.run_dir, plan.pack, signing_key=plan.key, seed=plan.seed)
    try:
        if plan.new_ledger:
            governance.start(plan.manifest)
        event = governance.ledger.append(
            "stage",
            {
                "stage": Stage.CHECKPOINT.value,
                "step": plan.step,
                "trigger": "trustai audit",
                "policy_pack": {"name": plan.pack.name, "digest": digest(plan.pack.model_dump(mode="json"))},
            },
            stage=Stage.CHECKPOINT.value,
        )
        task = progress.add_task("auditing", total=len(plan.checks)) if progress else None
        findings = []
        for check in plan.checks:
            if progress is not None and task is not None:
                progress.update(task, description=f"{check.id} ({check.audit})")
            ctx = AuditContext(
                stage=Stage.CHECKPOINT,
                # A folder of its own: the training-time audit of this step keeps its artifacts.
                artifact_dir=governance.trustai_dir / "artifacts" / f"audit-{event.seq}-{check.id}",
                seed=plan.seed,
                dataset=plan.dataset,
                policy=plan.adapter,
                checkpoint_dir=plan.folder,
                manifest=plan.manifest,
                inputs=plan.inputs,
            )
            findings.append(governance.record(check, measure_with_limit(check, ctx, governance.trustai_dir)))
            if progress is not None and task is not None:
                progress.advance(task)
        card = governance.seal(plan.folder, step=plan.step, release=plan.release)
    finally:
        governance.close()
    return AuditResult(findings, card)


def audit_main(
    console: Console,
    checkpoint: Path,
    dataset: Path,
    pack: str,
    *,
    frames: int | None,
    out: Path | None,
    key: Path | None,
    public_key: Path | None,
) -> int:
    """The ``trustai audit`` command: plan, run with progress bars, print the findings; return the
    exit code (TrustaiUserError propagates for the CLI's exit 2)."""
    try:
        plan = plan_audit(checkpoint, dataset, pack, frames=frames, out=out, key=key, public_key=public_key)
    except IntegrityError as exc:
        for problem in exc.problems:
            console.print(f"[red]✗[/red] {problem}", highlight=False)
        console.print("[red]refusing to audit and re-sign a checkpoint that no longer verifies[/red]")
        return 1
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        result = run_audit(plan, progress)
    table = Table("check", "audit", "status", "severity", "finding", title=f"{plan.pack.name}: {plan.folder}")
    for f in result.findings:
        colour = STATUS_COLOURS[f.status.value]
        table.add_row(
            f.check_id, f.audit, f"[{colour}]{f.status.value}[/{colour}]", f.severity.value, f.message
        )
    console.print(table)
    ledger = plan.run_dir / "trustai" / LEDGER_NAME
    console.print(f"card:   {result.card} (re-signed)\nledger: {ledger}", highlight=False)
    gate = "[red]blocked[/red]" if result.exit_code else "[green]pass[/green]"
    console.print(f"gate:   {gate}")
    return result.exit_code
