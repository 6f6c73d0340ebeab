"""Every checkpoint-stage audit gives the same evidence inline and on Ray (issue 13, item 5).

A governed run's checkpoint is audited twice with the same seed, dataset and manifest: by the
InlineExecutor in this process, and by a RayExecutor that starts a local Ray of its own (the path
``trustai audit RUN --all`` takes). Ray's workers are new interpreters started by the raylet, never
forks of this process, so they have imported none of the LeRobot state this test process holds: the
audit that runs first on each worker loads the checkpoint with nothing registered yet, which is where
a fresh worker once recorded "not a valid LeRobot policy config ... Available policy types: {}".

The dataset is PushT-shaped (one camera, 2-dof state and action) so that ``robustness.closed_loop``
runs too, and training used episodes 0-1 of 4 so that ``privacy.membership_inference`` finds its
held-out episodes in the run's manifest.
"""

import json
import os
import sqlite3

import pytest
import ray
import torch
from trustai.training_hooks.lerobot_train import governed_train

from trustai.cli.demo import demo_train_flags
from trustai.core.audit import AUDITS_PACKAGE, get_audit, known_audits
from trustai.core.evidence import Evidence, InputProvenance, Stage
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import Check, parse_pack
from trustai.runtime.executor import AuditJob, Executor
from trustai.runtime.inline_executor import InlineExecutor
from trustai.runtime.ray_executor import RayExecutor

SEED = 7
# Each audit with params that keep it to a few seconds on a tiny policy. A checkpoint-stage audit
# missing here fails test_every_checkpoint_audit_is_covered: new audits join the parity check.
PARAMS: dict[str, dict] = {
    "explainability.attributions": {
        "frames": 1,
        "ig_steps": 2,
        "occlusion_fraction": 0.5,
        "deletion_fractions": [0.5],
        "heatmap_frames": 0,
    },
    "fairness.group_parity": {"max_frames": 16, "min_group_size": 2},
    "privacy.membership_inference": {"max_samples": 8, "attack_model": "lr"},
    "robustness.adversarial": {"frames": 2, "steps": 2, "epsilons": [0.0, 0.0157]},
    "robustness.closed_loop": {
        "episodes": 1,
        "max_steps": 6,
        "perturbations": [{"corruption": "gaussian_noise"}, {"corruption": "state_noise"}],
    },
    "robustness.corruptions": {
        "frames": 2,
        "corruptions": ["gaussian_noise", "state_noise"],
        "severities": [3],
    },
    "provenance.manifest": {},
}
LIGHT_PACK = """
name: provenance-only
checks:
  - {id: provenance, audit: provenance.manifest, stage: checkpoint}
"""


def checkpoint_audits() -> list[str]:
    """trustai's own audits that serve the checkpoint stage: those defined in ``trustai.audits``, not
    the test suite's (chaos.* plugins that fail or hang on purpose, audits other tests register)."""
    return [
        name
        for name in known_audits()
        if Stage.CHECKPOINT in get_audit(name).stages
        and get_audit(name).__module__.startswith(f"{AUDITS_PACKAGE}.")
    ]


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2-step governed tiny ACT on 2 of 4 PushT-shaped episodes: its checkpoint, dataset, manifest."""
    tmp = tmp_path_factory.mktemp("ray-parity")
    dataset = make_synthetic_dataset(
        tmp / "dataset",
        repo_id="trustai/parity",
        episodes=4,
        frames_per_episode=10,
        cameras=("observation.image",),
        image_size=(32, 32),
        state_dim=2,
        action_dim=2,
    )
    flags = [*demo_train_flags(dataset, tmp / "run", steps=2, save_freq=2), "--dataset.episodes=[0,1]"]
    run_dir = governed_train(flags, parse_pack(LIGHT_PACK, "provenance-only.yaml"), None)
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    (start,) = db.execute("SELECT payload FROM records WHERE kind = 'run.start'").fetchone()
    db.close()
    return {
        "tmp": tmp,
        "dataset": dataset,
        "checkpoint": run_dir / "checkpoints" / "000002" / "pretrained_model",
        "manifest": json.loads(start)["manifest"],
    }


def jobs(governed: dict) -> list[AuditJob]:
    """One job per audit, in the order that puts a checkpoint-loading audit first on every worker."""
    inputs = InputProvenance(dataset="trustai/parity", step=2)
    return [
        AuditJob(
            check=Check(id=name.replace(".", "-"), audit=name, stage=Stage.CHECKPOINT, params=params),
            stage=Stage.CHECKPOINT,
            step=2,
            inputs=inputs,
            artifact_name=f"parity-{name}",
            seed=SEED,
            checkpoint_dir=str(governed["checkpoint"]),
            dataset_root=str(governed["dataset"]),
            manifest=governed["manifest"],
        )
        for name, params in PARAMS.items()
    ]


def run_all(executor: Executor, batch: list[AuditJob]) -> dict[str, Evidence]:
    """Every job's Evidence by audit name, through ``executor`` from start to shutdown."""
    delivered: dict[str, Evidence] = {}
    executor.start()
    try:
        executor.submit(batch, lambda job, evidence: delivered.__setitem__(job.check.audit, evidence))
        assert executor.drain(600), "audits still running after 600 s"
    finally:
        executor.shutdown()
    return delivered


def test_every_checkpoint_audit_is_covered() -> None:
    assert sorted(PARAMS) == checkpoint_audits()


def test_every_checkpoint_audit_gives_the_same_evidence_inline_and_in_fresh_ray_workers(
    governed: dict,
) -> None:
    assert not ray.is_initialized()  # the Ray executor starts a Ray, and workers, of its own
    batch = jobs(governed)
    # Ray runs a one-CPU task with OMP_NUM_THREADS threads, 1 unless set; torch with as many threads
    # here sums in the same order, so the evidence can be compared exactly.
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    try:
        inline = run_all(InlineExecutor(governed["tmp"] / "inline"), batch)
    finally:
        torch.set_num_threads(threads)
    on_ray = run_all(RayExecutor(governed["tmp"] / "ray", num_cpus=2), batch)
    assert not ray.is_initialized()  # ... and shut it down again

    assert sorted(inline) == sorted(on_ray) == sorted(PARAMS)
    for name in PARAMS:
        here, there = inline[name], on_ray[name]
        assert here.error is None, f"{name} inline: {here.error}"
        assert there.error is None, f"{name} on Ray: {there.error}"
        assert here.metrics, name
        assert here.params == there.params and here.audit_version == there.audit_version, name
        assert here.metrics == there.metrics, (name, here.metrics, there.metrics)
        assert here.tables == there.tables, name
        assert [a.path for a in here.artifacts] == [a.path for a in there.artifacts], name
        for artifact in there.artifacts:  # the worker's files came back into the executor's root
            assert (governed["tmp"] / "ray" / artifact.path).is_file(), artifact.path
    # The run trained on episodes 0-1; the manifest carried that split to the workers.
    splits = {
        r["episode_index"]: r["split"] for r in on_ray["privacy.membership_inference"].tables["episodes"]
    }
    assert splits == {0: "train", 1: "train", 2: "holdout", 3: "holdout"}
    assert on_ray["provenance.manifest"].metrics["train_config_recorded"] is True
