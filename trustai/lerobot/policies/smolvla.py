"""SmolVLA (``smolvla``): flow-matching sampling through ``VLAFlowMatching.sample_actions`` (not
decorated; LeRobot's ``predict_action_chunk`` around it is) with a fixed noise tensor (seeded,
shared by every row). Gradients reach every camera, the state (``state_proj``) and the task's
token embeddings.

Its SmolVLM backbone is built from ``vlm_model_name``: ``AutoConfig`` and ``AutoProcessor`` read it
when the policy is built, and the preprocessor's tokenizer step loads its tokenizer by the same
name. It must be a local folder or already in the Hugging Face cache; its weights are never loaded
(``load_vlm_weights`` is switched off, since ``model.safetensors`` overwrites them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import Tensor, nn

from trustai.lerobot.policies.driver import (
    Backbone,
    Batch,
    PolicyDriver,
    shared_noise,
    tokenizer_backbones,
)

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy


def _chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    config = policy.config
    batch = dict(batch)
    if config.adapt_to_pi_aloha:  # LeRobot's conversion writes in place: give it a copy
        batch[OBS_STATE] = policy._pi_aloha_decode_state(batch[OBS_STATE].clone())
    images, image_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    tokens, token_masks = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
    noise = shared_noise(generator, len(state), (config.chunk_size, config.max_action_dim))
    actions = policy.model.sample_actions(images, image_masks, tokens, token_masks, state, noise=noise)
    actions = actions[:, :, : config.action_feature.shape[0]]
    return policy._pi_aloha_encode_actions(actions.clone()) if config.adapt_to_pi_aloha else actions


def _token_embedding(policy: PreTrainedPolicy) -> nn.Module:
    return policy.model.vlm_with_expert.get_vlm_model().text_model.get_input_embeddings()


def _backbones(config: dict[str, Any], preprocessor: dict[str, Any], folder: Any) -> list[Backbone]:
    found = tokenizer_backbones(preprocessor, "SmolVLM tokenizer")
    if isinstance(config.get("vlm_model_name"), str):
        found.insert(
            0,
            Backbone(
                config["vlm_model_name"], "config.json", "vlm_model_name", "SmolVLM config and processor"
            ),
        )
    return found


DRIVER = PolicyDriver(
    _chunk,
    lambda policy: policy.config.chunk_size,
    has_language=True,
    language_embedding=_token_embedding,
    backbones=_backbones,
    offline_config=lambda config: setattr(config, "load_vlm_weights", False),
)
