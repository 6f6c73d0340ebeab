"""ACT (``act``): the model's forward pass in eval mode (no VAE sampling, no dropout); deterministic,
differentiable w.r.t. every camera and the state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lerobot.utils.constants import OBS_IMAGES
from torch import Tensor

from trustai.lerobot.policies.driver import Batch, PolicyDriver

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy


def _chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    batch = dict(batch)
    batch[OBS_IMAGES] = [batch[key] for key in policy.config.image_features]
    return policy.model(batch)[0]


DRIVER = PolicyDriver(_chunk, lambda policy: policy.config.chunk_size, has_language=False)
