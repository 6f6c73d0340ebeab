"""LIBERO closed loop (slow, not part of `make test`; run `pytest -m slow tests/test_libero.py`): one
LIBERO task for a few steps, clean and under LIBERO-Plus-style camera, lighting and object-position
changes, and an instruction paraphrase for a language policy. Needs `trustai[libero]` and
`scripts/setup-libero` (docs/simulators.md); skipped with the reason when LIBERO is not set up."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.pi05 import processor_pi05
from lerobot.processor import TokenizerProcessorStep
from trustai.audits.robustness import ClosedLoop, ClosedLoopParams

from tests.policies_fixtures import tiny_act, tiny_pi05, write_tiny_tokenizer
from tests.test_robustness import context
from trustai.lerobot.adapter import PolicyAdapter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

LIBERO_FEATURES = {
    "observation.images.image": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
    "observation.state": PolicyFeature(FeatureType.STATE, (8,)),
    "action": PolicyFeature(FeatureType.ACTION, (7,)),
}
WORLD = ["camera_viewpoint", "lighting", "object_position"]


@pytest.fixture(scope="module", autouse=True)
def libero_set_up() -> None:
    """Skip unless hf-libero is installed and scripts/setup-libero's check passes."""
    if importlib.util.find_spec("libero") is None:
        pytest.skip("hf-libero is not installed (pip install 'trustai[libero]')")
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "setup-libero"), "--check"], capture_output=True, text=True
    )
    if check.returncode != 0:
        pytest.skip(f"LIBERO is not set up: {check.stderr.strip()}")


def libero_stats() -> dict[str, dict[str, torch.Tensor]]:
    """LIBERO-like normalisation statistics (relative actions around zero), every kind a policy uses."""

    def stats(shape: tuple[int, ...], mean: float, std: float) -> dict[str, torch.Tensor]:
        full = {"mean": mean, "std": std, "min": mean - 3 * std, "max": mean + 3 * std}
        full |= {"q01": mean - 2 * std, "q99": mean + 2 * std}
        return {name: torch.full(shape, value) for name, value in full.items()}

    return {
        "observation.images.image": stats((3, 1, 1), 0.5, 0.25),
        "observation.state": stats((8,), 0.0, 1.0),
        "action": stats((7,), 0.0, 0.3),
    }


def normalised(policy: torch.nn.Module, tokenizer: Path | None = None) -> PolicyAdapter:
    """``policy`` with LIBERO-like statistics; a π0.5 tokenises with ``tokenizer`` (offline)."""

    def local_tokenizer(**kwargs: Any) -> TokenizerProcessorStep:
        return TokenizerProcessorStep(**{**kwargs, "tokenizer_name": str(tokenizer)})

    with mock.patch.object(processor_pi05, "TokenizerProcessorStep", local_tokenizer):
        return PolicyAdapter(policy, *make_pre_post_processors(policy.config, dataset_stats=libero_stats()))


def test_a_libero_task_runs_clean_and_under_each_world_change(tmp_path: Path) -> None:
    params = ClosedLoopParams(
        simulator="libero",
        scenario="libero_object/0",
        episodes=1,
        max_steps=3,
        perturbations=[{"scene": name, "severity": 5} for name in WORLD],
    )
    result = ClosedLoop().measure(context(tmp_path, policy=normalised(tiny_act(LIBERO_FEATURES)[0])), params)

    rows = result.tables["rollouts"]
    assert [r["condition"] for r in rows] == ["clean", *(f"{name}_s5" for name in WORLD)]
    assert all(r["steps"] == 3 and r["instruction"].startswith("pick up") for r in rows)
    for condition in ("clean", *(f"{name}_s5" for name in WORLD)):
        assert result.metrics[f"success_rate_{condition}"] == 0.0
    assert result.inconclusive is not None and "below min_clean_success" in result.inconclusive
    assert set(result.inconclusive_metrics or []) >= {"success_rate_drop", "success_rate_drop_lighting_s5"}


def test_a_language_policy_is_told_a_paraphrase(tmp_path: Path) -> None:
    tokenizer = write_tiny_tokenizer(tmp_path / "tokenizer")
    params = ClosedLoopParams(
        simulator="libero",
        scenario="libero_object/0",
        episodes=1,
        max_steps=2,
        perturbations=[{"scene": "instruction", "severity": 2}],
    )
    policy = normalised(tiny_pi05(tokenizer, LIBERO_FEATURES)[0], tokenizer)
    result = ClosedLoop().measure(context(tmp_path, policy=policy), params)

    clean, paraphrased = result.tables["rollouts"]
    assert paraphrased["condition"] == "instruction_s2"
    assert paraphrased["instruction"] != clean["instruction"] and paraphrased["instruction"].endswith(".")
    assert "success_rate_instruction_s2" in result.metrics
