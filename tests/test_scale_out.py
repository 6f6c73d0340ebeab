"""Audits that scale out: data-stage audits over per-file Ray tasks give exactly the single-process
result, and so does a dataset whose episodes straddle frame files (the merges settle the boundaries);
checkpoint audits share one loaded policy without seeing each other's changes to it, a Ray worker
loads a checkpoint once for all the audits it runs, and a check that asks for a GPU the cluster lacks
runs on CPU and says so."""

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
from pydantic import BaseModel, ConfigDict

from tests.planted_faults import Faults, make_faulty_dataset
from tests.tiny_policies import tiny_act
from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, get_audit, register
from trustai.core.evidence import Evidence, InputProvenance, Stage
from trustai.lerobot.adapter import PolicyAdapter
from trustai.lerobot.datasets import data_files
from trustai.lerobot.policy_batches import audit_policy
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import Check
from trustai.runtime.executor import AuditJob
from trustai.runtime.inline_executor import InlineExecutor
from trustai.runtime.ray_executor import RayExecutor, run_on_worker

pytestmark = pytest.mark.xdist_group("ray")

CAMERAS = ("observation.images.top", "observation.images.wrist")
FAULTS = Faults(
    nan_in_state_frames=[(1, 3)],
    frozen_camera_episode=2,
    drop_frames=[(3, 5)],
    face_frames=[(0, 4)],
)


def resplit(source: Path, target: Path, rows: int) -> Path:
    """A copy of ``source`` whose frames are rewritten into files of ``rows`` frames each, so episodes
    straddle files (the audits read data/ only by file order)."""
    shutil.copytree(source, target)
    table = pa.concat_tables([pq.read_table(f) for f in data_files(target)])
    shutil.rmtree(target / "data")
    (target / "data" / "chunk-000").mkdir(parents=True)
    for i, start in enumerate(range(0, table.num_rows, rows)):
        pq.write_table(table.slice(start, rows), target / "data" / "chunk-000" / f"file-{i:03d}.parquet")
    return target


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planted dataset in one frame file, and the same frames cut into files of 13 frames."""
    tmp = tmp_path_factory.mktemp("scale-out")
    planted = make_faulty_dataset(
        tmp / "planted",
        FAULTS,
        episodes=5,
        frames_per_episode=12,
        image_size=(96, 128),
        cameras=CAMERAS,
    )
    assert len(data_files(planted)) == 1
    return planted, resplit(planted, tmp / "split", rows=13)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def measure(name: str, dataset: Path, out: Path, **params: Any) -> Measurement:
    audit = get_audit(name)
    ctx = AuditContext(stage=Stage.DATA, artifact_dir=out, dataset=dataset, reference=dataset)
    return audit().measure(ctx, audit.Params.model_validate(params))


def same(a: Measurement, b: Measurement) -> bool:
    return (a.metrics, a.tables, a.inconclusive) == (b.metrics, b.tables, b.inconclusive)


def test_per_file_scans_merge_to_the_one_file_result_across_episode_boundaries(datasets, tmp_path):
    whole, split = datasets
    assert len(data_files(split)) == 5  # 60 frames in files of 13: episodes of 12 straddle the files
    for name, params in (("data.quality", {"max_frames_for_images": 10_000}), ("privacy.pii", {})):
        one, many = (
            measure(name, whole, tmp_path / "a", **params),
            measure(name, split, tmp_path / "b", **params),
        )
        assert same(one, many), name
    quality = measure("data.quality", split, tmp_path / "c", max_frames_for_images=10_000).metrics
    # The planted faults are found, so equality is not that of two empty results.
    assert quality["frozen_camera_episodes"] == 1 and quality["timestamp_gaps"] == 1
    assert quality["nonfinite_state_values"] == 1 and quality["images_checked"] == 120


def test_data_audits_on_ray_equal_the_single_process_result(datasets, local_ray, tmp_path):
    _, split = datasets
    runs = {
        "data.quality": {"max_frames_for_images": 10_000},
        "privacy.pii": {"max_listed_frames": 1},
        "drift.features": {"max_frames": 10_000, "permutations": 200},
        "data.datasheet": {},
    }
    for name, params in runs.items():
        here = measure(name, split, tmp_path / f"{name}-here", **params)
        on_ray = measure(name, split, tmp_path / f"{name}-ray", **params, use_ray=True)
        assert same(here, on_ray), name
        if name == "privacy.pii":
            assert here.metrics["faces"] >= 1 and here.metrics["frames_checked"] == 60
        if name == "data.datasheet":
            sheet = "datasheet.json"
            assert (tmp_path / f"{name}-here" / sheet).read_text() == (
                tmp_path / f"{name}-ray" / sheet
            ).read_text()


# -- checkpoint audits ---------------------------------------------------------------------------------


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register
class Tamper(Audit):
    """Changes everything an audit could change on the policy it is handed."""

    name = "isolation.tamper"
    version = "1"
    stages = frozenset({Stage.CHECKPOINT})
    Params = _NoParams
    metrics = declare({"tampered": Metric("bool", "neutral", "the audit changed its policy")})

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        policy = audit_policy(ctx).policy
        policy.register_forward_hook(lambda module, inputs, output: output)
        first = next(policy.parameters())
        with torch.no_grad():
            first.add_(1.0)
        policy.requires_grad_(False)
        policy.train(not policy.training)
        return Measurement(metrics={"tampered": True})


@register
class Probe(Audit):
    """What an audit finds on the policy it is handed."""

    name = "isolation.probe"
    version = "1"
    stages = frozenset({Stage.CHECKPOINT})
    Params = _NoParams
    metrics = declare(
        {
            "forward_hooks": Metric("count", "neutral", "forward hooks on the policy's modules"),
            "trainable": Metric("count", "neutral", "parameters that require grad"),
            "training": Metric("bool", "neutral", "the policy is in train mode"),
            "first_weight_sum": Metric("value", "neutral", "sum of the first parameter"),
        }
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        policy = audit_policy(ctx).policy
        return Measurement(
            metrics={
                "forward_hooks": sum(len(m._forward_hooks) for m in policy.modules()),
                "trainable": sum(p.requires_grad for p in policy.parameters()),
                "training": policy.training,
                "first_weight_sum": float(next(policy.parameters()).sum()),
            }
        )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny ACT saved as LeRobot saves checkpoints, and the dataset it was built for."""
    tmp = tmp_path_factory.mktemp("checkpoint")
    dataset = make_synthetic_dataset(tmp / "ds", episodes=2, frames_per_episode=8)
    policy, preprocessor, postprocessor = tiny_act(dataset)
    folder = tmp / "000002" / "pretrained_model"
    for part in (policy.eval(), preprocessor, postprocessor):
        part.save_pretrained(folder)
    return folder, dataset


def job(check: Check, folder: Path, dataset: Path, policy: PolicyAdapter | None = None) -> AuditJob:
    return AuditJob(
        check=check,
        stage=Stage.CHECKPOINT,
        step=2,
        inputs=InputProvenance(checkpoint=str(folder)),
        artifact_name=check.id,
        checkpoint_dir=str(folder),
        dataset_root=str(dataset),
        policy=policy,
    )


def run_inline(jobs: list[AuditJob], root: Path) -> dict[str, Evidence]:
    delivered: dict[str, Evidence] = {}
    InlineExecutor(root).submit(jobs, lambda j, evidence: delivered.__setitem__(j.check.id, evidence))
    return delivered


def test_audits_on_a_shared_loaded_policy_do_not_see_each_others_changes(checkpoint, tmp_path):
    folder, dataset = checkpoint
    tamper = Check(id="tamper", audit="isolation.tamper", stage="checkpoint")
    probe = Check(id="probe", audit="isolation.probe", stage="checkpoint")
    shared = PolicyAdapter.from_checkpoint(folder)
    alone = run_inline([job(probe, folder, dataset, shared)], tmp_path / "alone")["probe"]
    after = run_inline([job(c, folder, dataset, shared) for c in (tamper, probe)], tmp_path / "after")
    assert after["tamper"].error is None and after["tamper"].metrics == {"tampered": True}
    assert alone.error is None and after["probe"].metrics == alone.metrics
    assert alone.metrics["forward_hooks"] == 0 and alone.metrics["trainable"] > 0
    # The same holds for a policy the worker loads from the checkpoint itself (no policy handed over).
    loaded = run_inline([job(c, folder, dataset) for c in (tamper, probe)], tmp_path / "loaded")
    assert loaded["probe"].metrics == alone.metrics


def test_a_ray_worker_loads_a_checkpoint_once_for_all_its_audits(checkpoint, local_ray, tmp_path):
    folder, dataset = checkpoint
    params = {"frames": 2, "corruptions": ["state_noise"], "severities": [3]}
    checks = [
        Check(id=f"corruptions-{i}", audit="robustness.corruptions", stage="checkpoint", params=params)
        for i in range(3)
    ]
    workers = int(ray.cluster_resources()["CPU"])
    executor = RayExecutor(tmp_path)
    delivered: dict[str, Evidence] = {}
    try:
        executor.submit(
            [job(c, folder, dataset) for c in checks], lambda j, e: delivered.__setitem__(j.check.id, e)
        )
        assert executor.drain(timeout_s=600)
    finally:
        executor.shutdown()
    assert all(e.error is None for e in delivered.values()), [e.error for e in delivered.values()]
    assert len({json.dumps(e.metrics, sort_keys=True) for e in delivered.values()}) == 1
    loads = executor.policy_loads[str(folder)]
    assert 1 <= loads <= min(workers, len(checks)) < len(checks)


def test_a_check_asking_for_a_gpu_the_cluster_lacks_runs_on_cpu_and_says_so(checkpoint, tmp_path):
    folder, dataset = checkpoint
    params = {"frames": 2, "corruptions": ["state_noise"], "severities": [3], "device": "cuda"}
    check = Check(id="corruptions", audit="robustness.corruptions", stage="checkpoint", params=params)
    result = run_on_worker(job(check, folder, dataset), gpu=False)
    evidence = Evidence.model_validate(result["evidence"])
    assert evidence.error is None and evidence.metrics
    assert evidence.params["device"] == "cpu"
