"""What ``trustai audit`` will do, validated before anything is written.

``plan_audit`` (one checkpoint, or every checkpoint of a run with ``--all``) checks the pack and
its params, the signing key, each checkpoint (loaded, never unpickled), the dataset against each
policy's inputs, where the ledger is, and that every checkpoint, its card and the ledger are intact
(a tampered checkpoint is never re-signed), reading each checkpoint's files once for its weights digest
and its signature. A folder the ledger records as signed is re-signed only
while its signature still verifies and its weights still have the digest the ledger recorded, so
deleting ``model.sig`` never launders changed weights. Bad input raises TrustaiUserError (exit 2); a
failed integrity check raises IntegrityError (exit 1). The result is an ``AuditPlan`` that
``trustai.cli.audit.run_audit`` carries out.
"""

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from trustai import layout
from trustai.attest.keys import resolve_public_key, resolve_signing_key
from trustai.attest.signing import (
    SIGNATURE_NAME,
    FileDigests,
    reading_once,
    refuse_pickle_files,
    verify_folder,
)
from trustai.attest.verify import verify_checkpoint
from trustai.core.audit import get_audit
from trustai.core.evidence import InputProvenance, Stage
from trustai.core.ledger import Ledger
from trustai.core.manifest import environment, weights_digest
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import dataset_fingerprint, open_dataset_meta
from trustai.lerobot.policy_cache import loaded_policy
from trustai.packs import Check, PolicyPack, load_pack


@dataclass(frozen=True)
class AuditTarget:
    """One checkpoint to audit: its pretrained_model folder, where it sits in training, its inputs."""

    folder: Path
    step: int | None
    release: bool
    inputs: InputProvenance

    @property
    def name(self) -> str:
        """The checkpoint's folder name as LeRobot wrote it (``000004``), for messages."""
        return layout.checkpoint_name(self.folder)


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
        return layout.ledger_path(self.run_dir)


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
    Raises TrustaiUserError for bad input (missing or corrupt checkpoint files, pickle files in the
    folder, a dataset that does not fit the policy, a pack without checkpoint checks, a missing key,
    an ambiguous ledger location) and IntegrityError, naming the checkpoint, when a signed checkpoint
    or the ledger changed, or when the ledger records a checkpoint as signed and its signature is
    gone or its weights digest is no longer the recorded one.
    """
    folders = run_checkpoints(target) if all_checkpoints else [layout.model_folder(target)]
    policy_pack = load_pack(pack)
    checks = _checkpoint_checks(policy_pack, frames)
    key = resolve_signing_key(key).path
    ledger_path, new_ledger = _ledger_location(folders, out)
    info = open_dataset_meta(dataset)
    fingerprint = dataset_fingerprint(dataset)
    run_dir = layout.run_dir_of(ledger_path)
    ledger_problems = [] if new_ledger else _ledger_problems(ledger_path)
    # An edited chain is refused below; its records are not trusted to say what was signed.
    recorded = None if new_ledger or ledger_problems else RunLedger.load(ledger_path)
    manifest = dict(recorded.manifest) if recorded else _audit_manifest()
    seed = int(manifest.get("seed") or 0)
    targets, problems = [], []
    # Each checkpoint's files are hashed once for its weights digest and its signature.
    with _signer_public_key(public_key, key) as public, reading_once() as digests:
        for folder in folders:
            # Loaded through the process's cache: an inline audit of this checkpoint reuses it.
            adapter = loaded_policy(folder, seed=seed)
            adapter.validate_dataset_features(info.features)
            refuse_pickle_files(folder)
            step, release = _card_position(folder)
            audit_target = AuditTarget(
                folder=folder,
                step=step,
                release=release,
                inputs=InputProvenance(
                    checkpoint=_recorded_name(folder, run_dir),
                    checkpoint_digest=weights_digest(folder, digests.sha256),
                    dataset=str(dataset),
                    dataset_fingerprint=fingerprint,
                    step=step,
                ),
            )
            where = f"{audit_target.name}: " if all_checkpoints else ""
            found = _signed_before_problems(folder, recorded, digests) if recorded else []
            found += _folder_problems(folder, public)
            problems += [where + p for p in found]
            targets.append(audit_target)
            if checked is not None:
                checked(audit_target)
    problems += ledger_problems
    if problems:
        raise IntegrityError(list(dict.fromkeys(problems)))
    return AuditPlan(
        targets=targets,
        dataset=Path(dataset),
        pack=policy_pack,
        checks=checks,
        run_dir=run_dir,
        new_ledger=new_ledger,
        manifest=manifest,
        seed=seed,
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
    found = layout.checkpoint_models(run_dir)
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
            fix="pass --pack with a pack that has checks at stage: checkpoint (e.g. eu-ai-act-high-risk)",
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


def _ledger_location(folders: list[Path], out: Path | None) -> tuple[Path, bool]:
    """The one ledger every checkpoint's audit appends to and whether it is new: the governed run's,
    else one in ``out``."""
    ledgers = [layout.find_ledger(folder) for folder in folders]
    owners = {found.resolve(): found for found in ledgers if found is not None}
    if len(owners) > 1 or (owners and None in ledgers):
        raise TrustaiUserError(
            "these checkpoints belong to different governed runs (or only some to one)",
            where=", ".join(str(layout.run_dir_of(p)) for p in owners.values()) or None,
            fix="audit each run separately",
        )
    if owners:
        found = next(iter(owners.values()))
        run_dir = layout.run_dir_of(found)
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise TrustaiUserError(
                f"the checkpoint belongs to the governed run {run_dir}, whose ledger records its audits",
                where=str(out),
                fix="drop --out (or pass the run folder) so the evidence joins the run's ledger",
            )
        return found, False
    if out is None:
        raise TrustaiUserError(
            f"no governed run owns this checkpoint (no {layout.RUN_LEDGER} above it)",
            where=str(folders[0]),
            fix=f"pass --out DIR: the audit's ledger and evidence go to DIR/{layout.TRUSTAI_DIR}/",
        )
    ledger = layout.ledger_path(Path(out))
    if Path(out).exists() and not Path(out).is_dir():
        raise TrustaiUserError("--out is not a folder", where=str(out), fix="pass a folder path")
    return ledger, not ledger.is_file()


def _folder_problems(folder: Path, public: Path) -> list[str]:
    """What no longer verifies in a checkpoint folder: its card and evidence, and its signature
    when it has one."""
    signed = (folder / SIGNATURE_NAME).is_file()
    if layout.card_path(folder).is_file():
        report = verify_checkpoint(folder, public if signed else None)
        return [p for c in report.steps if signed or not c.name.startswith("signature") for p in c.problems]
    return verify_folder(folder, public).problems if signed else []


def _recorded_name(folder: Path, run_dir: Path) -> str:
    """How the ledger names a model folder: relative to the run folder when inside it (as card records
    do), else its absolute path; never relative to where the command ran."""
    folder = Path(folder).resolve()
    run_dir = Path(run_dir).resolve()
    return folder.relative_to(run_dir).as_posix() if folder.is_relative_to(run_dir) else str(folder)


def _recorded_digest(run: RunLedger, folder: Path) -> tuple[int, str] | None:
    """(seq, digest) of the latest record stating the weights digest of ``folder``: a card record's
    ``checkpoint_digest``, or the ``inputs.checkpoint_digest`` of evidence from an audit of it."""
    folder = Path(folder).resolve()
    stated = [(c.seq, c.payload.get("checkpoint_digest")) for c in run.cards_of(folder)]
    for item in run.evidence:
        inputs = item.payload.get("inputs")
        named = inputs.get("checkpoint") if isinstance(inputs, dict) else None
        if isinstance(named, str) and (run.run_dir / named).resolve() == folder:
            stated.append((item.record.seq, inputs.get("checkpoint_digest")))
    return max(((seq, d) for seq, d in stated if isinstance(d, str) and d), default=None)


def _signed_before_problems(folder: Path, run: RunLedger, digests: FileDigests) -> list[str]:
    """Why a folder the ledger records as signed may not be signed again: its signature is gone, or its
    weights (hashed through ``digests``) are not the ones the ledger recorded. [] for a folder never
    recorded as signed."""
    signed = [card for card in run.cards_of(folder) if card.payload.get("signed") is True]
    if not signed:
        return []
    problems = []
    if not (folder / SIGNATURE_NAME).is_file():
        problems.append(
            f"{folder}: signed before (ledger card record {signed[-1].seq}), signature missing "
            f"({SIGNATURE_NAME} was removed)"
        )
    stated = _recorded_digest(run, folder)
    now = weights_digest(folder, digests.sha256)
    if stated is not None and now != stated[1]:
        problems.append(
            f"{folder}: weights digest differs from the recorded one (ledger record {stated[0]} "
            f"recorded {stated[1][:16]}…, the weights now hash to {now[:16]}…)"
        )
    return problems


def _ledger_problems(ledger_path: Path) -> list[str]:
    """What no longer verifies in the ledger's hash chain."""
    with Ledger(ledger_path, create=False) as ledger:
        return ledger.verify().problems


@contextlib.contextmanager
def _signer_public_key(public_key: Path | None, key: Path) -> Iterator[Path]:
    """The public key the existing signature should verify with: ``--public-key``, else trustai's
    default public key, else the public half of the signing key (the auditor signed it before)."""
    chosen = resolve_public_key(public_key)
    if chosen is not None:
        yield chosen.path
        return
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.TemporaryDirectory(prefix="trustai-audit-key-") as tmp:
        path = Path(tmp) / "signer.pub"
        path.write_bytes(pem)
        yield path


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
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        details = json.loads(layout.card_path(folder).read_text(encoding="utf-8"))["model_details"]
        step = details.get("step")
        return (int(step) if step is not None else None), bool(details.get("release"))
    return layout.checkpoint_step(folder), False
