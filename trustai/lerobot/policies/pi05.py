"""π0.5 (``pi05``): flow-matching sampling through the undecorated ``PI05Pytorch.sample_actions`` with
a fixed noise tensor (seeded, shared by every row).

Its state enters only as discretised text tokens in the prompt, so gradients reach the cameras and
the prompt's token embeddings but not the state. The PaliGemma tokenizer is named in
``policy_preprocessor.json`` and must be a local folder or already in the Hugging Face cache.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from torch import Tensor, nn

from trustai.lerobot.policies.driver import Batch, PolicyDriver, shared_noise, tokenizer_backbones

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy


def _chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    from lerobot.policies.pi05.modeling_pi05 import PI05Pytorch

    config = policy.config
    images, image_masks = policy._preprocess_images(batch)
    tokens, token_masks = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
    noise = shared_noise(generator, len(tokens), (config.chunk_size, config.max_action_dim))
    sample_actions = inspect.unwrap(PI05Pytorch.sample_actions)
    actions = sample_actions(policy.model, images, image_masks, tokens, token_masks, noise=noise)
    return actions[:, :, : config.action_feature.shape[0]]


def paligemma_token_embedding(policy: PreTrainedPolicy) -> nn.Module:
    """The PaliGemma token embedding both π0 and π0.5 embed their prompt with."""
    return policy.model.paligemma_with_expert.paligemma.model.language_model.get_input_embeddings()


DRIVER = PolicyDriver(
    _chunk,
    lambda policy: policy.config.chunk_size,
    has_language=True,
    state_differentiable=False,
    language_embedding=paligemma_token_embedding,
    backbones=lambda config, preprocessor, folder: tokenizer_backbones(preprocessor, "PaliGemma tokenizer"),
)
