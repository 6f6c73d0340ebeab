"""Audit inputs for the audit benchmarks: a random-weights ACT (the demo's sizes: ResNet-18, model
width 64, chunks of 5) built for a synthetic LeRobot dataset with two 64×64 cameras and a 6-dof
state, and held-out frames of that dataset, exactly as a checkpoint audit sees them."""

from pathlib import Path

import torch

from trustai.adapters import Batch, PolicyAdapter
from trustai.audit import AuditContext
from trustai.checkpoint_inputs import FeatureStats, FrameParams, feature_stats, held_out_batch
from trustai.evidence import Stage
from trustai.synthetic import make_synthetic_dataset

CAMERAS = ("observation.images.top", "observation.images.wrist")


def act_with_frames(folder: Path, frames: int) -> tuple[PolicyAdapter, Batch, FeatureStats]:
    """The policy, ``frames`` held-out frames and the dataset's action statistics."""
    from lerobot.configs import FeatureType
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    root = make_synthetic_dataset(folder / "dataset", cameras=CAMERAS, image_size=(64, 64), episodes=2)
    meta = LeRobotDatasetMetadata("trustai/bench", root=root)
    features = dataset_to_policy_features(meta.features)
    torch.manual_seed(0)
    config = ACTConfig(
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
        device="cpu",
        pretrained_backbone_weights=None,
        dim_model=64,
        dim_feedforward=128,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        chunk_size=5,
        n_action_steps=5,
        use_vae=False,
    )
    policy = ACTPolicy(config).eval()
    adapter = PolicyAdapter.from_policy(policy, *make_pre_post_processors(config, dataset_stats=meta.stats))
    ctx = AuditContext(stage=Stage.CHECKPOINT, artifact_dir=folder, policy=adapter, dataset=root)
    _, batch = held_out_batch(ctx, FrameParams(frames=frames))
    return adapter, batch, feature_stats(root, adapter, "action")
