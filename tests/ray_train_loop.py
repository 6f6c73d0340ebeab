"""A minimal Ray Train loop: a tiny LeRobot ACT trained on a local dataset, reporting a LeRobot
``pretrained_model`` checkpoint every ``report_every`` steps."""

import tempfile
from pathlib import Path


def train_tiny_act(config: dict) -> None:
    """Train a tiny ACT on ``config['dataset_root']`` and report loss (+ checkpoints) to Ray Train."""
    import ray.train
    import torch
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    torch.manual_seed(0)
    root = Path(config["dataset_root"])
    meta = LeRobotDataset("trustai/dist", root=root).meta
    features = dataset_to_policy_features(meta.features)
    cfg = ACTConfig(
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
        pretrained_backbone_weights=None,
        dim_model=32,
        dim_feedforward=64,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        chunk_size=5,
        n_action_steps=5,
        use_vae=False,
        device="cpu",
    )
    policy = ACTPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    delta = {"action": [i / meta.fps for i in range(cfg.chunk_size)]}
    dataset = LeRobotDataset("trustai/dist", root=root, delta_timestamps=delta)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batches = iter(loader)
    for step in range(1, config["steps"] + 1):
        batch = next(batches)
        batch = pre(batch)
        loss, _ = policy.forward(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        metrics = {"loss": loss.item(), "step": step}
        if step % config["report_every"] == 0:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "pretrained_model"
                policy.save_pretrained(folder)
                pre.save_pretrained(folder)
                post.save_pretrained(folder)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
