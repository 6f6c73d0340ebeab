"""Synthetic LeRobot datasets, the streaming dataset helpers and the data.quality audit."""

import shutil
from pathlib import Path

import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from tests.planted_faults import Faults, make_faulty_dataset
from trustai.core.audit import AuditContext, Measurement, get_audit
from trustai.core.evidence import Evidence, Stage
from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import dataset_fingerprint, iter_frame_batches, open_dataset_meta
from trustai.lerobot.synthetic import make_synthetic_dataset

REPO_ID = "trustai/synthetic"
CAMERA = "observation.images.top"
FAULTS = Faults(
    nan_in_state_frames=[(1, 3), (4, 7)],
    frozen_camera_episode=2,
    short_episode=(5, 5),
    drop_frames=[(0, 5)],
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("clean") / "ds")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Six episodes: with only four, one odd length among equal ones scores a robust z of 3.19, too
    # close to the default cut-off of 3 for a test that should not depend on it.
    return make_faulty_dataset(tmp_path_factory.mktemp("faulty") / "ds", FAULTS, episodes=6)


def quality(dataset: object, **params: object) -> Measurement:
    audit = get_audit("data.quality")
    ctx = AuditContext(stage=Stage.DATA, artifact_dir=Path("."), dataset=dataset)
    return audit().measure(ctx, audit.Params.model_validate(params))


def test_clean_dataset_loads_in_lerobot(clean: Path) -> None:
    dataset = LeRobotDataset(REPO_ID, root=clean)
    assert (dataset.num_frames, dataset.num_episodes, dataset.meta.total_tasks) == (80, 4, 2)
    item = dataset[25]
    assert tuple(item[CAMERA].shape) == (3, 48, 64)
    assert tuple(item["observation.state"].shape) == tuple(item["action"].shape) == (6,)
    assert item["task"] == "push the block right"
    assert open_dataset_meta(clean).image_keys == [CAMERA]


def test_synthetic_dataset_is_deterministic(clean: Path, tmp_path: Path) -> None:
    reference = dataset_fingerprint(clean)
    assert dataset_fingerprint(make_synthetic_dataset(tmp_path / "again")) == reference
    assert dataset_fingerprint(make_synthetic_dataset(tmp_path / "other", seed=1)) != reference


def test_actions_follow_states(clean: Path) -> None:
    batch = next(iter_frame_batches(clean, ["observation.state", "action"], batch_size=20))
    states = batch["observation.state"].flatten().to_numpy().reshape(20, 6)
    actions = batch["action"].flatten().to_numpy().reshape(20, 6)
    assert (states[1:] == actions[:-1]).all()
    assert states[-1, 0] < states[0, 0]  # episode 0 pushes the block left


def test_data_quality_on_clean_dataset(clean: Path) -> None:
    result = quality(clean)
    m = result.metrics
    assert (m["frames"], m["episodes"], m["images_checked"], m["image_episodes_checked"]) == (80, 4, 80, 4)
    zero = [
        "nonfinite_state_values",
        "nonfinite_action_values",
        "timestamp_gaps",
        "frozen_camera_episodes",
        "episode_length_outliers",
        "episode_meta_mismatches",
        "cameras_unchecked",
    ]
    assert {k: m[k] for k in zero} == dict.fromkeys(zero, 0)
    assert m["max_timestamp_gap_s"] == pytest.approx(0.1)
    assert (m["min_episode_length"], m["max_episode_length"], m["median_episode_length"]) == (20, 20, 20.0)
    assert m["tasks"] == 2
    assert m["min_task_share"] == pytest.approx(0.5)
    assert [row["share"] for row in result.tables["tasks"]] == pytest.approx([0.5, 0.5])
    assert all(type(v) in (int, float, bool) for v in m.values())
    Evidence(audit="data.quality", audit_version="1", stage=Stage.DATA, check_id="q", **vars(result)).digest()


def test_data_quality_finds_each_planted_fault(faulty: Path) -> None:
    result = quality(faulty)
    m = result.metrics
    assert m["nonfinite_state_values"] == 2
    assert m["nonfinite_action_values"] == 0
    assert m["frozen_camera_episodes"] == 1
    assert m["episode_length_outliers"] == 1
    assert m["timestamp_gaps"] == 1
    assert m["max_timestamp_gap_s"] == pytest.approx(0.2)
    assert m["episode_meta_mismatches"] == 0
    rows = {row["episode_index"]: row for row in result.tables["episodes"]}
    assert [rows[e]["nonfinite_state"] for e in range(6)] == [0, 1, 0, 0, 1, 0]
    assert rows[2]["frozen_cameras"] == [CAMERA]
    assert rows[5]["length"] == 5 and abs(rows[5]["length_z"]) > 3
    assert rows[0]["timestamp_gaps"] == 1


def test_data_quality_accepts_a_lerobot_dataset(clean: Path) -> None:
    assert quality(LeRobotDataset(REPO_ID, root=clean)).metrics == quality(clean).metrics


def test_data_quality_keeps_to_its_image_budget(faulty: Path) -> None:
    budgeted = quality(faulty, max_frames_for_images=10).metrics
    assert 0 < budgeted["images_checked"] <= 10
    assert quality(faulty, max_frames_for_images=0).metrics["images_checked"] == 0


def test_fingerprint_is_stable_and_sees_one_byte(clean: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(clean, tmp_path / "copy"))
    assert dataset_fingerprint(copy) == dataset_fingerprint(copy) == dataset_fingerprint(clean)
    data_file = next((copy / "data").rglob("*.parquet"))
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    assert dataset_fingerprint(copy) != dataset_fingerprint(clean)


def test_non_dataset_folders_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(TrustaiUserError, match=str(tmp_path)):
        open_dataset_meta(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text("{not json")
    with pytest.raises(TrustaiUserError, match="not valid JSON"):
        open_dataset_meta(tmp_path)
    with pytest.raises(TrustaiUserError):
        quality(None)


def test_synthetic_edit_that_leaves_out_a_whole_episode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every frame of episode 1"):
        make_synthetic_dataset(
            tmp_path / "ds", edit_frame=lambda episode, frame, values: values if episode != 1 else None
        )
