"""explainability.attributions on real tiny ACT, Diffusion, π0, π0.5 and SmolVLA policies: a camera the
policy ignores gets no attribution from any method, shares add up, π0.5's state is reported as not
differentiable while the language of every VLA is attributed through its token embeddings, and the
deletion test and heat maps are produced. (GR00T N1.7's attributions: tests/test_vla_training.py.)"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from trustai.audits.explainability import AttributionParams, Attributions, _deletion_metrics
from trustai.audits.explainability.attribution import METHODS, area_under, target_function

from tests.policies_fixtures import (
    features_dataset,
    tiny_act,
    tiny_diffusion,
    tiny_pi05,
    tiny_pi05_architecture,
    write_tiny_tokenizer,
)
from tests.vla_backbones import tiny_pi0, tiny_smolvla, write_smolvlm_backbone
from trustai.core.audit import AuditContext
from trustai.core.evidence import Stage
from trustai.lerobot.adapter import PolicyAdapter
from trustai.lerobot.checkpoint_inputs import FeatureStats

IGNORED = "observation.images.wrist"


@pytest.fixture(scope="module", autouse=True)
def tiny_pi05_sizes() -> Iterator[None]:
    with tiny_pi05_architecture():
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return features_dataset(tmp_path_factory.mktemp("explainability") / "dataset")


def ignoring(built: tuple[Any, Any, Any], camera: str) -> PolicyAdapter:
    """The policy with ``camera``'s pixels multiplied by zero at its input, as zeroed first-layer
    weights would: the camera stays in the autograd graph but nothing flows from it."""
    policy, preprocessor, postprocessor = built

    def preprocess(batch: dict[str, Any]) -> Any:
        return preprocessor({**batch, camera: batch[camera] * 0.0 + 0.5})

    return PolicyAdapter(policy, preprocess, postprocessor)


@pytest.fixture(scope="module", params=["act", "diffusion", "pi0", "pi05", "smolvla"])
def adapter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PolicyAdapter:
    if request.param == "diffusion":
        pytest.importorskip("diffusers", reason="LeRobot's Diffusion policy needs lerobot[diffusion]")
    tokenizer = write_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    builders = {
        "act": tiny_act,
        "diffusion": tiny_diffusion,
        "pi0": lambda: tiny_pi0(tokenizer),
        "pi05": lambda: tiny_pi05(tokenizer),
        "smolvla": lambda: tiny_smolvla(write_smolvlm_backbone(tmp_path_factory.mktemp("smolvlm"))),
    }
    return ignoring(builders[request.param](), IGNORED)


@pytest.fixture(scope="module")
def measured(adapter: PolicyAdapter, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp(f"attributions-{adapter.policy_type}")
    ctx = AuditContext(stage=Stage.CHECKPOINT, artifact_dir=folder, policy=adapter, dataset=dataset)
    params = AttributionParams(
        frames=2, ig_steps=4, occlusion_fraction=0.5, deletion_fractions=[0.1, 0.3], heatmap_frames=1
    )
    return Attributions().measure(ctx, params)


def test_an_ignored_camera_gets_no_attribution_from_any_method(measured: Any) -> None:
    for method in METHODS:
        # Occlusion compares batches of different sizes: float rounding leaves ~1e-5.
        assert measured.metrics[f"share_{method}_wrist"] < 1e-4, method
        assert measured.metrics[f"share_{method}_top"] > 0.01, method


def test_shares_cover_every_differentiable_input_and_sum_to_one(
    measured: Any, adapter: PolicyAdapter
) -> None:
    expected = {"top", "wrist", "language", "state"}
    expected -= set() if adapter.has_language else {"language"}
    expected -= {"state"} if adapter.policy_type == "pi05" else set()
    for method in METHODS:
        shares = {r["input"]: r["share"] for r in measured.tables["shares"] if r["method"] == method}
        assert set(shares) == expected
        assert sum(shares.values()) == pytest.approx(1.0)
    if adapter.policy_type == "pi05":  # the state enters as discretised text tokens
        assert measured.metrics["not_differentiable_inputs"] == 1
        assert [r["input"] for r in measured.tables["not_differentiable"]] == ["state"]
    else:
        assert measured.metrics["not_differentiable_inputs"] == 0


def test_integrated_gradients_reports_its_convergence(measured: Any) -> None:
    assert 0 <= measured.metrics["ig_convergence_delta"] < float("inf")
    assert 0 <= measured.metrics["ig_relative_convergence_delta"] < float("inf")


def test_deletion_test_and_heatmaps_are_produced(measured: Any) -> None:
    metrics = measured.metrics
    assert isinstance(metrics["beats_random"], bool)
    assert metrics["deletion_auc_ratio"] == min(metrics[f"deletion_auc_ratio_{m}"] for m in METHODS)
    assert metrics["deletion_auc_random"] > 0
    assert {r["ranking"] for r in measured.tables["deletion"]} == {*METHODS, "random"}
    assert sorted(p.name for p in measured.artifacts) == ["attribution_heatmaps.png", "deletion_curves.png"]
    assert all(p.stat().st_size > 0 for p in measured.artifacts)


def test_deletion_verdict_compares_each_method_with_random() -> None:
    fractions = [0.1, 0.5]
    curves = {"integrated_gradients": [0.4, 0.8], "saliency": [0.1, 0.2], "random": [0.2, 0.4]}
    metrics = _deletion_metrics(fractions, curves)
    assert metrics["deletion_auc_integrated_gradients"] == pytest.approx(area_under(fractions, [0.4, 0.8]))
    assert metrics["deletion_auc_ratio_integrated_gradients"] == pytest.approx(2.0)
    assert metrics["deletion_auc_ratio"] == pytest.approx(0.5)
    assert metrics["beats_random"] is False
    assert (
        _deletion_metrics(fractions, {"occlusion": [0.0, 0.0], "random": [0.0, 0.0]})["deletion_auc_ratio"]
        == 1.0
    )


def test_targets_are_the_chunk_norm_or_one_standardised_action_dimension() -> None:
    stats = FeatureStats(mean=torch.tensor([1.0, 2.0]), std=torch.tensor([0.5, 2.0]))
    actions = torch.tensor([[[2.0, 2.0], [1.0, 6.0]]])  # standardised: [[2, 0], [0, 2]]
    assert target_function(stats, "chunk_norm", 2)(actions).tolist() == pytest.approx([8**0.5])
    assert target_function(stats, 1, 2)(actions).tolist() == pytest.approx([1.0])
    with pytest.raises(ValueError, match="outside"):
        target_function(stats, 2, 2)
