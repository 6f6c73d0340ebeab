"""Drift checks and post-market monitoring (EU AI Act Art. 72) over new field data.

``check_drift`` compares two LeRobot datasets once, outside any run. ``monitor_run`` is the
post-market record of a governed run: it runs the run's monitor-stage checks on a current dataset,
with the run's own training data as the reference, and appends the stage event, evidence and
findings to the run's ledger.
"""

from pathlib import Path
from typing import Any

from trustai.audit import AuditContext, Measurement, get_audit
from trustai.datasets import dataset_fingerprint, open_dataset_meta
from trustai.errors import TrustaiUserError
from trustai.evidence import Finding, Inputs, Stage
from trustai.governance import Governance
from trustai.ledger import Ledger, Record, require_ledger
from trustai.policy import PolicyPack, load_pack


def check_drift(reference: Path, current: Path, artifact_dir: Path, **params: Any) -> Measurement:
    """Run ``drift.features`` on ``current`` against ``reference``; the HTML report goes to ``artifact_dir``.

    ``params`` are the audit's params (max_frames, images, method, threshold, drift_share, use_ray).
    """
    audit = get_audit("drift.features")
    ctx = AuditContext(stage=Stage.MONITOR, artifact_dir=artifact_dir, dataset=current, reference=reference)
    return audit().measure(ctx, audit.Params.model_validate(params))


def _run_start(run_dir: Path) -> tuple[Record, int]:
    """The run's (last) run.start record and how many monitor stage events the ledger already holds."""
    path = require_ledger(run_dir, fix="pass the folder of a governed run (it holds trustai/ledger.sqlite)")
    with Ledger(path, create=False) as ledger:
        starts = ledger.records("run.start")
        monitors = sum(r.payload.get("stage") == Stage.MONITOR.value for r in ledger.records("stage"))
    if not starts:
        raise TrustaiUserError("the ledger has no run.start record", where=str(path))
    return starts[-1], monitors


def training_dataset(start: Record) -> tuple[Path | None, str | None]:
    """The training dataset folder recorded in a run.start record (LeRobot train config), and its
    fingerprint; None for what the record does not say."""
    manifest = start.payload.get("manifest") or {}
    config = ((manifest.get("train_config") or {}).get("dataset")) or {}
    root = config.get("root")
    if root is None and config.get("repo_id"):
        from lerobot.utils.constants import HF_LEROBOT_HOME

        root = HF_LEROBOT_HOME / config["repo_id"]
    return (Path(root) if root else None), (manifest.get("dataset") or {}).get("fingerprint")


def monitor_run(
    run_dir: Path, current: Path, *, reference: Path | None = None, pack: str | None = None
) -> list[Finding]:
    """Run the monitor-stage checks of a governed run on ``current`` and record them in its ledger.

    The pack is the one recorded at the run's start unless ``pack`` names another. The reference
    is the run's training dataset unless ``reference`` is given; a recorded training dataset must
    still match its recorded fingerprint. Raises TrustaiUserError when the run, its training data or
    monitor checks cannot be found, or the training data changed since the run.
    """
    run_dir = Path(run_dir)
    start, earlier = _run_start(run_dir)
    recorded = start.payload.get("policy_pack") or {}
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
            fix="pass --policy with a pack that has checks at stage: monitor (e.g. drift.features)",
        )
    if reference is None:
        reference, fingerprint = training_dataset(start)
        if reference is None:
            raise TrustaiUserError(
                "the run's ledger does not say where its training dataset is",
                where=str(run_dir),
                fix="pass --reference with the training dataset folder",
            )
        if fingerprint and dataset_fingerprint(reference) != fingerprint:
            raise TrustaiUserError(
                "the training dataset changed since the run: its fingerprint differs from the recorded one",
                where=str(reference),
                fix="restore the exact training data, or pass --reference to compare with another dataset",
            )
    open_dataset_meta(reference)
    inputs = Inputs(dataset=str(current), dataset_fingerprint=dataset_fingerprint(current))
    governance = Governance(run_dir, policy)
    try:
        return governance.run_stage(
            Stage.MONITOR,
            step=earlier + 1,
            checks=checks,
            dataset=current,
            reference=reference,
            inputs=inputs,
        )
    finally:
        governance.close()
