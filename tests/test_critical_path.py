"""The default training runtime keeps audits off the training loop: the data stage runs beside
training in worker processes, its findings land before the first card, a worker that dies is an `error`
finding, and the end of the run waits for outstanding audits only as long as the pack allows."""

import os
import time
from pathlib import Path

import pytest
from trustai.training_hooks.lerobot_train import governed_train

from trustai.attest.keys import generate_keypair
from trustai.cli.demo import demo_train_flags
from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.core.records import RecordKind
from trustai.governance import Governance
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

WAIT_FOR_TRAINING_S = 300.0  # inline audits would wait this long in vain: the loop never starts


@register
class SeesTraining(Audit):
    """Waits (bounded) until the run holds a checkpoint: only possible when the data stage does not
    hold the training loop back. Records the process and thread it ran in."""

    name = "testing.sees_training"
    stages = frozenset({Stage.DATA})
    metrics = declare({"checkpoint_seen": Metric("bool", "higher_is_better", "training saved a checkpoint")})

    def measure(self, ctx: AuditContext, params: object) -> Measurement:
        run_dir = ctx.artifact_dir.parents[2]  # <run>/trustai/artifacts/<name>
        deadline = time.monotonic() + WAIT_FOR_TRAINING_S
        while not any(run_dir.glob("checkpoints/*/pretrained_model")) and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = any(run_dir.glob("checkpoints/*/pretrained_model"))
        return Measurement(metrics={"checkpoint_seen": seen}, tables={"ran_in": [{"pid": os.getpid()}]})


PACK = """
name: critical-path
version: 1
checks:
  - id: sees-training
    audit: testing.sees_training
    stage: data
    thresholds: {checkpoint_seen: {min: 1}}
    severity: block
    timeout_s: 900
  - id: dataset-integrity
    audit: provenance.dataset
    stage: data
    thresholds: {digests_mismatched: {max: 0}}
    severity: block
  - id: provenance
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {dataset_fingerprinted: {min: 1}}
    severity: block
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("critical")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "ds", episodes=2, frames_per_episode=10)
    flags = demo_train_flags(dataset, tmp / "run", steps=4, save_freq=2)
    return governed_train(flags, parse_pack(PACK, "critical-path.yaml"), tmp / "k.pem")


def test_the_data_stage_runs_beside_training_in_another_process(run: Path) -> None:
    governance = Governance(run, parse_pack(PACK, "critical-path.yaml"))
    try:
        findings = governance.ledger.records(RecordKind.FINDING)
        evidence = [r.payload for r in governance.ledger.records(RecordKind.EVIDENCE)]
        first_card = min(r.seq for r in governance.ledger.records(RecordKind.CARD))
    finally:
        governance.close()
    by_check = {r.payload["check_id"]: r.payload for r in findings}
    # Training reached a checkpoint while the data stage was still open: the hook had returned.
    assert by_check["sees-training"]["status"] == "pass", by_check["sees-training"]
    [seen] = [e for e in evidence if e["check_id"] == "sees-training"]
    assert seen["tables"]["ran_in"][0]["pid"] != os.getpid()
    assert by_check["dataset-integrity"]["status"] == "pass"
    assert by_check["provenance"]["status"] == "pass"
    # Every data-stage finding is in the ledger before the first card.
    data_findings = [r.seq for r in findings if r.payload["stage"] == "data"]
    assert len(data_findings) == 2 and max(data_findings) < first_card


CRASH_PACK = """
name: crash
version: 1
checks:
  - {id: crash, audit: chaos.crash_worker, stage: checkpoint, severity: warn}
  - {id: provenance, audit: provenance.manifest, stage: checkpoint, severity: warn}
"""


def test_a_worker_that_dies_is_an_error_finding_and_the_next_job_still_runs(tmp_path: Path) -> None:
    governance = Governance(tmp_path / "run", parse_pack(CRASH_PACK, "crash.yaml"), runtime="process")
    try:
        governance.start({"seed": 1})
        assert governance.run_stage(Stage.CHECKPOINT, step=1, manifest={"seed": 1}) == []
        assert governance.drain(600)
        findings = {r.payload["check_id"]: r.payload for r in governance.ledger.records(RecordKind.FINDING)}
    finally:
        governance.close()
    assert findings["crash"]["status"] == "error" and "worker died" in findings["crash"]["message"]
    assert findings["provenance"]["status"] == "pass"


HANG_PACK = """
name: hang
version: 1
release_wait_s: 5
checks:
  - {id: hang, audit: chaos.hang, stage: data, severity: warn, timeout_s: 3600}
  - {id: provenance, audit: provenance.manifest, stage: checkpoint, severity: warn}
"""


def test_the_end_of_a_run_waits_for_outstanding_audits_only_as_the_pack_allows(tmp_path: Path) -> None:
    governance = Governance(tmp_path / "run", parse_pack(HANG_PACK, "hang.yaml"), runtime="process")
    try:
        governance.start({"seed": 1})
        governance.run_stage(Stage.DATA, step=0)
        # Raised while the data stage runs: it starts only once that has completed.
        governance.run_stage(Stage.CHECKPOINT, step=1, manifest={"seed": 1})
        assert governance.drain() is False  # the pack's release_wait_s
        findings = [r.payload for r in governance.ledger.records(RecordKind.FINDING)]
    finally:
        governance.close()
    assert [f["check_id"] for f in findings] == ["hang", "provenance"]
    assert findings[0]["status"] == "error" and "wait ran out" in findings[0]["message"]
