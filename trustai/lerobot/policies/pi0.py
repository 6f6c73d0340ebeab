"""π0 (``pi0``): flow-matching sampling through the undecorated ``PI0Pytorch.sample_actions`` with a
fixed noise tensor (seeded, shared by every row).

Unlike π0.5 it reads the state as a continuous vector (``state_proj``), so gradients reach the
cameras, the state and the prompt's token embeddings. Its PaliGemma tokenizer, named in
``policy_preprocessor.json``, must be a local folder or already in the Hugging Face cache.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from torch import Tensor

from trustai.lerobot.policies.driver import Batch, PolicyDriver, shared_noise, tokenizer_backbones
from trustai.lerobot.policies.pi05 import paligemma_token_embedding

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy


def _chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    from lerobot.policies.pi0.modeling_pi0 import PI0Pytorch

    config = policy.config
    images, image_masks = policy._preprocess_images(batch)
    state = policy.prepare_state(batch)
    tokens, token_masks = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
    noise = shared_noise(generator, len(tokens), (config.chunk_size, config.max_action_dim))
    sample_actions = inspect.unwrap(PI0Pytorch.sample_actions)
    actions = sample_actions(policy.model, images, image_masks, tokens, token_masks, state, noise=noise)
    return actions[:, :, : config.action_feature.shape[0]]


DRIVER = PolicyDriver(
    _chunk,
    lambda policy: policy.config.chunk_size,
    has_language=True,
    language_embedding=paligemma_token_embedding,
    backbones=lambda config, preprocessor, folder: tokenizer_backbones(preprocessor, "PaliGemma tokenizer"),
)
