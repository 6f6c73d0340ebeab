"""PolicyAdapter on real tiny ACT, Diffusion, π0, π0.5, SmolVLA and GR00T N1.7 policies saved and loaded
as LeRobot checkpoints (the VLAs on tiny local backbones written by tests/vla_backbones.py)."""

import contextlib
import json
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import huggingface_hub.constants
import pytest
import torch

from tests.policies_fixtures import (
    CAMERAS,
    DATASET_FEATURES,
    observation_batch,
    save_checkpoint,
    tiny_act,
    tiny_diffusion,
    tiny_pi05,
    tiny_pi05_architecture,
    training_batch,
    write_tiny_tokenizer,
)
from tests.vla_backbones import (
    tiny_groot,
    tiny_pi0,
    tiny_smolvla,
    write_groot_base,
    write_qwen3vl_backbone,
    write_smolvlm_backbone,
)
from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import PolicyAdapter
from trustai.lerobot.policies import GOVERNED

HORIZON = {"act": 5, "diffusion": 8, "pi0": 5, "pi05": 5, "smolvla": 5, "groot": 5}  # actions per sample
LANGUAGE = {"pi0", "pi05", "smolvla", "groot"}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module", autouse=True)
def tiny_pi05_sizes() -> Iterator[None]:
    with tiny_pi05_architecture():
        yield


@pytest.fixture(scope="module")
def backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backbones")
    qwen = write_qwen3vl_backbone(folder / "qwen3vl")
    return {
        "smolvlm": write_smolvlm_backbone(folder / "smolvlm"),
        "qwen3vl": qwen,
        "groot": write_groot_base(folder / "groot-n1.7-base", qwen),
    }


@pytest.fixture(scope="module", params=GOVERNED)
def built(
    request: pytest.FixtureRequest, tokenizer: Path, backbones: dict[str, Path]
) -> tuple[Any, Any, Any]:
    if request.param == "diffusion":
        pytest.importorskip("diffusers", reason="LeRobot's Diffusion policy needs lerobot[diffusion]")
    builders = {
        "act": tiny_act,
        "diffusion": tiny_diffusion,
        "pi0": lambda: tiny_pi0(tokenizer),
        "pi05": lambda: tiny_pi05(tokenizer),
        "smolvla": lambda: tiny_smolvla(backbones["smolvlm"]),
        "groot": lambda: tiny_groot(backbones["groot"]),
    }
    return builders[request.param]()


@pytest.fixture(scope="module")
def checkpoint(built: tuple[Any, Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(built, tmp_path_factory.mktemp(built[0].config.type))


@pytest.fixture(scope="module")
def adapter(checkpoint: Path) -> PolicyAdapter:
    return PolicyAdapter.from_checkpoint(checkpoint.parent)


@pytest.fixture(scope="module")
def act_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_act(), tmp_path_factory.mktemp("act"))


@pytest.fixture(scope="module")
def pi05_checkpoint(tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_pi05(tokenizer), tmp_path_factory.mktemp("pi05"))


@pytest.fixture
def pi05_copy(pi05_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pi05_checkpoint, tmp_path / "pretrained_model"))


@pytest.fixture
def act_copy(act_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(act_checkpoint, tmp_path / "pretrained_model"))


def test_describes_the_policy_inputs_and_outputs(adapter: PolicyAdapter, built: tuple[Any, Any, Any]) -> None:
    language = built[0].config.type in LANGUAGE
    assert adapter.policy_type == built[0].config.type
    assert adapter.camera_keys == list(CAMERAS)
    assert adapter.state_key == "observation.state"
    assert adapter.has_language is language
    assert (adapter.action_dim, adapter.chunk_size) == (14, 5)
    kinds = [(m.name, m.kind, m.shape) for m in adapter.modalities]
    assert kinds[:3] == [
        ("observation.images.top", "camera", (3, 32, 32)),
        ("observation.images.wrist", "camera", (3, 32, 32)),
        ("observation.state", "state", (14,)),
    ]
    assert kinds[3:] == ([("task", "language", ())] if language else [])
    assert (adapter.language_embedding is not None) is language


def test_actions_are_deterministic_and_differentiable(adapter: PolicyAdapter) -> None:
    batch = observation_batch(3)
    camera = batch["observation.images.top"].requires_grad_(True)
    state = batch["observation.state"].requires_grad_(True)

    actions = adapter.actions(batch)
    actions.square().sum().backward()

    assert actions.shape == (3, 5, 14)
    assert torch.isfinite(actions).all()
    assert torch.equal(actions.detach(), adapter.actions(batch).detach())
    assert camera.grad is not None and camera.grad.abs().sum() > 0
    if adapter.policy_type == "pi05":
        assert state.grad is None  # π0.5 reads the state as discretised text tokens
    else:
        assert state.grad is not None and state.grad.abs().sum() > 0


def test_actions_equal_lerobot_inference_with_the_same_noise(adapter: PolicyAdapter) -> None:
    # GR00T draws its noise for the whole batch from the global RNG: one row gets the adapter's noise.
    rows = 1 if adapter.policy_type == "groot" else 2
    batch = observation_batch(rows)
    policy, config = adapter.policy, adapter.policy.config
    processed = adapter.preprocessor(batch)
    kwargs = {}
    if adapter.policy_type not in ("act", "groot"):
        shape = (config.horizon, 14) if adapter.policy_type == "diffusion" else (config.chunk_size, 16)
        noise = torch.randn((1, *shape), generator=torch.Generator().manual_seed(adapter.seed))
        kwargs["noise"] = noise.expand(rows, *shape)
    if adapter.policy_type == "diffusion":  # two observation steps: repeat the single frame
        for key in [*CAMERAS, "observation.state"]:
            processed[key] = torch.stack([processed[key]] * config.n_obs_steps, dim=1)

    torch.manual_seed(adapter.seed)
    expected = adapter.postprocessor(policy.predict_action_chunk(processed, **kwargs))

    with torch.no_grad():
        assert torch.allclose(adapter.actions(batch), expected, atol=1e-5)


def test_actions_leave_train_mode_and_global_rng_alone(built: tuple[Any, Any, Any]) -> None:
    live = PolicyAdapter(*built)
    live.policy.train()
    rng = torch.get_rng_state()
    try:
        with torch.no_grad():
            live.actions(observation_batch(1))
        assert live.policy.training
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        live.policy.eval()


def test_live_policy_and_its_checkpoint_predict_the_same(
    adapter: PolicyAdapter, built: tuple[Any, Any, Any]
) -> None:
    batch = observation_batch(2, seed=3)
    with torch.no_grad():
        assert torch.allclose(PolicyAdapter(*built).actions(batch), adapter.actions(batch))


def test_per_sample_loss_is_finite_deterministic_and_per_row(adapter: PolicyAdapter) -> None:
    batch = training_batch(2, HORIZON[adapter.policy_type])
    with torch.no_grad():
        losses = adapter.per_sample_loss(batch)
        second_row = adapter.per_sample_loss({k: v[1:] for k, v in batch.items()})

    assert losses.shape == (2,)
    assert torch.isfinite(losses).all() and (losses > 0).all()
    assert torch.equal(losses, adapter.per_sample_loss(batch).detach())
    assert torch.allclose(second_row, losses[1:])


def test_accepts_matching_dataset_features_and_lists_mismatches(adapter: PolicyAdapter) -> None:
    adapter.validate_dataset_features(DATASET_FEATURES)

    features = {k: v for k, v in DATASET_FEATURES.items() if k != "observation.images.wrist"}
    features["observation.state"] = {**features["observation.state"], "shape": [12]}
    with pytest.raises(TrustaiUserError) as caught:
        adapter.validate_dataset_features(features)
    message = str(caught.value)
    assert "missing observation.images.wrist" in message
    assert "observation.state has shape (12,), the policy expects (14,)" in message
    assert "How to fix" in message


def test_refuses_pickle_weights_without_unpickling(act_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.marker"

    class Payload:
        def __init__(self, target: Path):
            self.target = target

        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(self.target), "w"))

    control = tmp_path / "control.marker"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists(), "the payload must really run code when unpickled"

    (act_copy / "model.safetensors").unlink()
    torch.save({"weights": Payload(marker)}, act_copy / "model.bin")

    with pytest.raises(TrustaiUserError, match=r"pickle format \(model\.bin\)") as caught:
        PolicyAdapter.from_checkpoint(act_copy)
    assert "save_pretrained" in str(caught.value)
    assert not marker.exists()


def test_refuses_truncated_safetensors(act_copy: Path) -> None:
    weights = act_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TrustaiUserError, match="corrupt safetensors file") as caught:
        PolicyAdapter.from_checkpoint(act_copy)
    assert str(weights) in str(caught.value) and "truncated" in str(caught.value)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda folder: (folder / "config.json").unlink(), "config.json is missing"),
        (lambda folder: (folder / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda folder: (folder / "config.json").write_text("{}"), "names no policy 'type'"),
        (lambda folder: (folder / "model.safetensors").unlink(), "model.safetensors is missing"),
        (
            lambda folder: (folder / "policy_preprocessor.json").unlink(),
            "policy_preprocessor.json is missing",
        ),
        (lambda folder: _edit_config(folder, type="vqbet"), "'vqbet' is not supported .*VQ codebook"),
        (lambda folder: _edit_config(folder, dim_model=64), "act policy could not be built and loaded"),
        (lambda folder: shutil.rmtree(folder), "checkpoint folder not found"),
    ],
)
def test_refuses_broken_checkpoints_with_a_clear_message(act_copy: Path, damage: Any, expected: str) -> None:
    damage(act_copy)
    with pytest.raises(TrustaiUserError, match=expected) as caught:
        PolicyAdapter.from_checkpoint(act_copy)
    assert "How to fix" in str(caught.value)


def test_detects_weights_pi05_would_silently_skip(pi05_copy: Path) -> None:
    _edit_config(pi05_copy, max_action_dim=32)  # PI05Policy.from_pretrained swallows the size mismatch
    with pytest.raises(TrustaiUserError, match="do not fit the architecture"):
        PolicyAdapter.from_checkpoint(pi05_copy)


@contextlib.contextmanager
def _no_unpickling() -> Iterator[None]:
    with (
        mock.patch.object(torch, "load", side_effect=AssertionError("torch.load called")),
        mock.patch.object(pickle, "load", side_effect=AssertionError("pickle.load called")),
        mock.patch.object(pickle, "loads", side_effect=AssertionError("pickle.loads called")),
    ):
        yield


def test_loading_never_unpickles(checkpoint: Path) -> None:
    with _no_unpickling():
        PolicyAdapter.from_checkpoint(checkpoint)


def test_loading_ignores_imagenet_backbone_weights_named_in_the_config(act_copy: Path) -> None:
    # torchvision would download them and torch.load them; model.safetensors overwrites them anyway.
    _edit_config(act_copy, pretrained_backbone_weights="ResNet18_Weights.IMAGENET1K_V1")
    with _no_unpickling():
        adapter = PolicyAdapter.from_checkpoint(act_copy)
    assert adapter.actions(observation_batch(1)).shape == (1, 5, 14)


def test_language_policy_tokenizer_can_be_pointed_at_a_local_folder(
    pi05_copy: Path, tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    preprocessor = json.loads((pi05_copy / "policy_preprocessor.json").read_text())
    for step in preprocessor["steps"]:
        if step["registry_name"] == "tokenizer_processor":
            step["config"]["tokenizer_name"] = "google/paligemma-3b-pt-224"  # what real π0.5 checkpoints name
    (pi05_copy / "policy_preprocessor.json").write_text(json.dumps(preprocessor))

    with pytest.raises(TrustaiUserError, match="PaliGemma tokenizer 'google/paligemma-3b-pt-224'") as caught:
        PolicyAdapter.from_checkpoint(pi05_copy)
    assert "neither a local folder nor in the Hugging Face cache" in str(caught.value)
    assert "policy_preprocessor.json (tokenizer_name)" in str(caught.value)
    adapter = PolicyAdapter.from_checkpoint(pi05_copy, tokenizer=tokenizer)
    assert adapter.actions(observation_batch(1)).shape == (1, 5, 14)


def _edit_config(folder: Path, **changes: Any) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_every_lerobot_policy_type_is_governed_or_refused_with_a_reason() -> None:
    import lerobot.policies  # noqa: F401  (registers every config type)
    from lerobot.configs import PreTrainedConfig

    from trustai.lerobot.policies import REFUSED

    known = set(PreTrainedConfig.get_known_choices())
    assert known == set(GOVERNED) | set(REFUSED), "a LeRobot policy type is neither governed nor refused"
    assert not set(GOVERNED) & set(REFUSED)


@pytest.fixture(scope="module")
def smolvla_checkpoint(backbones: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_smolvla(backbones["smolvlm"]), tmp_path_factory.mktemp("smolvla"))


@pytest.fixture(scope="module")
def groot_checkpoint(backbones: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tiny_groot(backbones["groot"])
    return save_checkpoint(built, tmp_path_factory.mktemp("groot"))


def _edit_step(folder: Path, registry_name: str, **changes: Any) -> None:
    file = folder / "policy_preprocessor.json"
    pipeline = json.loads(file.read_text())
    for step in pipeline["steps"]:
        if step["registry_name"] == registry_name:
            step["config"].update(changes)
    file.write_text(json.dumps(pipeline))


@pytest.mark.parametrize(
    ("policy", "damage", "expected", "where"),
    [
        (
            "smolvla",
            lambda folder, tmp: _edit_config(
                folder, vlm_model_name="HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
            ),
            "SmolVLM config and processor 'HuggingFaceTB/SmolVLM2-500M-Video-Instruct' that vlm_model_name "
            "names is neither a local folder nor in the Hugging Face cache",
            "config.json (vlm_model_name)",
        ),
        (
            "smolvla",
            lambda folder, tmp: _edit_step(folder, "tokenizer_processor", tokenizer_name=str(tmp / "moved")),
            "SmolVLM tokenizer .* folder does not exist",
            "policy_preprocessor.json (tokenizer_name)",
        ),
        (
            "groot",
            # What every pipeline LeRobot 0.6.1 makes for GR00T names.
            lambda folder, tmp: _edit_step(
                folder, "groot_n1_7_vlm_encode_v1", model_name="nvidia/Cosmos-Reason2-2B"
            ),
            "Qwen3-VL processor and tokenizer 'nvidia/Cosmos-Reason2-2B'",
            "policy_preprocessor.json (model_name)",
        ),
        (
            "groot",
            lambda folder, tmp: _edit_config(folder, base_model_path=str(tmp / "no-such-base")),
            "raw GR00T N1.7 checkpoint .* folder does not exist",
            "config.json (base_model_path)",
        ),
        (
            "groot",
            lambda folder, tmp: _base_with_remote_code(folder, tmp),
            r"carries its own Python code \(modeling_evil.py, config.json\)",
            "evil-base",
        ),
    ],
)
def test_refuses_vla_backbones_it_would_download_or_that_carry_code(
    policy: str,
    damage: Any,
    expected: str,
    where: str,
    smolvla_checkpoint: Path,
    groot_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    source = {"smolvla": smolvla_checkpoint, "groot": groot_checkpoint}[policy]
    folder = Path(shutil.copytree(source, tmp_path / "pretrained_model"))
    damage(folder, tmp_path)
    with pytest.raises(TrustaiUserError, match=expected) as caught:
        PolicyAdapter.from_checkpoint(folder)
    assert where in str(caught.value) and "How to fix" in str(caught.value)


def _base_with_remote_code(folder: Path, tmp: Path) -> None:
    """Point the checkpoint at a copy of its raw GR00T base whose config maps to code of its own."""
    config = json.loads((folder / "config.json").read_text())
    base = Path(shutil.copytree(config["base_model_path"], tmp / "evil-base"))
    (base / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    base_config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(
        json.dumps({**base_config, "auto_map": {"AutoModel": "modeling_evil.Evil"}})
    )
    _edit_config(folder, base_model_path=str(base))
