"""Audit inputs for the audit benchmarks: a random-weights ACT (the demo's sizes: ResNet-18, model
width 64, chunks of 5) built for a synthetic LeRobot dataset with two 64×64 cameras and a 6-dof
state, and held-out frames of that dataset, exactly as a checkpoint audit sees them."""

from pathlib import Path

from tests.tiny_policies import tiny_act
from trustai.core.audit import AuditContext
from trustai.core.evidence import Stage
from trustai.lerobot.adapter import Batch, PolicyAdapter
from trustai.lerobot.checkpoint_inputs import FeatureStats, FrameParams, feature_stats, held_out_batch
from trustai.lerobot.synthetic import make_synthetic_dataset

CAMERAS = ("observation.images.top", "observation.images.wrist")


def act_with_frames(
    folder: Path, frames: int, device: str = "cpu"
) -> tuple[PolicyAdapter, Batch, FeatureStats]:
    """The policy (on ``device``), ``frames`` held-out frames and the dataset's action statistics."""
    root = make_synthetic_dataset(folder / "dataset", cameras=CAMERAS, image_size=(64, 64), episodes=2)
    policy, preprocessor, postprocessor = tiny_act(root, dim_model=64, device=device)
    adapter = PolicyAdapter(policy.eval(), preprocessor, postprocessor)
    ctx = AuditContext(stage=Stage.CHECKPOINT, artifact_dir=folder, policy=adapter, dataset=root)
    _, batch = held_out_batch(ctx, FrameParams(frames=frames))
    return adapter, batch, feature_stats(root, adapter, "action")
