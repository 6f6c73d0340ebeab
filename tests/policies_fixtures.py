"""Tiny real LeRobot policies with random weights, built offline, for tests of trustai audits.

Every builder returns ``(policy, preprocessor, postprocessor)`` for a dataset with two 3×32×32
cameras and a 14-dof state/action (``DATASET_FEATURES``), normalised with ``dataset_stats()``.
``save_checkpoint`` writes them as a LeRobot ``pretrained_model/`` folder.

π0.5 is LeRobot's real ``PI05Policy`` whose Gemma/SigLIP sizes are shrunk: ``PI05Pytorch`` only
knows the ``gemma_2b``/``gemma_300m`` variants and hard-codes SigLIP and vocabulary sizes, so
``tiny_pi05_architecture()`` patches the module's ``get_gemma_config`` and the two Hugging Face model
classes it instantiates. Keep that context active while building *and* loading a tiny π0.5
checkpoint (its config.json still says ``gemma_2b``). Its tokenizer is a word-level tokenizer saved
to a local folder by ``write_tiny_tokenizer``; the preprocessor records that folder's path.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.pi0 import modeling_pi0
from lerobot.policies.pi05 import modeling_pi05, processor_pi05
from lerobot.policies.pi05.configuration_pi05 import PI05Config
from lerobot.policies.pi_gemma import PaliGemmaForConditionalGenerationWithPiGemma, PiGemmaForCausalLM
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.processor import TokenizerProcessorStep

from trustai.lerobot.synthetic import make_synthetic_dataset

CAMERAS = ("observation.images.top", "observation.images.wrist")
IMAGE_SHAPE = (3, 32, 32)
DOF = 14
TASKS = ("pick the cube", "place the cube")

# LeRobot dataset meta.features of the dataset every tiny policy is built for.
DATASET_FEATURES: dict[str, dict[str, Any]] = {
    **{
        camera: {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channels"]}
        for camera in CAMERAS
    },
    "observation.state": {"dtype": "float32", "shape": [DOF], "names": None},
    "action": {"dtype": "float32", "shape": [DOF], "names": None},
}

Built = tuple[PreTrainedPolicy, Any, Any]

# Every Gemma in the tiny π0.5: 8 heads because PI05's joint attention hard-codes 8 heads.
TINY_GEMMA = modeling_pi05.GemmaConfig(width=32, depth=1, mlp_dim=64, num_heads=8, num_kv_heads=1, head_dim=4)
TINY_VOCAB = list(
    dict.fromkeys(
        [
            "<pad>",
            "<unk>",
            "<bos>",
            "<eos>",
            *(str(i) for i in range(256)),  # π0.5 writes the state as 256-bin integers into the prompt
            *["Task", "State", "Action", ":", ",", ";"],
            *" ".join(TASKS).split(),
        ]
    )
)


def policy_features() -> dict[str, PolicyFeature]:
    """Input and output features (cameras, state, action) of ``DATASET_FEATURES``."""
    return {
        **{camera: PolicyFeature(FeatureType.VISUAL, IMAGE_SHAPE) for camera in CAMERAS},
        "observation.state": PolicyFeature(FeatureType.STATE, (DOF,)),
        "action": PolicyFeature(FeatureType.ACTION, (DOF,)),
    }


def dataset_stats() -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation statistics (mean/std, min/max, quantiles) for every feature."""
    stats = {}
    for key, feature in policy_features().items():
        shape = (3, 1, 1) if feature.type is FeatureType.VISUAL else feature.shape
        stats[key] = {
            "mean": torch.full(shape, 0.5),
            "std": torch.full(shape, 0.25),
            "min": torch.zeros(shape),
            "max": torch.ones(shape),
            "q01": torch.zeros(shape),
            "q99": torch.ones(shape),
        }
    return stats


def _split(features: dict[str, PolicyFeature]) -> dict[str, dict[str, PolicyFeature]]:
    return {
        "input_features": {k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        "output_features": {k: f for k, f in features.items() if f.type is FeatureType.ACTION},
    }


def tiny_act(features: dict[str, PolicyFeature] | None = None) -> Built:
    """ACT with a randomly initialised ResNet-18, dim_model 32, one layer each, chunks of 5."""
    torch.manual_seed(0)
    config = ACTConfig(
        **_split(features or policy_features()),
        device="cpu",
        pretrained_backbone_weights=None,
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_vae_encoder_layers=1,
        latent_dim=8,
        chunk_size=5,
        n_action_steps=5,
    )
    return _with_processors(ACTPolicy(config))


def tiny_diffusion(features: dict[str, PolicyFeature] | None = None) -> Built:
    """Diffusion: one shared random ResNet-18 on images resized to 64×64, 2 obs steps, 3 DDPM steps."""
    torch.manual_seed(0)
    config = DiffusionConfig(
        **_split(features or policy_features()),
        device="cpu",
        pretrained_backbone_weights=None,
        n_obs_steps=2,
        horizon=8,
        n_action_steps=5,
        drop_n_last_frames=2,
        # ResNet-18 shrinks 32×32 to a 1×1 map, where the spatial softmax is constant (no pixel gradient).
        resize_shape=(64, 64),
        crop_shape=(56, 56),
        use_group_norm=True,
        use_separate_rgb_encoder_per_camera=False,
        spatial_softmax_num_keypoints=8,
        down_dims=(16, 32),
        kernel_size=3,
        diffusion_step_embed_dim=16,
        num_inference_steps=3,
    )
    return _with_processors(DiffusionPolicy(config))


def write_tiny_tokenizer(folder: Path) -> Path:
    """Save a word-level tokenizer over ``TINY_VOCAB`` to ``folder`` (loadable by AutoTokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_VOCAB)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_paligemma(config: Any) -> PaliGemmaForConditionalGenerationWithPiGemma:
    vision = config.vision_config
    vision.hidden_size, vision.intermediate_size, vision.projection_dim = 32, 64, TINY_GEMMA.width
    vision.num_hidden_layers, vision.num_attention_heads, vision.patch_size = 1, 2, 8
    config.text_config.vocab_size = len(TINY_VOCAB)
    return PaliGemmaForConditionalGenerationWithPiGemma(config=config)


def _tiny_expert(config: Any) -> PiGemmaForCausalLM:
    config.vocab_size = len(TINY_VOCAB)
    return PiGemmaForCausalLM(config=config)


@contextlib.contextmanager
def tiny_pi05_architecture() -> Iterator[None]:
    """While active, every ``PI05Policy`` and ``PI0Policy`` built (or loaded) has the tiny Gemma/SigLIP
    sizes (π0 builds its PaliGemma and expert exactly as π0.5 does).

    Gemma: width 32, 1 layer, MLP 64, 8 heads × head_dim 4, 1 KV head (VLM and action expert);
    SigLIP: hidden 32, 1 layer, 2 heads, MLP 64, patch 8; vocabulary ``TINY_VOCAB``.
    """
    with contextlib.ExitStack() as patches:
        for module in (modeling_pi05, modeling_pi0):
            patches.enter_context(mock.patch.object(module, "get_gemma_config", lambda variant: TINY_GEMMA))
            patches.enter_context(
                mock.patch.object(module, "PaliGemmaForConditionalGenerationWithPiGemma", _tiny_paligemma)
            )
            patches.enter_context(mock.patch.object(module, "PiGemmaForCausalLM", _tiny_expert))
        yield


def tiny_pi05(tokenizer: Path, features: dict[str, PolicyFeature] | None = None) -> Built:
    """π0.5 (tiny architecture, 32×32 images, chunks of 5, 2 Euler steps) tokenising with ``tokenizer``.

    ``tokenizer`` is a folder from ``write_tiny_tokenizer``; it replaces the hub PaliGemma tokenizer.
    """
    return tiny_paligemma_policy(
        PI05Config, modeling_pi05.PI05Policy, processor_pi05, tokenizer, features, tokenizer_max_length=32
    )


def tiny_paligemma_policy(
    config_class: Any,
    policy_class: Any,
    processor_module: Any,
    tokenizer: Path,
    features: dict[str, PolicyFeature] | None,
    tokenizer_max_length: int,
) -> Built:
    """A π0-family policy (π0, π0.5) with the tiny Gemma/SigLIP sizes of ``tiny_pi05_architecture``,
    32×32 images, chunks of 5 and 2 Euler steps, whose processors tokenise with ``tokenizer``."""
    torch.manual_seed(0)
    config = config_class(
        **_split(features or policy_features()),
        device="cpu",
        chunk_size=5,
        n_action_steps=5,
        max_state_dim=16,
        max_action_dim=16,
        num_inference_steps=2,
        image_resolution=(32, 32),
        tokenizer_max_length=tokenizer_max_length,
    )
    with tiny_pi05_architecture():
        policy = policy_class(config)

    def local_tokenizer(**kwargs: Any) -> TokenizerProcessorStep:
        return TokenizerProcessorStep(**{**kwargs, "tokenizer_name": str(tokenizer)})

    with mock.patch.object(processor_module, "TokenizerProcessorStep", local_tokenizer):
        return _with_processors(policy)


def _with_processors(policy: PreTrainedPolicy) -> Built:
    policy.eval()
    preprocessor, postprocessor = make_pre_post_processors(policy.config, dataset_stats=dataset_stats())
    return policy, preprocessor, postprocessor


def save_checkpoint(built: Built, folder: Path) -> Path:
    """Write policy and processors as LeRobot does into ``folder/pretrained_model``; return that folder."""
    policy, preprocessor, postprocessor = built
    target = folder / "pretrained_model"
    policy.save_pretrained(target)
    preprocessor.save_pretrained(target)
    postprocessor.save_pretrained(target)
    return target


def observation_batch(size: int, seed: int = 0, *, language: bool = True) -> dict[str, Any]:
    """A raw observation batch in dataset units: cameras in [0, 1] (B×3×32×32), state B×14, tasks."""
    generator = torch.Generator().manual_seed(seed)
    batch: dict[str, Any] = {
        camera: torch.rand(size, *IMAGE_SHAPE, generator=generator) for camera in CAMERAS
    }
    batch["observation.state"] = torch.rand(size, DOF, generator=generator)
    if language:
        batch["task"] = [TASKS[i % len(TASKS)] for i in range(size)]
    return batch


def training_batch(size: int, horizon: int, seed: int = 0) -> dict[str, Any]:
    """An observation batch plus ground-truth actions (B×horizon×14) and ``action_is_pad``, as collated."""
    batch = observation_batch(size, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    batch["action"] = torch.rand(size, horizon, DOF, generator=generator)
    batch["action_is_pad"] = torch.zeros(size, horizon, dtype=torch.bool)
    batch["action_is_pad"][:, -1] = True
    return batch


def features_dataset(root: Path) -> Path:
    """A synthetic LeRobot dataset with the features every tiny policy here is built for: two 32×32
    cameras and a DOF-dim state and action (2 episodes of 8 frames)."""
    return make_synthetic_dataset(
        root,
        cameras=CAMERAS,
        image_size=(32, 32),
        state_dim=DOF,
        action_dim=DOF,
        episodes=2,
        frames_per_episode=8,
    )
