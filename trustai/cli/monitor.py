"""Drift checks and post-market monitoring (EU AI Act Art. 72) over new field data.

``check_drift`` compares two LeRobot datasets once, outside any run. ``monitor_run`` is the
post-market record of a governed run: it runs the run's monitor-stage checks on a current dataset,
with the run's own training data as the reference, and appends the stage event, evidence and
findings to the run's ledger, then anchors them with the run's signing key (an anchored run is never
left with records no signature covers: without the key, monitoring refuses before it writes). The
run's training data must still have the fingerprint the run recorded, or, when that was pending at
start-up, the one ``provenance.dataset`` verified; with neither, that comparison is inconclusive and
says why.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustai import layout
from trustai.attest.card import FingerprintState, training_fingerprint
from trustai.attest.keys import default_key_paths, resolve_signing_key
from trustai.core.evidence import Evidence, Finding, InputProvenance, Stage, Status
from trustai.core.ledger import Record
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError
from trustai.governance import Governance
from trustai.lerobot.dataset_digests import VERIFYING_AUDIT
from trustai.lerobot.datasets import dataset_fingerprint, open_dataset_meta
from trustai.packs import Check, PolicyPack, load_pack
from trustai.runtime.executor import AuditJob
from trustai.runtime.inline_executor import InlineExecutor


def check_drift(reference: Path, current: Path, artifact_dir: Path, **params: Any) -> Evidence:
    """Run ``drift.features`` on ``current`` against ``reference`` through the inline executor (its
    time limit and error capture); the HTML report goes to ``artifact_dir``.

    ``params`` are the audit's params (max_frames, images, alpha, min_effect, permutations, use_ray).
    Raises TrustaiUserError, before measuring, when either folder is not a LeRobot dataset or the two
    do not have the same features; a failure while measuring is the Evidence's ``error``.
    """
    from trustai.audits.drift.features import check_compatible, feature_spec

    images = bool(params.get("images", True))
    ref, cur = open_dataset_meta(reference), open_dataset_meta(current)
    check_compatible(feature_spec(ref, images), feature_spec(cur, images), f"{reference} vs {current}")
    check = Check(id="drift", audit="drift.features", stage=Stage.MONITOR, params=params)
    job = AuditJob(
        check=check,
        stage=Stage.MONITOR,
        step=None,
        inputs=InputProvenance(dataset=str(current)),
        artifact_name="drift",
        dataset_root=str(current),
        reference_root=str(reference),
    )
    measured: list[Evidence] = []
    with tempfile.TemporaryDirectory(prefix="trustai-drift-") as tmp:
        InlineExecutor(Path(tmp)).submit([job], lambda _, evidence: measured.append(evidence))
        Path(artifact_dir).mkdir(parents=True, exist_ok=True)
        for artifact in measured[0].artifacts:
            shutil.move(Path(tmp) / artifact.path, Path(artifact_dir) / Path(artifact.path).name)
    return measured[0]


def _recorded_run(run_dir: Path) -> RunLedger:
    """The ledger of the governed run in ``run_dir``; TrustaiUserError when there is none or it has no
    run.start record."""
    fix = f"pass the folder of a governed run (it holds {layout.RUN_LEDGER})"
    run = RunLedger.load(layout.require_ledger(run_dir, fix=fix))
    if run.start is None:
        raise TrustaiUserError("the ledger has no run.start record", where=str(run.ledger_path))
    return run


def _anchoring_key(run: RunLedger, key: Path | None) -> Path | None:
    """The private key that anchors the monitoring records: ``key``, else trustai's default key when it
    exists, else None (an unanchored run stays unanchored). TrustaiUserError when the run's ledger is
    anchored and no key, or a key other than its anchors' signer, is at hand."""
    default = default_key_paths()[0]
    chosen = resolve_signing_key(key).path if key is not None or default.is_file() else None
    signers = {a.payload.get("key") for a in run.anchors}
    if not signers:
        return chosen
    fix = "pass --key with the run's private signing key (the one it was trained with)"
    if chosen is None:
        raise TrustaiUserError(
            "this run's ledger is anchored (signed); monitoring without its signing key would leave "
            "records no signature covers",
            where=str(run.ledger_path),
            fix=fix,
        )
    from trustai.attest.anchor import AnchorSigner

    if AnchorSigner(chosen).fingerprint not in signers:
        raise TrustaiUserError(
            "this key did not sign the run's ledger anchors (its fingerprint is not theirs)",
            where=str(chosen),
            fix=fix,
        )
    return chosen


def training_dataset(manifest: dict[str, Any]) -> Path | None:
    """The training dataset folder recorded in a run manifest (LeRobot train config); None when the
    manifest does not say."""
    config = ((manifest.get("train_config") or {}).get("dataset")) or {}
    root = config.get("root")
    if root is None and config.get("repo_id"):
        from lerobot.utils.constants import HF_LEROBOT_HOME

        root = HF_LEROBOT_HOME / config["repo_id"]
    return Path(root) if root else None


@dataclass(frozen=True)
class ReferenceCheck:
    """Whether the reference is the run's training data: ``status`` pass (its fingerprint is the one the
    run recorded, or verified when it was pending at start-up) or inconclusive (the run has no trusted
    fingerprint to compare with), ``message`` in words, and ``record`` the ledger record the compared
    fingerprint comes from (run.start, or the verifying evidence)."""

    status: Status
    message: str
    record: Record | None


def check_reference(run: RunLedger, reference: Path) -> ReferenceCheck:
    """Compare ``reference`` with the fingerprint the run's ledger establishes for its training data
    (``trustai.attest.card.training_fingerprint``: the manifest's, else the one ``provenance.dataset``
    verified). Raises TrustaiUserError when they differ; inconclusive, saying why, when there is none."""
    found = training_fingerprint(run.manifest, run.start, run.evidence, VERIFYING_AUDIT)
    record = found.evidence or run.start
    if found.value is None:
        unverified = {
            FingerprintState.PENDING: f"no {VERIFYING_AUDIT} evidence verified it",
            FingerprintState.UNCONFIRMED: f"{VERIFYING_AUDIT} did not confirm it",
        }
        why = unverified.get(found.state)
        why = f"was pending at start-up and {why}" if why else "was not recorded"
        message = f"not compared with the training data: the run's training-data fingerprint {why}"
        return ReferenceCheck(Status.INCONCLUSIVE, message, record)
    verified = found.state == FingerprintState.VERIFIED
    how = f"verified by {VERIFYING_AUDIT}" if verified else "recorded at start-up"
    source = f"{how} (ledger record {record.seq})" if record else how
    if dataset_fingerprint(reference) != found.value:
        raise TrustaiUserError(
            f"the training dataset changed since the run: its fingerprint differs from the one {source}",
            where=str(reference),
            fix="restore the exact training data, or pass --reference to compare with another dataset",
        )
    return ReferenceCheck(Status.PASS, f"the training data, unchanged: fingerprint {source}", record)


@dataclass(frozen=True)
class Monitoring:
    """What ``monitor_run`` found: the monitor-stage findings (recorded in the ledger), and whether the
    reference was checked to be the run's training data (None when the caller chose the reference)."""

    findings: list[Finding]
    reference: ReferenceCheck | None


def monitor_run(
    run_dir: Path,
    current: Path,
    *,
    reference: Path | None = None,
    pack: str | None = None,
    key: Path | None = None,
) -> Monitoring:
    """Run the monitor-stage checks of a governed run on ``current``, record them in its ledger and
    anchor them with ``key`` (default: trustai's default signing key, when there is one).

    The pack is the one recorded at the run's latest start unless ``pack`` names another. The reference
    is the run's training dataset unless ``reference`` is given; that dataset must still match the
    fingerprint the run recorded, or verified when it was pending at start-up (``check_reference``; with
    neither, the comparison is inconclusive and says why). Raises TrustaiUserError when the run, its
    training data or monitor checks cannot be found, the training data changed since the run, or the
    run's ledger is anchored and its signing key is not at hand.
    """
    run_dir = Path(run_dir)
    run = _recorded_run(run_dir)
    signing_key = _anchoring_key(run, key)
    recorded = run.policy_pack
    policy: PolicyPack = (
        load_pack(pack)
        if pack
        else PolicyPack.model_validate(
            {k: recorded[k] for k in ("name", "version", "checks") if k in recorded}
        )
    )
    checks = policy.checks_for(Stage.MONITOR)
    if not checks:
        raise TrustaiUserError(
            f"policy pack {policy.name!r} has no monitor-stage checks",
            fix="pass --pack with a pack that has checks at stage: monitor (e.g. drift.features)",
        )
    checked = None
    if reference is None:
        reference = training_dataset(run.manifest)
        if reference is None:
            raise TrustaiUserError(
                "the run's ledger does not say where its training dataset is",
                where=str(run_dir),
                fix="pass --reference with the training dataset folder",
            )
        open_dataset_meta(reference)
        checked = check_reference(run, reference)
    else:
        open_dataset_meta(reference)
    inputs = InputProvenance(dataset=str(current), dataset_fingerprint=dataset_fingerprint(current))
    governance = Governance(run_dir, policy, signing_key=signing_key)
    try:
        findings = governance.run_stage(
            Stage.MONITOR,
            step=len(run.stages(Stage.MONITOR)) + 1,
            checks=checks,
            dataset=current,
            reference=reference,
            inputs=inputs,
        )
    finally:
        try:
            governance.anchor("trustai monitor")
        finally:
            governance.close()
    return Monitoring(findings, checked)
