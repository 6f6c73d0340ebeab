"""Fault injection in the hooks: audits that raise, hang, fail to allocate memory or kill their Ray
worker, at every stage. Training completes every time, every checkpoint is sealed, and every fault is
an ``error`` finding, with the inline runtime and with Ray."""

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from tests.reliability.conftest import RUN_STEPS, GovernedRun
from tests.reliability.figures import FIGURES
from tests.reliability.runs import expected_faults, fault_pack, governed_run
from tests.reliability.scale import SCALE
from trustai.attest.verify import verify_checkpoint

CHECKPOINTS = RUN_STEPS // 2
MESSAGES = {
    "fault-data-raise": "planted failure",
    "fault-train-raise": "planted failure",
    "fault-raise": "planted failure",
    "fault-hang": "timed out",
    "fault-memory": "MemoryError",
    "fault-release-hang": "timed out",
}


def payloads(run_dir: Path, kind: str) -> list[dict]:
    """Payloads of the run's ledger records of ``kind``, in order."""
    db = sqlite3.connect(f"{(run_dir / 'trustai' / 'ledger.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT payload FROM records WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
    finally:
        db.close()
    return [json.loads(p) for (p,) in rows]


def check_run(run_dir: Path, public_key: Path, crash_message: str, runtime: str) -> list[str]:
    """Count the run's faults into the figures; return what is wrong with it."""
    fig = FIGURES.row(f"faults-{runtime}")
    problems = []
    findings = payloads(run_dir, "finding")
    for check_id, runs in expected_faults(CHECKPOINTS).items():
        message = MESSAGES.get(check_id, crash_message)
        errors = [f for f in findings if f["check_id"] == check_id and f["status"] == "error"]
        named = [f for f in errors if message in f["message"]]
        fig.trials += runs
        fig.detected += min(runs, len(named))
        fig.lost += max(0, runs - len(named))
        if len(named) != runs:
            problems.append(
                f"{check_id}: {runs} faults, findings {[(f['status'], f['message']) for f in errors]}"
            )
    end = payloads(run_dir, "run.end")
    checkpoints = sorted(run_dir.glob("checkpoints/[0-9]*/pretrained_model"))
    sealed = [c for c in checkpoints if verify_checkpoint(c, public_key).ok]
    if not end or end[-1]["steps"] != RUN_STEPS or len(sealed) != CHECKPOINTS:
        fig.crashed += 1
        problems.append(f"training did not complete: run.end {end}, {len(sealed)}/{len(checkpoints)} sealed")
    return problems


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray with two CPUs for the audit tasks, shut down after this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_inline_faults_become_error_findings_and_training_completes(
    governed: GovernedRun, dataset: Path, tmp_path: Path
) -> None:
    runs = [(governed.run_dir, governed.attempts)]
    for i in range(1, SCALE.fault_runs):
        attempts = tmp_path / f"attempts-{i}.txt"
        pack = fault_pack(attempts, hang_s=1)
        runs.append((governed_run(tmp_path / f"run-{i}", dataset, pack, governed.private_key), attempts))
    problems = []
    for run_dir, attempts in runs:
        problems += check_run(run_dir, governed.public_key, "only kills isolated audit workers", "inline")
        # Inline, chaos.crash_worker must refuse to kill the training process: one attempt each, no retry.
        assert len(attempts.read_text().split()) == CHECKPOINTS
    FIGURES.row("faults-inline").notes.append(
        f"{len(runs)} governed runs; crash_worker refuses inline (it would kill training), so its error is "
        "the refusal"
    )
    assert not problems, problems


def test_ray_faults_become_error_findings_and_training_completes(
    local_ray: None, keys: tuple[Path, Path], dataset: Path, tmp_path: Path
) -> None:
    problems, attempts_seen = [], []
    for i in range(SCALE.fault_runs):
        attempts = tmp_path / f"attempts-{i}.txt"
        pack = fault_pack(attempts, hang_s=3)
        run_dir = governed_run(tmp_path / f"run-{i}", dataset, pack, keys[0], runtime="ray")
        problems += check_run(run_dir, keys[1], "audit worker failed after 1 retries", "ray")
        attempts_seen.append(len(attempts.read_text().split()))
    FIGURES.row("faults-ray").notes.append(
        f"{SCALE.fault_runs} governed runs; crash_worker killed its Ray worker {sum(attempts_seen)} times "
        "(each fault: first try + 1 retry)"
    )
    # Every checkpoint's crash reached a worker, and Ray tried it at most twice (first try + 1 retry).
    # Not exactly twice: a retry whose fresh worker dies before the audit starts (seen under load) is
    # still a try to Ray, so it writes no line; the finding still says "failed after 1 retries".
    assert all(CHECKPOINTS < n <= 2 * CHECKPOINTS for n in attempts_seen), attempts_seen
    assert not problems, problems
