"""A tiny real LeRobot ACT with random weights for a given dataset, for tests and benchmarks that
train and audit offline."""

from pathlib import Path
from typing import Any

import torch
from lerobot.configs import FeatureType
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors
from lerobot.utils.feature_utils import dataset_to_policy_features


def tiny_act(root: Path, *, dim_model: int = 32, device: str = "cpu") -> tuple[ACTPolicy, Any, Any]:
    """A random-weights ACT for the LeRobot dataset at ``root`` and its pre/post-processors, normalised
    with the dataset's statistics: ResNet-18 without pretrained weights, one encoder and one decoder
    layer, no VAE, chunks of 5, feed-forward width ``2 * dim_model``; seeded, so every call builds the
    same weights. Returned in train mode, on ``device`` (where its preprocessor also puts the inputs).
    """
    meta = LeRobotDatasetMetadata("trustai/synthetic", root=root)
    features = dataset_to_policy_features(meta.features)
    torch.manual_seed(0)
    config = ACTConfig(
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
        device=device,
        pretrained_backbone_weights=None,
        dim_model=dim_model,
        n_heads=2,
        dim_feedforward=2 * dim_model,
        n_encoder_layers=1,
        n_decoder_layers=1,
        use_vae=False,
        chunk_size=5,
        n_action_steps=5,
    )
    policy = ACTPolicy(config).to(device)
    return policy, *make_pre_post_processors(config, dataset_stats=meta.stats)
