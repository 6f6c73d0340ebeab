"""What ``trustai audit`` will do, validated before anything is written.

``plan_audit`` (one checkpoint, or every checkpoint of a run with ``--all``) checks the pack and
its params, the signing key, each checkpoint (loaded, never unpickled), the dataset against each
policy's inputs, where the ledger is, and that every checkpoint, its card and the ledger are intact
(a tampered checkpoint is never re-signed). Bad input raises TrustaiUserError (exit 2); a failed
integrity check raises IntegrityError (exit 1). The result is an ``AuditPlan`` that
``trustai.audit_command.run_audit`` carries out.
"""

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from trustai.adapters import PolicyAdapter
from trustai.audit import get_audit
from trustai.card import CARD_DIR, CARD_NAME
from trustai.checkpoint_inputs import register_policy_types
from trustai.datasets import dataset_fingerprint, open_dataset_meta
from trustai.errors import TrustaiUserError
from trustai.evidence import Inputs, Stage
from trustai.keys import default_key_paths
from trustai.ledger import LEDGER_NAME, Ledger, find_ledger
from trustai.policy import Check, PolicyPack, load_pack
from trustai.provenance import environment, weights_digest
from trustai.signing import SIGNATURE_NAME, verify_folder
from trustai.verify import model_folder, verify_checkpoint


@dataclass(frozen=True)
class AuditTarget:
    """One checkpoint to audit: its pretrained_model folder, where it sits in training, its inputs."""

    folder: Path
    step: int | None
    release: bool
    inputs: Inputs

    @property
    def name(self) -> str:
        """The checkpoint's folder name as LeRobot wrote it (``000004``), for messages."""
        return self.folder.parent.name if self.folder.name == "pretrained_model" else self.folder.name


@dataclass
class AuditPlan:
    """A validated audit: which checks run on which checkpoints, and where evidence and cards go."""

    targets: list[AuditTarget]
    dataset: Path
    pack: PolicyPack
    checks: list[Check]
    run_dir: Path
    new_ledger: bool
    manifest: dict[str, Any]
    seed: int
    key: Path

    @property
    def ledger_path(self) -> Path:
        """The ledger the audit appends to."""
        return self.run_dir / "trustai" / LEDGER_NAME


class IntegrityError(Exception):
    """A checkpoint, its card or the ledger changed since they were signed or recorded."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


Checked = Callable[[AuditTarget], None]


def plan_audit(
    target: Path,
    dataset: Path,
    pack: str | Path = "default",
    *,
    all_checkpoints: bool = False,
    frames: int | None = None,
    out: Path | None = None,
    key: Path | None = None,
    public_key: Path | None = None,
    checked: Checked | None = None,
) -> AuditPlan:
    """Validate an audit without writing anything; ``checked(target)`` is called as each checkpoint
    passes.

    ``target`` is one checkpoint (a checkpoint or pretrained_model folder) or, with
    ``all_checkpoints``, a LeRobot run whose every checkpoint is audited (``RUN/checkpoints/*``, the
    ``last`` link skipped). All or nothing: one bad or tampered checkpoint refuses the whole audit.
    Raises TrustaiUserError for bad input (missing or corrupt checkpoint files, pickle weights, a
    dataset that does not fit the policy, a pack without checkpoint checks, a missing key, an
    ambiguous ledger location) and IntegrityError, naming the checkpoint, when a signed checkpoint or
    the ledger changed.
    """
    folders = run_checkpoints(target) if all_checkpoints else [model_folder(target)]
    policy_pack = load_pack(pack)
    checks = _checkpoint_checks(policy_pack, frames)
    key = Path(key) if key else default_key_paths()[0]
    _require_private_key(key)
    ledger_path, new_ledger = _ledger_location(folders, out)
    register_policy_types()
    info = open_dataset_meta(dataset)
    fingerprint = dataset_fingerprint(dataset)
    targets, problems = [], []
    with _signer_public_key(public_key, key) as public:
        for folder in folders:
            adapter = PolicyAdapter.from_checkpoint(folder)
            adapter.validate_dataset_features(info.features)
            step, release = _card_position(folder)
            audit_target = AuditTarget(
                folder=folder,
                step=step,
                release=release,
                inputs=Inputs(
                    checkpoint=str(folder),
                    checkpoint_digest=weights_digest(folder),
                    dataset=str(dataset),
                    dataset_fingerprint=fingerprint,
                    step=step,
                ),
            )
            where = f"{audit_target.name}: " if all_checkpoints else ""
            problems += [where + p for p in _folder_problems(folder, public)]
            targets.append(audit_target)
            if checked is not None:
                checked(audit_target)
    if not new_ledger:
        problems += _ledger_problems(ledger_path)
    if problems:
        raise IntegrityError(list(dict.fromkeys(problems)))
    manifest = _recorded_manifest(ledger_path) if not new_ledger else _audit_manifest()
    return AuditPlan(
        targets=targets,
        dataset=Path(dataset),
        pack=policy_pack,
        checks=checks,
        run_dir=ledger_path.parent.parent,
        new_ledger=new_ledger,
        manifest=manifest,
        seed=int(manifest.get("seed") or 0),
        key=key,
    )


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The pretrained_model folders of a run's checkpoints, in step order.

    Raises TrustaiUserError when ``run_dir`` is missing or holds no checkpoints.
    """
    run_dir = Path(run_dir)
    fix = "pass the run's output folder (the one holding checkpoints/), or drop --all to audit one checkpoint"
    if not run_dir.is_dir():
        raise TrustaiUserError("run folder not found", where=str(run_dir), fix=fix)
    root = run_dir / "checkpoints"
    found = sorted(
        p / "pretrained_model"
        for p in (root.iterdir() if root.is_dir() else [])
        if p.is_dir() and not p.is_symlink() and (p / "pretrained_model").is_dir()
    )
    if not found:
        raise TrustaiUserError("no checkpoints/*/pretrained_model in this run", str(run_dir), fix)
    return found


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


def _ledger_location(folders: list[Path], out: Path | None) -> tuple[Path, bool]:
    """The one ledger every checkpoint's audit appends to and whether it is new: the governed run's,
    else one in ``out``."""
    ledgers = [find_ledger(folder) for folder in folders]
    owners = {found.resolve(): found for found in ledgers if found is not None}
    if len(owners) > 1 or (owners and None in ledgers):
        raise TrustaiUserError(
            "these checkpoints belong to different governed runs (or only some to one)",
            where=", ".join(str(p.parent.parent) for p in owners.values()) or None,
            fix="audit each run separately",
        )
    if owners:
        found = next(iter(owners.values()))
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
            where=str(folders[0]),
            fix="pass --out DIR: the audit's ledger and evidence go to DIR/trustai/",
        )
    ledger = Path(out) / "trustai" / LEDGER_NAME
    if Path(out).exists() and not Path(out).is_dir():
        raise TrustaiUserError("--out is not a folder", where=str(out), fix="pass a folder path")
    return ledger, not ledger.is_file()


def _folder_problems(folder: Path, public: Path) -> list[str]:
    """What no longer verifies in a checkpoint folder: its card and evidence, and its signature
    when it has one."""
    signed = (folder / SIGNATURE_NAME).is_file()
    if (folder / CARD_DIR / CARD_NAME).is_file():
        report = verify_checkpoint(folder, public if signed else None)
        return [p for c in report.checks if signed or not c.name.startswith("signature") for p in c.problems]
    return verify_folder(folder, public).problems if signed else []


def _ledger_problems(ledger_path: Path) -> list[str]:
    """What no longer verifies in the ledger's hash chain."""
    with Ledger(ledger_path, create=False) as ledger:
        return ledger.verify().problems


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
    with Ledger(ledger_path, create=False) as ledger:
        starts = ledger.records("run.start")
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
