"""Bimanual ALOHA end to end: a two-camera, 14-dof dataset recorded from gym-aloha's MuJoCo scene
(LeRobot video), `trustai train` of a tiny ACT under the shipped `aloha-simulation` pack (closed loop
in the ALOHA simulator, open-loop corruptions; shrunk to a test's size) with every other audit added,
a signed card that verifies; and the simulator's world changes (camera viewpoint, lighting, object
position) really change what the policy sees."""

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gym_aloha.constants import ACTIONS, JOINTS, START_ARM_POSE
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from trustai.audits.robustness import ClosedLoop, ClosedLoopParams
from trustai.audits.robustness.sims import WorldChange
from trustai.audits.robustness.sims.aloha import SCENARIOS, AlohaEnv, open_env

from tests.test_robustness import context, pusht_policy
from trustai.attest.keys import generate_keypair
from trustai.cli import main
from trustai.core.ledger import Ledger
from trustai.errors import TrustaiUserError

CAMERAS = {"observation.images.top": "top", "observation.images.angle": "angle"}
SIZE = (48, 64)  # ALOHA's 480×640 aspect
EPISODES, FRAMES = 3, 12
INSTRUCTION = SCENARIOS["transfer_cube"][2]
CLOSED_LOOP = ["clean", "camera_viewpoint_s3", "lighting_s3", "gaussian_noise_s3", "state_noise_s3"]
# The shipped pack's checks at a test's size; a check the pack gains must be sized here too.
SHRUNK = {
    "closed-loop-robustness": {"episodes": 1, "max_steps": 6},
    "robustness-corruptions": {
        "frames": 2,
        "severities": [5],
        "corruptions": ["occlusion", "state_noise"],
        "loss": False,
    },
}
EVERY_OTHER_AUDIT = """
- {id: quality, audit: data.quality, stage: data, params: {max_frames_for_images: 6}}
- {id: datasheet, audit: data.datasheet, stage: data}
- {id: personal-data, audit: privacy.pii, stage: data, params: {max_frames: 6}}
- {id: health, audit: train.health, stage: train}
- {id: provenance, audit: provenance.manifest, stage: checkpoint}
- id: adversarial
  audit: robustness.adversarial
  stage: checkpoint
  params: {frames: 2, steps: 2, epsilons: [0.0, 0.03]}
- id: explanations
  audit: explainability.attributions
  stage: checkpoint
  params: {frames: 2, methods: [saliency], heatmap_frames: 1, deletion_fractions: [0.2]}
- {id: parity, audit: fairness.group_parity, stage: checkpoint, params: {min_group_size: 1}}
- {id: membership, audit: privacy.membership_inference, stage: checkpoint, params: {max_samples: 8}}
"""


def aloha_pack() -> str:
    """The shipped ``aloha-simulation`` pack with its checks shrunk to a test's size (``SHRUNK``: fewer
    episodes, steps, frames, severities and corruptions; ids, perturbations, thresholds, severities and
    references as shipped) and every other audit added."""
    pack = yaml.safe_load((resources.files("trustai.policies") / "aloha-simulation.yaml").read_text())
    for check in pack["checks"]:
        check["params"].update(SHRUNK[check["id"]])
    pack["checks"] += yaml.safe_load(EVERY_OTHER_AUDIT)
    return yaml.safe_dump(pack, sort_keys=False)


def scripted_targets(episode: int, frames: int) -> np.ndarray:
    """Joint targets that sweep every joint around ALOHA's start pose and open and close the grippers."""
    start = np.array([*START_ARM_POSE[:6], 0.5, *START_ARM_POSE[8:14], 0.5])
    phase = np.linspace(0, 2 * np.pi, len(start)) + episode
    steps = np.arange(frames)[:, None] / frames
    return (start + 0.15 * np.sin(2 * np.pi * steps + phase)).astype(np.float32)


def record_aloha(root: Path) -> Path:
    """An ALOHA transfer-cube dataset recorded through the audit's own simulator binding (so training
    and closed-loop images look alike): two cameras as LeRobot video, 14 joint positions, 14 targets."""
    features = {
        key: {"dtype": "video", "shape": (*SIZE, 3), "names": ["height", "width", "channels"]}
        for key in CAMERAS
    }
    features["observation.state"] = {"dtype": "float32", "shape": (14,), "names": JOINTS}
    features["action"] = {"dtype": "float32", "shape": (14,), "names": ACTIONS}
    dataset = LeRobotDataset.create(
        "trustai/aloha", fps=50, features=features, root=root, robot_type="aloha", video_backend="pyav"
    )
    env = AlohaEnv(
        "transfer_cube", {k: (c, *SIZE) for k, c in CAMERAS.items()}, "observation.state", max_steps=FRAMES
    )
    try:
        for episode in range(EPISODES):
            observation = env.reset(seed=episode, change=None)
            for target in scripted_targets(episode, FRAMES):
                frame = {
                    k: (observation[k][0].permute(1, 2, 0) * 255).round().byte().numpy() for k in CAMERAS
                }
                state = observation["observation.state"][0].numpy()
                dataset.add_frame(
                    {**frame, "observation.state": state, "action": target, "task": INSTRUCTION}
                )
                observation = env.step(target).observation
            dataset.save_episode()
    finally:
        env.close()
    dataset.finalize()
    return root


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`trustai train` of a tiny ACT on 2 of 3 recorded ALOHA episodes, every audit at its checkpoint."""
    tmp = tmp_path_factory.mktemp("aloha")
    dataset = record_aloha(tmp / "dataset")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    (tmp / "pack.yaml").write_text(aloha_pack())
    flags = [
        "--dataset.repo_id=trustai/aloha",
        f"--dataset.root={dataset}",
        "--dataset.episodes=[0,1]",
        "--policy.type=act",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--policy.pretrained_backbone_weights=null",
        "--policy.dim_model=32",
        "--policy.dim_feedforward=64",
        "--policy.n_heads=2",
        "--policy.n_encoder_layers=1",
        "--policy.n_decoder_layers=1",
        "--policy.chunk_size=4",
        "--policy.n_action_steps=4",
        "--policy.use_vae=false",
        f"--output_dir={tmp / 'run'}",
        "--steps=2",
        "--save_freq=2",
        "--batch_size=4",
        "--num_workers=0",
        "--wandb.enable=false",
        "--seed=7",
    ]
    # Inline: the audits share this process's imports (worker processes would import LeRobot again).
    args = ["trustai", "train", "--pack", str(tmp / "pack.yaml"), "--key", str(tmp / "k.pem")]
    args += ["--runtime", "inline", "--no-gate"]
    exited = run_cli([*args, "--", *flags])
    assert exited == 0
    return {"dataset": dataset, "run": tmp / "run", "public": tmp / "k.pub"}


def run_cli(argv: list[str]) -> int:
    """The trustai CLI in this process (imports stay warm); its exit code."""
    saved, sys.argv = sys.argv, argv
    try:
        main()
    except SystemExit as exited:
        return int(exited.code or 0)
    finally:
        sys.argv = saved
    return 0


def latest(run: Path, kind: str) -> dict[str, dict]:
    """The latest record payload of ``kind`` per check id."""
    with Ledger(run / "trustai" / "ledger.sqlite", create=False) as ledger:
        return {r.payload["check_id"]: r.payload for r in ledger.records(kind)}


def test_the_recorded_dataset_is_bimanual_multi_camera_video(governed: dict[str, Path]) -> None:
    info = json.loads((governed["dataset"] / "meta" / "info.json").read_text())
    assert {k: info["features"][k]["dtype"] for k in CAMERAS} == dict.fromkeys(CAMERAS, "video")
    assert info["features"]["observation.state"]["shape"] == [14] and info["robot_type"] == "aloha"
    assert info["total_episodes"] == EPISODES and info["total_frames"] == EPISODES * FRAMES


def test_every_audit_measured_the_aloha_checkpoint_and_the_card_verifies(governed: dict[str, Path]) -> None:
    evidence = latest(governed["run"], "evidence")
    expected = {"quality", "datasheet", "personal-data", "health", "provenance", "robustness-corruptions"}
    expected |= {"adversarial", "explanations", "parity", "membership", "closed-loop-robustness"}
    assert set(evidence) == expected
    assert {check: e["error"] for check, e in evidence.items() if e["error"]} == {}
    attributed = {row["input"] for row in evidence["explanations"]["tables"]["shares"]}
    assert {"top", "angle", "state"} <= attributed
    corrupted = {row["input"] for row in evidence["robustness-corruptions"]["tables"]["corruptions"]}
    assert corrupted == {"top", "angle", "state"}
    model = governed["run"] / "checkpoints" / "000002" / "pretrained_model"
    assert run_cli(["trustai", "verify", str(model), "--public-key", str(governed["public"])]) == 0


def test_the_closed_loop_in_aloha_is_inconclusive_for_a_policy_that_never_succeeds(
    governed: dict[str, Path],
) -> None:
    evidence = latest(governed["run"], "evidence")["closed-loop-robustness"]
    finding = latest(governed["run"], "finding")["closed-loop-robustness"]
    rollouts = evidence["tables"]["rollouts"]
    assert [r["condition"] for r in rollouts] == CLOSED_LOOP
    assert all(r["steps"] == 6 and r["instruction"] == INSTRUCTION for r in rollouts)
    for condition in CLOSED_LOOP:
        assert evidence["metrics"][f"success_rate_{condition}"] == 0.0
        assert 0 <= evidence["metrics"][f"mean_max_reward_{condition}"] <= 1
    assert evidence["metrics"]["success_rate_drop_lighting_s3"] == 0.0
    assert finding["status"] == "inconclusive"
    assert "below min_clean_success" in finding["message"]


def test_world_changes_alter_the_policys_view_and_every_reset_restores_the_scene() -> None:
    env = AlohaEnv("insertion", {"observation.images.top": ("top", 24, 32)}, "observation.state", 2)
    try:
        clean = env.reset(3, None)["observation.images.top"]
        for name, level in (("camera_viewpoint", 0.1), ("lighting", 0.15), ("object_position", 0.05)):
            changed = env.reset(3, WorldChange(name, level, np.random.default_rng(0)))
            assert float((changed["observation.images.top"] - clean).abs().max()) > 0.05, name
        assert torch.equal(env.reset(3, None)["observation.images.top"], clean)
        assert float(env.step(np.zeros(14)).observation["observation.state"].abs().sum()) > 0
    finally:
        env.close()


def test_aloha_refuses_policies_and_perturbations_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(TrustaiUserError, match="does not fit the ALOHA simulation") as caught:
        open_env(pusht_policy(), None, 2)
    assert "14 joint positions" in str(caught.value) and "14 joint targets" in str(caught.value)
    with pytest.raises(TrustaiUserError, match="no scenario 'sort_socks'"):
        open_env(pusht_policy(), "sort_socks", 2)
    with pytest.raises(ValueError, match="pusht simulator cannot apply"):
        ClosedLoopParams(perturbations=[{"scene": "lighting"}])
    with pytest.raises(ValueError, match="exactly one of corruption or scene"):
        ClosedLoopParams(simulator="aloha", perturbations=[{"scene": "lighting", "corruption": "jpeg"}])
    instruction = ClosedLoopParams(episodes=1, max_steps=1, perturbations=[{"scene": "instruction"}])
    with pytest.raises(TrustaiUserError, match="needs a policy that reads a language instruction"):
        ClosedLoop().measure(context(tmp_path, policy=pusht_policy()), instruction)
