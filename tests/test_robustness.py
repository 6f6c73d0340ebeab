"""Robustness audits on real tiny ACT, Diffusion and π0.5 policies and a matching synthetic dataset:
stronger corruptions move actions more, ε = 0 moves nothing, ART and native PGD agree, each camera
and the state are attacked alone (or said to be out of the gradient's reach), closed-loop
rollouts in gym-pusht report rates, and mismatched or absent inputs become clear errors."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.factory import make_pre_post_processors
from trustai.audits.robustness import (
    Adversarial,
    AdversarialParams,
    ClosedLoop,
    ClosedLoopParams,
    CorruptionParams,
    Corruptions,
    Perturbation,
)
from trustai.audits.robustness.corruptions import CORRUPTIONS, corrupt_images

from tests.policies_fixtures import (
    CAMERAS,
    features_dataset,
    save_checkpoint,
    tiny_act,
    tiny_diffusion,
    tiny_pi05,
    tiny_pi05_architecture,
    write_tiny_tokenizer,
)
from trustai.core.audit import AuditContext
from trustai.core.evidence import Stage, Status
from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import PolicyAdapter
from trustai.packs import Check
from trustai.packs.judging import judge
from trustai.runtime.measure import measure_with_limit

EPSILONS = [0.0, 2 / 255, 8 / 255]


@pytest.fixture(scope="module", autouse=True)
def tiny_pi05_sizes() -> Iterator[None]:
    with tiny_pi05_architecture():
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return features_dataset(tmp_path_factory.mktemp("robustness") / "dataset")


@pytest.fixture(scope="module", params=["act", "diffusion", "pi05"])
def adapter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PolicyAdapter:
    if request.param == "diffusion":
        pytest.importorskip("diffusers", reason="LeRobot's Diffusion policy needs lerobot[diffusion]")
    tokenizer = write_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    builders = {"act": tiny_act, "diffusion": tiny_diffusion, "pi05": lambda: tiny_pi05(tokenizer)}
    return PolicyAdapter(*builders[request.param]())


def context(tmp_path: Path, **fields: Any) -> AuditContext:
    return AuditContext(stage=Stage.CHECKPOINT, artifact_dir=tmp_path, **fields)


def test_corruptions_grow_with_severity(adapter: PolicyAdapter, dataset: Path, tmp_path: Path) -> None:
    params = CorruptionParams(frames=2, corruptions=["gaussian_noise", "occlusion"], severities=[1, 5])
    result = Corruptions().measure(context(tmp_path, policy=adapter, dataset=dataset), params)

    rows = result.tables["corruptions"]
    assert len(rows) == 2 * len(CAMERAS) * 2
    by_key = {(r["corruption"], r["input"], r["severity"]): r for r in rows}
    for camera in ("top", "wrist"):
        # The same noise draw, scaled: the severities differ in strength only.
        mild, severe = by_key["gaussian_noise", camera, 1], by_key["gaussian_noise", camera, 5]
        assert severe["action_deviation"] > mild["action_deviation"] > 0, camera
        assert by_key["occlusion", camera, 5]["action_deviation"] > 0, camera
    metrics = result.metrics
    assert metrics["worst_action_deviation"] >= metrics["mean_action_deviation"] > 0
    assert metrics["worst_action_deviation_occlusion"] > 0
    assert metrics["clean_loss"] > 0 and all(torch.isfinite(torch.tensor(r["loss_increase"])) for r in rows)
    assert [p.name for p in result.artifacts] == ["robustness_curves.png"] and result.artifacts[
        0
    ].stat().st_size


def test_adversarial_deviation_is_zero_at_zero_and_grows_with_epsilon(
    adapter: PolicyAdapter, dataset: Path, tmp_path: Path
) -> None:
    params = AdversarialParams(frames=2, steps=2, epsilons=EPSILONS, threshold=1e-6, inputs=[])
    result = Adversarial().measure(context(tmp_path, policy=adapter, dataset=dataset), params)

    sweep = [row["mean_action_deviation"] for row in result.tables["sweep"]]
    assert sweep[0] == 0.0
    assert sweep[2] > sweep[1] > 0
    assert result.metrics["min_breaking_epsilon"] == pytest.approx(2 / 255)
    assert result.metrics["broken_within_sweep"] is True
    assert result.metrics["max_action_deviation"] == pytest.approx(sweep[2])


STATE_EPSILONS = [0.0, 0.1, 0.5]


def test_adversarial_attacks_each_input_alone_and_names_what_it_could_not(
    dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    params = dict(frames=2, steps=2, epsilons=[0.0, 8 / 255], state_epsilons=STATE_EPSILONS, threshold=1e-6)
    act = PolicyAdapter(*tiny_act())
    ctx = context(tmp_path_factory.mktemp("act"), policy=act, dataset=dataset)
    result = Adversarial().measure(ctx, AdversarialParams(**params))

    rows = {(r["input"], r["epsilon"]): r for r in result.tables["inputs"]}
    assert {name for name, _ in rows} == {"top", "wrist", "state"}
    assert rows["state", 0.5]["epsilon_unit"] == "L∞ state std"
    state = [rows["state", e]["mean_action_deviation"] for e in STATE_EPSILONS]
    assert state[0] == 0.0 and state[2] > state[1] > 0
    assert result.metrics["min_breaking_epsilon_state"] == 0.1
    assert result.metrics["action_deviation_at_max_epsilon_state"] == state[2]
    for camera in ("top", "wrist"):
        assert result.metrics[f"action_deviation_at_max_epsilon_{camera}"] > 0, camera
    assert result.metrics["min_breaking_epsilon"] == 8 / 255 and result.inconclusive is None

    # π0.5 reads its state as text tokens: no gradient reaches it, so it is reported unattacked and a
    # threshold on it is inconclusive, never a pass.
    tokenizer = write_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    pi05 = PolicyAdapter(*tiny_pi05(tokenizer))
    thresholds = {"min_breaking_epsilon_state": {"min": 0.05}}
    check = Check(
        id="adv", audit="robustness.adversarial", stage=Stage.CHECKPOINT, params=params, thresholds=thresholds
    )
    folder = tmp_path_factory.mktemp("pi05")
    evidence = measure_with_limit(check, context(folder, policy=pi05, dataset=dataset), folder)

    assert (
        evidence.error is None and "state: the actions' gradient does not reach it" in evidence.inconclusive
    )
    assert evidence.inconclusive_metrics == [
        "min_breaking_epsilon_state",
        "action_deviation_at_max_epsilon_state",
    ]
    assert {r["input"] for r in evidence.tables["inputs"]} == {"top", "wrist"}
    finding = judge(check, evidence)
    assert finding.status == Status.INCONCLUSIVE and "min_breaking_epsilon_state" in finding.message


# ART and the native attack run the same arithmetic (sign step, clip, project) in float32; they can
# differ only where a gradient component's sign flips with summation order.
AGREEMENT_RTOL = 1e-3


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_art_and_native_attacks_agree_on_a_loaded_checkpoint(
    method: str, dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    checkpoint = save_checkpoint(tiny_act(), tmp_path_factory.mktemp("act"))
    deviations = {}
    for implementation in ("native", "art"):
        params = AdversarialParams(
            frames=2,
            method=method,
            steps=2,
            epsilons=[0.0, 4 / 255],
            inputs=["observation.state"],
            state_epsilons=[0.0, 0.1],
            implementation=implementation,
        )
        ctx = context(tmp_path_factory.mktemp(implementation), checkpoint_dir=checkpoint, dataset=dataset)
        tables = Adversarial().measure(ctx, params).tables
        deviations[implementation] = [r["mean_action_deviation"] for r in tables["sweep"] + tables["inputs"]]

    # all cameras at ε = 0, 4/255, then the state (unclipped, ε in state stds) at ε = 0, 0.1
    assert deviations["native"][0] == deviations["art"][0] == deviations["native"][2] == 0.0
    assert deviations["native"][1] > 0 and deviations["native"][3] > 0
    assert deviations["art"] == pytest.approx(deviations["native"], rel=AGREEMENT_RTOL)


@pytest.mark.parametrize("name", [n for n, c in CORRUPTIONS.items() if c.target == "camera"])
def test_each_camera_corruption_changes_images_more_at_higher_severity(name: str) -> None:
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    change = []
    for severity in (1, 5):
        corrupted = corrupt_images(name, images, severity, torch.Generator().manual_seed(1))
        assert corrupted.shape == images.shape and corrupted.min() >= 0 and corrupted.max() <= 1
        change.append(float((corrupted - images).abs().mean()))
    assert change[1] > change[0] > 0


PUSHT_FEATURES = {
    "observation.image": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
    "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
    "action": PolicyFeature(FeatureType.ACTION, (2,)),
}


def pusht_policy() -> PolicyAdapter:
    """A random-weights tiny ACT with PushT's features, normalised with PushT-like statistics."""
    policy = tiny_act(PUSHT_FEATURES)[0]
    positions = {"mean": torch.full((2,), 256.0), "std": torch.full((2,), 100.0)}
    stats = {
        "observation.image": {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)},
        "observation.state": positions,
        "action": positions,
    }
    return PolicyAdapter(policy, *make_pre_post_processors(policy.config, dataset_stats=stats))


def test_closed_loop_rolls_out_pusht_clean_and_perturbed(tmp_path: Path) -> None:
    params = ClosedLoopParams(
        episodes=1,
        max_steps=8,
        perturbations=[
            Perturbation(corruption="occlusion", severity=5),
            Perturbation(corruption="state_noise"),
        ],
    )
    result = ClosedLoop().measure(context(tmp_path, policy=pusht_policy()), params)

    assert [r["condition"] for r in result.tables["rollouts"]] == ["clean", "occlusion_s5", "state_noise_s3"]
    assert all(r["steps"] == 8 for r in result.tables["rollouts"])
    for condition in ("clean", "occlusion_s5", "state_noise_s3"):
        assert 0 <= result.metrics[f"success_rate_{condition}"] <= 1
        assert 0 <= result.metrics[f"mean_max_reward_{condition}"] <= 1
    assert -1 <= result.metrics["success_rate_drop"] <= 1 and -1 <= result.metrics["reward_drop"] <= 1


def test_closed_loop_refuses_a_policy_that_does_not_fit_pusht(tmp_path: Path) -> None:
    policy = PolicyAdapter(*tiny_act())
    with pytest.raises(TrustaiUserError, match="does not fit the PushT simulation") as caught:
        ClosedLoop().measure(context(tmp_path, policy=policy), ClosedLoopParams(episodes=1, max_steps=2))
    assert "one RGB camera" in str(caught.value) and "2-dof actions" in str(caught.value)

    check = Check(id="closed-loop", audit="robustness.closed_loop", stage=Stage.CHECKPOINT)
    evidence = measure_with_limit(check, context(tmp_path, policy=policy), tmp_path)
    assert evidence.error is not None and "does not fit the PushT simulation" in evidence.error


def test_checkpoint_audits_without_a_dataset_or_policy_are_errors_not_crashes(tmp_path: Path) -> None:
    check = Check(id="corruptions", audit="robustness.corruptions", stage=Stage.CHECKPOINT)
    evidence = measure_with_limit(check, context(tmp_path), tmp_path)
    assert evidence.error is not None and "needs dataset frames" in evidence.error
