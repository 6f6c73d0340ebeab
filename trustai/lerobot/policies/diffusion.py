"""Diffusion Policy (``diffusion``): DDPM/DDIM sampling through ``DiffusionModel.generate_actions``.

The initial noise is drawn once from the seeded generator and shared by every row; the scheduler's
per-step noise comes from the global RNG, which the adapter re-seeds inside a forked RNG state (so a
row's actions may depend on the batch it is in: ``FramePolicy`` checks this). Observations without
a time axis are repeated ``n_obs_steps`` times, as ``select_action`` does on an episode's first step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from lerobot.utils.constants import OBS_IMAGES, OBS_STATE
from torch import Tensor

from trustai.lerobot.policies.driver import Batch, PolicyDriver, shared_noise

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy


def _with_time_axis(policy: PreTrainedPolicy, raw: Batch, batch: Batch, preprocessor: Any) -> Batch:
    """Give state and camera inputs the (B, n_obs_steps, ...) layout Diffusion expects."""
    config = policy.config
    batch = dict(batch)
    if batch[OBS_STATE].ndim == 2:
        batch[OBS_STATE] = batch[OBS_STATE].unsqueeze(1).expand(-1, config.n_obs_steps, -1)
    for key in config.image_features:
        if batch[key].ndim == 4:
            batch[key] = batch[key].unsqueeze(1).expand(-1, config.n_obs_steps, -1, -1, -1)
    return batch


def _chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    config = policy.config
    batch = dict(batch)
    batch[OBS_IMAGES] = torch.stack([batch[key] for key in config.image_features], dim=-4)
    size = len(batch[OBS_STATE])
    noise = shared_noise(generator, size, (config.horizon, config.action_feature.shape[0]))
    return policy.diffusion.generate_actions(batch, noise=noise)


DRIVER = PolicyDriver(
    _chunk, lambda policy: policy.config.n_action_steps, has_language=False, prepare=_with_time_axis
)
